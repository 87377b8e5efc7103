//! Turns a [`Graph`] into something the GPU runs, once, at build time:
//! the memory plan (activation and input buffers shared by liveness), constant buffers (uploaded once per
//! model and shared through a [`ConstantCache`]), every node's uniform words packed into one
//! uniform buffer at 256-byte aligned offsets, pipelines from the [`PipelineCache`], and one bind
//! group per node. A forward then is: `write_buffer` the inputs, record **one command buffer with
//! one compute pass**, copy the requested outputs into a staging buffer, submit once, map, read.
//! (One exception: in the browser a graph's first forward may start while some of its pipelines
//! still compile, and then submits its dispatches in runs as their pipelines arrive.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::context::GpuContext;
use crate::error::{Error, Result};
use crate::graph::{Bindings, ConstantBinding, Graph, StorageKind, TensorId, UNIFORM_WINDOW_BYTES};
use crate::kernels::PipelineKey;
use crate::plan::{align_up, plan_graph, MemoryPlan};
use crate::tensor::HostTensor;
use crate::time::now_ms;

/// Pipelines, shader modules and bind-group layouts, created once per device and shared by every
/// graph built on it. With a driver-level cache ([`PipelineCache::with_driver_cache`], natively
/// where the adapter has `PIPELINE_CACHE`) the driver's compiled code survives the process.
#[derive(Default)]
pub struct PipelineCache {
    driver_cache: Option<wgpu::PipelineCache>,
    /// One module per pipeline key: the source is specialised for the key's override values.
    modules: Mutex<HashMap<PipelineKey, wgpu::ShaderModule>>,
    layouts: Mutex<HashMap<Bindings, (wgpu::BindGroupLayout, wgpu::PipelineLayout)>>,
    pipelines: Mutex<HashMap<(PipelineKey, Bindings), wgpu::ComputePipeline>>,
    /// In the browser: pipelines requested with `createComputePipelineAsync` ([`PipelineCache::request`])
    /// and not created yet, with their promises.
    #[cfg(target_arch = "wasm32")]
    pending: Mutex<browser_async::Pending>,
}

impl PipelineCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Pipelines created through `cache` (a `wgpu::PipelineCache`, e.g. read from disk).
    pub fn with_driver_cache(cache: wgpu::PipelineCache) -> Self {
        Self { driver_cache: Some(cache), ..Self::default() }
    }

    /// The driver cache's data, to store for the next process.
    pub fn driver_cache_data(&self) -> Option<Vec<u8>> {
        self.driver_cache.as_ref().and_then(|c| c.get_data())
    }

    /// The pipelines of `keys` not created yet, each once.
    fn missing<'k>(&self, keys: &'k [(PipelineKey, Bindings)]) -> Vec<&'k (PipelineKey, Bindings)> {
        let cached = self.pipelines.lock().unwrap();
        let mut seen = std::collections::HashSet::new();
        keys.iter().filter(|k| !cached.contains_key(*k) && seen.insert((*k).clone())).collect()
    }

    /// In the browser, starts compiling every pipeline of `keys` that is neither created nor
    /// compiling yet, off the page's thread (`createComputePipelineAsync`): a graph's build asks
    /// first, then uploads its weights and makes its bind groups while they compile, and
    /// [`PipelineCache::create_all`] waits for them. Natively it does nothing.
    pub fn request(&self, ctx: &GpuContext, keys: &[(PipelineKey, Bindings)]) {
        #[cfg(target_arch = "wasm32")]
        {
            let missing = self.missing(keys);
            self.pending.lock().unwrap().request(ctx, &missing);
        }
        #[cfg(not(target_arch = "wasm32"))]
        let _ = (ctx, keys);
    }

    /// Creates every pipeline of `keys` that is not cached yet — natively on as many threads as
    /// there are cores (the driver's shader compiler is most of a cold start), in the browser
    /// once the compiles [`PipelineCache::request`] started are done — and records what each
    /// cost in `times`.
    pub async fn create_all(&self, ctx: &GpuContext, keys: &[(PipelineKey, Bindings)], times: &mut BuildTimes) -> Result<()> {
        let missing = self.missing(keys);
        times.pipelines_new += missing.len();
        if missing.is_empty() {
            return Ok(());
        }
        // In the browser the compiles are requested first, so that they run while the rest of
        // this is made.
        #[cfg(target_arch = "wasm32")]
        let (ahead, ahead_start) = {
            let mut pending = self.pending.lock().unwrap();
            pending.request(ctx, &missing);
            (pending.promises(&missing), now_ms())
        };
        self.make_modules(ctx, &missing, times).await?;
        #[cfg(not(target_arch = "wasm32"))]
        {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(missing.len()).max(1);
            if threads > 1 {
                let results: Vec<Result<BuildTimes>> = std::thread::scope(|scope| {
                    let handles: Vec<_> = (0..threads)
                        .map(|t| {
                            let mine: Vec<_> = missing.iter().skip(t).step_by(threads).copied().collect();
                            scope.spawn(move || -> Result<BuildTimes> {
                                let mut local = BuildTimes::default();
                                pollster::block_on(self.create_now(ctx, &mine, &mut local))?;
                                Ok(local)
                            })
                        })
                        .collect();
                    handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(Error::Gpu { context: "creating pipelines".into(), reason: "a compile thread panicked".into() }))).collect()
                });
                for r in results {
                    times.pipelines.extend(r?.pipelines);
                }
                return Ok(());
            }
        }
        #[cfg(target_arch = "wasm32")]
        {
            browser_async::wait(ahead).await;
            times.pipelines_async_ms += now_ms() - ahead_start;
        }
        self.create_now(ctx, &missing, times).await
    }

    /// In the browser, creates the pipelines of `keys` whose compile is done (or was never
    /// requested) and leaves those still compiling: a forward can then start on its first
    /// dispatches while the rest compile ([`Executable::run`]). Natively the same as
    /// [`PipelineCache::create_all`].
    pub async fn create_ready(&self, ctx: &GpuContext, keys: &[(PipelineKey, Bindings)], times: &mut BuildTimes) -> Result<()> {
        #[cfg(target_arch = "wasm32")]
        {
            let missing = self.missing(keys);
            let ready: Vec<_> = {
                let mut pending = self.pending.lock().unwrap();
                pending.request(ctx, &missing);
                missing.into_iter().filter(|k| pending.is_ready(k)).collect()
            };
            self.make_modules(ctx, &ready, times).await?;
            self.create_now(ctx, &ready, times).await
        }
        #[cfg(not(target_arch = "wasm32"))]
        self.create_all(ctx, keys, times).await
    }

    /// In the browser, until the compile of `key` is done (at once when it is not compiling).
    pub async fn wait_for(&self, key: &(PipelineKey, Bindings)) {
        #[cfg(target_arch = "wasm32")]
        {
            let compiling = self.pending.lock().unwrap().promises(&[key]);
            browser_async::wait(compiling).await;
        }
        #[cfg(not(target_arch = "wasm32"))]
        let _ = key;
    }

    /// The pipeline of `key`, if it is created.
    pub fn get(&self, key: &(PipelineKey, Bindings)) -> Option<wgpu::ComputePipeline> {
        self.pipelines.lock().unwrap().get(key).cloned()
    }

    /// The shader modules (and bind-group layouts) of `keys` not made yet, in one error scope.
    async fn make_modules(&self, ctx: &GpuContext, keys: &[&(PipelineKey, Bindings)], times: &mut BuildTimes) -> Result<()> {
        let start = now_ms();
        let new_modules: Vec<&PipelineKey> = {
            let modules = self.modules.lock().unwrap();
            let mut seen = std::collections::HashSet::new();
            keys.iter().map(|(key, _)| key).filter(|k| !modules.contains_key(*k) && seen.insert(*k)).collect()
        };
        let made = ctx
            .scoped_each(&new_modules, |key| format!("compiling shader '{}'", key.kernel.name()), |key| {
                let source = key.kernel.source_for(key.constants());
                if print_wgsl() {
                    eprintln!("// ==== kernel {}\n{source}", key.kernel.name());
                }
                shader_module(&ctx.device, &key.kernel.name(), source)
            })
            .await?;
        self.modules.lock().unwrap().extend(new_modules.into_iter().cloned().zip(made));
        for (_, bindings) in keys {
            self.layout(ctx, *bindings);
        }
        times.modules_ms += now_ms() - start;
        Ok(())
    }

    /// The pipelines of `keys` (their modules made) not created yet, one after the other in one
    /// error scope; in the browser each finds its compiled code (`createComputePipelineAsync`).
    async fn create_now(&self, ctx: &GpuContext, keys: &[&(PipelineKey, Bindings)], times: &mut BuildTimes) -> Result<()> {
        // Another build may have created some while this one waited (a precompile and the
        // model's build wait on the same compiles).
        let keys: Vec<&(PipelineKey, Bindings)> = {
            let created = self.pipelines.lock().unwrap();
            keys.iter().copied().filter(|k| !created.contains_key(*k)).collect()
        };
        let made = ctx
            .scoped_each(&keys, |(key, _)| format!("creating the pipeline for {key:?}"), |(key, bindings)| {
                let start = now_ms();
                let (_, layout) = self.layout(ctx, *bindings);
                let module = self.modules.lock().unwrap()[key].clone();
                (compute_pipeline(&ctx.device, key, &layout, &module, self.driver_cache.as_ref()), now_ms() - start)
            })
            .await?;
        let mut pipelines = self.pipelines.lock().unwrap();
        for ((key, bindings), (pipeline, ms)) in keys.into_iter().zip(made) {
            times.pipelines.push((key.kernel.name(), ms));
            #[cfg(target_arch = "wasm32")]
            self.pending.lock().unwrap().done(key, *bindings);
            pipelines.insert((key.clone(), *bindings), pipeline);
        }
        Ok(())
    }

    fn layout(&self, ctx: &GpuContext, bindings: Bindings) -> (wgpu::BindGroupLayout, wgpu::PipelineLayout) {
        let mut layouts = self.layouts.lock().unwrap();
        layouts
            .entry(bindings)
            .or_insert_with(|| binding_layout(&ctx.device, bindings))
            .clone()
    }
}

/// `source` as a WGSL module named `name`.
fn shader_module(device: &wgpu::Device, name: &str, source: String) -> wgpu::ShaderModule {
    device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(name), source: wgpu::ShaderSource::Wgsl(source.into()) })
}

/// Every kernel's bindings, all in group 0: 0 the uniform params, then `reads` read-only storage
/// buffers, rgba32float textures (`bindings.textures`: sampled, or read-only storage textures
/// where `bindings.images`) or uniform buffers (`bindings.uniforms`), then `writes` read-write
/// storage buffers or write-only rgba32float storage textures. The browser's asynchronous
/// pipeline requests build the same layout in `browser_async::request`.
fn binding_layout(device: &wgpu::Device, bindings: Bindings) -> (wgpu::BindGroupLayout, wgpu::PipelineLayout) {
    let entry = |binding: usize, ty: wgpu::BindingType| wgpu::BindGroupLayoutEntry { binding: binding as u32, visibility: wgpu::ShaderStages::COMPUTE, ty, count: None };
    let buffer = |ty: wgpu::BufferBindingType| wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None };
    let texture = wgpu::BindingType::Texture {
        sample_type: wgpu::TextureSampleType::Float { filterable: false },
        view_dimension: wgpu::TextureViewDimension::D2,
        multisampled: false,
    };
    let mut entries = vec![entry(0, buffer(wgpu::BufferBindingType::Uniform))];
    let storage_texture = wgpu::BindingType::StorageTexture {
        access: wgpu::StorageTextureAccess::WriteOnly,
        format: wgpu::TextureFormat::Rgba32Float,
        view_dimension: wgpu::TextureViewDimension::D2,
    };
    let image = wgpu::BindingType::StorageTexture {
        access: wgpu::StorageTextureAccess::ReadOnly,
        format: wgpu::TextureFormat::Rgba32Float,
        view_dimension: wgpu::TextureViewDimension::D2,
    };
    entries.extend((0..bindings.reads + bindings.writes).map(|i| {
        let read = i < bindings.reads;
        let ty = match (bindings.is_texture(i), read) {
            _ if bindings.is_uniform(i) => buffer(wgpu::BufferBindingType::Uniform),
            (true, true) if bindings.images => image,
            (true, true) => texture,
            (true, false) => storage_texture,
            (false, read) => buffer(wgpu::BufferBindingType::Storage { read_only: read }),
        };
        entry(1 + i, ty)
    }));
    let bgl = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some("wgvit"), entries: &entries });
    let pl = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor { label: Some("wgvit"), bind_group_layouts: &[Some(&bgl)], immediate_size: 0 });
    (bgl, pl)
}

/// `key`'s pipeline: `module`'s `main` with the key's override constants.
fn compute_pipeline(
    device: &wgpu::Device,
    key: &PipelineKey,
    layout: &wgpu::PipelineLayout,
    module: &wgpu::ShaderModule,
    cache: Option<&wgpu::PipelineCache>,
) -> wgpu::ComputePipeline {
    let constants: Vec<(&str, f64)> = key.constants().iter().map(|&(n, v)| (n, v as f64)).collect();
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(&key.kernel.name()),
        layout: Some(layout),
        module,
        entry_point: Some("main"),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: &constants,
            // Every kernel initialises the workgroup memory it reads.
            zero_initialize_workgroup_memory: false,
        },
        cache,
    })
}

/// lavapipe (Mesa's llvmpipe behind Vulkan) compiles with LLVM at the first dispatch, on the
/// device's one queue thread: with an empty shader cache the first forward compiles every
/// pipeline one after the other (1.5–3 s for a bundled model) while the other cores idle.
/// llvmpipe keeps what it compiles in Mesa's on-disk shader cache, keyed by the shader and its
/// variant, and looks there before compiling. So a helper thread opens a second device on the
/// same adapter and dispatches the graph's distinct (pipeline, uniform) pairs, zero workgroups
/// each (the variant is compiled, nothing runs), in the reverse order of first use: while the
/// first forward compiles from the front, the helper fills the cache from the back, and the
/// forward finds the rest compiled. The pairs carry the nodes' own uniform values because the
/// variant can depend on them (Mesa inlines uniforms into shaders): dispatched with a zeroed
/// uniform, the helper compiled variants the forward never used. Nothing computed depends on
/// the helper: a variant it has not reached is compiled by the forward as before. It stops and
/// is joined when the first forward is done (or its executable dropped): LLVM must not be
/// compiling when the process exits.
#[cfg(not(target_arch = "wasm32"))]
mod driver_warmup {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::PipelineKey;
    use crate::context::GpuContext;
    use crate::graph::Bindings;

    /// Graphs with fewer distinct (pipeline, uniform) pairs compile in less time than a second
    /// device takes to open.
    pub const MIN_DISPATCHES: usize = 8;

    /// One distinct (pipeline, uniform) pair of a graph.
    pub struct Dispatch {
        pub key: PipelineKey,
        pub bindings: Bindings,
        /// Width and height of each binding (reads, then writes) that is a texture: llvmpipe
        /// specialises a shader on its textures' static state (format, power-of-two sizes), so
        /// the helper binds textures of the real sizes to compile the variant the forward will use.
        pub texture_sizes: Vec<Option<[u32; 2]>>,
        pub params: Vec<u32>,
    }

    /// The running helper: stopped and joined by [`Warmup::finish`] or on drop.
    pub struct Warmup {
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Warmup {
        pub fn finish(mut self) {
            self.join();
        }

        fn join(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    impl Drop for Warmup {
        fn drop(&mut self) {
            self.join();
        }
    }

    /// Only where it pays: llvmpipe, several cores and Mesa's shader cache on, unless
    /// `WGVIT_WARMUP=0` (paired measurements).
    pub fn wanted(ctx: &GpuContext) -> bool {
        let set = |name: &str| std::env::var(name).is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
        let off = std::env::var_os("WGVIT_WARMUP").is_some_and(|v| v == "0");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        ctx.info.driver.starts_with("llvmpipe") && cores > 1 && !off && !set("MESA_SHADER_CACHE_DISABLE") && !set("MESA_DISK_CACHE_DISABLE")
    }

    /// Starts the helper for `dispatches` (in first-use order, each pair once).
    pub fn spawn(ctx: &GpuContext, dispatches: Vec<Dispatch>) -> Option<Warmup> {
        let adapter = ctx.adapter.clone();
        let (features, limits) = (ctx.device.features(), ctx.device.limits());
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wgvit-driver-warmup".into())
            .spawn(move || {
                if let Err(e) = pollster::block_on(warm(adapter, features, limits, dispatches, &stop_flag)) {
                    log::info!("driver warm-up stopped: {e}");
                }
            })
            .map_err(|e| log::info!("driver warm-up not started: {e}"))
            .ok()?;
        Some(Warmup { stop, thread: Some(thread) })
    }

    async fn warm(adapter: wgpu::Adapter, features: wgpu::Features, limits: wgpu::Limits, dispatches: Vec<Dispatch>, stop: &AtomicBool) -> Result<(), String> {
        // The model's device's features and limits: they shape the SPIR-V wgpu hands the driver,
        // and with it the driver's cache key.
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgvit driver warm-up"),
                required_features: features,
                required_limits: limits,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        // The helper's errors are its own (the model's device never sees them): logged, not fatal.
        device.on_uncaptured_error(Arc::new(|e: wgpu::Error| log::info!("driver warm-up: {e}")));
        // Nothing is read or written (zero workgroups); the bindings only have to be valid.
        let storage: Vec<wgpu::Buffer> = (0..8)
            .map(|_| device.create_buffer(&wgpu::BufferDescriptor { label: None, size: 256, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false }))
            .collect();
        let uniform_window = device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: crate::graph::UNIFORM_WINDOW_BYTES as u64,
            usage: wgpu::BufferUsages::UNIFORM,
            mapped_at_creation: false,
        });
        // By size and by whether a write binds it: one dispatch may not sample a texture and
        // write it as storage.
        let mut textures: HashMap<([u32; 2], bool), wgpu::TextureView> = HashMap::new();
        let mut pipelines: HashMap<(PipelineKey, Bindings), (wgpu::ComputePipeline, wgpu::BindGroupLayout)> = HashMap::new();
        for Dispatch { key, bindings, texture_sizes, params } in dispatches.iter().rev() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let (pipeline, bgl) = pipelines.entry((key.clone(), *bindings)).or_insert_with(|| create(&device, key, *bindings));
            // The uniform values are part of the variant: the node's own.
            let uniform = device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size: (params.len().max(4) as u64 * 4).next_multiple_of(16),
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            queue.write_buffer(&uniform, 0, bytemuck::cast_slice(params));
            let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() }];
            for (i, size) in texture_sizes.iter().enumerate() {
                if let Some(size) = *size {
                    let write = i >= bindings.reads;
                    textures.entry((size, write)).or_insert_with(|| {
                        let texture = if write { super::rgba32f_storage_texture(&device, None, size) } else { super::rgba32f_texture(&device, &queue, None, size, None) };
                        texture.create_view(&Default::default())
                    });
                }
            }
            entries.extend(storage.iter().take(bindings.reads + bindings.writes).enumerate().map(|(i, b)| wgpu::BindGroupEntry {
                binding: 1 + i as u32,
                resource: match texture_sizes.get(i).copied().flatten() {
                    Some(size) => wgpu::BindingResource::TextureView(&textures[&(size, i >= bindings.reads)]),
                    None if bindings.is_uniform(i) => uniform_window.as_entire_binding(),
                    None => b.as_entire_binding(),
                },
            }));
            let group = device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: bgl, entries: &entries });
            let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor::default());
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                pass.set_pipeline(pipeline);
                pass.set_bind_group(0, &group, &[]);
                pass.dispatch_workgroups(0, 1, 1);
            }
            queue.submit([encoder.finish()]);
            // One variant in flight at a time, so that a stop waits for one compile at most.
            device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The pipeline as the model's device creates it.
    fn create(device: &wgpu::Device, key: &PipelineKey, bindings: Bindings) -> (wgpu::ComputePipeline, wgpu::BindGroupLayout) {
        let (bgl, layout) = super::binding_layout(device, bindings);
        let module = super::shader_module(device, &key.kernel.name(), key.kernel.source_for(key.constants()));
        (super::compute_pipeline(device, key, &layout, &module, None), bgl)
    }
}

/// `graph` as the device runs it: no uniform constant splitting a pipeline, its small
/// activations read as uniform buffers and the rest in textures where the device wants them
/// (`ops::tuning::constant_uniforms`, `activation_uniforms`, `activation_textures`), which
/// changes the pipelines' bindings and defines.
fn for_device(graph: &Graph) -> std::borrow::Cow<'_, Graph> {
    let mut g = std::borrow::Cow::Borrowed(graph);
    if crate::ops::tuning::constant_uniforms(&graph.profile) {
        g = std::borrow::Cow::Owned(g.without_split_uniform_constants());
    }
    if crate::ops::tuning::activation_uniforms(&graph.profile) {
        g = std::borrow::Cow::Owned(g.with_activation_uniforms());
    }
    if crate::ops::tuning::activation_textures(&graph.profile) {
        g = std::borrow::Cow::Owned(match crate::ops::tuning::copied_textures(&graph.profile) {
            // The rest as before: those read by kernels that always take a texture (attentions,
            // channel-last convs) or fetched often, stored by their producers.
            Some(rule) => g.with_activation_textures_copied(rule.min_fetches, rule.min_texels).with_activation_textures(crate::ops::tuning::texture_min_fetches(&graph.profile)),
            None => g.with_activation_textures(crate::ops::tuning::texture_min_fetches(&graph.profile)),
        });
    }
    if crate::ops::tuning::flat_texture_images(&graph.profile) {
        g = std::borrow::Cow::Owned(g.with_flat_texture_images(graph.profile.limits.max_storage_textures_per_shader_stage));
    }
    g
}

/// Every node's pipeline key and bindings, in graph order.
fn pipeline_keys(graph: &Graph) -> Vec<(PipelineKey, Bindings)> {
    graph.nodes.iter().map(|n| (n.key.clone(), graph.bindings(n))).collect()
}

/// wgpu's WebGPU backend creates pipelines with the synchronous `createComputePipeline`, so the
/// browser compiles them one after the other on the thread that asks. Here the same pipelines
/// are first requested with `createComputePipelineAsync`, all at once, through the raw
/// `GPUDevice`: the browser compiles them concurrently (off the page's thread), and the
/// synchronous creation that follows finds each one in the implementation's pipeline cache
/// (Dawn keys pipelines, shader modules and layouts by content). Any failure here only costs the
/// speed-up: the synchronous path still creates, and reports on, every pipeline.
#[cfg(target_arch = "wasm32")]
mod browser_async {
    use std::cell::Cell;
    use std::collections::HashMap;
    use std::rc::Rc;

    use js_sys::{Array, Function, Object, Promise, Reflect};
    use wasm_bindgen::closure::Closure;
    use wasm_bindgen::{JsCast, JsValue};

    use super::PipelineKey;
    use crate::context::GpuContext;
    use crate::graph::Bindings;

    fn object(fields: &[(&str, JsValue)]) -> Object {
        let o = Object::new();
        for (k, v) in fields {
            let _ = Reflect::set(&o, &JsValue::from_str(k), v);
        }
        o
    }

    fn call(device: &JsValue, method: &str, arg: &JsValue) -> Result<JsValue, JsValue> {
        Reflect::get(device, &JsValue::from_str(method))?.dyn_into::<Function>()?.call1(device, arg)
    }

    fn buffer_entry(binding: usize, ty: &str) -> JsValue {
        // GPUShaderStage.COMPUTE = 4.
        object(&[
            ("binding", (binding as u32).into()),
            ("visibility", 4u32.into()),
            ("buffer", object(&[("type", ty.into()), ("hasDynamicOffset", false.into())]).into()),
        ])
        .into()
    }

    fn texture_entry(binding: usize) -> JsValue {
        let texture = object(&[("sampleType", "unfilterable-float".into()), ("viewDimension", "2d".into()), ("multisampled", false.into())]);
        object(&[("binding", (binding as u32).into()), ("visibility", 4u32.into()), ("texture", texture.into())]).into()
    }

    fn storage_texture_entry(binding: usize, access: &str) -> JsValue {
        let texture = object(&[("access", access.into()), ("format", "rgba32float".into()), ("viewDimension", "2d".into())]);
        object(&[("binding", (binding as u32).into()), ("visibility", 4u32.into()), ("storageTexture", texture.into())]).into()
    }

    fn request(device: &JsValue, key: &PipelineKey, bindings: Bindings) -> Result<Promise, JsValue> {
        let module = call(device, "createShaderModule", &object(&[("code", key.kernel.source_for(key.constants()).into())]).into())?;
        let entries = Array::new();
        entries.push(&buffer_entry(0, "uniform"));
        for i in 0..bindings.reads + bindings.writes {
            let read = i < bindings.reads;
            entries.push(&match (bindings.is_texture(i), read) {
                _ if bindings.is_uniform(i) => buffer_entry(1 + i, "uniform"),
                (true, true) if bindings.images => storage_texture_entry(1 + i, "read-only"),
                (true, true) => texture_entry(1 + i),
                (true, false) => storage_texture_entry(1 + i, "write-only"),
                (false, read) => buffer_entry(1 + i, if read { "read-only-storage" } else { "storage" }),
            });
        }
        let bgl = call(device, "createBindGroupLayout", &object(&[("entries", entries.into())]).into())?;
        let layout = call(device, "createPipelineLayout", &object(&[("bindGroupLayouts", Array::of1(&bgl).into())]).into())?;
        let constants = Object::new();
        for &(name, value) in key.constants() {
            Reflect::set(&constants, &JsValue::from_str(name), &JsValue::from_f64(value as f64))?;
        }
        let compute = object(&[("module", module), ("entryPoint", "main".into()), ("constants", constants.into())]);
        let desc = object(&[("layout", layout), ("compute", compute.into())]);
        call(device, "createComputePipelineAsync", &desc.into())?.dyn_into::<Promise>()
    }

    /// The pipelines requested and not created yet: their compiles' promises, and whether each
    /// has settled. The browser's wasm is single-threaded: the cache that holds this is never
    /// shared across threads.
    #[derive(Default)]
    pub struct Pending(HashMap<(PipelineKey, Bindings), (Promise, Rc<Cell<bool>>)>);

    // SAFETY: wasm32 without atomics has one thread; nothing here is ever sent to another.
    unsafe impl Send for Pending {}

    impl Pending {
        /// Requests every pipeline of `missing` not requested yet; nothing when turned off
        /// (`globalThis.WGVIT_SYNC_PIPELINES = true`: paired measurements).
        pub fn request(&mut self, ctx: &GpuContext, missing: &[&(PipelineKey, Bindings)]) {
            if Reflect::get(&js_sys::global(), &JsValue::from_str("WGVIT_SYNC_PIPELINES")).is_ok_and(|v| v.is_truthy()) {
                return;
            }
            let Some(device) = ctx.device.as_webgpu() else { return };
            let device: &JsValue = device.as_ref();
            for (key, bindings) in missing {
                if self.0.contains_key(&(key.clone(), *bindings)) {
                    continue;
                }
                let compiled = request(device, key, *bindings).and_then(|p| {
                    let settled = Rc::new(Cell::new(false));
                    let flag = settled.clone();
                    let on_settled = Closure::once_into_js(move |_: JsValue| flag.set(true));
                    call(&Promise::all_settled(&Array::of1(&p)).into(), "then", &on_settled)?;
                    Ok((p, settled))
                });
                match compiled {
                    Ok(c) => {
                        self.0.insert((key.clone(), *bindings), c);
                    }
                    Err(e) => {
                        log::warn!("createComputePipelineAsync unavailable ({e:?}); pipelines are created one by one");
                        return;
                    }
                }
            }
        }

        /// Whether `key` can be created without waiting: its compile has settled, or it was
        /// never requested (then it compiles as it is created).
        pub fn is_ready(&self, key: &(PipelineKey, Bindings)) -> bool {
            self.0.get(key).is_none_or(|(_, settled)| settled.get())
        }

        /// One promise for the compiles of `keys` that were requested.
        pub fn promises(&self, keys: &[&(PipelineKey, Bindings)]) -> Option<Promise> {
            let all: Array = keys.iter().filter_map(|k| self.0.get(*k)).map(|(p, _)| p.clone()).collect();
            (all.length() > 0).then(|| Promise::all_settled(&all))
        }

        /// The pipeline is created: its promise is no longer needed.
        pub fn done(&mut self, key: &PipelineKey, bindings: Bindings) {
            self.0.remove(&(key.clone(), bindings));
        }
    }

    /// Until every requested pipeline is compiled (or failed: a pipeline the browser refuses is
    /// reported by the synchronous creation that follows).
    pub async fn wait(requested: Option<Promise>) {
        if let Some(all) = requested {
            let _ = wasm_bindgen_futures::JsFuture::from(all).await;
        }
    }
}

/// `WGVIT_PRINT_WGSL=1` prints every kernel's source as it is compiled.
fn print_wgsl() -> bool {
    std::env::var_os("WGVIT_PRINT_WGSL").is_some()
}

/// Parameter buffers already on the device, by constant key. A model keeps one of these so that
/// graphs built for several input sizes share their weights.
#[derive(Default)]
pub struct ConstantCache {
    buffers: Mutex<HashMap<String, Arc<wgpu::Buffer>>>,
    /// Constants bound as textures ([`Graph::constant_texture`]), by their texture key.
    textures: Mutex<HashMap<String, Arc<wgpu::TextureView>>>,
}

impl ConstantCache {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn bytes(&self) -> u64 {
        let textures: u64 = self.textures.lock().unwrap().values().map(|v| v.texture().size()).map(|e| e.width as u64 * e.height as u64 * 16).sum();
        self.buffers.lock().unwrap().values().map(|b| b.size()).sum::<u64>() + textures
    }

    /// The constant `data` as a flat rgba32float texture ([`crate::graph::texture_extent`]; the
    /// graph checked it against the device's texture limit), zero-padded to whole rows.
    fn get_or_upload_texture(&self, ctx: &GpuContext, key: &str, data: &[f32]) -> Result<Arc<wgpu::TextureView>> {
        if let Some(v) = self.textures.lock().unwrap().get(key) {
            return Ok(v.clone());
        }
        let [width, height] = crate::graph::texture_extent(data.len());
        let mut padded = data.to_vec();
        padded.resize(width as usize * height as usize * 4, 0.0);
        let texture = rgba32f_texture(&ctx.device, &ctx.queue, Some(key), [width, height], Some(&padded));
        let view = Arc::new(texture.create_view(&Default::default()));
        self.textures.lock().unwrap().insert(key.to_string(), view.clone());
        Ok(view)
    }

    /// The constant `data` (at most [`UNIFORM_WINDOW_BYTES`], checked by the graph) as a uniform
    /// buffer of that size, zeros after the data: kernels declare the binding at that size.
    fn get_or_upload_uniform(&self, ctx: &GpuContext, key: &str, data: &[f32]) -> Result<Arc<wgpu::Buffer>> {
        Ok(self.get_or_upload_buffer(ctx, key, data, UNIFORM_WINDOW_BYTES as u64, wgpu::BufferUsages::UNIFORM))
    }

    fn get_or_upload(&self, ctx: &GpuContext, key: &str, data: &[f32]) -> Result<Arc<wgpu::Buffer>> {
        let bytes = (data.len() * 4) as u64;
        let limit = ctx.limits().max_storage_buffer_binding_size;
        if bytes > limit {
            return Err(Error::TensorTooLarge { file: "(model)".into(), tensor: key.into(), bytes, limit });
        }
        Ok(self.get_or_upload_buffer(ctx, key, data, align_up(bytes.max(16), 16), wgpu::BufferUsages::STORAGE))
    }

    /// The buffer cached under `key`, else a new one of `size` bytes for `usage`, `data` at its start.
    fn get_or_upload_buffer(&self, ctx: &GpuContext, key: &str, data: &[f32], size: u64, usage: wgpu::BufferUsages) -> Arc<wgpu::Buffer> {
        if let Some(b) = self.buffers.lock().unwrap().get(key) {
            return b.clone();
        }
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(key),
            size,
            usage: usage | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        ctx.queue.write_buffer(&buffer, 0, bytemuck::cast_slice(data));
        let buffer = Arc::new(buffer);
        self.buffers.lock().unwrap().insert(key.to_string(), buffer.clone());
        buffer
    }
}

/// An rgba32float 2-D texture of `width` × `height` texels, read by kernels with `textureLoad`,
/// filled from `data` (row-major, 4 floats a texel, all `width · height · 4` of them) if given.
pub fn rgba32f_texture(device: &wgpu::Device, queue: &wgpu::Queue, label: Option<&str>, size: [u32; 2], data: Option<&[f32]>) -> wgpu::Texture {
    // Also a storage binding: kernels may read it as a read-only storage texture
    // (`Graph::with_flat_texture_images`).
    let texture = rgba32f(device, label, size, wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_DST);
    if let Some(data) = data {
        let [width, height] = size;
        let layout = wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(width * 16), rows_per_image: Some(height) };
        queue.write_texture(texture.as_image_copy(), bytemuck::cast_slice(data), layout, texture.size());
    }
    texture
}

/// An rgba32float 2-D texture a kernel writes as a storage texture and later kernels read with
/// `textureLoad`: an activation in a flat texture (`Graph::with_activation_textures`).
/// Also a copy destination: an activation copied from its producer's buffer
/// (`Graph::with_activation_textures_copied`).
pub fn rgba32f_storage_texture(device: &wgpu::Device, label: Option<&str>, size: [u32; 2]) -> wgpu::Texture {
    rgba32f(device, label, size, wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_DST)
}

fn rgba32f(device: &wgpu::Device, label: Option<&str>, [width, height]: [u32; 2], usage: wgpu::TextureUsages) -> wgpu::Texture {
    device.create_texture(&wgpu::TextureDescriptor {
        label,
        size: wgpu::Extent3d { width, height, depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Float,
        usage,
        view_formats: &[],
    })
}

/// Where the time of building a graph for the device went (milliseconds): what a cold start
/// costs besides the device, the weights and the first forward.
#[derive(Clone, Debug, Default)]
pub struct BuildTimes {
    /// Building the graph on the host (the model's builder; set by `Model::prepare`).
    pub graph_ms: f64,
    /// Memory plan and activation buffers.
    pub plan_ms: f64,
    /// Weights not yet on the device, uploaded (queued).
    pub upload_ms: f64,
    /// Shader modules created (WGSL parsed and translated).
    pub modules_ms: f64,
    /// Each pipeline created for this graph: its kernel and milliseconds (pipelines already in
    /// the cache cost nothing and are not listed).
    pub pipelines: Vec<(String, f64)>,
    /// Bind groups and the uniform buffer.
    pub bind_groups_ms: f64,
    /// In the browser: every new pipeline compiled concurrently with `createComputePipelineAsync`
    /// before the synchronous creation (then listed in `pipelines`) finds it compiled.
    pub pipelines_async_ms: f64,
    /// Pipelines [`PipelineCache::create_all`] found missing: compiled for this graph, by it or
    /// (in the browser, for a precompile) by a build that created them first.
    pub pipelines_new: usize,
}

impl BuildTimes {
    /// Creating the pipelines: the concurrent asynchronous compile (browser) and each creation.
    pub fn pipelines_ms(&self) -> f64 {
        self.pipelines_async_ms + self.pipelines.iter().map(|p| p.1).sum::<f64>()
    }

    /// One line: `graph 1.2 ms, upload 3.4 ms, ... pipelines 2900.1 ms (23; slowest matmul 410 ms, ...)`.
    pub fn summary(&self) -> String {
        let mut slow = self.pipelines.clone();
        slow.sort_by(|a, b| b.1.total_cmp(&a.1));
        let slowest: Vec<String> = slow.iter().take(3).map(|(n, ms)| format!("{n} {ms:.0} ms")).collect();
        format!(
            "graph {:.1} ms, plan {:.1} ms, weights upload {:.1} ms, shader modules {:.1} ms, pipelines {:.1} ms ({}{}), bind groups {:.1} ms",
            self.graph_ms,
            self.plan_ms,
            self.upload_ms,
            self.modules_ms,
            self.pipelines_ms(),
            self.pipelines.len(),
            if slowest.is_empty() { String::new() } else { format!("; slowest {}", slowest.join(", ")) },
            self.bind_groups_ms
        )
    }
}

/// Numbers a benchmark or `wgvit bench` reports about a built graph.
#[derive(Clone, Debug, Default)]
pub struct GraphStats {
    pub dispatches: usize,
    pub pipelines: usize,
    pub flops: u64,
    /// Bytes of the activation buffers (shared by liveness).
    pub planned_bytes: u64,
    /// What the activations would take with one buffer each.
    pub unshared_bytes: u64,
    pub constant_bytes: u64,
    /// Activations copied from a buffer into a texture between compute passes
    /// (`Graph::with_activation_textures_copied`).
    pub texture_copies: usize,
}

struct Step {
    label: String,
    key: (PipelineKey, Bindings),
    /// Set at build time, except in the browser for a pipeline still compiling then: the first
    /// forward sets it ([`Executable::run`]).
    pipeline: std::sync::OnceLock<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
    /// Activations copied from a slot buffer into a slot texture right after this step
    /// (`Graph::with_activation_textures_copied`).
    copies: Vec<TextureSlotCopy>,
}

/// `texels` rgba32float texels from the start of `buffer` into the flat texture `texture`.
struct TextureSlotCopy {
    buffer: wgpu::Buffer,
    texture: wgpu::Texture,
    texels: u32,
}

impl TextureSlotCopy {
    fn encode(&self, encoder: &mut wgpu::CommandEncoder) {
        crate::context::encode_flat_texture_copy(encoder, &self.buffer, &self.texture, self.texels);
    }
}

impl Step {
    fn pipeline(&self) -> &wgpu::ComputePipeline {
        self.pipeline.get().expect("a step is recorded only once its pipeline is created")
    }

    /// Takes the step's pipeline from `cache` if it is created there and the step has none yet.
    fn take_pipeline(&self, cache: &PipelineCache) {
        if self.pipeline.get().is_none() {
            if let Some(p) = cache.get(&self.key) {
                let _ = self.pipeline.set(p);
            }
        }
    }

    fn dispatch(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(self.pipeline());
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// The runs of `steps` that share a compute pass: each ends at a step followed by texture copies
/// (which go between passes) or at the last step.
fn pass_runs(steps: &[Step]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        (start < steps.len()).then(|| {
            let end = steps[start..].iter().position(|s| !s.copies.is_empty()).map_or(steps.len(), |p| start + p + 1);
            let run = start..end;
            start = end;
            run
        })
    })
}

/// Where a graph input or output lives: its slot buffer (from offset 0).
struct Slot {
    name: String,
    shape: Vec<usize>,
    slot: usize,
    bytes: u64,
}

/// A graph ready to run on one device.
pub struct Executable {
    ctx: GpuContext,
    slots: Vec<wgpu::Buffer>,
    _textures: Vec<wgpu::TextureView>,
    _constants: Vec<Arc<wgpu::Buffer>>,
    _uniforms: wgpu::Buffer,
    /// Where the steps' pipelines still compiling will come from.
    pipelines: Arc<PipelineCache>,
    steps: Vec<Step>,
    inputs: Vec<Slot>,
    outputs: Vec<Slot>,
    pub stats: GraphStats,
    pub plan: MemoryPlan,
    /// What building it cost.
    pub times: BuildTimes,
    /// The driver warm-up helper until the first forward is done (`driver_warmup`).
    #[cfg(not(target_arch = "wasm32"))]
    warmup: Mutex<Option<driver_warmup::Warmup>>,
}

impl Executable {
    /// Creates the pipelines [`Executable::build`] would create for `graph` into `pipelines`,
    /// and nothing else: no memory, upload or bind groups. What a model needs can so be compiled
    /// before its weights arrive (`Engine::precompile`), graphs being shapes and pipeline keys.
    pub async fn precompile(ctx: &GpuContext, graph: &Graph, pipelines: &PipelineCache) -> Result<BuildTimes> {
        ctx.check("compiling a graph's pipelines")?;
        let mut times = BuildTimes::default();
        pipelines.create_all(ctx, &pipeline_keys(&for_device(graph)), &mut times).await?;
        Ok(times)
    }

    pub async fn build(ctx: &GpuContext, graph: &Graph, pipelines: &Arc<PipelineCache>, constants: &ConstantCache) -> Result<Self> {
        ctx.check("building a graph")?;
        let limits = ctx.limits().clone();
        let mut times = BuildTimes::default();
        let phase_start = now_ms();
        let graph = &*for_device(graph);
        // In the browser the pipelines compile from here on, while the weights upload and the
        // bind groups are made.
        let keys = pipeline_keys(graph);
        pipelines.request(ctx, &keys);
        let live = graph.liveness()?;

        // ---- memory plan over inputs and activations: one buffer per slot, and one flat texture
        // per slot of the activations in textures
        let (plan, slot_of) = plan_graph(graph, &live, false);
        let max_binding = limits.max_storage_buffer_binding_size;
        // A slot an activation read as a uniform buffer lives in is bound as a window of
        // UNIFORM_WINDOW_BYTES from its start, so it is at least that large.
        let mut uniform_slot = vec![false; plan.slot_bytes.len()];
        for (s, storage) in graph.storages.iter().enumerate() {
            if let (StorageKind::Activation { uniform_reads: true, .. }, Some(slot)) = (&storage.kind, slot_of[s]) {
                uniform_slot[slot] = true;
            }
        }
        let slots: Vec<wgpu::Buffer> = plan
            .slot_bytes
            .iter()
            .enumerate()
            .map(|(i, &bytes)| {
                if bytes > max_binding.min(limits.max_buffer_size) {
                    return Err(Error::PlanTooLarge { needed: bytes, limit: max_binding.min(limits.max_buffer_size) });
                }
                let (size, uniform) = if uniform_slot[i] { (bytes.max(UNIFORM_WINDOW_BYTES as u64), wgpu::BufferUsages::UNIFORM) } else { (bytes, wgpu::BufferUsages::empty()) };
                Ok(ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&format!("wgvit activations {i}")),
                    size,
                    usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC | uniform,
                    mapped_at_creation: false,
                }))
            })
            .collect::<Result<_>>()?;
        let (texture_plan, texture_slot_of) = plan_graph(graph, &live, true);
        let max_side = limits.max_texture_dimension_2d;
        let texture_slots: Vec<wgpu::TextureView> = texture_plan
            .slot_bytes
            .iter()
            .enumerate()
            .map(|(i, &bytes)| {
                let [width, height] = crate::graph::texture_extent((bytes / 4) as usize);
                if width.max(height) > max_side {
                    return Err(Error::TooLarge(format!("activation texture {i} of {width} × {height} texels is over the texture limit {max_side}")));
                }
                Ok(rgba32f_storage_texture(&ctx.device, Some(&format!("wgvit activation texture {i}")), [width, height]).create_view(&Default::default()))
            })
            .collect::<Result<_>>()?;
        let texture_bytes: u64 = texture_slots.iter().map(|v| v.texture().width() as u64 * v.texture().height() as u64 * 16).sum();

        times.plan_ms = now_ms() - phase_start;

        // ---- constants
        let phase_start = now_ms();
        let mut constant_buffer: HashMap<usize, Arc<wgpu::Buffer>> = HashMap::new();
        let mut constant_texture: HashMap<usize, Arc<wgpu::TextureView>> = HashMap::new();
        for (s, storage) in graph.storages.iter().enumerate() {
            if let StorageKind::Constant { key, data, binding } = &storage.kind {
                if live[s].is_none() {
                    continue;
                }
                match binding {
                    ConstantBinding::Texture => {
                        constant_texture.insert(s, constants.get_or_upload_texture(ctx, key, data)?);
                    }
                    ConstantBinding::Uniform => {
                        constant_buffer.insert(s, constants.get_or_upload_uniform(ctx, key, data)?);
                    }
                    ConstantBinding::Buffer => {
                        constant_buffer.insert(s, constants.get_or_upload(ctx, key, data)?);
                    }
                }
            }
        }

        times.upload_ms = now_ms() - phase_start;

        // ---- uniforms: one buffer, each node's words at an aligned offset
        let ualign = limits.min_uniform_buffer_offset_alignment.max(16) as u64;
        let mut uniform_offsets = Vec::with_capacity(graph.nodes.len());
        let mut uniform_bytes: Vec<u8> = Vec::new();
        for node in &graph.nodes {
            let off = align_up(uniform_bytes.len() as u64, ualign);
            uniform_bytes.resize(off as usize, 0);
            uniform_offsets.push(off);
            let mut words = node.params.words.clone();
            words.resize(align_up(words.len().max(4) as u64, 4) as usize, 0); // 16-byte multiple
            uniform_bytes.extend_from_slice(bytemuck::cast_slice(&words));
        }
        uniform_bytes.resize(align_up(uniform_bytes.len().max(16) as u64, 16) as usize, 0);
        let uniforms = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgvit params"),
            size: uniform_bytes.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        ctx.queue.write_buffer(&uniforms, 0, &uniform_bytes);

        // ---- pipelines, all created up front (after checking every node against the limits),
        // then bind groups
        let max_bindings = limits.max_storage_buffers_per_shader_stage as usize;
        let max_wg = limits.max_compute_workgroups_per_dimension;
        for node in &graph.nodes {
            let nb = graph.bindings(node).storage_buffers();
            if nb > max_bindings.min(8) {
                return Err(Error::Graph(format!("node '{}' binds {nb} storage buffers (limit 8)", node.label)));
            }
            // Binding 0 (the parameters) is a uniform buffer too.
            let nu = graph.bindings(node).uniform_buffers() + 1;
            if nu > limits.max_uniform_buffers_per_shader_stage as usize {
                return Err(Error::Graph(format!("node '{}' binds {nu} uniform buffers (limit {})", node.label, limits.max_uniform_buffers_per_shader_stage)));
            }
            if node.workgroups.iter().any(|&w| w > max_wg) {
                return Err(Error::Graph(format!(
                    "node '{}' dispatches {:?} workgroups, over the per-dimension limit {max_wg}",
                    node.label, node.workgroups
                )));
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
        let warmup = if driver_warmup::wanted(ctx) {
            let mut seen = std::collections::HashSet::new();
            let dispatches: Vec<driver_warmup::Dispatch> = graph
                .nodes
                .iter()
                .map(|n| driver_warmup::Dispatch {
                    key: n.key.clone(),
                    bindings: graph.bindings(n),
                    texture_sizes: n.reads.iter().chain(&n.writes).map(|&t| graph.texture_size(t)).collect(),
                    params: n.params.words.clone(),
                })
                .filter(|d| seen.insert((d.key.clone(), d.params.clone(), d.texture_sizes.clone())))
                .collect();
            (dispatches.len() >= driver_warmup::MIN_DISPATCHES).then(|| driver_warmup::spawn(ctx, dispatches)).flatten()
        } else {
            None
        };
        let mut bound = Vec::with_capacity(graph.nodes.len());
        for (i, node) in graph.nodes.iter().enumerate() {
            let (bgl, _) = pipelines.layout(ctx, graph.bindings(node));
            let uwords = align_up(node.params.words.len().max(4) as u64, 4);
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: &uniforms,
                    offset: uniform_offsets[i],
                    size: wgpu::BufferSize::new(uwords * 4),
                }),
            }];
            for (b, t) in node.reads.iter().chain(&node.writes).enumerate() {
                let s = graph.tensors[t.0].storage;
                if let Some(view) = constant_texture.get(&s).map(|v| v.as_ref()).or(texture_slot_of[s].map(|slot| &texture_slots[slot])) {
                    entries.push(wgpu::BindGroupEntry { binding: 1 + b as u32, resource: wgpu::BindingResource::TextureView(view) });
                    continue;
                }
                let read_as_uniform = b < node.reads.len() && graph.is_uniform(*t);
                let bytes = if read_as_uniform { UNIFORM_WINDOW_BYTES as u64 } else { align_up((graph.storages[s].numel as u64 * 4).max(4), 4) };
                if bytes > max_binding {
                    return Err(Error::TooLarge(format!(
                        "node '{}': tensor of {bytes} bytes is over the per-binding limit {max_binding}",
                        node.label
                    )));
                }
                let buffer: &wgpu::Buffer = match constant_buffer.get(&s) {
                    Some(buf) => buf.as_ref(),
                    None => &slots[slot_of[s].expect("a storage a node binds is live, so it has a slot")],
                };
                entries.push(wgpu::BindGroupEntry {
                    binding: 1 + b as u32,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer,
                        offset: 0,
                        size: wgpu::BufferSize::new(bytes),
                    }),
                });
            }
            bound.push((node, bgl, entries));
        }
        let bind_start = now_ms();
        let bind_groups = ctx
            .scoped_each(
                &bound,
                |(node, ..)| format!("binding node '{}'", node.label),
                |(node, bgl, entries)| {
                    ctx.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some(&node.label), layout: bgl, entries })
                },
            )
            .await?;
        times.bind_groups_ms += now_ms() - bind_start;
        // In the browser only those already compiled: the first forward starts with them.
        pipelines.create_ready(ctx, &keys, &mut times).await?;
        let mut copies: Vec<Vec<TextureSlotCopy>> = (0..graph.nodes.len()).map(|_| Vec::new()).collect();
        for copy in &graph.texture_copies {
            let (Some(buffer), Some(texture)) = (slot_of[copy.from], texture_slot_of[copy.to]) else {
                return Err(Error::Graph(format!("a texture copy after node '{}' has no slot to copy from or to", graph.nodes[copy.after].label)));
            };
            let texels = (graph.storages[copy.from].numel / 4) as u32;
            copies[copy.after].push(TextureSlotCopy { buffer: slots[buffer].clone(), texture: texture_slots[texture].texture().clone(), texels });
        }
        let steps: Vec<Step> = keys
            .into_iter()
            .zip(graph.nodes.iter().zip(bind_groups).zip(copies))
            .map(|(key, ((node, bind_group), copies))| {
                let step = Step { label: node.label.clone(), key, pipeline: std::sync::OnceLock::new(), bind_group, workgroups: node.workgroups, copies };
                step.take_pipeline(pipelines);
                step
            })
            .collect();

        let slot = |name: &str, t: TensorId| -> Slot {
            let s = graph.tensors[t.0].storage;
            Slot {
                name: name.to_string(),
                shape: graph.shape(t).to_vec(),
                slot: slot_of[s].unwrap_or(usize::MAX),
                bytes: graph.storages[s].numel as u64 * 4,
            }
        };
        let inputs = graph
            .inputs
            .iter()
            .map(|&t| {
                let name = match &graph.storages[graph.tensors[t.0].storage].kind {
                    StorageKind::Input { name } => name.clone(),
                    _ => unreachable!("graph inputs are Input storages"),
                };
                slot(&name, t)
            })
            .collect();
        let mut outputs = Vec::new();
        for (name, t) in &graph.outputs {
            if constant_buffer.contains_key(&graph.tensors[t.0].storage) {
                return Err(Error::Graph(format!("output '{name}' is a constant")));
            }
            outputs.push(slot(name, *t));
        }
        let stats = GraphStats {
            dispatches: steps.len(),
            pipelines: steps.iter().map(|s| &s.key).collect::<std::collections::HashSet<_>>().len(),
            flops: graph.total_flops(),
            planned_bytes: plan.planned_bytes + texture_bytes,
            unshared_bytes: plan.unshared_bytes + texture_plan.unshared_bytes,
            constant_bytes: constant_buffer.values().map(|b| b.size()).sum(),
            texture_copies: graph.texture_copies.len(),
        };
        Ok(Self {
            ctx: ctx.clone(),
            slots,
            _textures: texture_slots,
            _constants: constant_buffer.into_values().collect(),
            _uniforms: uniforms,
            pipelines: pipelines.clone(),
            steps,
            inputs,
            outputs,
            stats,
            plan,
            times,
            #[cfg(not(target_arch = "wasm32"))]
            warmup: Mutex::new(warmup),
        })
    }

    pub fn input_shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.inputs.iter().map(|s| (s.name.clone(), s.shape.clone())).collect()
    }

    pub fn output_names(&self) -> Vec<String> {
        self.outputs.iter().map(|s| s.name.clone()).collect()
    }

    pub fn step_labels(&self) -> impl Iterator<Item = &str> {
        self.steps.iter().map(|s| s.label.as_str())
    }

    /// Each step's kernel, override constants and workgroup count, in
    /// [`Executable::step_labels`] order (`wgvit profile --variants`).
    pub fn step_variants(&self) -> impl Iterator<Item = String> + '_ {
        self.steps.iter().map(|s| {
            let key = &s.key.0;
            let constants: Vec<String> = key.constants().iter().map(|(n, v)| format!("{n}={v}")).collect();
            format!("{:?} {} {:?}", key.kernel, constants.join(" "), s.workgroups)
        })
    }

    /// Checks `inputs` against the graph's and queues their upload.
    fn write_inputs(&self, inputs: &[&HostTensor]) -> Result<()> {
        if inputs.len() != self.inputs.len() {
            return Err(Error::Invalid(format!("graph takes {} inputs, got {}", self.inputs.len(), inputs.len())));
        }
        for (slot, t) in self.inputs.iter().zip(inputs) {
            if slot.shape != t.shape {
                return Err(Error::Invalid(format!(
                    "input '{}' must have shape {:?}, got {:?}",
                    slot.name, slot.shape, t.shape
                )));
            }
            self.ctx.queue.write_buffer(&self.slots[slot.slot], 0, bytemuck::cast_slice(&t.data));
        }
        Ok(())
    }

    /// The compute pass over `steps`, split after each step followed by texture copies (the
    /// copies go between passes); with `repeat = Some((i, extra))` `steps[i]` is dispatched
    /// `extra` more times right after itself ([`Executable::run_repeating`]).
    fn record(&self, encoder: &mut wgpu::CommandEncoder, steps: &[Step], repeat: Option<(usize, u32)>) {
        for run in pass_runs(steps) {
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("wgvit forward"), timestamp_writes: None });
                for (i, step) in steps.iter().enumerate().take(run.end).skip(run.start) {
                    step.dispatch(&mut pass);
                    if let Some((_, extra)) = repeat.filter(|r| r.0 == i) {
                        for _ in 0..extra {
                            step.dispatch(&mut pass);
                        }
                    }
                }
            }
            for copy in &steps[run.end - 1].copies {
                copy.encode(encoder);
            }
        }
    }

    /// Sets the pipelines of `steps` that are created or ready to be, as one batch.
    async fn take_ready_pipelines(&self, steps: &[Step]) -> Result<()> {
        let keys: Vec<(PipelineKey, Bindings)> = steps.iter().filter(|s| s.pipeline.get().is_none()).map(|s| s.key.clone()).collect();
        self.pipelines.create_ready(&self.ctx, &keys, &mut BuildTimes::default()).await?;
        for step in steps {
            step.take_pipeline(&self.pipelines);
        }
        Ok(())
    }

    /// Every step's pipeline, waiting for those still compiling.
    async fn all_pipelines(&self) -> Result<()> {
        while let Some(waiting) = self.steps.iter().find(|s| s.pipeline.get().is_none()) {
            self.pipelines.wait_for(&waiting.key).await;
            self.take_ready_pipelines(&self.steps).await?;
        }
        Ok(())
    }

    /// In the browser, a forward built while its pipelines still compiled runs its steps as their
    /// pipelines arrive: each run of steps whose pipelines are ready is submitted at once, and the
    /// device works on it while the rest compile. Returns the first step not submitted; from
    /// there every pipeline is ready, and the forward ends with one more submission. Once every
    /// pipeline is set (every later forward, and always natively) it returns 0 at once.
    async fn submit_compiled_prefix(&self) -> Result<usize> {
        let mut first = 0;
        loop {
            let rest = &self.steps[first..];
            let Some(missing) = rest.iter().position(|s| s.pipeline.get().is_none()) else { return Ok(first) };
            if missing == 0 {
                self.pipelines.wait_for(&rest[0].key).await;
            } else {
                let mut encoder = self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgvit forward, first steps") });
                self.record(&mut encoder, &rest[..missing], None);
                self.ctx.queue.submit([encoder.finish()]);
                first += missing;
            }
            self.take_ready_pipelines(&self.steps[first..]).await?;
        }
    }

    /// Uploads `inputs` (in graph-input order), records one command buffer with one compute pass (split only at texture copies),
    /// submits it once and reads back every output (in `Graph::output` order); in the browser,
    /// a first forward whose pipelines still compile submits the compiled runs of steps first.
    pub async fn run(&self, inputs: &[&HostTensor]) -> Result<Vec<HostTensor>> {
        self.run_with(inputs, None).await
    }

    /// [`Executable::run`] with step `step` (in [`Executable::step_labels`] order) dispatched
    /// `extra` more times right after itself, every pipeline compiled first. What for: a step's
    /// cost as the difference in wall-clock against a plain forward, divided by `extra`
    /// (`wgvit profile --repeat`), where a device's timestamps do not attribute time to
    /// dispatches (lavapipe: see `wgvit profile`). A step reads none of its own outputs, so the
    /// repeats compute the same values again; the outputs returned are the forward's.
    pub async fn run_repeating(&self, inputs: &[&HostTensor], step: usize, extra: u32) -> Result<Vec<HostTensor>> {
        if step >= self.steps.len() {
            return Err(Error::Invalid(format!("step {step} is out of range: the forward has {} dispatches", self.steps.len())));
        }
        self.all_pipelines().await?;
        self.run_with(inputs, Some((step, extra))).await
    }

    /// Step `step` alone, dispatched `times` times (each followed by its texture copies, as in
    /// the forward) in one submission, waited for; `times = 0` submits an empty command buffer.
    /// What for: a step's cost as the wall-clock of this less that of the empty submission,
    /// divided by `times` (`wgvit profile --isolate`). Unlike [`Executable::run_repeating`] it
    /// does not difference two whole forwards, so a host whose speed drifts by more than a
    /// dispatch between forwards still times it; but the step's operands stay in the caches
    /// between its repeats, where the forward finds them evicted. Its slots hold what the last
    /// forward left, so run one forward first.
    pub async fn run_isolated(&self, step: usize, times: u32) -> Result<()> {
        let Some(s) = self.steps.get(step) else {
            return Err(Error::Invalid(format!("step {step} is out of range: the forward has {} dispatches", self.steps.len())));
        };
        self.all_pipelines().await?;
        let mut encoder = self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgvit isolated step") });
        if s.copies.is_empty() {
            if times > 0 {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("wgvit isolated step"), timestamp_writes: None });
                for _ in 0..times {
                    s.dispatch(&mut pass);
                }
            }
        } else {
            for _ in 0..times {
                {
                    let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("wgvit isolated step"), timestamp_writes: None });
                    s.dispatch(&mut pass);
                }
                for copy in &s.copies {
                    copy.encode(&mut encoder);
                }
            }
        }
        self.ctx.queue.submit([encoder.finish()]);
        self.ctx.submitted_work_done().await?;
        self.ctx.check("running an isolated step")
    }

    async fn run_with(&self, inputs: &[&HostTensor], repeat: Option<(usize, u32)>) -> Result<Vec<HostTensor>> {
        self.ctx.check("running a forward")?;
        self.write_inputs(inputs)?;
        let first = self.submit_compiled_prefix().await?;
        let total: u64 = self.outputs.iter().map(|s| align_up(s.bytes, 256)).sum::<u64>().max(4);
        let staging = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgvit readback"),
            size: total,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgvit forward") });
        // `run_repeating` has every pipeline set, so `first` is 0 and its step index holds here.
        debug_assert!(repeat.is_none() || first == 0);
        self.record(&mut encoder, &self.steps[first..], repeat);
        let mut dst = 0u64;
        let mut placements = Vec::new();
        for slot in &self.outputs {
            let bytes = align_up(slot.bytes, 4);
            encoder.copy_buffer_to_buffer(&self.slots[slot.slot], 0, &staging, dst, bytes);
            placements.push(dst);
            dst += align_up(slot.bytes, 256);
        }
        self.ctx.queue.submit([encoder.finish()]);
        let raw = self.ctx.read_buffer(&staging, total).await;
        // Every variant this graph needs is compiled now: the helper has nothing left to add.
        #[cfg(not(target_arch = "wasm32"))]
        if let Some(warmup) = self.warmup.lock().unwrap_or_else(|p| p.into_inner()).take() {
            warmup.finish();
        }
        // A device lost or an error outside the scopes during the forward explains a failed read
        // better than the read's own error, and makes a "successful" one untrustworthy.
        self.ctx.check("running a forward")?;
        let raw = raw?;
        let mut out = Vec::with_capacity(self.outputs.len());
        for (slot, &at) in self.outputs.iter().zip(&placements) {
            let bytes = &raw[at as usize..(at + slot.bytes) as usize];
            let data: Vec<f32> = bytemuck::pod_collect_to_vec(bytes);
            out.push(HostTensor { shape: slot.shape.clone(), data });
        }
        Ok(out)
    }
    /// One forward with a GPU timestamp before and after every dispatch: seconds per step, in
    /// [`Executable::step_labels`] order. Outputs are not read back.
    ///
    /// With `TIMESTAMP_QUERY_INSIDE_PASSES` (Vulkan, lavapipe, Metal, DX12) it is the same single
    /// compute pass as [`Executable::run`] with `write_timestamp` between dispatches; with only
    /// `TIMESTAMP_QUERY` (the browser) each dispatch gets a pass of its own with pass timestamps,
    /// which adds a pass boundary per dispatch. Query sets hold at most 4096 queries, so steps
    /// are spread over several sets, all in one command buffer and one submission.
    pub async fn profile(&self, inputs: &[&HostTensor]) -> Result<Vec<f64>> {
        self.ctx.check("profiling a forward")?;
        self.all_pipelines().await?;
        let features = self.ctx.device.features();
        if !features.contains(wgpu::Features::TIMESTAMP_QUERY) {
            return Err(Error::Invalid(format!(
                "device '{}' ({}) has no timestamp-query feature: per-dispatch GPU times cannot be measured on it \
                 (`wgvit bench` still gives wall-clock times; on Linux, WGPU_BACKEND=vulkan has timestamps)",
                self.ctx.info.name, self.ctx.info.backend
            )));
        }
        let inside = features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES);
        self.write_inputs(inputs)?;
        if self.steps.is_empty() {
            return Ok(Vec::new());
        }
        let per_set = (wgpu::QUERY_SET_MAX_QUERIES / 2) as usize;
        let bytes = (2 * self.steps.len() * 8) as u64;
        let device = &self.ctx.device;
        let resolve = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgvit timestamps"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("wgvit timestamps readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.ctx
            .scoped("recording the profiled forward", || {
                let chunks: Vec<&[Step]> = self.steps.chunks(per_set).collect();
                let sets: Vec<wgpu::QuerySet> = chunks
                    .iter()
                    .map(|c| {
                        device.create_query_set(&wgpu::QuerySetDescriptor {
                            label: Some("wgvit profile"),
                            ty: wgpu::QueryType::Timestamp,
                            count: 2 * c.len() as u32,
                        })
                    })
                    .collect();
                let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("wgvit profile") });
                if inside {
                    for run in pass_runs(&self.steps) {
                        {
                            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("wgvit forward"), timestamp_writes: None });
                            for (j, step) in self.steps.iter().enumerate().take(run.end).skip(run.start) {
                                let (set, i) = (&sets[j / per_set], (j % per_set) as u32);
                                pass.write_timestamp(set, 2 * i);
                                step.dispatch(&mut pass);
                                pass.write_timestamp(set, 2 * i + 1);
                            }
                        }
                        for copy in &self.steps[run.end - 1].copies {
                            copy.encode(&mut encoder);
                        }
                    }
                } else {
                    for (set, chunk) in sets.iter().zip(&chunks) {
                        for (i, step) in chunk.iter().enumerate() {
                            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                                label: Some(&step.label),
                                timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                                    query_set: set,
                                    beginning_of_pass_write_index: Some(2 * i as u32),
                                    end_of_pass_write_index: Some(2 * i as u32 + 1),
                                }),
                            });
                            step.dispatch(&mut pass);
                            drop(pass);
                            for copy in &step.copies {
                                copy.encode(&mut encoder);
                            }
                        }
                    }
                }
                for (c, (set, chunk)) in sets.iter().zip(&chunks).enumerate() {
                    // Offsets are multiples of 2048 × 16 bytes: QUERY_RESOLVE_BUFFER_ALIGNMENT-aligned.
                    encoder.resolve_query_set(set, 0..2 * chunk.len() as u32, &resolve, (c * per_set * 16) as u64);
                }
                encoder.copy_buffer_to_buffer(&resolve, 0, &staging, 0, bytes);
                self.ctx.queue.submit([encoder.finish()]);
            })
            .await?;
        let raw = self.ctx.read_buffer(&staging, bytes).await?;
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&raw);
        let period_ns = self.ctx.queue.get_timestamp_period() as f64;
        Ok(ticks.chunks_exact(2).map(|t| t[1].saturating_sub(t[0]) as f64 * period_ns * 1e-9).collect())
    }
}
