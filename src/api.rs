//! The library API, identical on native and wasm (everything that waits on the GPU is `async`).
//! A runnable version: `cargo run --release --example classify_tensor`.
//!
//! ```no_run
//! # async fn demo() -> wgvit::Result<()> {
//! let engine = wgvit::Engine::new().await?;
//! let weights = wgvit::Weights::from_bytes("toy.safetensors", &std::fs::read("tests/fixtures/toy/weights.safetensors").unwrap())?;
//! let model = engine.load_model("toy", weights)?;
//! let input = wgvit::HostTensor::zeros(vec![1, 3, 32, 32]);
//! let logits = model.run(&input).await?;
//! println!("{:?}", logits.shape);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::context::{DeviceInfo, GpuContext};
use crate::error::Result;
use crate::executor::{ConstantCache, Executable, PipelineCache};
use crate::graph::Graph;
use crate::models::{self, ModelCard};
use crate::tensor::HostTensor;
use crate::weights::Weights;

/// A device plus the pipelines compiled on it. Create one and load any number of models.
#[derive(Clone)]
pub struct Engine {
    pub ctx: GpuContext,
    pipelines: Arc<PipelineCache>,
}

impl Engine {
    pub async fn new() -> Result<Self> {
        Ok(Self::from_context(GpuContext::new().await?))
    }

    pub fn from_context(ctx: GpuContext) -> Self {
        Self { ctx, pipelines: Arc::new(PipelineCache::new()) }
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.ctx.info
    }

    /// Compiles an arbitrary graph (tests, benchmarks, custom networks).
    pub async fn compile(&self, graph: &Graph, constants: &ConstantCache) -> Result<Executable> {
        Executable::build(&self.ctx, graph, &self.pipelines, constants).await
    }

    /// Loads model `id` with `weights`. Fails early on an unknown id, a bad configuration in the
    /// weights' metadata or a tensor too large for the device; shapes are checked when the graph
    /// for an input size is built. The id is a built-in variant (`hatnet-tiny`) or the model the
    /// weights' metadata describes (`wgvit.model` + `wgvit.config`, e.g. `vvt-digits`).
    pub fn load_model(&self, id: &str, weights: Weights) -> Result<Model> {
        self.load(ModelCard::new(id, &weights)?, weights)
    }

    /// Loads the model `card` describes (read from `weights` with [`ModelCard::new`]).
    pub fn load(&self, card: ModelCard, weights: Weights) -> Result<Model> {
        weights.check_binding_limit(self.ctx.limits().max_storage_buffer_binding_size)?;
        Ok(Model {
            engine: self.clone(),
            id: card.id().to_string(),
            card,
            weights,
            constants: ConstantCache::new(),
            graphs: Mutex::new(HashMap::new()),
        })
    }

    pub fn load_model_bytes(&self, id: &str, file: &str, bytes: &[u8]) -> Result<Model> {
        self.load_model(id, Weights::from_bytes(file, bytes)?)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn load_model_file(&self, id: &str, path: impl AsRef<std::path::Path>) -> Result<Model> {
        self.load_model(id, Weights::from_file(path)?)
    }
}

/// A model on the device. Its weights are uploaded once; a graph is built and compiled per input
/// shape on first use (or ahead of time with [`Model::prepare`]) and kept.
pub struct Model {
    engine: Engine,
    pub id: String,
    /// The configuration, input size, preprocessing and labels, from the weights' metadata.
    pub card: ModelCard,
    pub weights: Weights,
    constants: ConstantCache,
    graphs: Mutex<HashMap<Vec<usize>, Arc<Executable>>>,
}

impl Model {
    /// Builds and compiles the graph for `input_shape` (all pipelines, bind groups, the memory plan).
    pub async fn prepare(&self, input_shape: &[usize]) -> Result<Arc<Executable>> {
        if let Some(e) = self.graphs.lock().unwrap().get(input_shape) {
            return Ok(e.clone());
        }
        let profile = self.engine.ctx.info.profile.clone();
        let graph = models::build_spec_graph(&self.card.spec, &self.weights, input_shape, profile)?;
        let exe = Arc::new(self.engine.compile(&graph, &self.constants).await?);
        self.graphs.lock().unwrap().insert(input_shape.to_vec(), exe.clone());
        Ok(exe)
    }

    /// One forward: `input` `[B, 3, H, W]` → logits `[B, classes]`.
    pub async fn run(&self, input: &HostTensor) -> Result<HostTensor> {
        let exe = self.prepare(&input.shape).await?;
        let mut out = exe.run(&[input]).await?;
        Ok(out.remove(0))
    }
}
