//! `wgvit profile`: where a forward's GPU time goes.
//!
//! The model's graph is compiled as for `run`, warmed up once, then profiled `runs` times with
//! [`Executable::profile`](wgvit::executor::Executable::profile): a GPU timestamp before and after
//! every dispatch. Each dispatch's median over the runs is its time. Node labels carry the layer
//! scope and the op (`blocks.0.1.attn.qkv.matmul`, `ds2.norm.group_norm.stats`): the op kind is
//! the last component — or the last two when the one before is itself an op kind of this graph
//! (`group_norm.stats`) — and the layer is the scope up to its first run of numeric components
//! (`blocks.0.1`, `patch_embed.0`; the first component when there is none: `stem`), or its first
//! `--depth` components. Three tables, each sorted by time: op kinds, layers, and the slowest
//! dispatches.
//!
//! `--repeat N` times each dispatch by wall-clock instead ([`times_by_repetition`]): what a forward
//! gains when that dispatch runs N more times. lavapipe's timestamps between dispatches do not
//! say what each costs: they put some dispatches at about 2 µs that cost a tenth of a
//! millisecond or more, and their sum falls short of the forward. Repetition is slow (two
//! forwards per run per dispatch) but holds on any device.
//!
//! `--isolate N` times each dispatch alone ([`times_in_isolation`]): N dispatches of it in one
//! submission, less an empty submission. Where the host's speed drifts by more than a dispatch
//! from one forward to the next (the AMD EPYC of session 25), the differences of whole forwards
//! that `--repeat` takes are noise, while a dispatch alone is timed within milliseconds. A
//! dispatch repeated finds its operands in the caches, so the sum falls short of a forward by
//! what the forward spends fetching them.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use wgvit::error::Result;
use wgvit::tensor::Rng;
use wgvit::{Engine, Weights};

/// Splits node labels into (op kind, layer).
pub struct Labels {
    kinds: HashSet<String>,
    depth: Option<usize>,
}

impl Labels {
    pub fn new<'a>(labels: impl Iterator<Item = &'a str>, depth: Option<usize>) -> Self {
        Self { kinds: labels.map(|l| l.rsplit('.').next().unwrap_or(l).to_string()).collect(), depth }
    }

    /// How many trailing components of `parts` name the op.
    fn op_len(&self, parts: &[&str]) -> usize {
        if parts.len() >= 2 && self.kinds.contains(parts[parts.len() - 2]) {
            2
        } else {
            1
        }
    }

    pub fn op_kind(&self, label: &str) -> String {
        let parts: Vec<&str> = label.split('.').collect();
        parts[parts.len() - self.op_len(&parts)..].join(".")
    }

    pub fn layer(&self, label: &str) -> String {
        let parts: Vec<&str> = label.split('.').collect();
        let scope = &parts[..parts.len() - self.op_len(&parts)];
        if scope.is_empty() {
            return "(unscoped)".into();
        }
        let numeric = |p: &str| p.parse::<usize>().is_ok();
        let n = match self.depth {
            Some(d) => d.clamp(1, scope.len()),
            None => match scope.iter().position(|p| numeric(p)) {
                Some(first) => first + scope[first..].iter().take_while(|p| numeric(p)).count(),
                None => 1,
            },
        };
        scope[..n].join(".")
    }
}

struct Row {
    name: String,
    seconds: f64,
    count: usize,
}

fn grouped(items: impl Iterator<Item = (String, f64)>) -> Vec<Row> {
    let mut map: HashMap<String, (f64, usize)> = HashMap::new();
    for (k, t) in items {
        let e = map.entry(k).or_default();
        e.0 += t;
        e.1 += 1;
    }
    let mut rows: Vec<Row> = map.into_iter().map(|(name, (seconds, count))| Row { name, seconds, count }).collect();
    rows.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then_with(|| a.name.cmp(&b.name)));
    rows
}

fn print_table(title: &str, rows: &[Row], total: f64, limit: usize) {
    let width = rows.iter().take(limit).map(|r| r.name.len()).max().unwrap_or(0).max(title.len());
    println!();
    println!("{title:<width$} {:>10} {:>7} {:>6} {:>10}", "ms", "%", "count", "mean µs");
    for r in rows.iter().take(limit) {
        println!(
            "{:<width$} {:>10.3} {:>6.1}% {:>6} {:>10.1}",
            r.name,
            r.seconds * 1e3,
            100.0 * r.seconds / total.max(1e-30),
            r.count,
            r.seconds * 1e6 / r.count as f64
        );
    }
    if rows.len() > limit {
        let rest: f64 = rows[limit..].iter().map(|r| r.seconds).sum();
        println!("{:<width$} {:>10.3} {:>6.1}%  ({} more)", "...", rest * 1e3, 100.0 * rest / total.max(1e-30), rows.len() - limit);
    }
}

/// How `wgvit profile` times dispatches.
#[derive(Clone, Copy, Debug)]
pub enum Method {
    /// GPU timestamps around each dispatch of one forward.
    Timestamps,
    /// Forwards with one dispatch run N more times, less plain forwards.
    Repeat(u32),
    /// One dispatch alone, N times in one submission, less an empty submission.
    Isolate(u32),
}

#[allow(clippy::too_many_arguments)]
pub fn profile_model(model_id: &str, weights: Weights, input_size: &crate::cli::InputSize, batch: usize, runs: usize, depth: Option<usize>, top: usize, method: Method, variants: bool) -> Result<()> {
    let size = input_size.size;
    crate::cli::tune_software_driver(model_id, &weights, &[batch, 3, size.0, size.1]);
    let engine = pollster::block_on(Engine::new())?;
    let info = engine.info().clone();
    println!("device: {} ({}, {})", info.name, info.backend, info.device_type);
    println!("model:  {model_id}, weights {}, input [{batch}, 3, {}, {}]", weights.file, size.0, size.1);
    let features = engine.ctx.device.features();
    if let Method::Repeat(n) = method {
        println!("method: wall-clock of forwards with each dispatch run {n} more times, less plain forwards, ÷ {n} ({runs} pairs per dispatch)");
    } else if let Method::Isolate(n) = method {
        println!("method: wall-clock of each dispatch alone, {n} times in one submission, less an empty submission, ÷ {n} ({runs} pairs per dispatch)");
    } else if features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES) {
        println!("method: GPU timestamps between the dispatches of the forward's compute pass");
        if info.name.starts_with("llvmpipe") {
            println!("note:   lavapipe's timestamps misattribute time between dispatches (some read about 2 µs that cost far more); --repeat 5 times each by wall-clock");
        }
    } else if features.contains(wgpu::Features::TIMESTAMP_QUERY) {
        println!("method: GPU timestamps around one compute pass per dispatch (no timestamps inside passes here)");
    }
    let shape = [batch, 3, size.0, size.1];
    let model = engine.load_model(model_id, weights)?;
    let exe = pollster::block_on(model.prepare(&shape)).map_err(|e| crate::cli::explain_size(e, &model, batch, input_size))?;
    // Only now (the graph accepted the shape) is the random input allocated.
    let input = Rng::new(1).tensor(&shape, -1.0, 1.0);
    pollster::block_on(exe.run(&[&input]))?; // warm-up
    if matches!(method, Method::Timestamps) && exe.stats.texture_copies > 0 {
        println!(
            "note:   {} activations are copied into textures between compute passes; the copies are not timed, and lavapipe's timestamps \
             across a pass boundary put time nowhere (the dispatches' sum falls short of the forward): --repeat times them by wall-clock",
            exe.stats.texture_copies
        );
    }
    let t = Instant::now();
    pollster::block_on(exe.run(&[&input]))?;
    let wall = t.elapsed().as_secs_f64();

    let labels: Vec<&str> = exe.step_labels().collect();
    let (times, total) = match method {
        Method::Isolate(n) => {
            let (times, empty) = times_in_isolation(&exe, labels.len(), runs, n)?;
            let total: f64 = times.iter().sum();
            println!(
                "time:   {:.3} ms in {} dispatches alone (medians of {runs} pairs each, an empty submission {:.3} ms taken off); \
                 a plain forward: {:.3} ms wall-clock incl. upload and readback",
                total * 1e3,
                labels.len(),
                empty * 1e3,
                wall * 1e3
            );
            println!("note:   a dispatch repeated finds its operands in the caches and a texture copy after it counts with it");
            (times, total)
        }
        Method::Repeat(n) => {
            let (times, plain, spread) = times_by_repetition(&exe, &input, labels.len(), runs, n)?;
            let total: f64 = times.iter().sum();
            println!(
                "time:   {:.3} ms attributed to {} dispatches (medians of {runs} pairs each); \
                 a plain forward: {:.3} ms wall-clock incl. upload and readback (median of {} forwards)",
                total * 1e3,
                labels.len(),
                plain * 1e3,
                runs * labels.len()
            );
            println!(
                "noise:  plain forwards spread by {:.3} ms (median absolute deviation), about {:.3} ms per dispatch at {n} repeats: \
                 smaller times are noise (more --runs or a larger --repeat narrow it)",
                spread * 1e3,
                spread * 1e3 / n as f64
            );
            (times, total)
        }
        Method::Timestamps => {
            let mut samples: Vec<Vec<f64>> = Vec::with_capacity(runs);
            for _ in 0..runs {
                samples.push(pollster::block_on(exe.profile(&[&input]))?);
            }
            let times: Vec<f64> = (0..labels.len()).map(|i| median(samples.iter().map(|s| s[i]).collect())).collect();
            let total: f64 = times.iter().sum();
            println!(
                "time:   {:.3} ms in {} dispatches (sum of per-dispatch medians over {runs} profiled runs); \
                 one unprofiled forward: {:.3} ms wall-clock incl. upload and readback",
                total * 1e3,
                labels.len(),
                wall * 1e3
            );
            (times, total)
        }
    };
    if total == 0.0 {
        println!("note:   every timestamp difference is 0: this device's timestamps are too coarse to time single dispatches");
    }

    let split = Labels::new(labels.iter().copied(), depth);
    let by_kind = grouped(labels.iter().zip(&times).map(|(l, &t)| (split.op_kind(l), t)));
    print_table("op kind", &by_kind, total, usize::MAX);
    let by_layer = grouped(labels.iter().zip(&times).map(|(l, &t)| (split.layer(l), t)));
    print_table("layer", &by_layer, total, 40);
    let mut slowest: Vec<Row> = labels.iter().zip(&times).map(|(l, &t)| Row { name: l.to_string(), seconds: t, count: 1 }).collect();
    slowest.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    print_table(&format!("slowest {} dispatches", top.min(slowest.len())), &slowest, total, top);
    if variants {
        println!("\nevery dispatch in forward order: ms, label, kernel, override constants, workgroups");
        for ((label, t), variant) in labels.iter().zip(&times).zip(exe.step_variants()) {
            println!("{:9.3} {label} {variant}", t * 1e3);
        }
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// [`paired_medians`]' result: per step the medians of its baseline and its own measurements, and
/// every baseline measurement.
struct Paired {
    medians: Vec<(f64, f64)>,
    baseline: Vec<f64>,
}

/// For each of `steps` steps, `runs` pairs of a baseline measurement and one of that step
/// (which goes first alternates, so a drift favours neither).
fn paired_medians(steps: usize, runs: usize, mut baseline: impl FnMut() -> Result<f64>, mut of_step: impl FnMut(usize) -> Result<f64>) -> Result<Paired> {
    let mut all_baseline = Vec::with_capacity(steps * runs);
    let mut medians = Vec::with_capacity(steps);
    for step in 0..steps {
        let (mut base, mut with_step) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
        for r in 0..runs {
            if r % 2 == 0 {
                base.push(baseline()?);
                with_step.push(of_step(step)?);
            } else {
                with_step.push(of_step(step)?);
                base.push(baseline()?);
            }
        }
        all_baseline.extend_from_slice(&base);
        medians.push((median(base), median(with_step)));
    }
    Ok(Paired { medians, baseline: all_baseline })
}

/// Seconds per dispatch by repetition: for each step, `runs` pairs of a plain forward and one with
/// that step dispatched `extra` more times ([`paired_medians`]), and the difference of their
/// medians ÷ `extra` (negative where a dispatch costs less than the noise). Also the median of
/// every plain forward and their median absolute deviation. Wall-clock, so it
/// holds on devices whose timestamps are not per-dispatch times: on lavapipe (Mesa 22.3) the
/// timestamps between dispatches gave accvit-digits' first conv and its first expand GEMM about
/// 2 µs each, where repeating them costs 0.17 and 0.58 ms a time (Intel Xeon, 2 cores).
fn times_by_repetition(exe: &wgvit::executor::Executable, input: &wgvit::HostTensor, steps: usize, runs: usize, extra: u32) -> Result<(Vec<f64>, f64, f64)> {
    let timed = |repeat: Option<usize>| -> Result<f64> {
        let t = Instant::now();
        match repeat {
            Some(step) => pollster::block_on(exe.run_repeating(&[input], step, extra))?,
            None => pollster::block_on(exe.run(&[input]))?,
        };
        Ok(t.elapsed().as_secs_f64())
    };
    let Paired { medians, baseline: all_plain } = paired_medians(steps, runs, || timed(None), |step| timed(Some(step)))?;
    let times = medians.iter().map(|(plain, repeated)| (repeated - plain) / extra as f64).collect();
    let plain = median(all_plain.clone());
    let spread = median(all_plain.iter().map(|t| (t - plain).abs()).collect());
    Ok((times, plain, spread))
}

/// Seconds per dispatch alone: for each step, `runs` pairs of an empty submission and one of that
/// step dispatched `times` times with its texture copies ([`paired_medians`]), the difference of
/// their medians ÷ `times`. Also the empty submission's median.
fn times_in_isolation(exe: &wgvit::executor::Executable, steps: usize, runs: usize, times: u32) -> Result<(Vec<f64>, f64)> {
    let timed = |step: usize, n: u32| -> Result<f64> {
        let t = Instant::now();
        pollster::block_on(exe.run_isolated(step, n))?;
        Ok(t.elapsed().as_secs_f64())
    };
    // The empty submission takes step 0's path (any step would do: nothing is dispatched).
    let Paired { medians, baseline: all_empty } = paired_medians(steps, runs, || timed(0, 0), |step| timed(step, times))?;
    let per_step = medians.iter().map(|(empty, alone)| (alone - empty) / times as f64).collect();
    Ok((per_step, median(all_empty)))
}
