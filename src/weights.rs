//! A model's parameters: the tensors of a file ([`crate::io`]) converted to f32 once, looked up by
//! name with shape checks, with the file's metadata. Every error names the file and the tensor.
//!
//! [`Weights`] is immutable once loaded and shared by every graph built from it. The bookkeeping
//! of one graph build — which tensors the model asked for, which were missing — lives in a
//! [`WeightReader`] made for that build: the builder asks for each parameter through it, missing
//! names are collected (so one error lists them all) and [`WeightReader::finish`] reports them,
//! and warns about tensors the model never asked for.
//!
//! Tensors of other dtypes (PyTorch's int64 `num_batches_tracked` BatchNorm counters, say) are
//! kept without data: a file holding them loads, and only asking for one is a `DtypeMismatch`.
//! A safetensors file may name its model and input in its metadata ([`meta`]); `wgvit convert`
//! writes those keys, and `models::ModelCard` reads them.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use safetensors::Dtype;

use crate::error::{Error, Result};
use crate::graph::{Graph, TensorId};
use crate::io::{self, RawTensor};
use crate::tensor::HostTensor;

/// Metadata keys wgvit reads from (and `wgvit convert` writes to) a safetensors header.
pub mod meta {
    /// The model id, e.g. `hatnet-tiny`: lets `--model` be left out.
    pub const MODEL: &str = "wgvit.model";
    /// The model's hyper-parameters as JSON (the fields of the family's config struct, e.g.
    /// [`crate::models::hatnet::HatNetConfig`]); used when [`MODEL`] names the model being built.
    pub const CONFIG: &str = "wgvit.config";
    /// The evaluation input size, `S` or `HxW`: the default of `--size`.
    pub const INPUT_SIZE: &str = "wgvit.input_size";
    /// The number of classes of the head.
    pub const CLASSES: &str = "wgvit.classes";
    /// Class names, one per line, in index order.
    pub const LABELS: &str = "wgvit.labels";
    /// Preprocessing: crop fraction, and comma-separated per-channel mean and std.
    pub const CROP_PCT: &str = "wgvit.crop_pct";
    pub const MEAN: &str = "wgvit.mean";
    pub const STD: &str = "wgvit.std";
    /// Where the tensors came from (the converted file's name).
    pub const SOURCE: &str = "wgvit.source";
}

#[derive(Clone, Debug)]
pub struct WeightTensor {
    pub shape: Vec<usize>,
    pub dtype: String,
    pub data: Arc<Vec<f32>>,
}

/// The parameters of one file, as f32.
#[derive(Clone, Debug)]
pub struct Weights {
    /// Where the tensors came from, for error messages (a path, or a label for in-memory bytes).
    pub file: String,
    pub metadata: BTreeMap<String, String>,
    tensors: HashMap<String, WeightTensor>,
    /// When set, tensors the file lacks are made up instead of reported missing.
    synthetic: Option<Synthetic>,
}

/// What [`Weights`] without a file hold.
#[derive(Clone, Copy, Debug)]
enum Synthetic {
    /// Random values, deterministic from the seed and the tensor's name: benchmarks of any id.
    Random(u64),
    /// Zeros: a graph's shapes only ([`Weights::zeros`]).
    Zeros,
}

/// Most elements the zero-filled stand-ins for missing tensors hold in one build (256 MiB: every
/// tensor of a tiny/small model; a larger file missing most of its tensors lists those found
/// before the budget ran out).
const MAX_STANDIN: usize = 1 << 26;

/// The dtypes converted to f32 on load.
const FLOAT_DTYPES: &str = "F32, F16, BF16, F64";

/// The tensor as f32, or `None` for a dtype that is not a float the engine reads.
fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    match dtype {
        Dtype::F32 => Some(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
        Dtype::F16 => Some(bytes.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
        Dtype::BF16 => Some(bytes.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect()),
        Dtype::F64 => Some(bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8-byte chunk")) as f32).collect()),
        _ => None,
    }
}

impl WeightTensor {
    fn is_float(&self) -> bool {
        FLOAT_DTYPES.split(", ").any(|d| d == self.dtype)
    }
}

/// One stored tensor → f32 (or no data for a non-float dtype), checked against its shape.
fn weight_tensor(file: &str, t: &RawTensor) -> Result<WeightTensor> {
    let data = to_f32(t.dtype, &t.data).unwrap_or_default();
    let expected: usize = t.shape.iter().product();
    if !data.is_empty() && data.len() != expected {
        return Err(Error::MalformedWeights {
            file: file.to_string(),
            reason: format!("tensor '{}' holds {} values, its shape {:?} needs {expected}", t.name, data.len(), t.shape),
        });
    }
    Ok(WeightTensor { shape: t.shape.clone(), dtype: format!("{:?}", t.dtype), data: Arc::new(data) })
}

fn dtype_mismatch(file: &str, name: &str, t: &WeightTensor) -> Error {
    Error::DtypeMismatch { file: file.to_string(), tensor: name.into(), expected: FLOAT_DTYPES.into(), found: t.dtype.clone() }
}

impl Weights {
    /// Parses a safetensors file or a PyTorch zip checkpoint held in memory (told apart by their
    /// first bytes). `file` names it in errors.
    pub fn from_bytes(file: &str, bytes: &[u8]) -> Result<Self> {
        let io::TensorFile { metadata, tensors } = io::read(file, bytes)?;
        Self::from_raw(file, metadata, tensors)
    }

    /// Weights from stored tensors (a decoded checkpoint) and metadata.
    pub fn from_raw(file: &str, metadata: BTreeMap<String, String>, raw: Vec<RawTensor>) -> Result<Self> {
        let mut tensors = HashMap::new();
        for t in &raw {
            tensors.insert(t.name.clone(), weight_tensor(file, t)?);
        }
        Ok(Self { metadata, tensors, ..Self::empty(file) })
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let bytes = io::read_file(path, io::MAX_WEIGHTS_BYTES, "weights")?;
        Self::from_bytes(&name, &bytes)
    }

    /// Builds weights from host tensors (random-weight benchmarks, tests).
    pub fn from_tensors(file: &str, tensors: impl IntoIterator<Item = (String, HostTensor)>) -> Self {
        let tensors = tensors
            .into_iter()
            .map(|(n, t)| (n, WeightTensor { shape: t.shape, dtype: "F32".into(), data: Arc::new(t.data) }))
            .collect();
        Self { tensors, ..Self::empty(file) }
    }

    fn empty(file: &str) -> Self {
        Self { file: file.to_string(), metadata: BTreeMap::new(), tensors: HashMap::new(), synthetic: None }
    }

    /// Random weights for any model: every tensor a builder asks for is generated with a
    /// plausible scale (conv/linear weights ~ U(±1/√fan_in), norm scales and BatchNorm variances
    /// near 1, small biases), the same for the same seed and name.
    pub fn synthetic(seed: u64) -> Self {
        Self { synthetic: Some(Synthetic::Random(seed)), ..Self::empty("(random weights)") }
    }

    /// Zeros for every tensor a builder asks for: a graph whose shapes, kernels and pipelines are
    /// the model's, for compiling before the weights are here (`Engine::precompile`), without
    /// generating random values (60 % of building hatnet-tiny's graph).
    pub fn zeros() -> Self {
        Self { synthetic: Some(Synthetic::Zeros), ..Self::empty("(placeholder weights)") }
    }

    /// The model id the file's metadata names ([`meta::MODEL`]), if any.
    pub fn model_id(&self) -> Option<&str> {
        self.metadata.get(meta::MODEL).map(String::as_str).filter(|s| !s.is_empty())
    }

    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tensors.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The shape stored under `name` (lets a builder read hyper-parameters such as the number of
    /// classes off the weights).
    pub fn shape_of(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.shape.as_slice())
    }

    /// The first non-finite value of any float tensor, as an error naming the tensor (what
    /// `Engine::load_model` refuses: NaN weights give NaN answers).
    pub fn check_finite(&self) -> Result<()> {
        for name in self.names() {
            let t = &self.tensors[&name];
            if let Some(index) = t.data.iter().position(|v| !v.is_finite()) {
                return Err(Error::NonFiniteWeight { file: self.file.clone(), tensor: name, index, value: t.data[index] });
            }
        }
        Ok(())
    }

    /// Rejects tensors larger than `limit` bytes before anything is dispatched.
    pub fn check_binding_limit(&self, limit: u64) -> Result<()> {
        for name in self.names() {
            let bytes = self.tensors[&name].data.len() as u64 * 4;
            if bytes > limit {
                return Err(Error::TensorTooLarge { file: self.file.clone(), tensor: name, bytes, limit });
            }
        }
        Ok(())
    }

    /// A reader for one graph build.
    pub fn reader(&self) -> WeightReader<'_> {
        WeightReader { weights: self, used: RefCell::default(), missing: RefCell::default(), standin_numel: Cell::new(0), generated: RefCell::default(), zeros: RefCell::default() }
    }
}

/// The weights as one graph build reads them: every parameter asked for is recorded, so the
/// build can end with one error listing every missing tensor and a warning naming unused ones.
pub struct WeightReader<'w> {
    weights: &'w Weights,
    used: RefCell<HashSet<String>>,
    missing: RefCell<Vec<String>>,
    /// Elements of the zero stand-ins handed out for missing tensors so far (bounded by
    /// `MAX_STANDIN` in all, whatever sizes a configuration names).
    standin_numel: Cell<usize>,
    /// Synthetic tensors made in this build (a name asked for twice gets the same data).
    generated: RefCell<HashMap<String, Arc<Vec<f32>>>>,
    /// Zero tensors ([`Weights::zeros`]' and the stand-ins for missing tensors), one per element
    /// count: every tensor of that size shares it.
    /// hatnet-tiny's 295 tensors (51 MB) have 34 sizes (14 MB); zeroing the 51 MB was 40–73 ms of
    /// the precompile's graph in Chromium, ahead of its first compile request.
    zeros: RefCell<HashMap<usize, Arc<Vec<f32>>>>,
}

impl WeightReader<'_> {
    pub fn weights(&self) -> &Weights {
        self.weights
    }

    pub fn file(&self) -> &str {
        &self.weights.file
    }

    pub fn contains(&self, name: &str) -> bool {
        self.weights.contains(name)
    }

    pub fn shape_of(&self, name: &str) -> Option<&[usize]> {
        self.weights.shape_of(name)
    }

    /// `numel` zeros, shared by every tensor of that size this build asks for.
    fn zeros_of(&self, numel: usize) -> Arc<Vec<f32>> {
        self.zeros.borrow_mut().entry(numel).or_insert_with(|| Arc::new(vec![0.0; numel])).clone()
    }

    /// The tensor `name`, which must have shape `expected`. A missing tensor is recorded (reported
    /// by [`WeightReader::finish`]) and zeros are returned so the builder can go on and find the
    /// others.
    pub fn param(&self, name: &str, expected: &[usize]) -> Result<Arc<Vec<f32>>> {
        let w = self.weights;
        match w.tensors.get(name) {
            None => match w.synthetic {
                Some(Synthetic::Random(seed)) => Ok(self.generate(seed, name, expected)),
                Some(Synthetic::Zeros) => Ok(self.zeros_of(expected.iter().product())),
                None => {
                    self.missing.borrow_mut().push(name.to_string());
                    // A stand-in lets the build go on and name every missing tensor; once they
                    // would hold more than MAX_STANDIN elements in all (a configuration naming
                    // absurd sizes, or a file missing most of a large model) the build ends here.
                    let total = expected
                        .iter()
                        .try_fold(1usize, |a, &d| a.checked_mul(d))
                        .and_then(|n| self.standin_numel.get().checked_add(n).map(|t| (n, t)))
                        .filter(|&(_, t)| t <= MAX_STANDIN);
                    match total {
                        Some((n, t)) => {
                            self.standin_numel.set(t);
                            Ok(self.zeros_of(n))
                        }
                        None => Err(Error::MissingTensors { file: w.file.clone(), tensors: self.missing.borrow().clone() }),
                    }
                }
            },
            Some(t) if !t.is_float() => Err(dtype_mismatch(&w.file, name, t)),
            Some(t) if t.shape != expected => Err(Error::ShapeMismatch {
                file: w.file.clone(),
                tensor: name.into(),
                expected: expected.to_vec(),
                found: t.shape.clone(),
            }),
            Some(t) => {
                self.used.borrow_mut().insert(name.to_string());
                Ok(t.data.clone())
            }
        }
    }

    fn generate(&self, seed: u64, name: &str, shape: &[usize]) -> Arc<Vec<f32>> {
        let mut generated = self.generated.borrow_mut();
        if let Some(t) = generated.get(name).filter(|t| t.len() == shape.iter().product::<usize>()) {
            return t.clone();
        }
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
        let mut rng = crate::tensor::Rng::new(seed ^ hash);
        let n: usize = shape.iter().product();
        let data = if name.ends_with("running_var") {
            rng.vec(n, 0.5, 1.5)
        } else if name.ends_with("bias") || name.ends_with("running_mean") || shape.len() == 1 && !name.ends_with("weight") {
            rng.vec(n, -0.05, 0.05)
        } else if shape.len() <= 1 {
            rng.vec(n, 0.9, 1.1)
        } else {
            let bound = (1.0 / (n / shape[0]).max(1) as f32).sqrt();
            rng.vec(n, -bound, bound)
        };
        let data = Arc::new(data);
        generated.insert(name.to_string(), data.clone());
        data
    }

    /// Marks a tensor as known but intentionally unused (e.g. HAT-Net's `attn.proj_norm`).
    pub fn ignore(&self, name: &str) {
        if self.weights.contains(name) {
            self.used.borrow_mut().insert(name.to_string());
        }
    }

    /// `param` straight into the graph as a constant keyed by its checkpoint name.
    pub fn constant(&self, g: &mut Graph, name: &str, shape: &[usize]) -> Result<TensorId> {
        let data = self.param(name, shape)?;
        g.constant(name, shape, data)
    }

    /// Ends a build: an error listing every missing tensor, and a warning naming unused ones.
    /// Returns the unused names.
    pub fn finish(self) -> Result<Vec<String>> {
        let mut missing = self.missing.into_inner();
        let file = &self.weights.file;
        if !missing.is_empty() {
            missing.sort();
            missing.dedup();
            return Err(Error::MissingTensors { file: file.clone(), tensors: missing });
        }
        let used = self.used.into_inner();
        let mut unused: Vec<String> = self.weights.tensors.keys().filter(|n| !used.contains(*n)).cloned().collect();
        unused.sort();
        // BatchNorm's step counters are training state, in every state_dict: not worth a warning.
        let surprising: Vec<&str> = unused.iter().map(String::as_str).filter(|n| !n.ends_with("num_batches_tracked")).collect();
        if !surprising.is_empty() {
            log::warn!("{file}: {} tensor(s) not used by the model: {}", surprising.len(), surprising.join(", "));
        }
        Ok(unused)
    }
}

/// Reads one f32 tensor by name from a safetensors file held in memory (the `run` command's input).
pub fn read_tensor(file: &str, bytes: &[u8], name: &str) -> Result<HostTensor> {
    let w = Weights::from_bytes(file, bytes)?;
    let t = w.tensors.get(name).ok_or_else(|| Error::MissingTensors { file: file.into(), tensors: vec![name.into()] })?;
    if !t.is_float() {
        return Err(dtype_mismatch(file, name, t));
    }
    Ok(HostTensor { shape: t.shape.clone(), data: t.data.as_ref().clone() })
}

/// Serialises named f32 tensors to safetensors bytes.
pub fn write_tensors(tensors: &[(&str, &HostTensor)]) -> Result<Vec<u8>> {
    let raw: Vec<RawTensor> = tensors.iter().map(|(name, t)| io::safetensors::f32_tensor(name, &t.shape, &t.data)).collect();
    io::safetensors::write(&raw, &BTreeMap::new())
}
