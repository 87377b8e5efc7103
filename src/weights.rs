//! Weights from `.safetensors`: f32, f16 and bf16 tensors, converted to f32 on load, looked up by
//! name with shape checks. Every error names the file and the tensor. A model builder asks for each
//! parameter with [`Weights::param`]; missing names are collected (so one error lists them all)
//! and [`Weights::finish`] reports them, and warns about tensors the model never asked for.
//!
//! Tensors of other dtypes (PyTorch's int64 `num_batches_tracked` BatchNorm counters, say) are
//! kept without data: a file holding them loads, and only asking for one is a `DtypeMismatch`.
//!
//! [`Weights::from_bytes`] also takes PyTorch zip checkpoints (`.pth`/`.pt`/`.bin`, recognised by
//! their content, read by [`crate::pth`]). A safetensors file may name its model and input in its
//! metadata ([`meta`]); `wgvit convert` writes those keys.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use safetensors::{Dtype, SafeTensors};

use crate::error::{Error, Result};
use crate::graph::{Graph, TensorId};
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

/// A tensor as stored: dtype, shape and contiguous little-endian bytes (what a checkpoint holds
/// before conversion to f32; `wgvit convert` writes these unchanged).
#[derive(Clone, Debug)]
pub struct RawTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct WeightTensor {
    pub shape: Vec<usize>,
    pub dtype: String,
    pub data: Arc<Vec<f32>>,
}

#[derive(Debug)]
pub struct Weights {
    /// Where the tensors came from, for error messages (a path, or a label for in-memory bytes).
    pub file: String,
    pub metadata: BTreeMap<String, String>,
    tensors: HashMap<String, WeightTensor>,
    used: Mutex<HashSet<String>>,
    missing: Mutex<Vec<String>>,
    /// When set, tensors the file lacks are generated (deterministically from the seed and the
    /// name) instead of reported missing: random-weight benchmarks of any model id.
    synthetic: Option<u64>,
    generated: Mutex<HashMap<String, Arc<Vec<f32>>>>,
}

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
fn weight_tensor(file: &str, name: &str, dtype: Dtype, shape: &[usize], bytes: &[u8]) -> Result<WeightTensor> {
    let data = to_f32(dtype, bytes).unwrap_or_default();
    let expected: usize = shape.iter().product();
    if !data.is_empty() && data.len() != expected {
        return Err(Error::MalformedWeights {
            file: file.to_string(),
            reason: format!("tensor '{name}' holds {} values, its shape {shape:?} needs {expected}", data.len()),
        });
    }
    if let Some(bad) = data.iter().position(|v| !v.is_finite()) {
        log::warn!("{file}: tensor '{name}' has a non-finite value at flat index {bad}");
    }
    Ok(WeightTensor { shape: shape.to_vec(), dtype: format!("{dtype:?}"), data: Arc::new(data) })
}

fn legacy_torch_error(file: &str) -> Error {
    Error::MalformedCheckpoint {
        file: file.to_string(),
        reason: "the pre-1.6 (non-zip) torch.save format is not supported; re-save it with a current PyTorch \
                 (torch.save(torch.load(f, weights_only=True), f2)) or convert it to safetensors"
            .into(),
    }
}

impl Weights {
    /// Parses a safetensors file or a PyTorch zip checkpoint held in memory (told apart by their
    /// first bytes). `file` names it in errors.
    pub fn from_bytes(file: &str, bytes: &[u8]) -> Result<Self> {
        if crate::pth::is_zip(bytes) {
            return Self::from_raw(file, BTreeMap::new(), crate::pth::read_pth(file, bytes)?);
        }
        if crate::pth::is_legacy_torch(bytes) {
            return Err(legacy_torch_error(file));
        }
        let malformed = |reason: String| Error::MalformedWeights { file: file.to_string(), reason };
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| malformed(e.to_string()))?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| malformed(e.to_string()))?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            let t = weight_tensor(file, &name, view.dtype(), view.shape(), view.data())?;
            tensors.insert(name.to_string(), t);
        }
        let metadata = header.metadata().clone().map(|m| m.into_iter().collect()).unwrap_or_default();
        Ok(Self { file: file.to_string(), metadata, tensors, ..Self::empty(file) })
    }

    /// Weights from stored tensors (a decoded checkpoint) and metadata.
    pub fn from_raw(file: &str, metadata: BTreeMap<String, String>, raw: Vec<RawTensor>) -> Result<Self> {
        let mut tensors = HashMap::new();
        for t in raw {
            let w = weight_tensor(file, &t.name, t.dtype, &t.shape, &t.data)?;
            tensors.insert(t.name, w);
        }
        Ok(Self { metadata, tensors, ..Self::empty(file) })
    }

    /// The model id the file's metadata names ([`meta::MODEL`]), if any.
    pub fn model_id(&self) -> Option<&str> {
        self.metadata.get(meta::MODEL).map(String::as_str).filter(|s| !s.is_empty())
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_file(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| Error::Io { path: name.clone(), reason: e.to_string() })?;
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
        Self {
            file: file.to_string(),
            metadata: BTreeMap::new(),
            tensors: HashMap::new(),
            used: Mutex::default(),
            missing: Mutex::default(),
            synthetic: None,
            generated: Mutex::default(),
        }
    }

    /// Random weights for any model: every tensor a builder asks for is generated with a
    /// plausible scale (conv/linear weights ~ U(±1/√fan_in), norm scales and BatchNorm variances
    /// near 1, small biases), the same for the same seed and name.
    pub fn synthetic(seed: u64) -> Self {
        Self { synthetic: Some(seed), ..Self::empty("(random weights)") }
    }

    fn generate(&self, seed: u64, name: &str, shape: &[usize]) -> Arc<Vec<f32>> {
        let mut generated = self.generated.lock().unwrap();
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

    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.tensors.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The shape stored under `name`, without marking it used (lets a builder read hyper-parameters
    /// such as the number of classes off the weights).
    pub fn shape_of(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.shape.as_slice())
    }

    /// The tensor `name`, which must have shape `expected`. A missing tensor is recorded (reported
    /// by [`Weights::finish`]) and zeros are returned so the builder can go on and find the others.
    pub fn param(&self, name: &str, expected: &[usize]) -> Result<Arc<Vec<f32>>> {
        match self.tensors.get(name) {
            None if self.synthetic.is_some() => Ok(self.generate(self.synthetic.unwrap_or(0), name, expected)),
            None => {
                self.missing.lock().unwrap().push(name.to_string());
                Ok(Arc::new(vec![0.0; expected.iter().product()]))
            }
            Some(t) if !t.is_float() => Err(self.dtype_mismatch(name, t)),
            Some(t) if t.shape != expected => Err(Error::ShapeMismatch {
                file: self.file.clone(),
                tensor: name.into(),
                expected: expected.to_vec(),
                found: t.shape.clone(),
            }),
            Some(t) => {
                self.used.lock().unwrap().insert(name.to_string());
                Ok(t.data.clone())
            }
        }
    }

    fn dtype_mismatch(&self, name: &str, t: &WeightTensor) -> Error {
        Error::DtypeMismatch {
            file: self.file.clone(),
            tensor: name.into(),
            expected: FLOAT_DTYPES.into(),
            found: t.dtype.clone(),
        }
    }

    /// Marks a tensor as known but intentionally unused (e.g. HAT-Net's `attn.proj_norm`).
    pub fn ignore(&self, name: &str) {
        if self.tensors.contains_key(name) {
            self.used.lock().unwrap().insert(name.to_string());
        }
    }

    /// `param` straight into the graph as a constant keyed by its checkpoint name.
    pub fn constant(&self, g: &mut Graph, name: &str, shape: &[usize]) -> Result<TensorId> {
        let data = self.param(name, shape)?;
        g.constant(name, shape, data)
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

    /// Ends a build: an error listing every missing tensor, and a warning naming unused ones.
    pub fn finish(&self) -> Result<Vec<String>> {
        let mut missing = std::mem::take(&mut *self.missing.lock().unwrap());
        if !missing.is_empty() {
            missing.sort();
            missing.dedup();
            return Err(Error::MissingTensors { file: self.file.clone(), tensors: missing });
        }
        let used = self.used.lock().unwrap();
        let mut unused: Vec<String> = self.tensors.keys().filter(|n| !used.contains(*n)).cloned().collect();
        unused.sort();
        // BatchNorm's step counters are training state, in every state_dict: not worth a warning.
        let surprising: Vec<&str> = unused.iter().map(String::as_str).filter(|n| !n.ends_with("num_batches_tracked")).collect();
        if !surprising.is_empty() {
            log::warn!("{}: {} tensor(s) not used by the model: {}", self.file, surprising.len(), surprising.join(", "));
        }
        Ok(unused)
    }
}

/// Reads one f32 tensor by name from a safetensors file held in memory (the `run` command's input).
pub fn read_tensor(file: &str, bytes: &[u8], name: &str) -> Result<HostTensor> {
    let w = Weights::from_bytes(file, bytes)?;
    let t = w.tensors.get(name).ok_or_else(|| Error::MissingTensors { file: file.into(), tensors: vec![name.into()] })?;
    if !t.is_float() {
        return Err(w.dtype_mismatch(name, t));
    }
    Ok(HostTensor { shape: t.shape.clone(), data: t.data.as_ref().clone() })
}

/// Serialises named f32 tensors to safetensors bytes.
pub fn write_tensors(tensors: &[(&str, &HostTensor)]) -> Result<Vec<u8>> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, t)| {
            let bytes: &[u8] = bytemuck::cast_slice(&t.data);
            safetensors::tensor::TensorView::new(Dtype::F32, t.shape.clone(), bytes)
                .map(|v| (name.to_string(), v))
                .map_err(|e| Error::Invalid(format!("cannot serialise '{name}': {e}")))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, None).map_err(|e| Error::Invalid(format!("cannot serialise tensors: {e}")))
}

/// Every tensor of a safetensors file or PyTorch checkpoint as stored, with the file's metadata
/// (none for a checkpoint): what `wgvit convert` rewrites.
pub fn read_raw(file: &str, bytes: &[u8]) -> Result<(BTreeMap<String, String>, Vec<RawTensor>)> {
    if crate::pth::is_zip(bytes) {
        return Ok((BTreeMap::new(), crate::pth::read_pth(file, bytes)?));
    }
    if crate::pth::is_legacy_torch(bytes) {
        return Err(legacy_torch_error(file));
    }
    let malformed = |reason: String| Error::MalformedWeights { file: file.to_string(), reason };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| malformed(e.to_string()))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| malformed(e.to_string()))?;
    let mut raw: Vec<RawTensor> = st
        .tensors()
        .into_iter()
        .map(|(name, v)| RawTensor { name, dtype: v.dtype(), shape: v.shape().to_vec(), data: v.data().to_vec() })
        .collect();
    raw.sort_by(|a, b| a.name.cmp(&b.name));
    let metadata = header.metadata().clone().map(|m| m.into_iter().collect()).unwrap_or_default();
    Ok((metadata, raw))
}

/// Serialises stored tensors (any dtype, unchanged) with `metadata` in the header.
pub fn write_raw(tensors: &[RawTensor], metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|t| {
            safetensors::tensor::TensorView::new(t.dtype, t.shape.clone(), &t.data)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| Error::Invalid(format!("cannot serialise '{}': {e}", t.name)))
        })
        .collect::<Result<_>>()?;
    let metadata: HashMap<String, String> = metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    safetensors::serialize(views, (!metadata.is_empty()).then_some(metadata)).map_err(|e| Error::Invalid(format!("cannot serialise tensors: {e}")))
}
