//! Measurements a device's profile takes when it opens, for choices the driver and adapter names
//! do not settle.
//!
//! **Texel stores** (`shaders/store_probe.wgsl`). On lavapipe (Mesa 22.3) a texel fetch is a
//! vectorised gather and a storage-buffer load a loop over the SIMD lanes, so activations that
//! GEMMs and convs read live in textures (`Graph::with_activation_textures`). Their producers then
//! store texels through the image path, whose cost depends on the host CPU: in the GEMMs of the
//! AMD EPYC of sessions 10–14 about what a buffer store cost; on an Intel Xeon (Sapphire Rapids,
//! 2 cores) 3.2–4.3 times as much (this probe, `examples/store_paths.rs`: about 2.7 against 9.2 ns
//! a texel), and LaViT-tiny's fc1 took 15.4 ms storing its output as a texture against 8.5 ms as
//! a buffer. There activations are stored to buffers and copied into textures
//! (`ops::tuning::copied_textures`). The probe stores 2^18 texels three ways, in rounds of one run
//! each: into a buffer, into a texture, and into a buffer then copied into the texture. It calls
//! texture stores costly when the texture takes longer than the buffer and its copy
//! ([`StoreTimes::ratio`] over [`COSTLY_TEXTURE_STORE_RATIO`]): on that Xeon about 90 ms at a cold
//! start with empty caches (mostly compiling the two kernels), 40 ms once Mesa's shader cache
//! holds them.
//!
//! Until session 25 the probe compared the texture with the buffer alone and called stores costly
//! over twice a buffer's. The AMD EPYC (AVX-512) of session 25 measured 2.5 ns a texel into a
//! buffer and 3.8 ns into a texture, 1.5 times: cheap by the old rule, yet the copies took the
//! tiny models to 0.89–0.99 of their time there (`tools/bench_pair.py`,
//! `WGVIT_TEXTURE_STORES=costly` against `cheap`). A buffer store and its copy took 2.9–3.4 ns.

#[cfg(not(target_arch = "wasm32"))]
use crate::kernels::{params, Kernel, Uniform};

/// `WGVIT_TEXTURE_STORES=costly|cheap` skips the probe (reproducible kernel choices, tests).
pub const TEXTURE_STORES_ENV: &str = "WGVIT_TEXTURE_STORES";

/// Timed rounds of the probe.
pub const ROUNDS: usize = 7;

/// Texture stores are costly when they take more than this many times a buffer store and its
/// copy into the texture: whichever way the probe finds faster is the way activations go.
pub const COSTLY_TEXTURE_STORE_RATIO: f64 = 1.0;

/// Whether texel stores into a storage texture are costly on this device: what
/// [`TEXTURE_STORES_ENV`] says, else measured ([`texel_store_seconds`]; never in the browser,
/// whose device keeps its activations in buffers anyway).
/// A probe the device refuses (an error in its scope) counts as cheap stores, with a warning:
/// the choice is about speed, never about results.
pub async fn texture_stores_costly(device: &wgpu::Device, queue: &wgpu::Queue) -> crate::Result<bool> {
    if let Some(costly) = texture_stores_from_env()? {
        return Ok(costly);
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let memory = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let t = texel_store_seconds(device, queue);
        if let Some(e) = memory.pop().await.or(validation.pop().await) {
            log::warn!("the texel-store probe failed ({e}); texture stores taken as cheap");
            return Ok(false);
        }
        log::info!(
            "texel stores: {:.2} ns into a buffer, {:.2} ns into a texture, {:.2} ns into a buffer and copied; texture / copied {:.2}",
            t.buffer * 1e9,
            t.texture * 1e9,
            t.copied * 1e9,
            t.ratio
        );
        Ok(t.ratio > COSTLY_TEXTURE_STORE_RATIO)
    }
    #[cfg(target_arch = "wasm32")]
    {
        let _ = (device, queue);
        Ok(false)
    }
}

/// What [`TEXTURE_STORES_ENV`] says, if set: `Some(true)` for `costly`, `Some(false)` for `cheap`.
fn texture_stores_from_env() -> crate::Result<Option<bool>> {
    #[cfg(not(target_arch = "wasm32"))]
    if let Some(v) = std::env::var_os(TEXTURE_STORES_ENV) {
        return parse_texture_stores(&v.to_string_lossy());
    }
    Ok(None)
}

#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
fn parse_texture_stores(value: &str) -> crate::Result<Option<bool>> {
    match value.trim() {
        "" => Ok(None),
        "costly" => Ok(Some(true)),
        "cheap" => Ok(Some(false)),
        other => Err(crate::Error::Invalid(format!("{TEXTURE_STORES_ENV}={other:?}: expected `costly` or `cheap` (or unset: measure)"))),
    }
}

/// What a texel stored into a storage buffer and into a storage texture costs (one untimed run
/// each, then [`ROUNDS`] rounds of one run each).
#[cfg(not(target_arch = "wasm32"))]
pub fn texel_store_seconds(device: &wgpu::Device, queue: &wgpu::Queue) -> StoreTimes {
    const TEXELS: u32 = 1 << 18;
    const WG: u32 = 64;
    const PER_INVOCATION: u32 = 16;
    let width = crate::graph::FLAT_TEXTURE_WIDTH as u32;
    let params = Uniform::of(&params::StoreProbe { texels: TEXELS, ..Default::default() });
    let params_buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("wgvit store probe params"),
        size: 4 * params.words.len() as u64,
        usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    queue.write_buffer(&params_buffer, 0, bytemuck::cast_slice(&params.words));
    let buffer = device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("wgvit store probe"),
        size: TEXELS as u64 * 16,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let texture = device.create_texture(&wgpu::TextureDescriptor {
        label: Some("wgvit store probe"),
        size: wgpu::Extent3d { width, height: TEXELS / width, depth_or_array_layers: 1 },
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Float,
        usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    let view = texture.create_view(&Default::default());
    // Both variants compiled, then timed in alternation (ROUNDS after one untimed round).
    let dispatch = |out_texture: bool| {
        let source = Kernel::StoreProbe.source_for(&[("OUT_TEXTURE", out_texture as u32), ("WG", WG)]);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some("store_probe"), source: wgpu::ShaderSource::Wgsl(source.into()) });
        let constants = [("OUT_TEXTURE", out_texture as u32 as f64), ("WG", WG as f64)];
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("store_probe"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions { constants: &constants, zero_initialize_workgroup_memory: false },
            cache: None,
        });
        let target = if out_texture { wgpu::BindingResource::TextureView(&view) } else { buffer.as_entire_binding() };
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("store_probe"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &[wgpu::BindGroupEntry { binding: 0, resource: params_buffer.as_entire_binding() }, wgpu::BindGroupEntry { binding: 1, resource: target }],
        });
        (pipeline, bind_group)
    };
    // The buffer's texels copied into the texture after the stores, as the executor copies an
    // activation.
    let run = |(pipeline, bind_group): &(wgpu::ComputePipeline, wgpu::BindGroup), copy: bool| {
        let start = std::time::Instant::now();
        let mut encoder = device.create_command_encoder(&Default::default());
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, bind_group, &[]);
            pass.dispatch_workgroups((TEXELS / PER_INVOCATION).div_ceil(WG), 1, 1);
        }
        if copy {
            super::encode_flat_texture_copy(&mut encoder, &buffer, &texture, TEXELS);
        }
        queue.submit([encoder.finish()]);
        let _ = device.poll(wgpu::PollType::wait_indefinitely());
        start.elapsed().as_secs_f64()
    };
    let (buffer_stores, texture_stores) = (dispatch(false), dispatch(true));
    // The three ways an activation can reach its texture readers' bindings: 0 stored into a
    // buffer (the cost the other two are told apart from), 1 stored into the texture, 2 stored
    // into a buffer and copied.
    let run_way = |way: usize| match way {
        0 => run(&buffer_stores, false),
        1 => run(&texture_stores, false),
        _ => run(&buffer_stores, true),
    };
    let mut best = [f64::MAX; 3];
    let mut ratios = Vec::with_capacity(ROUNDS);
    for round in 0..=ROUNDS {
        // The order rotates from round to round, so no way always follows the same one.
        let mut times = [0.0; 3];
        for i in 0..3 {
            let way = (round + i) % 3;
            times[way] = run_way(way);
        }
        if round > 0 {
            for (b, t) in best.iter_mut().zip(times) {
                *b = b.min(t);
            }
            ratios.push(times[1] / times[2]);
        }
    }
    ratios.sort_by(f64::total_cmp);
    let ratio = ratios[ROUNDS / 2].max(best[1] / best[2]);
    let per_texel = |t: f64| t / TEXELS as f64;
    StoreTimes { buffer: per_texel(best[0]), texture: per_texel(best[1]), copied: per_texel(best[2]), ratio }
}

/// [`texel_store_seconds`]' result.
#[derive(Clone, Copy, Debug)]
pub struct StoreTimes {
    /// Seconds per texel stored into a storage buffer, into a storage texture, and into a buffer
    /// then copied into the texture (the best run of each).
    pub buffer: f64,
    pub texture: f64,
    pub copied: f64,
    /// How many times a buffer store and its copy a texture store costs: the larger of two
    /// estimates, each robust to one way a busy host slows the short runs and hides the
    /// difference (measured on 2 cores, session 18, against the buffer alone). The median over
    /// the rounds of texture / copied time, a round's runs back to back: Mesa writing its shader
    /// cache after a cold compile slowed every run by up to 1.9x, so the best runs were slow too.
    /// And the best texture run over the best copied run: another process busy on one core left
    /// the medians at 2.0, the best runs at 3.9.
    pub ratio: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_names_costly_or_cheap_stores_or_nothing() {
        assert_eq!(parse_texture_stores("costly").unwrap(), Some(true));
        assert_eq!(parse_texture_stores(" cheap\n").unwrap(), Some(false));
        assert_eq!(parse_texture_stores("").unwrap(), None);
        let err = parse_texture_stores("fast").unwrap_err().to_string();
        assert!(err.contains("WGVIT_TEXTURE_STORES") && err.contains("\"fast\"") && err.contains("costly"), "{err}");
    }
}
