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

/// Largest weights file read (a 4 GiB checkpoint already means 4 GiB of f32 or more in memory).
pub const MAX_WEIGHTS_BYTES: u64 = 4 << 30;
/// Largest image file read.
pub const MAX_IMAGE_BYTES: u64 = 256 << 20;
/// Largest input-tensor file read (`wgvit run`).
pub const MAX_TENSOR_BYTES: u64 = 1 << 30;

/// The bytes of the regular file at `path`, at most `max` of them (natively). A directory, a
/// device such as `/dev/zero` or a file over the limit is an error naming the path, the limit and
/// what was found, before anything large is allocated.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_file(path: &std::path::Path, max: u64, what: &str) -> Result<Vec<u8>> {
    use std::io::Read;
    let name = path.display().to_string();
    let io = |e: std::io::Error| Error::Io { path: name.clone(), reason: e.to_string() };
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        let kind = if meta.is_dir() { "a directory" } else { "a device, pipe or socket" };
        return Err(Error::Io { path: name, reason: format!("the {what} must be a regular file; this is {kind}") });
    }
    if meta.len() > max {
        return Err(Error::Io { path: name, reason: format!("{} bytes is over the {max}-byte limit for a {what} file", meta.len()) });
    }
    // The size may change while reading (a growing file): never read past the limit.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(Error::Io { path: name, reason: format!("over the {max}-byte limit for a {what} file") });
    }
    Ok(bytes)
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
