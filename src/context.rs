//! The GPU context: instance, adapter, device and queue, plus what the adapter really offers.
//!
//! Creation is async and identical on native and wasm. The instance honours `WGPU_BACKEND`,
//! `WGPU_ADAPTER_NAME` and friends. The device is requested with the adapter's real limits (so a
//! large model can use a larger binding where the adapter grants one), but every kernel is written
//! for WebGPU's default limits; `DeviceInfo::limits` is what dispatch code consults.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::kernels::device::{kernels_from_env, DeviceProfile};

pub mod store_probe;

/// Encodes the copy of `texels` rgba32float texels from the start of `buffer` into the flat
/// texture `texture` (`graph::FLAT_TEXTURE_WIDTH` texels a row): the whole rows, then the last
/// row's first texels. The executor copies activations so (`Graph::with_activation_textures_copied`),
/// and the texel-store probe times the same copy ([`store_probe::texel_store_seconds`]).
pub(crate) fn encode_flat_texture_copy(encoder: &mut wgpu::CommandEncoder, buffer: &wgpu::Buffer, texture: &wgpu::Texture, texels: u32) {
    let width = crate::graph::FLAT_TEXTURE_WIDTH as u32;
    let (rows, rest) = (texels / width, texels % width);
    let mut copy = |row: u32, extent: [u32; 2]| {
        let offset = row as u64 * width as u64 * 16;
        encoder.copy_buffer_to_texture(
            wgpu::TexelCopyBufferInfo { buffer, layout: wgpu::TexelCopyBufferLayout { offset, bytes_per_row: Some(width * 16), rows_per_image: None } },
            wgpu::TexelCopyTextureInfo { texture, mip_level: 0, origin: wgpu::Origin3d { x: 0, y: row, z: 0 }, aspect: wgpu::TextureAspect::All },
            wgpu::Extent3d { width: extent[0], height: extent[1], depth_or_array_layers: 1 },
        );
    };
    if rows > 0 {
        copy(0, [width, rows]);
    }
    if rest > 0 {
        copy(rows, [rest, 1]);
    }
}

/// Below this many FLOPs per dispatch on average, a graph runs faster on llvmpipe with every
/// workgroup executed on the submitting thread (see [`choose_software_driver_threads`]).
pub const INLINE_DRIVER_FLOPS_PER_DISPATCH: u64 = 1_000_000;

/// Mesa's llvmpipe (lavapipe) runs each dispatch's workgroups on a pool of one thread per core,
/// and each dispatch hands its work to the pool and waits for it: about 100 µs of hand-off per
/// dispatch on a 2-core host, more than the work of most dispatches of a small model. Measured on
/// a 2-core AMD EPYC, warm medians with the pool against `LP_NUM_THREADS=0` (every workgroup on
/// the submitting thread): vvt-digits 13.0 → 3.9 ms, hatnet-digits 18.6 → 9.2 ms, lavit-digits
/// 25.0 → 12.8 ms, accvit-digits 25.7 → 18.5 ms; a large model loses the second core
/// (hatnet-tiny 865–906 → 1132–1501 ms, accvit-micro at 224 113 → 181 ms).
///
/// So for a graph whose dispatches average under [`INLINE_DRIVER_FLOPS_PER_DISPATCH`] this sets
/// `LP_NUM_THREADS=0`.
///
/// A larger graph gets two threads per core. With one per core (llvmpipe's default), the
/// 224² models' warm forwards switched between two speeds within one process on the 2-core
/// Intel Xeon of session 19: hatnet-tiny 250–270 or 355–380 ms, lavit-tiny 155–165 or 200–230
/// ms. With four threads on the two cores the slow mode did not appear (`tools/bench_pair.py`, 3
/// rounds × 8 runs, medians: hatnet-tiny 0.73, lavit-tiny 0.79, accvit-tiny 0.96, vvt-tiny 0.99);
/// eight threads did no better than four.
///
/// The variable is left alone where it is already set (the user's choice wins). Only llvmpipe
/// reads it, when its device is created: call this before the process's first
/// [`GpuContext::new`], while no other thread runs (it changes the environment). Returns the
/// thread count it set (0: every workgroup on the submitting thread), `None` when it set none.
#[cfg(not(target_arch = "wasm32"))]
pub fn choose_software_driver_threads(graph: &crate::graph::Graph) -> Option<usize> {
    if std::env::var_os("LP_NUM_THREADS").is_some() {
        return None;
    }
    let threads = software_driver_threads(graph, std::thread::available_parallelism().map_or(1, |n| n.get()));
    std::env::set_var("LP_NUM_THREADS", threads.to_string());
    Some(threads)
}

/// The llvmpipe thread count [`choose_software_driver_threads`] sets for `graph` on `cores` cores.
pub fn software_driver_threads(graph: &crate::graph::Graph, cores: usize) -> usize {
    let dispatches = graph.nodes.len().max(1) as u64;
    if graph.total_flops() / dispatches < INLINE_DRIVER_FLOPS_PER_DISPATCH {
        0
    } else {
        2 * cores.max(1)
    }
}

/// What the adapter is and what it offers; printed by `wgvit info`.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub shader_f16: bool,
    pub timestamp_query: bool,
    pub limits: wgpu::Limits,
    /// What graphs built for this device are tuned for (its kernel set, limits and features).
    pub profile: DeviceProfile,
}

impl std::fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = &self.limits;
        writeln!(f, "adapter:   {}", self.name)?;
        writeln!(f, "backend:   {}", self.backend)?;
        writeln!(f, "type:      {}", self.device_type)?;
        writeln!(f, "driver:    {} {}", self.driver, self.driver_info)?;
        writeln!(
            f,
            "features:  shader-f16={} timestamp-query={} subgroups={}",
            self.shader_f16, self.timestamp_query, self.profile.subgroups
        )?;
        writeln!(f, "kernels:   {} (WGVIT_KERNELS=cpu|gpu forces a set)", self.profile.kernels.name())?;
        if crate::ops::tuning::activation_textures(&self.profile) {
            let stores = if self.profile.texture_stores_costly { "costly (activations copied into textures after their producer)" } else { "cheap" };
            writeln!(f, "texture stores: {stores} ({}=costly|cheap skips the probe)", store_probe::TEXTURE_STORES_ENV)?;
        }
        writeln!(f, "limits:")?;
        writeln!(f, "  max_storage_buffer_binding_size      {}", l.max_storage_buffer_binding_size)?;
        writeln!(f, "  max_buffer_size                      {}", l.max_buffer_size)?;
        writeln!(f, "  max_compute_workgroup_storage_size   {}", l.max_compute_workgroup_storage_size)?;
        writeln!(f, "  max_compute_invocations_per_workgroup {}", l.max_compute_invocations_per_workgroup)?;
        writeln!(f, "  max_compute_workgroups_per_dimension {}", l.max_compute_workgroups_per_dimension)?;
        writeln!(f, "  max_storage_buffers_per_shader_stage {}", l.max_storage_buffers_per_shader_stage)?;
        writeln!(f, "  max_bind_groups                      {}", l.max_bind_groups)?;
        write!(f, "  min_storage_buffer_offset_alignment  {}", l.min_storage_buffer_offset_alignment)
    }
}

/// Instance + adapter + device + queue. Cheap to clone (wgpu handles are reference counted).
#[derive(Clone, Debug)]
pub struct GpuContext {
    pub instance: wgpu::Instance,
    pub adapter: wgpu::Adapter,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: DeviceInfo,
    /// Set when the device is lost (destroyed, driver reset): every later call fails with
    /// [`Error::DeviceLost`] instead of computing garbage.
    lost: Arc<Mutex<Option<String>>>,
    /// The first error raised outside any error scope (wgpu's default would abort the process).
    uncaptured: Arc<Mutex<Option<String>>>,
}

impl GpuContext {
    /// Opens the best adapter the environment allows (`WGPU_BACKEND=vulkan|gl|metal|dx12|webgpu`).
    pub async fn new() -> Result<Self> {
        let desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        let backends = format!("{:?}", desc.backends);
        let instance = wgpu::Instance::new(desc);
        let adapter = wgpu::util::initialize_adapter_from_env_or_default(&instance, None)
            .await
            .map_err(|_| Error::NoAdapter { backends })?;
        Self::from_adapter(instance, adapter).await
    }

    pub async fn from_adapter(instance: wgpu::Instance, adapter: wgpu::Adapter) -> Result<Self> {
        let kernels = kernels_from_env()?;
        let ainfo = adapter.get_info();
        let features = adapter.features();
        // Timestamps inside passes let `wgvit profile` time each dispatch of the single forward pass.
        // A driver pipeline cache lets compiled kernels survive the process (natively).
        let wanted = wgpu::Features::SHADER_F16
            | wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            | wgpu::Features::PIPELINE_CACHE;
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgvit"),
                required_features: features & wanted,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::RequestDevice { adapter: ainfo.name.clone(), reason: e.to_string() })?;
        // Subgroups are the adapter's (no kernel requests them yet); the rest is what the device has.
        let mut profile = DeviceProfile::for_adapter(&ainfo, device.features() | (features & wgpu::Features::SUBGROUP), device.limits(), kernels);
        if crate::ops::tuning::activation_textures(&profile) {
            profile.texture_stores_costly = store_probe::texture_stores_costly(&device, &queue).await?;
        }
        let info = DeviceInfo {
            name: ainfo.name.clone(),
            backend: format!("{:?}", ainfo.backend),
            device_type: format!("{:?}", ainfo.device_type),
            driver: ainfo.driver.clone(),
            driver_info: ainfo.driver_info.clone(),
            shader_f16: features.contains(wgpu::Features::SHADER_F16),
            timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            limits: device.limits(),
            profile,
        };
        let lost = Arc::new(Mutex::new(None));
        let lost_in_callback = lost.clone();
        device.set_device_lost_callback(move |reason, message| {
            let what = match reason {
                wgpu::DeviceLostReason::Destroyed => "destroyed".to_string(),
                wgpu::DeviceLostReason::Unknown => format!("lost: {message}"),
            };
            *lost_in_callback.lock().unwrap_or_else(|p| p.into_inner()) = Some(what);
        });
        let uncaptured = Arc::new(Mutex::new(None));
        let uncaptured_in_handler = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log::error!("wgpu: {e}");
            uncaptured_in_handler.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(|| e.to_string());
        }));
        Ok(Self { instance, adapter, device, queue, info, lost, uncaptured })
    }

    /// Native convenience: blocks on [`GpuContext::new`].
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking() -> Result<Self> {
        pollster::block_on(Self::new())
    }

    pub fn limits(&self) -> &wgpu::Limits {
        &self.info.limits
    }

    /// `Err(DeviceLost)` once the device is lost; `Err(Gpu)` with the first error raised outside
    /// an error scope since the last check (taken: later calls start clean).
    pub fn check(&self, context: &str) -> Result<()> {
        if let Some(reason) = self.lost.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(Error::DeviceLost { adapter: self.info.name.clone(), reason });
        }
        if let Some(reason) = self.uncaptured.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(Error::Gpu { context: context.to_string(), reason });
        }
        Ok(())
    }

    /// Copies `buffer[offset..offset+bytes]` out through a mapped staging buffer. Works on wasm:
    /// `poll` is a no-op there and the browser resolves the map callback; natively `poll` drives it.
    pub async fn read_buffer(&self, staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let slice = staging.slice(..bytes);
        let (tx, rx) = futures_channel::oneshot::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.drive_until_idle()?;
        rx.await
            .map_err(|_| Error::Gpu { context: "reading back results".into(), reason: "map callback dropped".into() })?
            .map_err(|e| Error::Gpu { context: "mapping the readback buffer".into(), reason: e.to_string() })?;
        let bytes_out = {
            let view = slice
                .get_mapped_range()
                .map_err(|e| Error::Gpu { context: "reading the mapped buffer".into(), reason: e.to_string() })?;
            view.to_vec()
        };
        staging.unmap();
        Ok(bytes_out)
    }

    /// Waits until the queue has finished everything submitted so far.
    pub async fn submitted_work_done(&self) -> Result<()> {
        let (tx, rx) = futures_channel::oneshot::channel();
        self.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        self.drive_until_idle()?;
        rx.await.map_err(|_| Error::Gpu { context: "waiting for the GPU".into(), reason: "the queue's completion callback was dropped".into() })
    }

    /// Natively, waits for the submitted work, which also runs the callbacks waiting on it (a
    /// buffer's map, the queue's completion); on wasm the browser resolves them.
    fn drive_until_idle(&self) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu { context: "waiting for the GPU".into(), reason: e.to_string() })?;
        Ok(())
    }

    /// Runs `f` inside a validation + out-of-memory error scope and turns a captured error into
    /// [`Error::Gpu`]. On wasm this is the only way a bad shader or binding becomes visible.
    pub async fn scoped<T>(&self, context: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        // Both popped before either is awaited: the scopes are one stack per device, and in the
        // browser another task (a precompile next to a model's build) may push its own while
        // this one waits.
        let (v, o) = (validation.pop(), oom.pop());
        let (v, o) = (v.await, o.await);
        if let Some(e) = v.or(o) {
            return Err(Error::Gpu { context: context.to_string(), reason: e.to_string() });
        }
        Ok(out)
    }

    /// `f` over every item inside one error scope: in the browser each scope's pop is a round
    /// trip to the GPU process (one per bind group cost hatnet-tiny 160 ms of its build in
    /// Chromium), so a batch pays one. When the scope caught an error, the items are made again,
    /// each in a scope of its own, so that the error names the item (`context(item)`).
    pub async fn scoped_each<I, T>(&self, items: &[I], context: impl Fn(&I) -> String, f: impl Fn(&I) -> T) -> Result<Vec<T>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let batch = self.scoped("", || items.iter().map(&f).collect::<Vec<T>>()).await;
        let Err(Error::Gpu { reason, .. }) = batch else { return batch };
        for item in items {
            self.scoped(&context(item), || f(item)).await?;
        }
        // Made one by one, every item passed: the error came from the batch as a whole (memory).
        Err(Error::Gpu { context: format!("{} and the {} others made with it", context(&items[0]), items.len() - 1), reason })
    }
}
