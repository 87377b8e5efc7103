//! The ops one model family needs, each driving its own kernels under `shaders/family/`:
//! - [`vicinity_attention`] (VVT): linear attention reweighted by 2-D Manhattan distance.
//! - [`atrous_attention`], [`atrous_dwconv`] (ACC-ViT): gated window attention over dilated
//!   sub-grids, and the summed dilated depthwise convolutions of the atrous MBConv.
//! - [`attention_downsample`] (LaViT): the residual attention carried from one stage to the next.

pub use super::{check_u32, constant_uniform_scalars, grid, params, tuning, Activation, Graph, Kernel, Node, PipelineKey, TensorId, Uniform};

pub mod atrous_attention;
pub mod atrous_dwconv;
pub mod attention_downsample;
pub mod vicinity_attention;
