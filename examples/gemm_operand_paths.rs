//! What the operands' path costs a small GEMM: a 4 × 4-tiled `a · bᵀ` microkernel (k by 4: four
//! vec4 loads of a rows and four of b rows feed 64 FMAs, like the matmul's small tile) with a and b
//! each read from a storage buffer or an rgba32float texture (`textureLoad`), at the bundled
//! models' shapes, timed warm (`REPS` dispatches per submission; `WGX`/`WGY` the workgroup).
//! Why: on lavapipe and SwiftShader a storage load is a loop over the SIMD lanes, a texel fetch a
//! vectorised gather; this picks `ops::tuning::matmul_constant_textures`.
//!
//! ```sh
//! WGPU_BACKEND=vulkan LP_NUM_THREADS=0 cargo run --release --example gemm_operand_paths
//! # SwiftShader, the browser's software WebGPU device, natively through Chromium's Vulkan ICD:
//! VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json WGPU_BACKEND=vulkan cargo run --release --example gemm_operand_paths
//! ```
use std::time::Instant;

#[path = "common/mod.rs"]
mod common;

const BODY: &str = r#"
@group(0) @binding(0) var<storage, read_write> c: array<vec4<f32>>;
@compute @workgroup_size(WGX, WGY)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n0 = gid.x * 4u;
    let m0 = gid.y * 4u;
    if (n0 >= N || m0 >= M) { return; }
    var c0 = vec4<f32>(0.0); var c1 = vec4<f32>(0.0); var c2 = vec4<f32>(0.0); var c3 = vec4<f32>(0.0);
    for (var k = 0u; k < K; k += 4u) {
        let a0 = a4(m0, k); let a1 = a4(m0 + 1u, k); let a2 = a4(m0 + 2u, k); let a3 = a4(m0 + 3u, k);
        let bt = transpose(mat4x4<f32>(b4(n0, k), b4(n0 + 1u, k), b4(n0 + 2u, k), b4(n0 + 3u, k)));
        c0 += a0.x * bt[0] + a0.y * bt[1] + a0.z * bt[2] + a0.w * bt[3];
        c1 += a1.x * bt[0] + a1.y * bt[1] + a1.z * bt[2] + a1.w * bt[3];
        c2 += a2.x * bt[0] + a2.y * bt[1] + a2.z * bt[2] + a2.w * bt[3];
        c3 += a3.x * bt[0] + a3.y * bt[1] + a3.z * bt[2] + a3.w * bt[3];
    }
    let o = m0 * (N / 4u) + n0 / 4u;
    c[o] = c0; c[o + N / 4u] = c1; c[o + 2u * N / 4u] = c2; c[o + 3u * N / 4u] = c3;
}
"#;

fn main() {
    let ctx = wgvit::GpuContext::new_blocking().expect("a device");
    let device = &ctx.device;
    let cpu = wgvit::time::host_cpu();
    println!("device: {}; host CPU: {cpu}", ctx.info.name);
    let wgx: u32 = std::env::var("WGX").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    let wgy: u32 = std::env::var("WGY").ok().and_then(|s| s.parse().ok()).unwrap_or(8);
    let reps: u32 = std::env::var("REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    for (m, k, n) in [(256u32, 16u32, 128u32), (256, 128, 16), (4, 128, 512), (64, 64, 256), (512, 512, 512)] {
        let fill: Vec<f32> = (0..(m * k).max(k * n)).map(|i| ((i % 7) as f32) * 0.125).collect();
        let buf = |len: u32| {
            let b = device.create_buffer(&wgpu::BufferDescriptor { label: None, size: (len * 4) as u64, usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
            ctx.queue.write_buffer(&b, 0, bytemuck::cast_slice(&fill[..len as usize]));
            b
        };
        let sa = buf(m * k);
        let sb = buf(n * k);
        let c = device.create_buffer(&wgpu::BufferDescriptor { label: None, size: (m * n * 4) as u64, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
        let texture = |w: u32, h: u32| {
            wgvit::executor::rgba32f_texture(device, &ctx.queue, None, [w, h], Some(&fill[..(w * h * 4) as usize])).create_view(&Default::default())
        };
        let ta = texture(k / 4, m);
        let tb = texture(k / 4, n);
        let sa_src = "@group(0) @binding(1) var<storage, read> sa: array<vec4<f32>>;\nfn a4(m: u32, k: u32) -> vec4<f32> { return sa[(m * K + k) / 4u]; }\n";
        let sb_src = "@group(0) @binding(2) var<storage, read> sb: array<vec4<f32>>;\nfn b4(n: u32, k: u32) -> vec4<f32> { return sb[(n * K + k) / 4u]; }\n";
        let ta_src = "@group(0) @binding(3) var ta: texture_2d<f32>;\nfn a4(m: u32, k: u32) -> vec4<f32> { return textureLoad(ta, vec2<u32>(k / 4u, m), 0); }\n";
        let tb_src = "@group(0) @binding(4) var tb: texture_2d<f32>;\nfn b4(n: u32, k: u32) -> vec4<f32> { return textureLoad(tb, vec2<u32>(k / 4u, n), 0); }\n";
        let flops = 2.0 * (m * n * k) as f64;
        for (name, a_tex, b_tex) in [("A buf B buf", false, false), ("A buf B tex", false, true), ("A tex B buf", true, false), ("A tex B tex", true, true)] {
            let src = format!("const WGX: u32 = {wgx}u;\nconst WGY: u32 = {wgy}u;\nconst M: u32 = {m}u;\nconst N: u32 = {n}u;\nconst K: u32 = {k}u;\n{}{}{BODY}", if a_tex { ta_src } else { sa_src }, if b_tex { tb_src } else { sb_src });
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: None, source: wgpu::ShaderSource::Wgsl(src.into()) });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor { label: None, layout: None, module: &module, entry_point: Some("main"), compilation_options: Default::default(), cache: None });
            let mut entries = vec![wgpu::BindGroupEntry { binding: 0, resource: c.as_entire_binding() }];
            if a_tex { entries.push(wgpu::BindGroupEntry { binding: 3, resource: wgpu::BindingResource::TextureView(&ta) }); } else { entries.push(wgpu::BindGroupEntry { binding: 1, resource: sa.as_entire_binding() }); }
            if b_tex { entries.push(wgpu::BindGroupEntry { binding: 4, resource: wgpu::BindingResource::TextureView(&tb) }); } else { entries.push(wgpu::BindGroupEntry { binding: 2, resource: sb.as_entire_binding() }); }
            let bg = device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &pipeline.get_bind_group_layout(0), entries: &entries });
            let run = |count: u32| common::dispatch_and_wait(&ctx, &pipeline, &bg, ((n / 4).div_ceil(wgx), (m / 4).div_ceil(wgy)), count);
            run(1);
            let mut best = f64::MAX;
            for _ in 0..5 { let t = Instant::now(); run(reps); best = best.min(t.elapsed().as_secs_f64() / reps as f64); }
            println!("M{m:4} K{k:4} N{n:4}  {name}  {:8.1} us  {:6.2} GFLOP/s", best * 1e6, flops / best / 1e9);
        }
    }
}
