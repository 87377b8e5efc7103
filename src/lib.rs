//! # wgvit
//!
//! A portable WebGPU inference engine for efficient vision transformers. One code path runs
//! natively (wgpu on Vulkan, Metal, DX12, GL) and in the browser (wasm32 + WebGPU).
//!
//! Layers, bottom up; a module uses only those before it in this list:
//! - [`error`], [`tensor`], [`time`]: the error type; host tensors and a small RNG; a clock
//!   that works natively and in the browser.
//! - [`kernels`]: every WGSL kernel and its variants in one table, their typed uniforms, and the
//!   [`kernels::DeviceProfile`] (limits, features, CPU-like or GPU-like kernel set) graphs are
//!   built for. No GPU.
//! - [`graph`]: tensors (views of storages), nodes (one dispatch each), liveness; with
//!   [`explain`], the attention-map probes a graph carries and the maps they make. No GPU.
//! - [`plan`]: the static memory plan (liveness intervals → storages sharing buffers).
//! - [`ops`]: the op library — `ops/<op>.rs` driving `shaders/<op>.wgsl` — appending nodes with
//!   fixed shapes to a graph; per-device choices in [`ops::tuning`]; family-specific ops in
//!   [`ops::family`].
//! - [`context`]: adapter, device and its profile; async creation, readback, error scopes.
//! - [`executor`]: pipelines, bind groups and uniforms created once; one command buffer and one
//!   compute pass per forward; readback of the requested outputs only.
//! - [`io`]: tensor files as stored — safetensors, and PyTorch zip checkpoints through a
//!   restricted unpickler that never runs code.
//! - [`weights`]: a file's tensors as f32 parameters, looked up with named, shape-checked errors.
//! - [`preprocess`]: image decoding and the timm/torchvision evaluation transform (PIL-exact
//!   bicubic resize); [`labels`]: ImageNet-1k class names.
//! - [`models`]: the family registry, configurations, model cards and graph builders.
//! - [`api`]: [`Engine`] and [`Model`]; [`web`] (wasm32): the same for JavaScript.

pub mod error;
pub mod tensor;
pub mod time;

pub mod kernels;

pub mod explain;
pub mod graph;
pub mod plan;

pub mod ops;

pub mod context;
pub mod executor;

pub mod io;
pub mod weights;

pub mod labels;
pub mod preprocess;

pub mod models;

pub mod fuzz;

pub mod api;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use api::{Engine, Model};
pub use context::{DeviceInfo, GpuContext};
pub use error::{Error, Result};
pub use graph::{Graph, TensorId};
pub use tensor::HostTensor;
pub use weights::Weights;
