//! One error type for the whole crate. Every variant names what went wrong *and where*: the file,
//! the tensor, the expected and the found value, so a user can act on a one-line message.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no GPU adapter found (backends tried: {backends}); on Linux without a GPU install Mesa's lavapipe (mesa-vulkan-drivers) and set WGPU_BACKEND=vulkan")]
    NoAdapter { backends: String },

    #[error("could not open a device on adapter '{adapter}': {reason}")]
    RequestDevice { adapter: String, reason: String },

    #[error("{path}: {reason}")]
    Io { path: String, reason: String },

    #[error("{file}: not a valid safetensors file: {reason}")]
    MalformedWeights { file: String, reason: String },

    #[error("{file}: PyTorch checkpoint: {reason}")]
    MalformedCheckpoint { file: String, reason: String },

    #[error("{file}: tensor '{tensor}' has shape {found:?}, expected {expected:?}")]
    ShapeMismatch { file: String, tensor: String, expected: Vec<usize>, found: Vec<usize> },

    #[error("{file}: tensor '{tensor}' has dtype {found}, expected one of {expected}")]
    DtypeMismatch { file: String, tensor: String, expected: String, found: String },

    #[error("{file}: {} missing tensor(s): {}", .tensors.len(), ListPreview(.tensors))]
    MissingTensors { file: String, tensors: Vec<String> },

    #[error("{file}: tensor '{tensor}' holds a non-finite value ({value}) at flat index {index}; a model with it would print NaN as an answer")]
    NonFiniteWeight { file: String, tensor: String, index: usize, value: f32 },

    #[error("model '{model}' produced a non-finite logit ({value}) for {input}: its answer would be meaningless (non-finite values in the input or the weights, or an overflow)")]
    NonFiniteOutput { model: String, input: String, value: f32 },

    #[error("{file}: tensor '{tensor}' is {bytes} bytes, larger than the device's per-binding limit of {limit} bytes")]
    TensorTooLarge { file: String, tensor: String, bytes: u64, limit: u64 },

    #[error("unknown model id '{id}'; known ids: {known}")]
    UnknownModel { id: String, known: String },

    #[error("{file}: metadata 'wgvit.config' (the configuration of model '{model}') is invalid: {reason}")]
    BadConfig { file: String, model: String, reason: String },

    #[error("model '{model}' cannot take input shape {found:?}: {expected}")]
    BadInputShape { model: String, expected: String, found: Vec<usize> },

    #[error("graph: {0}")]
    Graph(String),

    /// A tensor the graph needs is larger than the device (or 32-bit indexing) allows.
    #[error("too large: {0}")]
    TooLarge(String),

    #[error("the graph needs {needed} bytes of activations in one buffer, more than the device's max_buffer_size of {limit} bytes")]
    PlanTooLarge { needed: u64, limit: u64 },

    #[error("GPU error while {context}: {reason}")]
    Gpu { context: String, reason: String },

    #[error("the GPU device on '{adapter}' was lost ({reason}); create a new engine and load the model again")]
    DeviceLost { adapter: String, reason: String },

    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the error says a tensor is larger than the device or 32-bit indexing allows (the
    /// input size, not its shape rules, is what to change).
    pub fn is_too_large(&self) -> bool {
        match self {
            Error::TooLarge(_) | Error::PlanTooLarge { .. } => true,
            Error::BadInputShape { expected, .. } => expected.contains("binding limit"),
            _ => false,
        }
    }
}

/// Shows at most 20 names, then a count, so a file with hundreds of missing tensors stays readable.
struct ListPreview<'a>(&'a [String]);

impl fmt::Display for ListPreview<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 20;
        for (i, name) in self.0.iter().take(SHOWN).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(name)?;
        }
        if self.0.len() > SHOWN {
            write!(f, ", ... and {} more", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}
