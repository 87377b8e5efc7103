//! Tensor files, read and written as stored: no conversion, no model knowledge. A file is
//! recognised by its content ([`read`]), never by its name: a PyTorch zip checkpoint
//! ([`pth`], through a restricted unpickler that never runs code), or safetensors
//! ([`safetensors`]). What comes back is raw tensors (dtype, shape, little-endian bytes) and the
//! file's metadata; `crate::weights` turns them into the f32 parameters a model reads.

pub mod pth;
pub mod safetensors;

use std::collections::BTreeMap;

use ::safetensors::Dtype;

use crate::error::{Error, Result};

/// A tensor as stored: dtype, shape and contiguous little-endian bytes (what a checkpoint holds
/// before conversion to f32; `wgvit convert` writes these unchanged).
#[derive(Clone, Debug)]
pub struct RawTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// The tensors of one file and its metadata (a checkpoint has none).
#[derive(Clone, Debug, Default)]
pub struct TensorFile {
    pub metadata: BTreeMap<String, String>,
    /// Sorted by name.
    pub tensors: Vec<RawTensor>,
}

/// Reads a safetensors file or a PyTorch zip checkpoint held in memory, told apart by their first
/// bytes. `file` names it in errors.
pub fn read(file: &str, bytes: &[u8]) -> Result<TensorFile> {
    let mut out = if pth::is_zip(bytes) {
        TensorFile { metadata: BTreeMap::new(), tensors: pth::read_pth(file, bytes)? }
    } else if pth::is_legacy_torch(bytes) {
        return Err(Error::MalformedCheckpoint {
            file: file.to_string(),
            reason: "the pre-1.6 (non-zip) torch.save format is not supported; re-save it with a current PyTorch \
                     (torch.save(torch.load(f, weights_only=True), f2)) or convert it to safetensors"
                .into(),
        });
    } else {
        safetensors::read(file, bytes)?
    };
    out.tensors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
