//! What bounds the 8 × 8-per-invocation GEMM on a software device: its A loads, its B loads or
//! its arithmetic. C[M, N] = A[M, K] · B[K, N], A from an rgba32float texture (as the matmul's
//! constant weights), B from a storage buffer (as its activations), k by 4: eight A texels and
//! eight B vec4s feed 64 vec4 FMAs, like `shaders/lib/gemm_tile.wgsl`'s 8 × 8 tile. Variants:
//! - `vec4`: each invocation's 8 columns contiguous, B read as two vec4s per k (the real kernel);
//! - `atomic`: the columns of a group of 4 invocations interleaved (invocation i of the group takes
//!   columns i, i + 4, ...) and B read with `atomicLoad`: SwiftShader then tests at run time whether
//!   the 4 lanes' addresses are equal or consecutive and loads them with one instruction, where a
//!   plain load of a computed address is a masked load per lane;
//! - `scalar`: the same interleaved columns with plain loads;
//! - `bufA`, `atomicA`: A from a storage buffer instead of the texture, with vec4 loads or with
//!   `atomicLoad` (the 4 lanes of a group read the same A rows: equal addresses);
//! - `noA`, `noB`, `none`: A, B or both replaced by values computed in registers (wrong results):
//!   the time without those loads.
//!
//! ```sh
//! VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json WGPU_BACKEND=vulkan cargo run --release --example gemm_load_costs
//! # SHAPES="48,384,3136;240,960,192" (M,K,N: M a multiple of 8, K of 4, N of 64), VARIANTS="vec4,noB"
//! ```
use std::time::Instant;

#[path = "common/mod.rs"]
mod common;

fn kernel(variant: &str, m: u32, n: u32, k: u32) -> String {
    let mut s = String::new();
    s += &format!("const M: u32 = {m}u;\nconst N: u32 = {n}u;\nconst K: u32 = {k}u;\n");
    s += "@group(0) @binding(0) var<storage, read_write> c: array<f32>;\n";
    s += "@group(0) @binding(1) var ta: texture_2d<f32>;\n";
    if variant == "atomicA" {
        s += "@group(0) @binding(3) var<storage, read_write> au: array<atomic<u32>>;\n";
    } else if variant == "bufA" {
        s += "@group(0) @binding(3) var<storage, read> ab: array<vec4<f32>>;\n";
    }
    match variant {
        "vec4" => s += "@group(0) @binding(2) var<storage, read> bv: array<vec4<f32>>;\n",
        "atomic" => s += "@group(0) @binding(2) var<storage, read_write> bu: array<atomic<u32>>;\n",
        "noB" | "noA" | "none" | "atomicA" | "bufA" => s += "@group(0) @binding(2) var<storage, read> bv: array<vec4<f32>>;\n",
        _ => s += "@group(0) @binding(2) var<storage, read> bs: array<f32>;\n",
    }
    s += "@compute @workgroup_size(64)\nfn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {\n";
    s += "  let lane_n = lid % 8u; let lane_m = lid / 8u;\n";
    s += "  let m0 = (wid.y * 8u + lane_m) * 8u;\n";
    s += "  let nb = wid.x * 64u;\n";
    // column of accumulator (r, j): contiguous: nb + lane_n*8 + j ; interleaved: nb + (lane_n/4)*32 + lane_n%4 + 4j
    let contiguous = variant != "atomic" && variant != "scalar";
    if contiguous {
        s += "  let cb = nb + lane_n * 8u; let cs = 1u;\n";
    } else {
        s += "  let cb = nb + (lane_n / 4u) * 32u + lane_n % 4u; let cs = 4u;\n";
    }
    s += "  if (m0 >= M || nb >= N) { return; }\n";
    if variant != "atomic" && variant != "scalar" {
        s += "  let keep = textureLoad(ta, vec2<u32>(0u, m0), 0).x + bv[lid].y;\n";
    } else {
        s += "  let keep = textureLoad(ta, vec2<u32>(0u, m0), 0).x;\n";
    }
    // `keep` binds what a variant does not read (finite values: 0 exactly).
    for r in 0..8 { s += &format!("  var acc{r}0 = vec4<f32>(keep * 0.0); var acc{r}1 = vec4<f32>(0.0);\n"); }
    s += "  for (var k = 0u; k < K; k += 4u) {\n";
    if variant == "atomicA" {
        for r in 0..8 {
            let ld = |c: u32| format!("bitcast<f32>(atomicLoad(&au[(m0 + {r}u) * K + k + {c}u]))");
            s += &format!("    let a{r} = vec4<f32>({}, {}, {}, {});\n", ld(0), ld(1), ld(2), ld(3));
        }
    } else if variant == "bufA" {
        for r in 0..8 { s += &format!("    let a{r} = ab[((m0 + {r}u) * K + k) / 4u];\n"); }
    } else if variant == "noA" || variant == "none" {
        for r in 0..8 { s += &format!("    let a{r} = vec4<f32>(f32(k + {r}u), 0.5, 0.25, f32(k));\n"); }
    } else {
        for r in 0..8 { s += &format!("    let a{r} = textureLoad(ta, vec2<u32>(k / 4u, m0 + {r}u), 0);\n"); }
    }
    for kk in 0..4 {
        let comp = ["x", "y", "z", "w"][kk];
        match variant {
            "noB" | "none" => {
                s += &format!("    let b{kk}0 = vec4<f32>(f32(k), 1.0, 2.0, f32(cb)); let b{kk}1 = vec4<f32>(f32(k + cb), 1.5, 2.5, 3.0);\n");
            }
            "vec4" | "noA" | "atomicA" | "bufA" => {
                s += &format!("    let b{kk}0 = bv[((k + {kk}u) * N + cb) / 4u]; let b{kk}1 = bv[((k + {kk}u) * N + cb) / 4u + 1u];\n");
            }
            "atomic" => {
                let ld = |j: u32| format!("bitcast<f32>(atomicLoad(&bu[(k + {kk}u) * N + cb + {}u]))", 4 * j);
                s += &format!("    let b{kk}0 = vec4<f32>({}, {}, {}, {});\n", ld(0), ld(1), ld(2), ld(3));
                s += &format!("    let b{kk}1 = vec4<f32>({}, {}, {}, {});\n", ld(4), ld(5), ld(6), ld(7));
            }
            _ => {
                let ld = |j: u32| format!("bs[(k + {kk}u) * N + cb + {}u]", 4 * j);
                s += &format!("    let b{kk}0 = vec4<f32>({}, {}, {}, {});\n", ld(0), ld(1), ld(2), ld(3));
                s += &format!("    let b{kk}1 = vec4<f32>({}, {}, {}, {});\n", ld(4), ld(5), ld(6), ld(7));
            }
        }
        for r in 0..8 { s += &format!("    acc{r}0 += a{r}.{comp} * b{kk}0; acc{r}1 += a{r}.{comp} * b{kk}1;\n"); }
    }
    s += "  }\n";
    for r in 0..8 {
        for j in 0..8 {
            let (h, e) = (j / 4, ["x", "y", "z", "w"][j % 4]);
            s += &format!("  c[(m0 + {r}u) * N + cb + {j}u * cs] = acc{r}{h}.{e};\n");
        }
    }
    s += "}\n";
    s
}

fn main() {
    let ctx = wgvit::GpuContext::new_blocking().expect("a device");
    let device = &ctx.device;
    println!("device: {}; host CPU: {}", ctx.info.name, wgvit::time::host_cpu());
    let reps: u32 = 10;
    let shapes: Vec<(u32, u32, u32)> = std::env::var("SHAPES").ok().map(|s| s.split(';').map(|c| { let v: Vec<u32> = c.split(',').map(|x| x.parse().unwrap()).collect(); (v[0], v[1], v[2]) }).collect()).unwrap_or(vec![(48, 384, 3136), (384, 48, 3136), (240, 960, 192)]);
    for (m, k, n) in shapes {
        let fill: Vec<f32> = (0..(m * k).max(k * n)).map(|i| ((i % 7) as f32) * 0.125 - 0.3).collect();
        let b = device.create_buffer(&wgpu::BufferDescriptor { label: None, size: (k * n * 4) as u64, usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
        ctx.queue.write_buffer(&b, 0, bytemuck::cast_slice(&fill[..(k * n) as usize]));
        let c = device.create_buffer(&wgpu::BufferDescriptor { label: None, size: (m * n * 4) as u64, usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC, mapped_at_creation: false });
        let a_buf = device.create_buffer(&wgpu::BufferDescriptor { label: None, size: (m * k * 4) as u64, usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
        ctx.queue.write_buffer(&a_buf, 0, bytemuck::cast_slice(&fill[..(m * k) as usize]));
        let ta = wgvit::executor::rgba32f_texture(device, &ctx.queue, None, [k / 4, m], Some(&fill[..(m * k) as usize])).create_view(&Default::default());
        let flops = 2.0 * (m as f64) * (n as f64) * (k as f64);
        let mut reference: Option<Vec<f32>> = None;
        for variant in std::env::var("VARIANTS").unwrap_or("vec4,atomic,scalar,bufA,atomicA,noA,noB,none".into()).split(',') {
            let src = kernel(variant, m, n, k);
            let t0 = Instant::now();
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor { label: None, source: wgpu::ShaderSource::Wgsl(src.into()) });
            let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor { label: None, layout: None, module: &module, entry_point: Some("main"), compilation_options: Default::default(), cache: None });
            let create = t0.elapsed().as_secs_f64();
            let mut entries = vec![
                wgpu::BindGroupEntry { binding: 0, resource: c.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: wgpu::BindingResource::TextureView(&ta) },
                wgpu::BindGroupEntry { binding: 2, resource: b.as_entire_binding() },
            ];
            if variant == "atomicA" || variant == "bufA" {
                entries.push(wgpu::BindGroupEntry { binding: 3, resource: a_buf.as_entire_binding() });
            }
            let bg = device.create_bind_group(&wgpu::BindGroupDescriptor { label: None, layout: &pipeline.get_bind_group_layout(0), entries: &entries });
            let run = |count: u32| common::dispatch_and_wait(&ctx, &pipeline, &bg, (n / 64, m.div_ceil(64)), count);
            run(1);
            let out = readback(&ctx, &c, (m * n) as usize);
            let ok = match &reference { None => { reference = Some(out); "ref".to_string() } Some(r) => format!("maxdiff {:.1e}", r.iter().zip(&out).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max)) };
            let mut best = f64::MAX;
            for _ in 0..5 { let t = Instant::now(); run(reps); best = best.min(t.elapsed().as_secs_f64() / reps as f64); }
            println!("M{m:5} K{k:5} N{n:5} {variant:7} create {:5.0} ms  {:8.2} ms  {:6.2} GFLOP/s  {ok}", create * 1e3, best * 1e3, flops / best / 1e9);
        }
    }
}

fn readback(ctx: &wgvit::GpuContext, src: &wgpu::Buffer, len: usize) -> Vec<f32> {
    let device = &ctx.device;
    let staging = device.create_buffer(&wgpu::BufferDescriptor { label: None, size: (len * 4) as u64, usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST, mapped_at_creation: false });
    let mut enc = device.create_command_encoder(&Default::default());
    enc.copy_buffer_to_buffer(src, 0, &staging, 0, (len * 4) as u64);
    ctx.queue.submit([enc.finish()]);
    staging.slice(..).map_async(wgpu::MapMode::Read, |_| {});
    device.poll(wgpu::PollType::wait_indefinitely()).expect("poll");
    let v = bytemuck::cast_slice(&staging.slice(..).get_mapped_range().unwrap()).to_vec();
    v
}
