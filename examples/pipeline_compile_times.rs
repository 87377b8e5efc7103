//! How long the device's shader compiler takes for each distinct pipeline of a model: every
//! distinct (pipeline key, uniform) pair of the model's graph runs alone in a one-node graph (zero
//! inputs), and its first run minus its second is the compile (drivers like lavapipe compile at
//! first dispatch). Pairs, not keys: a driver may specialise a shader on uniform values (Mesa's
//! uniform inlining) and then compiles per pair; lavapipe 22.3 compiled each pipeline of the
//! bundled models once, at its first pair. Rows are per key, summed over its pairs, with the
//! slowest warm run of a pair: a warm run of a millisecond or more, comparable to the compile,
//! means the driver compiles the pipeline again at every bind (flagged). Creating the one-node
//! graph (its pipeline, bind group and buffers) is timed too: SwiftShader compiles there. Run it
//! with the driver's shader cache off to see what a fresh machine pays, e.g. on lavapipe:
//!
//! ```sh
//! MESA_SHADER_CACHE_DISABLE=true WGPU_BACKEND=vulkan cargo run --release --example pipeline_compile_times -- hatnet-digits
//! # SwiftShader (compiles at creation; WGVIT_CACHE=0 keeps wgvit's pipeline cache out of it):
//! WGVIT_CACHE=0 VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json WGPU_BACKEND=vulkan \
//!     cargo run --release --example pipeline_compile_times -- hatnet-tiny 224
//! ```
//!
//! Activations the executor would move to textures (lavapipe) are buffers here, so those
//! pipelines are timed in their buffer form.
//!
//! The argument is a bundled model (`assets/models/<id>.safetensors`) or a built-in id with a size,
//! e.g. `hatnet-tiny 224` (random weights); a third argument keeps only the nodes whose label
//! contains it (`hatnet-tiny 224 blocks.3.0.attn.proj`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use wgvit::executor::ConstantCache;
use wgvit::models::ModelCard;
use wgvit::{models, Engine, Graph, HostTensor, Weights};

fn main() -> wgvit::Result<()> {
    let mut args = std::env::args().skip(1);
    let id = args.next().unwrap_or_else(|| "hatnet-digits".into());
    let asset = format!("{}/assets/models/{id}.safetensors", env!("CARGO_MANIFEST_DIR"));
    let weights = match std::fs::read(&asset) {
        Ok(bytes) => Weights::from_bytes(&asset, &bytes)?,
        Err(_) => Weights::synthetic(0),
    };
    let card = ModelCard::new(&id, &weights)?;
    let size = match args.next() {
        Some(s) => wgvit::preprocess::parse_size(&s)?,
        None => card.input_size(),
    };
    let engine = pollster::block_on(Engine::new())?;
    let profile = engine.info().profile.clone();
    let graph = models::build_spec_graph(&card.spec, &weights, &[1, 3, size.0, size.1], profile.clone())?;

    let mut seen = HashSet::new();
    // (compile seconds summed over pairs, pairs, label, key, slowest warm run of a pair, creation
    // seconds summed over pairs)
    let mut rows: Vec<(f64, usize, String, String, f64, f64)> = Vec::new();
    let only = args.next();
    let wanted = |label: &str| only.as_deref().is_none_or(|o| label.contains(o));
    for node in graph.nodes.iter().filter(|n| wanted(&n.label) && seen.insert((n.key.clone(), n.params.words.clone()))) {
        let mut single = Graph::for_profile(profile.clone());
        // Reads the key binds as textures (constant weights on software devices) or uniform
        // buffers (small constants on lavapipe) stay so, of zeros; the rest become zero inputs.
        let mut inputs: Vec<HostTensor> = Vec::new();
        let mut reads = Vec::new();
        for (i, &t) in node.reads.iter().enumerate() {
            let shape = graph.shape(t).to_vec();
            if graph.is_texture(t) {
                let zeros = single.constant(&format!("texture{i}"), &shape, Arc::new(vec![0.0; graph.numel(t)]))?;
                reads.push(single.constant_texture(zeros).expect("the original graph holds it as a texture"));
            } else if graph.is_uniform(t) {
                let zeros = single.constant(&format!("uniform{i}"), &shape, Arc::new(vec![0.0; graph.numel(t)]))?;
                reads.push(single.constant_uniform(zeros).expect("the original graph holds it as a uniform buffer"));
            } else {
                reads.push(single.input(&format!("in{i}"), &shape));
                inputs.push(HostTensor::zeros(shape));
            }
        }
        let mut n = node.clone();
        n.reads = reads;
        n.writes = node.writes.iter().map(|&t| single.activation(graph.shape(t))).collect();
        let writes = n.writes.clone();
        single.push(n);
        for (i, &t) in writes.iter().enumerate() {
            single.output(&format!("out{i}"), t);
        }
        let created = Instant::now();
        let exe = pollster::block_on(engine.compile(&single, &ConstantCache::new()))?;
        let create = created.elapsed().as_secs_f64();
        let refs: Vec<&HostTensor> = inputs.iter().collect();
        let time = || -> wgvit::Result<f64> {
            let t = Instant::now();
            pollster::block_on(exe.run(&refs))?;
            Ok(t.elapsed().as_secs_f64())
        };
        let (first, second, third) = (time()?, time()?, time()?);
        let warm = second.min(third);
        let key = format!("{:?}", node.key);
        match rows.iter_mut().find(|r| r.3 == key) {
            Some(row) => {
                row.0 += first - warm;
                row.1 += 1;
                row.4 = row.4.max(warm);
                row.5 += create;
            }
            None => rows.push((first - warm, 1, node.label.clone(), key, warm, create)),
        }
    }
    rows.sort_by(|a, b| (b.0 + b.5).total_cmp(&(a.0 + a.5)));
    let total: f64 = rows.iter().map(|r| r.0).sum();
    let created: f64 = rows.iter().map(|r| r.5).sum();
    let variants: usize = rows.iter().map(|r| r.1).sum();
    println!(
        "{id} at {}x{} on {}: {} pipelines, {variants} distinct (pipeline, uniform) pairs, {created:.1} s creating them, {total:.1} s of first-dispatch compile",
        size.0,
        size.1,
        engine.info().name,
        rows.len()
    );
    println!("create    compile    pairs  warm     layer  key");
    for (secs, count, label, key, warm, create) in &rows {
        // A one-dispatch forward of these digit-sized shapes runs in well under a millisecond once
        // compiled; far more means the driver compiles again at every bind (lavapipe 22.3 does when
        // it inlines the uniform: see `k_opaque_zero` in shaders/lib/gemm_tile.wgsl).
        let flag = if *warm > 1e-3 && *warm > 0.25 * (secs / *count as f64) { "  <- re-compiled at every bind?" } else { "" };
        println!("{create:6.2} s  {secs:7.2} s  {count:3} × {:6.2} ms  {label}  {key}{flag}", warm * 1e3);
    }
    Ok(())
}
