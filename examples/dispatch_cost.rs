//! Per-dispatch cost: a forward of n tiny element-wise dispatches (a chain, each reading the
//! previous output), timed warm.
use std::time::Instant;
use wgvit::executor::ConstantCache;
use wgvit::ops::{unary::unary, Activation};
use wgvit::{Engine, Graph, HostTensor};

fn main() -> wgvit::Result<()> {
    let engine = pollster::block_on(Engine::new())?;
    for (n, len) in [(1usize, 64usize), (10, 64), (100, 64), (100, 65536)] {
        let mut g = Graph::new();
        let x = g.input("x", &[len]);
        let mut y = x;
        for _ in 0..n {
            y = unary(&mut g, y, Activation::Relu, 1.0, 0.0)?;
        }
        g.output("y", y);
        let exe = pollster::block_on(engine.compile(&g, &ConstantCache::new()))?;
        let input = HostTensor::zeros(vec![len]);
        pollster::block_on(exe.run(&[&input]))?;
        let mut times = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            pollster::block_on(exe.run(&[&input]))?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(|a, b| a.total_cmp(b));
        println!("{n:4} dispatches of {len:6} elements: median {:.3} ms, min {:.3} ms", times[10], times[0]);
    }
    Ok(())
}
