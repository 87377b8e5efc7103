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
use crate::error::{Error, Result};
use crate::executor::{ConstantCache, Executable, PipelineCache};
use crate::explain::{Explanation, Probe};
use crate::graph::{probe_output, Graph, TensorId};
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
    /// Opens the device ([`GpuContext::new`]); natively its compiled pipelines are kept in
    /// `$XDG_CACHE_HOME/wgvit/` (or `~/.cache/wgvit/`) for the next process (`WGVIT_CACHE=0` turns
    /// that off).
    pub async fn new() -> Result<Self> {
        Ok(Self::from_context(GpuContext::new().await?))
    }

    pub fn from_context(ctx: GpuContext) -> Self {
        let pipelines = match disk_cache::open(&ctx) {
            Some(cache) => PipelineCache::with_driver_cache(cache),
            None => PipelineCache::new(),
        };
        Self { ctx, pipelines: Arc::new(pipelines) }
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.ctx.info
    }

    /// Compiles an arbitrary graph (tests, benchmarks, custom networks).
    pub async fn compile(&self, graph: &Graph, constants: &ConstantCache) -> Result<Executable> {
        let exe = Executable::build(&self.ctx, graph, &self.pipelines, constants).await?;
        if !exe.times.pipelines.is_empty() {
            disk_cache::store(&self.ctx, &self.pipelines);
        }
        Ok(exe)
    }

    /// Compiles into this engine the pipelines model `id` needs for `input_shape`, before its
    /// weights are here: a graph is shapes, and a built-in variant's configuration is its id
    /// (`hatnet-tiny`). Loading the model and building that graph then finds them compiled. The
    /// browser compiles while the page downloads the weights (`tools/ortweb/cold.mjs`). A model
    /// whose configuration is in its weights' metadata (the bundled `*-digits`) is an error.
    pub async fn precompile(&self, id: &str, input_shape: &[usize]) -> Result<crate::executor::BuildTimes> {
        let weights = Weights::zeros();
        let card = ModelCard::new(id, &weights)?;
        let (graph, graph_ms) = crate::time::timed(|| models::build_spec_graph(&card.spec, &weights, input_shape, self.ctx.info.profile.clone()));
        let mut times = Executable::precompile(&self.ctx, &graph?, &self.pipelines).await?;
        times.graph_ms = graph_ms;
        if !times.pipelines.is_empty() {
            disk_cache::store(&self.ctx, &self.pipelines);
        }
        Ok(times)
    }

    /// The input size of model `id` when its weights do not say otherwise (`hatnet-tiny`: 224).
    pub fn default_input_size(&self, id: &str) -> Result<(usize, usize)> {
        Ok(ModelCard::new(id, &Weights::synthetic(0))?.input_size())
    }

    /// Loads model `id` with `weights`. Fails early on an unknown id, a bad configuration in the
    /// weights' metadata or a tensor too large for the device; shapes are checked when the graph
    /// for an input size is built. The id is a built-in variant (`hatnet-tiny`) or the model the
    /// weights' metadata describes (`wgvit.model` + `wgvit.config`, e.g. `vvt-digits`).
    pub fn load_model(&self, id: &str, weights: Weights) -> Result<Model> {
        self.load(ModelCard::new(id, &weights)?, weights)
    }

    /// Loads the model `card` describes (read from `weights` with [`ModelCard::new`]). Weights
    /// holding NaN or infinity are refused ([`Weights::check_finite`]).
    pub fn load(&self, card: ModelCard, weights: Weights) -> Result<Model> {
        weights.check_binding_limit(self.ctx.limits().max_storage_buffer_binding_size)?;
        weights.check_finite()?;
        Ok(Model {
            engine: self.clone(),
            id: card.id().to_string(),
            card,
            weights,
            constants: ConstantCache::new(),
            graphs: Mutex::new(HashMap::new()),
            explain_graphs: Mutex::new(HashMap::new()),
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

/// An explain graph and the probes whose tensors it reads back.
type ExplainGraph = (Arc<Executable>, Arc<Vec<Probe>>);

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
    /// The explain graphs (the forward plus its probes' tensors as outputs) and their probes.
    explain_graphs: Mutex<HashMap<Vec<usize>, ExplainGraph>>,
}

impl Model {
    /// Builds and compiles the graph for `input_shape` (all pipelines, bind groups, the memory plan).
    pub async fn prepare(&self, input_shape: &[usize]) -> Result<Arc<Executable>> {
        if let Some(e) = self.graphs.lock().unwrap().get(input_shape) {
            return Ok(e.clone());
        }
        let profile = self.engine.ctx.info.profile.clone();
        let (graph, graph_ms) = crate::time::timed(|| models::build_spec_graph(&self.card.spec, &self.weights, input_shape, profile));
        let mut exe = self.engine.compile(&graph?, &self.constants).await?;
        exe.times.graph_ms = graph_ms;
        let exe = Arc::new(exe);
        self.graphs.lock().unwrap().insert(input_shape.to_vec(), exe.clone());
        Ok(exe)
    }

    /// The profile of the device the model runs on (what its graphs are built for).
    pub fn engine_profile(&self) -> crate::kernels::DeviceProfile {
        self.engine.ctx.info.profile.clone()
    }

    /// One forward of one image `[1, 3, H, W]` that also returns every attention map it computed
    /// ([`crate::explain`]): received maps, or the maps of the query at input pixel `(x, y)`.
    /// Its graph is built and compiled apart from [`Model::run`]'s, which stays unchanged.
    pub async fn explain(&self, input: &HostTensor, query: Option<(usize, usize)>) -> Result<(HostTensor, Explanation)> {
        let shape = &input.shape;
        if shape.len() != 4 || shape[0] != 1 {
            return Err(Error::BadInputShape {
                model: self.id.clone(),
                expected: "one image [1, 3, H, W] (explain maps one image at a time)".into(),
                found: shape.clone(),
            });
        }
        let cached = self.explain_graphs.lock().unwrap().get(shape).cloned();
        let (exe, probes) = match cached {
            Some(e) => e,
            None => {
                let profile = self.engine.ctx.info.profile.clone();
                let mut graph = models::build_spec_graph(&self.card.spec, &self.weights, shape, profile)?;
                graph.promote_probes();
                let probes = Arc::new(std::mem::take(&mut graph.probes));
                let exe = Arc::new(self.engine.compile(&graph, &self.constants).await?);
                self.explain_graphs.lock().unwrap().insert(shape.clone(), (exe.clone(), probes.clone()));
                (exe, probes)
            }
        };
        let mut outputs: HashMap<String, HostTensor> = exe.output_names().into_iter().zip(exe.run(&[input]).await?).collect();
        let logits = outputs.remove("logits").ok_or_else(|| Error::Graph("the explain graph has no logits".into()))?;
        let tensor = |t: TensorId| {
            outputs.get(&probe_output(t)).map(|h| h.data.as_slice()).ok_or_else(|| Error::Graph(format!("the explain graph has no output for tensor {}", t.0)))
        };
        let explanation = crate::explain::explain(&probes, tensor, (shape[2], shape[3]), query)?;
        Ok((logits, explanation))
    }

    /// One forward: `input` `[B, 3, H, W]` → logits `[B, classes]`.
    pub async fn run(&self, input: &HostTensor) -> Result<HostTensor> {
        let exe = self.prepare(&input.shape).await?;
        let mut out = exe.run(&[input]).await?;
        Ok(out.remove(0))
    }
}

/// The driver pipeline cache on disk (natively, where the device has `PIPELINE_CACHE`): one file
/// per adapter, driver and wgvit version. A missing, corrupt or foreign file is a cache miss (the
/// driver validates the data and starts empty), never an error; files are written whole and
/// atomically (a temporary file renamed over the old one) and bounded in size.
mod disk_cache {
    use crate::context::GpuContext;
    use crate::executor::PipelineCache;

    /// Larger files are neither read nor written.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    const MAX_BYTES: u64 = 256 << 20;

    #[cfg(not(target_arch = "wasm32"))]
    fn path(ctx: &GpuContext) -> Option<std::path::PathBuf> {
        if std::env::var_os("WGVIT_CACHE").is_some_and(|v| v == "0") || !ctx.device.features().contains(wgpu::Features::PIPELINE_CACHE) {
            return None;
        }
        let info = ctx.adapter.get_info();
        let key = wgpu::util::pipeline_cache_key(&info)?;
        let dir = match std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
            Some(d) => std::path::PathBuf::from(d),
            None => std::path::PathBuf::from(std::env::var_os("HOME")?).join(".cache"),
        };
        // The driver's version is part of the name: a driver update starts a new file.
        let driver: String = format!("{}-{}", info.driver, info.driver_info).chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        Some(dir.join("wgvit").join(format!("{key}-{driver}-wgvit{}.bin", env!("CARGO_PKG_VERSION"))))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(ctx: &GpuContext) -> Option<wgpu::PipelineCache> {
        let path = path(ctx)?;
        let data = std::fs::metadata(&path).ok().filter(|m| m.len() <= MAX_BYTES).and_then(|_| std::fs::read(&path).ok());
        // SAFETY: the data is only used when wgpu's header (adapter key, driver version, checksum)
        // matches this device; anything else falls back to an empty cache (`fallback: true`).
        let cache = unsafe {
            ctx.device.create_pipeline_cache(&wgpu::PipelineCacheDescriptor { label: Some("wgvit"), data: data.as_deref(), fallback: true })
        };
        Some(cache)
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn store(ctx: &GpuContext, pipelines: &PipelineCache) {
        let (Some(path), Some(data)) = (path(ctx), pipelines.driver_cache_data()) else { return };
        if data.len() as u64 > MAX_BYTES {
            return;
        }
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(path.parent().unwrap_or(std::path::Path::new(".")))?;
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, &data)?;
            std::fs::rename(&tmp, &path)
        };
        if let Err(e) = write() {
            log::info!("pipeline cache not saved to {}: {e}", path.display());
        }
    }

    #[cfg(target_arch = "wasm32")]
    pub fn open(_: &GpuContext) -> Option<wgpu::PipelineCache> {
        None
    }

    #[cfg(target_arch = "wasm32")]
    pub fn store(_: &GpuContext, _: &PipelineCache) {}
}
