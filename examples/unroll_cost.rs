//! What a constant-trip loop costs a software device that does not unroll it: the same work (a
//! 9-tap weight row applied 16 times per invocation) as a loop over a private array, a loop
//! without the array, written out, and written out over the array with constant indices, timed
//! warm. SwiftShader (the browser's software WebGPU device, Subzero) runs the looped forms 4-10×
//! slower than the written-out ones (AMD EPYC: 41.9 and 21.2 ms against 4.2 and 4.7 ms). lavapipe
//! unrolls such loops itself, and here ran the looped forms faster (3.7, 2.8 ms against 6.9,
//! 7.1 ms: LLVM schedules this toy's loop better); the kernels that now write their loops out
//! (`#for` in `src/kernels/wgsl.rs`) measured within noise on lavapipe.
//!
//! ```sh
//! VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json WGPU_BACKEND=vulkan cargo run --release --example unroll_cost
//! WGPU_BACKEND=vulkan LP_NUM_THREADS=0 cargo run --release --example unroll_cost
//! ```
use std::time::Instant;

/// What every variant shares: the bindings and the invocation's element; each variant computes
/// `acc` from `w`, then the epilogue stores it.
const PRELUDE: &str = r#"
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * 65535u * 64u;
    if (i >= N) { return; }
"#;
const EPILOGUE: &str = r#"
    y[i] = acc;
}
"#;
const LOOPED: &str = r#"
    var w: array<f32, 9>;
    for (var t = 0u; t < 9u; t++) { w[t] = x[(i + t * 7u) % N]; }
    var acc = 0.0;
    for (var r = 0u; r < 16u; r++) {
        for (var t = 0u; t < 9u; t++) { acc = fma(w[t], f32(r + t), acc); }
    }
"#;
const UNROLLED: &str = r#"
    let w0 = x[(i + 0u) % N]; let w1 = x[(i + 7u) % N]; let w2 = x[(i + 14u) % N];
    let w3 = x[(i + 21u) % N]; let w4 = x[(i + 28u) % N]; let w5 = x[(i + 35u) % N];
    let w6 = x[(i + 42u) % N]; let w7 = x[(i + 49u) % N]; let w8 = x[(i + 56u) % N];
    var acc = 0.0;
    for (var r = 0u; r < 16u; r++) {
        acc = fma(w0, f32(r + 0u), acc); acc = fma(w1, f32(r + 1u), acc); acc = fma(w2, f32(r + 2u), acc);
        acc = fma(w3, f32(r + 3u), acc); acc = fma(w4, f32(r + 4u), acc); acc = fma(w5, f32(r + 5u), acc);
        acc = fma(w6, f32(r + 6u), acc); acc = fma(w7, f32(r + 7u), acc); acc = fma(w8, f32(r + 8u), acc);
    }
"#;

const LOOP_NOARRAY: &str = r#"
    let w0 = x[(i + 0u) % N];
    var acc = 0.0;
    for (var r = 0u; r < 16u; r++) {
        for (var t = 0u; t < 9u; t++) { acc = fma(w0 + f32(t), f32(r + t), acc); }
    }
"#;
const CONST_INDEX: &str = r#"
    var w: array<f32, 9>;
    w[0] = x[(i + 0u) % N]; w[1] = x[(i + 7u) % N]; w[2] = x[(i + 14u) % N];
    w[3] = x[(i + 21u) % N]; w[4] = x[(i + 28u) % N]; w[5] = x[(i + 35u) % N];
    w[6] = x[(i + 42u) % N]; w[7] = x[(i + 49u) % N]; w[8] = x[(i + 56u) % N];
    var acc = 0.0;
    for (var r = 0u; r < 16u; r++) {
        acc = fma(w[0], f32(r + 0u), acc); acc = fma(w[1], f32(r + 1u), acc); acc = fma(w[2], f32(r + 2u), acc);
        acc = fma(w[3], f32(r + 3u), acc); acc = fma(w[4], f32(r + 4u), acc); acc = fma(w[5], f32(r + 5u), acc);
        acc = fma(w[6], f32(r + 6u), acc); acc = fma(w[7], f32(r + 7u), acc); acc = fma(w[8], f32(r + 8u), acc);
    }
"#;
fn main() {
    let ctx = wgvit::GpuContext::new_blocking().expect("a device");
    let device = &ctx.device;
    let cpu = wgvit::time::host_cpu();
    println!("device: {}; host CPU: {cpu}", ctx.info.name);
    let n: u32 = 65536;
    let fill: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
    let xb = device.create_buffer(&wgpu::BufferDescriptor { label: None, size: (n * 4) as u64, usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
    ctx.queue.write_buffer(&xb, 0, bytemuck::cast_slice(&fill));
    let yb = device.create_buffer(&wgpu::BufferDescriptor { label: None, size: (n * 4) as u64, usage: wgpu::BufferUsages::STORAGE, mapped_at_creation: false });
    for (name, body) in [("loop over an array", LOOPED), ("loop, no array", LOOP_NOARRAY), ("written out", UNROLLED), ("written out, array", CONST_INDEX)] {
        let src = format!("const N: u32 = {n}u;\n{PRELUDE}{body}{EPILOGUE}");
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: None, source: wgpu::ShaderSource::Wgsl(src.into()) });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor { label: None, layout: None, module: &module, entry_point: Some("main"), compilation_options: Default::default(), cache: None });
        let bg = device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &pipeline.get_bind_group_layout(0), entries: &[wgpu::BindGroupEntry { binding: 0, resource: xb.as_entire_binding() }, wgpu::BindGroupEntry { binding: 1, resource: yb.as_entire_binding() }] });
        let run = |count: u32| {
            let mut enc = device.create_command_encoder(&Default::default());
            { let mut pass = enc.begin_compute_pass(&Default::default()); pass.set_pipeline(&pipeline); pass.set_bind_group(0, &bg, &[]); for _ in 0..count { pass.dispatch_workgroups(n / 64, 1, 1); } }
            ctx.queue.submit([enc.finish()]);
            device.poll(wgpu::PollType::wait_indefinitely()).expect("poll");
        };
        run(1);
        let mut best = f64::MAX;
        for _ in 0..5 { let t = Instant::now(); run(10); best = best.min(t.elapsed().as_secs_f64() / 10.0); }
        println!("{name:20} {:8.1} us", best * 1e6);
    }
}
