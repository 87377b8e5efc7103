//! `wgvit bench-ops`: kernel throughput against the device's measured FMA peak.
//!
//! Method: every case is a [`Graph`] whose operands are constants (uploaded once) and which
//! repeats its op `REPS` times with no outputs (the planner lets the repeats share one buffer),
//! so a run is one submit of `REPS` dispatches and no readback. The graph is compiled once with
//! [`Engine::compile`]; one warm-up run, then `runs` timed runs (wall clock). The best run sets
//! the reported rate (the machine may be shared; the best run is the least disturbed one), the
//! median is printed next to it. FLOPs come from the graph's nodes (a multiply-add counts 2);
//! GB/s counts each distinct tensor a node binds once (the least traffic the op can have).
//!
//! The peak is `shaders/fma_peak.wgsl`: independent vec4 FMA chains with no memory traffic,
//! enough workgroups for every core, measured before and after the cases; the table, printed
//! at the end, uses the higher of the two (on a shared CPU a loaded moment depresses the peak
//! more than the kernels and would inflate the ratios). "% peak" is the fraction of the
//! device's arithmetic a kernel turns into useful FLOPs; memory-bound ops (softmax, depthwise
//! conv) are better read in GB/s.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use wgvit::error::Result;
use wgvit::executor::ConstantCache;
use wgvit::graph::{Graph, Node, TensorId};
use wgvit::kernels::{params, Kernel, PipelineKey, Uniform};
use wgvit::ops::attention::attention;
use wgvit::ops::conv2d::{conv2d, Conv2dParams};
use wgvit::ops::matmul::{matmul_tiled, BiasAxis, Epilogue, MatmulLoads, MatmulTiling};
use wgvit::ops::softmax::softmax;
use wgvit::ops::{grid, tuning, Activation};
use wgvit::tensor::Rng;
use wgvit::{Engine, Weights};

/// Op repeats per graph: amortises the submit and the wait over several dispatches.
const REPS: usize = 3;

struct Timing {
    /// Seconds per op, best and median run.
    best: f64,
    median: f64,
    flops: u64,
    bytes: u64,
}

fn time_graph(engine: &Engine, g: &Graph, reps: usize, runs: usize) -> Result<Timing> {
    let exe = pollster::block_on(engine.compile(g, &ConstantCache::new()))?;
    pollster::block_on(exe.run(&[]))?; // warm-up: first-use costs (JIT, page faults)
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        pollster::block_on(exe.run(&[]))?;
        times.push(t.elapsed().as_secs_f64() / reps as f64);
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let node = &g.nodes[g.nodes.len() - 1];
    let storages: BTreeSet<usize> = node.reads.iter().chain(&node.writes).map(|t| g.tensors[t.0].storage).collect();
    let bytes = storages.iter().map(|&s| g.storages[s].numel as u64 * 4).sum();
    Ok(Timing { best: times[0], median: times[times.len() / 2], flops: g.total_flops() / reps as u64, bytes })
}

fn constant(g: &mut Graph, rng: &mut Rng, name: &str, shape: &[usize]) -> Result<TensorId> {
    let n = shape.iter().product();
    g.constant(name, shape, Arc::new(rng.vec(n, -1.0, 1.0)))
}

/// The FMA peak in FLOP/s and the chain count that reached it: for 2, 4 and 8 independent
/// chains per invocation (`fma_peak.wgsl`), the best of `runs` (plus warm-up) dispatches, and
/// the best of the three.
fn fma_peak(engine: &Engine, runs: usize) -> Result<(f64, u32)> {
    const WG: u32 = 64;
    const ITERS: u32 = 4096;
    let workgroups = 256usize;
    let mut best = (0.0f64, 0u32);
    for chains in [2u32, 4, 8] {
        let mut g = Graph::for_profile(engine.info().profile.clone());
        let seed = g.constant("seed", &[4], Arc::new(vec![0.5, 0.25, 0.125, 1.0]))?;
        let sink = g.activation(&[workgroups * WG as usize]);
        g.push(Node {
            label: "fma_peak".into(),
            key: PipelineKey::new(Kernel::FmaPeak).with("WG", WG).with("CHAINS", chains),
            params: Uniform::of(&params::FmaPeak { iters: ITERS, ..Default::default() }),
            reads: vec![seed],
            writes: vec![sink],
            workgroups: grid(workgroups),
            // 8 vec4 FMAs per iteration = 32 FMAs = 64 FLOP per invocation.
            flops: workgroups as u64 * WG as u64 * ITERS as u64 * 64,
        });
        let t = time_graph(engine, &g, 1, runs.max(5))?;
        let rate = t.flops as f64 / t.best;
        if rate > best.0 {
            best = (rate, chains);
        }
    }
    Ok(best)
}

/// The measured cases, printed as one table once the peak is known.
#[derive(Default)]
struct Report {
    lines: std::cell::RefCell<Vec<(String, Timing)>>,
}

impl Report {
    fn line(&self, what: &str, t: Timing) {
        eprintln!("measured {what}");
        self.lines.borrow_mut().push((what.to_string(), t));
    }

    fn print(&self, peak: f64) {
        println!("{:<62} {:>9} {:>9} {:>9} {:>7} {:>8}", "case", "best ms", "median ms", "GFLOP/s", "% peak", "GB/s");
        for (what, t) in self.lines.borrow().iter() {
            let flops = t.flops as f64 / t.best;
            println!(
                "{what:<62} {:>9.3} {:>9.3} {:>9.2} {:>6.1}% {:>8.2}",
                t.best * 1e3,
                t.median * 1e3,
                flops / 1e9,
                100.0 * flops / peak,
                t.bytes as f64 / t.best / 1e9
            );
        }
    }

    /// Builds `REPS` copies of an op with `build`, times them and prints one line.
    fn case(&self, engine: &Engine, what: &str, runs: usize, build: impl Fn(&mut Graph) -> Result<()>) -> Result<()> {
        let mut g = Graph::for_profile(engine.info().profile.clone());
        for _ in 0..REPS {
            build(&mut g)?;
        }
        let t = time_graph(engine, &g, REPS, runs)?;
        self.line(what, t);
        Ok(())
    }
}

/// A matmul case: `a [M, K]` (stored `[K, M]` if `trans_a`), `b [K, N]` (stored `[N, K]` if
/// `trans_b`), a row bias, with the given tiling.
#[allow(clippy::too_many_arguments)]
fn matmul_case(engine: &Engine, report: &Report, rng: &mut Rng, (m, k, n): (usize, usize, usize), trans_a: bool, trans_b: bool, tiling: MatmulTiling, runs: usize) -> Result<()> {
    let mut g = Graph::for_profile(engine.info().profile.clone());
    let a = constant(&mut g, rng, "a", &if trans_a { [k, m] } else { [m, k] })?;
    let b = constant(&mut g, rng, "b", &if trans_b { [n, k] } else { [k, n] })?;
    let bias = constant(&mut g, rng, "bias", &[m])?;
    for _ in 0..REPS {
        let epi = Epilogue { bias: Some((bias, BiasAxis::Row)), ..Default::default() };
        matmul_tiled(&mut g, a, b, trans_a, trans_b, epi, tiling)?;
    }
    let t = time_graph(engine, &g, REPS, runs)?;
    let what = format!(
        "matmul {m}x{k}{}·{k}x{n}{} {:?} {}x{}/{}x{}",
        if trans_a { "ᵀ" } else { "" },
        if trans_b { "ᵀ" } else { "" },
        tiling.loads,
        tiling.tm,
        tiling.tn,
        tiling.wg_m,
        tiling.wg_n
    );
    report.line(&what, t);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn conv_case(engine: &Engine, report: &Report, rng: &mut Rng, x_shape: [usize; 4], cout: usize, kernel: usize, p: Conv2dParams, runs: usize) -> Result<()> {
    let mut g = Graph::for_profile(engine.info().profile.clone());
    let x = constant(&mut g, rng, "x", &x_shape)?;
    let w = constant(&mut g, rng, "w", &[cout, x_shape[1] / p.groups, kernel, kernel])?;
    let bias = constant(&mut g, rng, "bias", &[cout])?;
    for _ in 0..REPS {
        conv2d(&mut g, x, w, Some(bias), &p, Activation::None)?;
    }
    let t = time_graph(engine, &g, REPS, runs)?;
    let kind = g.nodes[0].label.clone();
    report.line(&format!("{kind} x{x_shape:?}->{cout} s{} p{} g{}", p.stride.0, p.padding.0, p.groups), t);
    Ok(())
}

/// Prints the device, the FMA peak and every case. `sweep` adds matmul tile/workgroup shapes.
pub fn bench_ops(runs: usize, sweep: bool) -> Result<()> {
    let engine = pollster::block_on(Engine::new())?;
    let info = engine.info();
    println!("device: {} ({}, {})", info.name, info.backend, info.device_type);
    let peak_before = fma_peak(&engine, runs)?;
    let report = Report::default();
    let mut rng = Rng::new(7);

    // HAT-Net 1x1 convs as matmuls (weight [Cout, Cin] · x [Cin, H*W]) and token-layout
    // linears (x [N, K] · weight [Nout, K]ᵀ), each with element, vec4-from-scalars and vec4 loads.
    let sizes: &[((usize, usize, usize), bool, bool)] = &[
        ((144, 48, 3136), false, false),
        ((384, 96, 3136), false, false),
        ((1536, 384, 784), false, false),
        ((3136, 64, 256), false, true),
        ((3136, 256, 64), false, true),
        ((3136, 384, 1536), false, true),
    ];
    for &(mkn, ta, tb) in sizes {
        for loads in [MatmulLoads::Scalar, MatmulLoads::Vec4FromScalars, MatmulLoads::Vec4] {
            let tiling = MatmulTiling { loads, ..tuning::matmul_tiling(&engine.info().profile, u64::MAX) };
            matmul_case(&engine, &report, &mut rng, mkn, ta, tb, tiling, runs)?;
        }
    }
    if sweep {
        for (tm, tn) in [(8, 8), (12, 8), (16, 8), (16, 4), (16, 16)] {
            for (wg_m, wg_n) in [(8, 8), (4, 16), (2, 32)] {
                let tiling = MatmulTiling { tm, tn, wg_m, wg_n, loads: MatmulLoads::Vec4 };
                matmul_case(&engine, &report, &mut rng, (384, 96, 3136), false, false, tiling, runs)?;
                matmul_case(&engine, &report, &mut rng, (3136, 64, 256), false, true, tiling, runs)?;
            }
        }
        // The large GEMMs' tile against the 16 × 8 one by reduction length: on the AMD EPYC of
        // session 25 the 16 × 8 tile took 0.90 of the time at K = 64 (README, session 25).
        let large = tuning::matmul_tiling(&engine.info().profile, u64::MAX);
        for k in [16, 32, 64, 128, 256] {
            for tiling in [large, MatmulTiling { tn: 8, wg_m: 8, wg_n: 8, ..large }] {
                matmul_case(&engine, &report, &mut rng, (3136, k, 256), false, true, MatmulTiling { loads: MatmulLoads::Vec4, ..tiling }, runs)?;
            }
        }
    }

    let dense = |stride: usize, padding: usize| Conv2dParams { stride: (stride, stride), padding: (padding, padding), ..Default::default() };
    let dw = |c: usize, stride: usize| Conv2dParams { stride: (stride, stride), padding: (1, 1), groups: c, ..Default::default() };
    conv_case(&engine, &report, &mut rng, [1, 3, 224, 224], 48, 3, dense(2, 1), runs)?;
    conv_case(&engine, &report, &mut rng, [1, 48, 56, 56], 96, 3, dense(2, 1), runs)?;
    conv_case(&engine, &report, &mut rng, [1, 96, 28, 28], 192, 3, dense(2, 1), runs)?;
    conv_case(&engine, &report, &mut rng, [1, 192, 56, 56], 192, 3, dw(192, 1), runs)?;
    conv_case(&engine, &report, &mut rng, [1, 384, 28, 28], 384, 3, dw(384, 1), runs)?;
    conv_case(&engine, &report, &mut rng, [1, 192, 56, 56], 192, 3, dw(192, 2), runs)?;

    // Attention scores of a stage-1 window (49 tokens) and of a 28x28 global stage.
    for (rows, len) in [(64 * 2 * 49, 49), (4 * 784, 784)] {
        let what = format!("softmax [{rows}, {len}]");
        report.case(&engine, &what, runs, |g| {
            let x = g.constant("x", &[rows, len], Arc::new(vec![0.5; rows * len]))?;
            softmax(g, x, 0.125).map(|_| ())
        })?;
    }
    for (b, heads, n, d) in [(64, 2, 49, 32), (1, 4, 784, 32)] {
        let what = format!("attention q,k,v [{b}, {heads}, {n}, {d}]");
        report.case(&engine, &what, runs, |g| {
            let shape = [b, heads, n, d];
            let numel = b * heads * n * d;
            let q = g.constant("q", &shape, Arc::new(vec![0.1; numel]))?;
            let k = g.constant("k", &shape, Arc::new(vec![0.2; numel]))?;
            let v = g.constant("v", &shape, Arc::new(vec![0.3; numel]))?;
            attention(g, q, k, v, None, 1.0 / (d as f32).sqrt()).map(|_| ())
        })?;
    }

    let peak_after = fma_peak(&engine, runs)?;
    let peak = peak_before.0.max(peak_after.0);
    println!(
        "fma peak: {:.2} GFLOP/s (best of {} runs and of 2, 4 or 8 chains, before the cases: {:.2} at {} chains, after: {:.2} at {}; ratios below are against the higher)",
        peak / 1e9,
        runs.max(5),
        peak_before.0 / 1e9,
        peak_before.1,
        peak_after.0 / 1e9,
        peak_after.1
    );
    report.print(peak);
    Ok(())
}

/// `wgvit bench --model ...`: cold time to the first result, broken down by phase (device, weights
/// read and upload, graph, shader modules, pipelines, bind groups, first forward), then warm
/// forwards (input upload, one submission, readback). `weights` are already read (from a file,
/// or [`Weights::synthetic`]), which took `weights_ms`.
pub fn bench_model(model_id: &str, weights: Weights, weights_ms: f64, input_size: &crate::cli::InputSize, batch: usize, runs: usize) -> Result<()> {
    let size = input_size.size;
    let threads = crate::cli::tune_software_driver(model_id, &weights, &[batch, 3, size.0, size.1]);
    let (engine, engine_ms) = wgvit::time::timed(|| pollster::block_on(Engine::new()));
    let engine = engine?;
    let info = engine.info();
    println!("device: {} ({}, {}), kernels {}", info.name, info.backend, info.device_type, info.profile.kernels.name());
    match threads {
        Some(0) if info.name.contains("llvmpipe") => println!("driver: LP_NUM_THREADS=0, workgroups on the submitting thread (small dispatches; set LP_NUM_THREADS to choose)"),
        Some(n) if info.name.contains("llvmpipe") => println!("driver: LP_NUM_THREADS={n}, two threads per core (set LP_NUM_THREADS to choose)"),
        _ => {}
    }
    println!("model:  {model_id}, weights {}, input [{batch}, 3, {}, {}]", weights.file, size.0, size.1);
    let shape = [batch, 3, size.0, size.1];

    let cold_start = Instant::now();
    let model = engine.load_model(model_id, weights)?;
    let exe = pollster::block_on(model.prepare(&shape)).map_err(|e| crate::cli::explain_size(e, &model, batch, input_size))?;
    let built = cold_start.elapsed();
    // Only now (the graph accepted the shape) is the random input allocated.
    let input = Rng::new(1).tensor(&shape, -1.0, 1.0);
    let first = Instant::now();
    pollster::block_on(exe.run(&[&input]))?;
    let first_ms = first.elapsed().as_secs_f64() * 1e3;
    let cold = cold_start.elapsed().as_secs_f64() * 1e3 + engine_ms + weights_ms;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        pollster::block_on(exe.run(&[&input]))?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let s = &exe.stats;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "cold:   {cold:.1} ms to first result: device {engine_ms:.1} ms, weights read {weights_ms:.1} ms, building {:.1} ms, first forward {first_ms:.1} ms",
        built.as_secs_f64() * 1e3
    );
    println!("        building: {}", exe.times.summary());
    println!("warm:   median {median:.2} ms, min {:.2} ms, max {:.2} ms over {} runs", times[0], times[times.len() - 1], times.len());
    println!("        {:.2} images/s, {:.3} GFLOP per forward, {:.2} GFLOP/s", batch as f64 * 1e3 / median, s.flops as f64 / 1e9, s.flops as f64 / 1e6 / median);
    let copies = if s.texture_copies > 0 { format!(", {} texture copies between passes", s.texture_copies) } else { String::new() };
    println!("graph:  {} dispatches per forward (one submission{copies}), {} pipelines", s.dispatches, s.pipelines);
    println!(
        "memory: activations {:.2} MiB planned ({:.2} MiB without sharing), weights {:.2} MiB",
        mib(s.planned_bytes),
        mib(s.unshared_bytes),
        mib(s.constant_bytes)
    );
    Ok(())
}
