//! # wgvit
//!
//! A portable WebGPU inference engine for efficient vision transformers. One code path runs
//! natively (wgpu on Vulkan, Metal, DX12, GL) and in the browser (wasm32 + WebGPU).
//!
//! Layers, bottom up:
//! - [`context`]: adapter, device, limits and features; async creation, readback.
//! - [`ops`]: the kernel library — one `shaders/<op>.wgsl` per `ops/<op>.rs`, each op appending
//!   nodes with fixed shapes to a [`graph::Graph`].
//! - [`plan`]: the static memory plan (liveness intervals → offsets in one arena).
//! - [`executor`]: pipelines, bind groups and uniforms created once; one command buffer and one
//!   compute pass per forward; readback of the requested outputs only.
//! - [`weights`]: safetensors loading with named, shape-checked errors.
//! - [`pth`]: PyTorch zip checkpoints through a restricted unpickler that never runs code.
//! - [`preprocess`]: image decoding and the timm/torchvision evaluation transform (PIL-exact
//!   bicubic resize); [`labels`]: ImageNet-1k class names.
//! - [`models`]: the model registry; [`api`]: [`Engine`] and [`Model`].

pub mod api;
pub mod context;
pub mod error;
pub mod executor;
pub mod graph;
pub mod labels;
pub mod models;
pub mod ops;
pub mod plan;
pub mod preprocess;
pub mod pth;
pub mod tensor;
pub mod weights;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use api::{Engine, Model};
pub use context::{DeviceInfo, GpuContext};
pub use error::{Error, Result};
pub use graph::{Graph, TensorId};
pub use tensor::HostTensor;
pub use weights::Weights;
