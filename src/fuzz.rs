//! What the fuzz targets run (`fuzz/fuzz_targets/`), shared with `tests/fuzz_corpus.rs`, which
//! replays every committed corpus file through the same functions in `cargo test`.
//!
//! Each takes arbitrary bytes and must return, whatever they are: an error is fine, a panic, a
//! hang or an unbounded allocation is a bug. Results are dropped; only termination is checked.

use std::collections::BTreeMap;

use crate::kernels::device::DeviceProfile;
use crate::models::{self, card::ModelCard};
use crate::preprocess::{decode, Preprocess};
use crate::weights::Weights;
use crate::{io, Result};

/// The fuzz targets by name (the names of `fuzz/fuzz_targets/*.rs` and `fuzz/corpus/*`).
pub const TARGETS: [(&str, fn(&[u8])); 4] =
    [("safetensors", safetensors), ("pth", pth), ("metadata", metadata), ("image", image)];

/// A safetensors file: container, header JSON, dtypes and offsets, then conversion to f32.
pub fn safetensors(data: &[u8]) {
    let _ = io::safetensors::read("fuzz.safetensors", data).and_then(|f| Weights::from_raw("fuzz.safetensors", f.metadata, f.tensors));
}

/// A PyTorch zip checkpoint: the zip directory, the restricted unpickler, storages and strides.
pub fn pth(data: &[u8]) {
    let _ = io::pth::read_pth("fuzz.pth", data).and_then(|t| Weights::from_raw("fuzz.pth", BTreeMap::new(), t));
}

/// Weights metadata, one `key=value` a line (the `wgvit.*` keys: model id, JSON configuration,
/// input size, crop fraction, mean, std, labels): the model card, then the graph at the card's
/// input size with zero stand-ins for the (absent) tensors, as `Engine::load` builds it.
pub fn metadata(data: &[u8]) {
    let _ = metadata_card(data);
}

fn metadata_card(data: &[u8]) -> Result<()> {
    let text = String::from_utf8_lossy(data);
    let metadata: BTreeMap<String, String> =
        text.lines().filter_map(|line| line.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let weights = Weights::from_raw("fuzz.safetensors", metadata, Vec::new())?;
    let id = weights.model_id().unwrap_or("toy").to_string();
    let card = ModelCard::new(&id, &weights)?;
    let (h, w) = card.input_size();
    models::build_spec_graph(&card.spec, &weights, &[1, 3, h, w], DeviceProfile::cpu_like())?;
    Ok(())
}

/// An image file and a transform: the first three bytes pick the crop size (1 ..= 256 a side)
/// and the crop fraction, the rest is the file (PNG, JPEG or WebP) — decode limits, the
/// windowed bicubic resize, the crop and normalisation.
pub fn image(data: &[u8]) {
    let [a, b, c, file @ ..] = data else { return };
    let mut p = Preprocess::imagenet((*a as usize + 1, *b as usize + 1));
    p.crop_pct = 0.05 + 0.95 * *c as f64 / 255.0;
    if let Ok(img) = decode("fuzz.image", file) {
        let _ = p.tensor(&img);
    }
}
