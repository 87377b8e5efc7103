//! A model's card: everything a weights file says about how to run its model, parsed once from
//! the metadata ([`crate::weights::meta`]) when the model is loaded — the id and configuration,
//! the evaluation input size, the preprocessing (crop fraction, mean, std) and the class names.
//! The CLI and the browser read these fields; nothing else re-reads the metadata.

use crate::error::{Error, Result};
use crate::labels;
use crate::preprocess::{parse_size, Preprocess, IMAGENET_MEAN, IMAGENET_STD, MAX_SIDE};
use crate::weights::{meta, Weights};

use super::{resolve, ModelSpec};

#[derive(Clone, Debug, PartialEq)]
pub struct ModelCard {
    /// The model id and its configuration.
    pub spec: ModelSpec,
    /// The evaluation transform at the model's usual input size (`wgvit.input_size`, else the
    /// family's default): its size, crop fraction, mean and std.
    pub preprocess: Preprocess,
    /// The head's class count the metadata records (`wgvit.classes`), if any.
    pub classes: Option<usize>,
    /// The class names the metadata carries (`wgvit.labels`), if any.
    pub labels: Option<Vec<String>>,
    /// The file the card was read from, for messages.
    pub file: String,
}

impl ModelCard {
    /// The card of model `id` run with `weights`: its configuration ([`resolve`]) and the
    /// metadata's input size, preprocessing and labels. A metadata value that does not parse is an
    /// error naming the file and the key.
    pub fn new(id: &str, weights: &Weights) -> Result<Self> {
        let spec = resolve(id, weights)?;
        let file = weights.file.clone();
        let bad = |key: &str, v: &str, want: &str| Error::Invalid(format!("{file}: metadata '{key}' = '{v}' is not valid: expected {want}"));
        let md = &weights.metadata;
        let size = match md.get(meta::INPUT_SIZE) {
            Some(s) => parse_size(s)
                .ok()
                .filter(|&(h, w)| h <= MAX_SIDE && w <= MAX_SIDE)
                .ok_or_else(|| Error::Invalid(format!("{file}: metadata '{}' = '{s}' is not a size (S or HxW, sides 1 ..= {MAX_SIDE})", meta::INPUT_SIZE)))?,
            None => spec.default_input(weights),
        };
        let mut preprocess = Preprocess::imagenet(size);
        if let Some(v) = md.get(meta::CROP_PCT) {
            // Below 0.05 the resize would be over 20× the crop: a typo, not a transform.
            preprocess.crop_pct =
                v.trim().parse().ok().filter(|c: &f64| (0.05..=1.0).contains(c)).ok_or_else(|| bad(meta::CROP_PCT, v, "a crop fraction in 0.05 ..= 1"))?;
        }
        // Three finite numbers (a NaN or infinite mean or std would feed the model garbage and
        // still print a confident class); a std must also be positive.
        let triple = |key: &str, default: [f32; 3], positive: bool| -> Result<[f32; 3]> {
            let want = if positive { "three finite positive numbers, comma-separated" } else { "three finite numbers, comma-separated" };
            match md.get(key) {
                None => Ok(default),
                Some(v) => {
                    let xs: Vec<f32> = v.split(',').map(|x| x.trim().parse::<f32>()).collect::<std::result::Result<_, _>>().map_err(|_| bad(key, v, want))?;
                    let xs = <[f32; 3]>::try_from(xs).map_err(|_| bad(key, v, want))?;
                    if xs.iter().any(|x| !x.is_finite() || positive && *x <= 0.0) {
                        return Err(bad(key, v, want));
                    }
                    Ok(xs)
                }
            }
        };
        preprocess.mean = triple(meta::MEAN, IMAGENET_MEAN, false)?;
        preprocess.std = triple(meta::STD, IMAGENET_STD, true)?;
        let classes = md.get(meta::CLASSES).and_then(|c| c.trim().parse::<usize>().ok());
        let labels = md.get(meta::LABELS).map(|text| text.lines().map(|l| l.trim().to_string()).collect());
        Ok(Self { spec, preprocess, classes, labels, file })
    }

    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// The usual input size `(H, W)`.
    pub fn input_size(&self) -> (usize, usize) {
        self.preprocess.size
    }

    /// The evaluation transform at `size` (the card's crop fraction, mean and std).
    pub fn preprocess_at(&self, size: (usize, usize)) -> Preprocess {
        Preprocess { size, ..self.preprocess.clone() }
    }

    /// Names for a head of `classes` outputs: the card's own labels when there are exactly that
    /// many, else ImageNet-1k's for a 1000-class head, else `None` (callers print indices).
    pub fn labels_for(&self, classes: usize) -> Option<Vec<String>> {
        if let Some(own) = &self.labels {
            if own.len() == classes {
                return Some(own.clone());
            }
            log::warn!("{}: metadata '{}' holds {} labels, the head has {classes} classes: ignored", self.file, meta::LABELS, own.len());
        }
        (classes == labels::imagenet1k().len()).then(|| labels::imagenet1k().iter().map(|s| s.to_string()).collect())
    }
}
