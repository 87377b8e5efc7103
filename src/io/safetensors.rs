//! safetensors files: every tensor as stored, and the header's metadata; and the reverse.

use std::collections::{BTreeMap, HashMap};

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use super::{RawTensor, TensorFile};
use crate::error::{Error, Result};

/// Every tensor of a safetensors file held in memory, with the header's metadata.
pub fn read(file: &str, bytes: &[u8]) -> Result<TensorFile> {
    let malformed = |reason: String| Error::MalformedWeights { file: file.to_string(), reason };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| malformed(e.to_string()))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| malformed(e.to_string()))?;
    let tensors = st
        .tensors()
        .into_iter()
        .map(|(name, v)| RawTensor { name, dtype: v.dtype(), shape: v.shape().to_vec(), data: v.data().to_vec() })
        .collect();
    let metadata = header.metadata().clone().map(|m| m.into_iter().collect()).unwrap_or_default();
    Ok(TensorFile { metadata, tensors })
}

/// Serialises stored tensors (any dtype, unchanged) with `metadata` in the header.
pub fn write(tensors: &[RawTensor], metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|t| {
            TensorView::new(t.dtype, t.shape.clone(), &t.data)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| Error::Invalid(format!("cannot serialise '{}': {e}", t.name)))
        })
        .collect::<Result<_>>()?;
    let metadata: HashMap<String, String> = metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    safetensors::serialize(views, (!metadata.is_empty()).then_some(metadata)).map_err(|e| Error::Invalid(format!("cannot serialise tensors: {e}")))
}

/// Named f32 tensors as raw tensors (for [`write`]).
pub fn f32_tensor(name: &str, shape: &[usize], data: &[f32]) -> RawTensor {
    RawTensor { name: name.to_string(), dtype: Dtype::F32, shape: shape.to_vec(), data: bytemuck::cast_slice(data).to_vec() }
}
