//! What a load costs on this device, by the path it takes: one register-tiled GEMM microkernel
//! (per invocation 8 rows × 4 columns of C, k by 1: 8 scalar A loads and one vec4 B load feed
//! 32 FMAs) compiled with A and B read from storage buffers, from sampled textures
//! (`textureLoad`, rgba32float) or from a uniform buffer, at M = N = K = 512.
//!
//! Why: llvmpipe (Mesa 22.3) turns every storage-buffer and workgroup-memory load into a loop over
//! the SIMD lanes with a bounds check and a branch per lane, while uniform-buffer loads are one
//! scalar load (uniform address) or one masked gather, and texel fetches take the sampler's
//! vectorised path. Which path is cheapest decides how the CPU-like kernels should read their
//! operands.
//!
//! ```sh
//! WGPU_BACKEND=vulkan cargo run --release --example load_paths
//! ```

use std::time::Instant;

const M: u32 = 512;
const N: u32 = 512;
const K: u32 = 512;
const WG: u32 = 64;

/// The shared body: `a(m, k)` and `b4(k, n4)` come from the variant's prelude.
const BODY: &str = r#"
@group(0) @binding(0) var<storage, read_write> c: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n4 = gid.x % (N / 4u);
    let m0 = (gid.x / (N / 4u)) * 8u;
    if (m0 >= M) {
        return;
    }
    var c0 = vec4<f32>(0.0); var c1 = vec4<f32>(0.0); var c2 = vec4<f32>(0.0); var c3 = vec4<f32>(0.0);
    var c4 = vec4<f32>(0.0); var c5 = vec4<f32>(0.0); var c6 = vec4<f32>(0.0); var c7 = vec4<f32>(0.0);
    for (var k = 0u; k < K; k++) {
        let b = b4(k, n4);
        c0 = fma(vec4<f32>(a(m0, k)), b, c0);
        c1 = fma(vec4<f32>(a(m0 + 1u, k)), b, c1);
        c2 = fma(vec4<f32>(a(m0 + 2u, k)), b, c2);
        c3 = fma(vec4<f32>(a(m0 + 3u, k)), b, c3);
        c4 = fma(vec4<f32>(a(m0 + 4u, k)), b, c4);
        c5 = fma(vec4<f32>(a(m0 + 5u, k)), b, c5);
        c6 = fma(vec4<f32>(a(m0 + 6u, k)), b, c6);
        c7 = fma(vec4<f32>(a(m0 + 7u, k)), b, c7);
    }
    let o = m0 * (N / 4u) + n4;
    c[o] = c0; c[o + N / 4u] = c1; c[o + 2u * N / 4u] = c2; c[o + 3u * N / 4u] = c3;
    c[o + 4u * N / 4u] = c4; c[o + 5u * N / 4u] = c5; c[o + 6u * N / 4u] = c6; c[o + 7u * N / 4u] = c7;
}
"#;

/// The same tile with A read as vec4 along k, as the real kernels read it (A_VEC4): per step of 4
/// k, 8 A vec4 loads and 4 B vec4 loads feed 128 FMAs. `a4(m, k4)` is A[m, 4k4 .. 4k4 + 3].
const BODY4: &str = r#"
@group(0) @binding(0) var<storage, read_write> c: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n4 = gid.x % (N / 4u);
    let m0 = (gid.x / (N / 4u)) * 8u;
    if (m0 >= M) {
        return;
    }
    var c0 = vec4<f32>(0.0); var c1 = vec4<f32>(0.0); var c2 = vec4<f32>(0.0); var c3 = vec4<f32>(0.0);
    var c4 = vec4<f32>(0.0); var c5 = vec4<f32>(0.0); var c6 = vec4<f32>(0.0); var c7 = vec4<f32>(0.0);
    for (var k4 = 0u; k4 < K / 4u; k4++) {
        let b = mat4x4<f32>(b4(4u * k4, n4), b4(4u * k4 + 1u, n4), b4(4u * k4 + 2u, n4), b4(4u * k4 + 3u, n4));
        c0 += b * a4(m0, k4);
        c1 += b * a4(m0 + 1u, k4);
        c2 += b * a4(m0 + 2u, k4);
        c3 += b * a4(m0 + 3u, k4);
        c4 += b * a4(m0 + 4u, k4);
        c5 += b * a4(m0 + 5u, k4);
        c6 += b * a4(m0 + 6u, k4);
        c7 += b * a4(m0 + 7u, k4);
    }
    let o = m0 * (N / 4u) + n4;
    c[o] = c0; c[o + N / 4u] = c1; c[o + 2u * N / 4u] = c2; c[o + 3u * N / 4u] = c3;
    c[o + 4u * N / 4u] = c4; c[o + 5u * N / 4u] = c5; c[o + 6u * N / 4u] = c6; c[o + 7u * N / 4u] = c7;
}
"#;

/// (name, prelude): how A [M, K] and B [K, N] are declared and read.
fn variants() -> Vec<(&'static str, String)> {
    let storage_a = "@group(0) @binding(1) var<storage, read> sa: array<f32>;\nfn a(m: u32, k: u32) -> f32 { return sa[m * K + k]; }\n";
    let storage_b = "@group(0) @binding(2) var<storage, read> sb: array<vec4<f32>>;\nfn b4(k: u32, n4: u32) -> vec4<f32> { return sb[k * (N / 4u) + n4]; }\n";
    // A as a texture K/4 wide (rgba = 4 consecutive k); one fetch gives 4 k of a row.
    let texture_a = "@group(0) @binding(3) var ta: texture_2d<f32>;\nfn a(m: u32, k: u32) -> f32 { return textureLoad(ta, vec2<u32>(k / 4u, m), 0)[k % 4u]; }\n";
    let texture_b = "@group(0) @binding(4) var tb: texture_2d<f32>;\nfn b4(k: u32, n4: u32) -> vec4<f32> { return textureLoad(tb, vec2<u32>(n4, k), 0); }\n";
    // A 64 KiB uniform holds 32 rows of A: rows wrap (the arithmetic, not the data, is measured).
    let uniform_a = "@group(0) @binding(5) var<uniform> ua: array<vec4<f32>, 4096>;\nfn a(m: u32, k: u32) -> f32 { return ua[((m % 32u) * K + k) / 4u][k % 4u]; }\n";
    // A 64 KiB uniform holds 32 rows of B (the same wrap).
    let uniform_b = "@group(0) @binding(6) var<uniform> ub: array<vec4<f32>, 4096>;\nfn b4(k: u32, n4: u32) -> vec4<f32> { return ub[((k % 32u) * (N / 4u) + n4)]; }\n";
    let storage_a4 = "@group(0) @binding(1) var<storage, read> sa4: array<vec4<f32>>;\nfn a4(m: u32, k4: u32) -> vec4<f32> { return sa4[m * (K / 4u) + k4]; }\n";
    let texture_a4 = "@group(0) @binding(3) var ta: texture_2d<f32>;\nfn a4(m: u32, k4: u32) -> vec4<f32> { return textureLoad(ta, vec2<u32>(k4, m), 0); }\n";
    let uniform_a4 = "@group(0) @binding(5) var<uniform> ua: array<vec4<f32>, 4096>;\nfn a4(m: u32, k4: u32) -> vec4<f32> { return ua[(m % 32u) * (K / 4u) + k4]; }\n";
    // Read-only storage textures ("images"): llvmpipe's image-load path instead of the
    // sampler's texel fetch.
    let image_a4 = "@group(0) @binding(7) var ia: texture_storage_2d<rgba32float, read>;\nfn a4(m: u32, k4: u32) -> vec4<f32> { return textureLoad(ia, vec2<u32>(k4, m)); }\n";
    let image_b = "@group(0) @binding(8) var ib: texture_storage_2d<rgba32float, read>;\nfn b4(k: u32, n4: u32) -> vec4<f32> { return textureLoad(ib, vec2<u32>(n4, k)); }\n";
    vec![
        ("vec4 A: A image, B image", format!("{image_a4}{image_b}")),
        ("vec4 A: A texture, B image", format!("{texture_a4}{image_b}")),
        ("vec4 A: A image, B texture", format!("{image_a4}{texture_b}")),
        ("vec4 A: A image, B uniform (32 rows)", format!("{image_a4}{uniform_b}")),
        ("vec4 A: A uniform (32 rows), B image", format!("{uniform_a4}{image_b}")),
        ("vec4 A: A storage, B storage", format!("{storage_a4}{storage_b}")),
        ("vec4 A: A storage, B texture", format!("{storage_a4}{texture_b}")),
        ("vec4 A: A storage, B uniform (32 rows)", format!("{storage_a4}{uniform_b}")),
        ("vec4 A: A texture, B texture", format!("{texture_a4}{texture_b}")),
        ("vec4 A: A texture, B uniform (32 rows)", format!("{texture_a4}{uniform_b}")),
        ("vec4 A: A uniform (32 rows), B texture", format!("{uniform_a4}{texture_b}")),
        ("vec4 A: A uniform (32 rows), B uniform (32 rows)", format!("{uniform_a4}{uniform_b}")),
        ("A storage, B storage (today's kernels)", format!("{storage_a}{storage_b}")),
        ("A storage, B uniform (32 rows)", format!("{storage_a}{uniform_b}")),
        ("A texture, B uniform (32 rows)", format!("{texture_a}{uniform_b}")),
        ("A storage, B texture", format!("{storage_a}{texture_b}")),
        ("A texture, B storage", format!("{texture_a}{storage_b}")),
        ("A texture, B texture", format!("{texture_a}{texture_b}")),
        ("A uniform (32 rows), B texture", format!("{uniform_a}{texture_b}")),
        ("A uniform (32 rows), B storage", format!("{uniform_a}{storage_b}")),
    ]
}

fn main() {
    let ctx = wgvit::GpuContext::new_blocking().expect("a device");
    let device = &ctx.device;
    let info = &ctx.info;
    let cpu = wgvit::time::host_cpu();
    println!("device: {} ({}, {}); host CPU: {cpu}", info.name, info.backend, info.driver_info);

    let storage = |bytes: u64, usage: wgpu::BufferUsages| {
        device.create_buffer(&wgpu::BufferDescriptor { label: None, size: bytes, usage, mapped_at_creation: false })
    };
    let fill: Vec<f32> = (0..(M * K).max(K * N)).map(|i| ((i % 7) as f32) * 0.125).collect();
    let sa = storage((M * K * 4) as u64, wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST);
    let sb = storage((K * N * 4) as u64, wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST);
    ctx.queue.write_buffer(&sa, 0, bytemuck::cast_slice(&fill[..(M * K) as usize]));
    ctx.queue.write_buffer(&sb, 0, bytemuck::cast_slice(&fill[..(K * N) as usize]));
    let ua = storage(65536, wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST);
    ctx.queue.write_buffer(&ua, 0, bytemuck::cast_slice(&fill[..16384]));
    let c = storage((M * N * 4) as u64, wgpu::BufferUsages::STORAGE);
    let texture = |w: u32, h: u32| {
        wgvit::executor::rgba32f_texture(device, &ctx.queue, None, [w, h], Some(&fill[..(w * h * 4) as usize])).create_view(&Default::default())
    };
    let ta = texture(K / 4, M);
    let tb = texture(N / 4, K);
    let image = |w: u32, h: u32| {
        let t = wgvit::executor::rgba32f_storage_texture(device, None, [w, h]);
        let layout = wgpu::TexelCopyBufferLayout { offset: 0, bytes_per_row: Some(w * 16), rows_per_image: Some(h) };
        ctx.queue.write_texture(t.as_image_copy(), bytemuck::cast_slice(&fill[..(w * h * 4) as usize]), layout, t.size());
        t.create_view(&Default::default())
    };
    let ia = image(K / 4, M);
    let ib = image(N / 4, K);

    let invocations = (M / 8) * (N / 4);
    let flops = 2.0 * M as f64 * N as f64 * K as f64;
    for (name, prelude) in variants() {
        let body = if name.starts_with("vec4 A") { BODY4 } else { BODY };
        let label = name;
        let name = name.trim_start_matches("vec4 A: ");
        let source = format!("const M: u32 = {M}u;\nconst N: u32 = {N}u;\nconst K: u32 = {K}u;\n{prelude}{body}");
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some(name), source: wgpu::ShaderSource::Wgsl(source.into()) });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let layout = pipeline.get_bind_group_layout(0);
        let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: c.as_entire_binding() }];
        for (binding, used) in [(1, name.starts_with("A storage")), (2, name.ends_with("B storage") || name.contains("B storage"))] {
            if used {
                entries.push(wgpu::BindGroupEntry { binding, resource: if binding == 1 { sa.as_entire_binding() } else { sb.as_entire_binding() } });
            }
        }
        if name.starts_with("A texture") {
            entries.push(wgpu::BindGroupEntry { binding: 3, resource: wgpu::BindingResource::TextureView(&ta) });
        }
        if name.contains("B texture") {
            entries.push(wgpu::BindGroupEntry { binding: 4, resource: wgpu::BindingResource::TextureView(&tb) });
        }
        if name.starts_with("A image") {
            entries.push(wgpu::BindGroupEntry { binding: 7, resource: wgpu::BindingResource::TextureView(&ia) });
        }
        if name.contains("B image") {
            entries.push(wgpu::BindGroupEntry { binding: 8, resource: wgpu::BindingResource::TextureView(&ib) });
        }
        if name.starts_with("A uniform") {
            entries.push(wgpu::BindGroupEntry { binding: 5, resource: ua.as_entire_binding() });
        }
        if name.contains("B uniform") {
            entries.push(wgpu::BindGroupEntry { binding: 6, resource: ua.as_entire_binding() });
        }
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &layout, entries: &entries });
        let run = || {
            let mut encoder = device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                pass.set_pipeline(&pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(invocations.div_ceil(WG), 1, 1);
            }
            ctx.queue.submit([encoder.finish()]);
            device.poll(wgpu::PollType::wait_indefinitely()).expect("poll");
        };
        run(); // compile + warm-up
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            run();
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("{label:<52} {:8.2} ms  {:6.2} GFLOP/s", best * 1e3, flops / best / 1e9);
    }
}
