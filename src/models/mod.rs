//! The model families and their registry: model ids → configurations → graph builders.
//!
//! A model is a family plus a configuration. A family is one type implementing [`Family`] (its id
//! prefix, configuration type, built-in variants, usual input size and graph builder) and one
//! line in [`FAMILIES`]; everything else — the model id list, id resolution, configurations from
//! the weights' metadata, the CLI's and the browser's model lists — is derived from that table.
//!
//! The configuration comes from the built-in variant table, or from the weights themselves: a
//! file whose metadata names its model (`wgvit.model`, e.g. `vvt-digits`) and carries its
//! hyper-parameters as JSON (`wgvit.config`) runs without any table entry, so model configs are
//! data. A builder reads its parameters through a [`nn::Scope`] by checkpoint name and appends
//! ops to a [`Graph`] for one input shape; shapes it cannot take are an [`Error::BadInputShape`]
//! that says which ones work.

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::graph::{Graph, TensorId};
use crate::kernels::DeviceProfile;
use crate::weights::{meta, Weights};

pub mod accvit;
pub mod card;
pub mod hatnet;
pub mod lavit;
pub mod nn;
pub mod torch_layout;
pub mod toy;
pub mod vvt;

pub use card::ModelCard;

/// Every model family, one registration line each.
pub static FAMILIES: &[&dyn AnyFamily] = &[&hatnet::HatNet, &vvt::Vvt, &accvit::AccVit, &lavit::LaVit, &toy::Toy];

/// A family's hyper-parameters: read from JSON (`wgvit.config`) and checked for consistency.
pub trait Config: serde::de::DeserializeOwned + Clone + Debug + PartialEq + Send + Sync + 'static {
    /// Every value the builder relies on (non-zero sizes, divisibility); the reason when not.
    fn validate(&self) -> std::result::Result<(), String>;
}

/// A model family.
pub trait Family: Send + Sync + 'static {
    type Config: Config;
    /// The id prefix of the family's models (`hatnet` for `hatnet-tiny`, `hatnet-digits`, ...).
    const PREFIX: &'static str;
    /// The built-in variants, in the order ids are listed: `tiny` is id `<prefix>-tiny`; an empty
    /// name is the id `<prefix>` itself.
    const VARIANTS: &'static [&'static str];

    /// The configuration of built-in variant `name`.
    fn variant(name: &str) -> Option<Self::Config>;

    /// The usual evaluation input size (H, W) of a model of this configuration and weights.
    fn default_input(_cfg: &Self::Config, _weights: &Weights) -> (usize, usize) {
        (224, 224)
    }

    /// Appends the forward of model `id` to `g` for `input` `[B, 3, H, W]`, its parameters read
    /// through `root`; returns the logits `[B, classes]`.
    fn build(cfg: &Self::Config, g: &mut Graph, root: &nn::Scope, input: TensorId, id: &str) -> Result<TensorId>;
}

/// [`Family`] with its configuration type erased, for the registry.
pub trait AnyFamily: Send + Sync {
    fn prefix(&self) -> &'static str;
    fn variants(&self) -> &'static [&'static str];
    fn variant(&self, name: &str) -> Option<Arc<dyn AnyConfig>>;
    fn parse_config(&self, json: &str) -> std::result::Result<Arc<dyn AnyConfig>, String>;
    fn default_input(&self, cfg: &dyn AnyConfig, weights: &Weights) -> (usize, usize);
    fn build(&self, cfg: &dyn AnyConfig, g: &mut Graph, root: &nn::Scope, input: TensorId, id: &str) -> Result<TensorId>;
}

/// A configuration with its type erased.
pub trait AnyConfig: Debug + Send + Sync + Any {
    fn as_any(&self) -> &dyn Any;
    fn eq_any(&self, other: &dyn AnyConfig) -> bool;
}

impl<C: Config> AnyConfig for C {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn eq_any(&self, other: &dyn AnyConfig) -> bool {
        other.as_any().downcast_ref::<C>() == Some(self)
    }
}

fn config_of<F: Family>(cfg: &dyn AnyConfig) -> &F::Config {
    cfg.as_any().downcast_ref::<F::Config>().expect("a ModelConfig is built with its own family's configuration")
}

impl<F: Family> AnyFamily for F {
    fn prefix(&self) -> &'static str {
        F::PREFIX
    }
    fn variants(&self) -> &'static [&'static str] {
        F::VARIANTS
    }
    fn variant(&self, name: &str) -> Option<Arc<dyn AnyConfig>> {
        F::variant(name).map(|c| Arc::new(c) as Arc<dyn AnyConfig>)
    }
    fn parse_config(&self, json: &str) -> std::result::Result<Arc<dyn AnyConfig>, String> {
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
        check_config_bounds("", &value)?;
        let config: F::Config = serde_json::from_value(value).map_err(|e| e.to_string())?;
        config.validate()?;
        Ok(Arc::new(config))
    }
    fn default_input(&self, cfg: &dyn AnyConfig, weights: &Weights) -> (usize, usize) {
        F::default_input(config_of::<F>(cfg), weights)
    }
    fn build(&self, cfg: &dyn AnyConfig, g: &mut Graph, root: &nn::Scope, input: TensorId, id: &str) -> Result<TensorId> {
        F::build(config_of::<F>(cfg), g, root, input, id)
    }
}

/// A family's configuration, and the family.
#[derive(Clone)]
pub struct ModelConfig {
    family: &'static dyn AnyFamily,
    value: Arc<dyn AnyConfig>,
}

impl ModelConfig {
    pub fn family(&self) -> &'static dyn AnyFamily {
        self.family
    }

    /// The configuration as its family's type (`spec.config.get::<HatNetConfig>()`).
    pub fn get<C: Config>(&self) -> Option<&C> {
        self.value.as_any().downcast_ref::<C>()
    }
}

impl Debug for ModelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.family.prefix(), self.value)
    }
}

impl PartialEq for ModelConfig {
    fn eq(&self, other: &Self) -> bool {
        self.family.prefix() == other.family.prefix() && self.value.eq_any(other.value.as_ref())
    }
}

/// A model id with its configuration, ready to build graphs.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub id: String,
    pub config: ModelConfig,
}

impl ModelSpec {
    /// The usual evaluation input size of this model with `weights`.
    pub fn default_input(&self, weights: &Weights) -> (usize, usize) {
        self.config.family.default_input(self.config.value.as_ref(), weights)
    }
}

/// Every built-in model id, family by family in [`FAMILIES`] order; ids of models whose weights
/// carry their own configuration (e.g. the bundled `*-digits` models) are accepted as well.
pub fn model_ids() -> Vec<String> {
    FAMILIES
        .iter()
        .flat_map(|f| f.variants().iter().map(move |v| if v.is_empty() { f.prefix().to_string() } else { format!("{}-{v}", f.prefix()) }))
        .collect()
}

/// The family and variant name of a built-in id.
fn builtin(id: &str) -> Option<(&'static dyn AnyFamily, &'static str)> {
    FAMILIES.iter().find_map(|&f| {
        let rest = id.strip_prefix(f.prefix())?;
        let variant = if rest.is_empty() { "" } else { rest.strip_prefix('-')? };
        f.variants().iter().find(|&&v| v == variant).map(|&v| (f, v))
    })
}

/// The family a `<family>-<name>` id belongs to by its prefix (`vvt-digits` → VVT), table or not.
fn family_by_prefix(id: &str) -> Option<&'static dyn AnyFamily> {
    FAMILIES
        .iter()
        .copied()
        .find(|f| id.strip_prefix(f.prefix()).is_some_and(|rest| rest.starts_with('-') && rest.len() > 1))
}

/// Fails on an id that can name no model: neither a built-in id nor `<family>-<name>` (whose
/// configuration the weights may carry). Lets a command reject a typo before reading any file.
pub fn check_id(id: &str) -> Result<()> {
    if builtin(id).is_some() || family_by_prefix(id).is_some() {
        Ok(())
    } else {
        Err(unknown(id))
    }
}

/// Fails on an id that is not built in (a model the weights must describe cannot be named
/// without weights).
pub fn check_builtin(id: &str) -> Result<()> {
    builtin(id).map(|_| ()).ok_or_else(|| unknown(id))
}

fn unknown(id: &str) -> Error {
    Error::UnknownModel {
        id: id.to_string(),
        known: format!(
            "{} (or <family>-<name> with weights whose metadata carries '{}' and '{}', like the bundled *-digits models)",
            model_ids().join(", "),
            meta::MODEL,
            meta::CONFIG
        ),
    }
}

/// The configuration of model `id`: the weights' own (`wgvit.config`) when their metadata names
/// this model, else the built-in variant table.
pub fn resolve(id: &str, weights: &Weights) -> Result<ModelSpec> {
    let from_metadata = weights.metadata.get(meta::CONFIG).filter(|_| weights.model_id() == Some(id));
    let config = match from_metadata {
        Some(json) => {
            let family = family_by_prefix(id).ok_or_else(|| unknown(id))?;
            let bad = |reason: String| Error::BadConfig { file: weights.file.clone(), model: id.to_string(), reason };
            ModelConfig { family, value: family.parse_config(json).map_err(bad)? }
        }
        None => {
            let (family, variant) = builtin(id).ok_or_else(|| unknown(id))?;
            let value = family.variant(variant).ok_or_else(|| unknown(id))?;
            ModelConfig { family, value }
        }
    };
    Ok(ModelSpec { id: id.to_string(), config })
}

/// The largest number a configuration may hold in a field named `depths` (blocks per stage) and
/// anywhere else (widths, heads, ratios, sizes): far above every real model, low enough that no
/// shape computed from a configuration can overflow or ask for an absurd graph.
pub const MAX_CONFIG_DEPTH: u64 = 256;
pub const MAX_CONFIG_VALUE: u64 = 65536;

/// Every number in a configuration, checked against its bound before the configuration is used
/// (a hostile `wgvit.config` must fail here, not as an overflow or a huge allocation later).
fn check_config_bounds(path: &str, value: &serde_json::Value) -> std::result::Result<(), String> {
    match value {
        serde_json::Value::Object(fields) => fields.iter().try_for_each(|(k, v)| check_config_bounds(k, v)),
        serde_json::Value::Array(items) => items.iter().enumerate().try_for_each(|(i, v)| check_config_bounds(&format!("{path}[{i}]"), v)),
        serde_json::Value::Number(n) => {
            let max = if path.starts_with("depths") { MAX_CONFIG_DEPTH } else { MAX_CONFIG_VALUE };
            match n.as_u64() {
                Some(v) if v <= max => Ok(()),
                _ => Err(format!("{path} = {n} is out of range 0 ..= {max}")),
            }
        }
        _ => Ok(()),
    }
}

/// The largest square input side up to `upto` at which model `spec` builds for `batch` images and
/// every tensor fits one binding of the device `profile` describes; `None` if none does. Graph
/// building only (no GPU): a binary search over "too large", then down to the nearest side the
/// model's shape rules accept.
pub fn largest_square_side(spec: &ModelSpec, weights: &Weights, batch: usize, profile: &DeviceProfile, upto: usize) -> Option<usize> {
    let max_binding = profile.max_binding_bytes();
    let build = |side: usize| build_spec_graph(spec, weights, &[batch, 3, side, side], profile.clone());
    let too_large = |side: usize| match build(side) {
        Ok(g) => g.storages.iter().any(|s| (s.numel as u64).saturating_mul(4) > max_binding),
        Err(e) => e.is_too_large(),
    };
    let (mut lo, mut hi) = (0usize, upto + 1); // not too large at lo (0 by convention), too large at hi
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if too_large(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    let fits = |side: usize| matches!(build(side), Ok(g) if g.storages.iter().all(|s| (s.numel as u64).saturating_mul(4) <= max_binding));
    (1..=lo).rev().take(4096).find(|&side| fits(side))
}

/// `Err` naming `field` when any entry is zero.
pub(crate) fn nonzero(field: &str, values: &[usize]) -> std::result::Result<(), String> {
    match values.iter().position(|&v| v == 0) {
        Some(i) => Err(format!("{field}[{i}] is 0")),
        None => Ok(()),
    }
}

/// Builds the forward graph of model `id` for an input of shape `[B, 3, H, W]` (for the default
/// [`DeviceProfile`]); the graph has one input `input` and one output `logits` `[B, classes]`.
pub fn build_graph(id: &str, weights: &Weights, input_shape: &[usize]) -> Result<Graph> {
    build_spec_graph(&resolve(id, weights)?, weights, input_shape, DeviceProfile::default())
}

/// [`build_graph`] for a resolved [`ModelSpec`] and a device.
pub fn build_spec_graph(spec: &ModelSpec, weights: &Weights, input_shape: &[usize], profile: DeviceProfile) -> Result<Graph> {
    let id = spec.id.as_str();
    if input_shape.len() != 4 || input_shape[1] != 3 || input_shape.contains(&0) {
        return Err(Error::BadInputShape {
            model: id.into(),
            expected: "a non-empty [B, 3, H, W] tensor".into(),
            found: input_shape.to_vec(),
        });
    }
    let mut g = Graph::for_profile(profile);
    let input = g.input("input", input_shape);
    let reader = weights.reader();
    let logits = spec.config.family.build(spec.config.value.as_ref(), &mut g, &nn::Scope::root(&reader), input, id)?;
    reader.finish()?;
    g.output("logits", logits);
    Ok(g)
}
