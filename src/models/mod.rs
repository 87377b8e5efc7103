//! The model registry: model ids → configurations → graph builders.
//!
//! A model is a family plus a configuration. The configuration comes from the built-in variant
//! table ([`MODEL_IDS`]), or from the weights themselves: a file whose metadata names its model
//! (`wgvit.model`, e.g. `vvt-digits`) and carries its hyper-parameters as JSON (`wgvit.config`)
//! runs without any table entry, so model configs are data. A builder reads its parameters from
//! [`Weights`] by checkpoint name and appends ops to a [`Graph`] for one input shape; shapes it
//! cannot take are an [`Error::BadInputShape`] that says which ones work.

use crate::error::{Error, Result};
use crate::graph::{Graph, Target, TensorId};
use crate::weights::{meta, Weights};

pub mod accvit;
pub mod hatnet;
pub mod lavit;
pub mod toy;
pub mod vvt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    HatNet,
    Vvt,
    AccVit,
    LaViT,
    /// The engine's own end-to-end test network (conv stem + window attention + MLP).
    Toy,
}

impl Family {
    /// The id prefix of the family's models (`hatnet-tiny`, `vvt-digits`, ...).
    pub fn prefix(self) -> &'static str {
        match self {
            Family::HatNet => "hatnet",
            Family::Vvt => "vvt",
            Family::AccVit => "accvit",
            Family::LaViT => "lavit",
            Family::Toy => "toy",
        }
    }
}

/// Every built-in model id (the variant tables); ids of models whose weights carry their own
/// configuration (e.g. the bundled `*-digits` models) are accepted as well.
pub const MODEL_IDS: &[(&str, Family)] = &[
    ("hatnet-tiny", Family::HatNet),
    ("hatnet-small", Family::HatNet),
    ("hatnet-medium", Family::HatNet),
    ("hatnet-large", Family::HatNet),
    ("hatnet-micro", Family::HatNet),
    ("vvt-tiny", Family::Vvt),
    ("vvt-small", Family::Vvt),
    ("vvt-medium", Family::Vvt),
    ("vvt-large", Family::Vvt),
    ("vvt-micro", Family::Vvt),
    ("accvit-tiny", Family::AccVit),
    ("accvit-small", Family::AccVit),
    ("accvit-base", Family::AccVit),
    ("accvit-micro", Family::AccVit),
    ("lavit-tiny", Family::LaViT),
    ("lavit-small", Family::LaViT),
    ("lavit-base", Family::LaViT),
    ("lavit-tiny-psi", Family::LaViT),
    ("lavit-micro", Family::LaViT),
    ("lavit-micro-psi", Family::LaViT),
    ("toy", Family::Toy),
];

/// A family's hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelConfig {
    HatNet(hatnet::HatNetConfig),
    Vvt(vvt::VvtConfig),
    AccVit(accvit::AccVitConfig),
    LaViT(lavit::LaVitConfig),
    Toy,
}

impl ModelConfig {
    pub fn family(&self) -> Family {
        match self {
            ModelConfig::HatNet(_) => Family::HatNet,
            ModelConfig::Vvt(_) => Family::Vvt,
            ModelConfig::AccVit(_) => Family::AccVit,
            ModelConfig::LaViT(_) => Family::LaViT,
            ModelConfig::Toy => Family::Toy,
        }
    }
}

/// A model id with its configuration, ready to build graphs.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub id: String,
    pub config: ModelConfig,
}

/// The family of a built-in id, or an error listing the known ids.
pub fn family_of(id: &str) -> Result<Family> {
    MODEL_IDS.iter().find(|(name, _)| *name == id).map(|&(_, f)| f).ok_or_else(|| unknown(id))
}

/// Fails on an id that can name no model: neither a built-in id nor `<family>-<name>` (whose
/// configuration the weights may carry). Lets a command reject a typo before reading any file.
pub fn check_id(id: &str) -> Result<()> {
    if family_of(id).is_ok() || family_by_prefix(id).is_some() {
        Ok(())
    } else {
        Err(unknown(id))
    }
}

fn unknown(id: &str) -> Error {
    Error::UnknownModel {
        id: id.to_string(),
        known: format!(
            "{} (or <family>-<name> with weights whose metadata carries '{}' and '{}', like the bundled *-digits models)",
            MODEL_IDS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "),
            meta::MODEL,
            meta::CONFIG
        ),
    }
}

/// The family an id belongs to by its prefix (`vvt-digits` → VVT), table or not.
fn family_by_prefix(id: &str) -> Option<Family> {
    [Family::HatNet, Family::Vvt, Family::AccVit, Family::LaViT]
        .into_iter()
        .find(|f| id.strip_prefix(f.prefix()).is_some_and(|rest| rest.starts_with('-') && rest.len() > 1))
}

/// The configuration of model `id`: the weights' own (`wgvit.config`) when their metadata names
/// this model, else the built-in variant table.
pub fn resolve(id: &str, weights: &Weights) -> Result<ModelSpec> {
    let from_metadata = weights.metadata.get(meta::CONFIG).filter(|_| weights.model_id() == Some(id));
    let config = match from_metadata {
        Some(json) => {
            let family = family_by_prefix(id).ok_or_else(|| unknown(id))?;
            let bad = |reason: String| Error::BadConfig { file: weights.file.clone(), model: id.to_string(), reason };
            match family {
                Family::HatNet => ModelConfig::HatNet(parse_config::<hatnet::HatNetConfig>(json).map_err(bad)?),
                Family::Vvt => ModelConfig::Vvt(parse_config::<vvt::VvtConfig>(json).map_err(bad)?),
                Family::AccVit => ModelConfig::AccVit(parse_config::<accvit::AccVitConfig>(json).map_err(bad)?),
                Family::LaViT => ModelConfig::LaViT(parse_config::<lavit::LaVitConfig>(json).map_err(bad)?),
                Family::Toy => ModelConfig::Toy,
            }
        }
        None => {
            let family = family_of(id)?;
            let variant = id.strip_prefix(family.prefix()).and_then(|v| v.strip_prefix('-')).unwrap_or("");
            let table = match family {
                Family::HatNet => hatnet::config(variant).map(ModelConfig::HatNet),
                Family::Vvt => vvt::config(variant).map(ModelConfig::Vvt),
                Family::AccVit => accvit::config(variant).map(ModelConfig::AccVit),
                Family::LaViT => lavit::config(variant).map(ModelConfig::LaViT),
                Family::Toy => Some(ModelConfig::Toy),
            };
            table.ok_or_else(|| unknown(id))?
        }
    };
    Ok(ModelSpec { id: id.to_string(), config })
}

/// A configuration that can be read from JSON and checked for consistency.
pub trait Config: serde::de::DeserializeOwned {
    /// Every value the builder relies on (non-zero sizes, divisibility); the reason when not.
    fn validate(&self) -> std::result::Result<(), String>;
}

fn parse_config<C: Config>(json: &str) -> std::result::Result<C, String> {
    let config: C = serde_json::from_str(json).map_err(|e| e.to_string())?;
    config.validate()?;
    Ok(config)
}

/// `Err` naming `field` when any entry is zero.
pub(crate) fn nonzero(field: &str, values: &[usize]) -> std::result::Result<(), String> {
    match values.iter().position(|&v| v == 0) {
        Some(i) => Err(format!("{field}[{i}] is 0")),
        None => Ok(()),
    }
}

/// Builds the forward graph of model `id` for an input of shape `[B, 3, H, W]` (for the default
/// [`Target`]); the graph has one input `input` and one output `logits` `[B, classes]`.
pub fn build_graph(id: &str, weights: &Weights, input_shape: &[usize]) -> Result<Graph> {
    build_spec_graph(&resolve(id, weights)?, weights, input_shape, Target::default())
}

/// [`build_graph`] for a resolved [`ModelSpec`] and a device [`Target`].
pub fn build_spec_graph(spec: &ModelSpec, weights: &Weights, input_shape: &[usize], target: Target) -> Result<Graph> {
    let id = spec.id.as_str();
    if input_shape.len() != 4 || input_shape[1] != 3 || input_shape.contains(&0) {
        return Err(Error::BadInputShape {
            model: id.into(),
            expected: "a non-empty [B, 3, H, W] tensor".into(),
            found: input_shape.to_vec(),
        });
    }
    let mut g = Graph::for_target(target);
    let input = g.input("input", input_shape);
    let logits: TensorId = match &spec.config {
        ModelConfig::Toy => toy::build(&mut g, weights, input)?,
        ModelConfig::HatNet(cfg) => hatnet::build(&mut g, weights, input, id, cfg)?,
        ModelConfig::Vvt(cfg) => vvt::build(&mut g, weights, input, id, cfg)?,
        ModelConfig::AccVit(cfg) => accvit::build(&mut g, weights, input, id, cfg)?,
        ModelConfig::LaViT(cfg) => lavit::build(&mut g, weights, input, id, cfg)?,
    };
    weights.finish()?;
    g.output("logits", logits);
    Ok(g)
}
