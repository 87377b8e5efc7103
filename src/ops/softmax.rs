//! Softmax over the last dim of `scale * x`: subtract the row max, exponentiate, divide by the sum.
//!
//! A whole row per invocation (`LANES` chosen as for layer norm, unless the launch has few long
//! rows) takes two sweeps: the running max with its sum, rescaled when the max grows, then
//! `exp(x - max) / sum` (a row loaded twice and stored once, for a second `exp` per element);
//! rows shared by several lanes take three (max; exp stored into the output while summing;
//! rescale). `exp` never sees a positive argument.

use super::{check_u32, grid, params, tuning, Graph, Kernel, Node, PipelineKey, TensorId, Uniform};
use crate::error::{Error, Result};

const WG: usize = 64;

/// `softmax(scale * x)` over the last dim of x.
pub fn softmax(g: &mut Graph, x: TensorId, scale: f32) -> Result<TensorId> {
    let len = g.shape(x).last().copied().unwrap_or(0);
    softmax_padded(g, x, scale, len)
}

/// [`softmax`] over the first `valid` elements of each row; the rest of the row is padding and
/// its outputs are 0 (LaViT's attention rows, whose keys are padded to a multiple of 4).
pub fn softmax_padded(g: &mut Graph, x: TensorId, scale: f32, valid: usize) -> Result<TensorId> {
    let shape = g.shape(x).to_vec();
    let len = match shape.last() {
        Some(&l) if l > 0 => l,
        _ => return Err(Error::Graph(format!("softmax: input shape {shape:?} has no non-empty last dim"))),
    };
    if valid == 0 || valid > len {
        return Err(Error::Graph(format!("softmax: {valid} valid elements in rows of {len} (input {shape:?})")));
    }
    let n = g.numel(x);
    check_u32("softmax", n)?;
    let rows = n / len;
    let lanes = tuning::row_lanes(&g.profile, rows, len);
    let y = g.activation(&shape);
    g.push(Node {
        label: "softmax".into(),
        key: PipelineKey::new(Kernel::Softmax).with("WG", WG as u32).with("LANES", lanes as u32),
        params: Uniform::of(&params::Softmax { rows: rows as u32, len: len as u32, scale, valid: valid as u32 }),
        reads: vec![x],
        writes: vec![y],
        workgroups: grid(rows.div_ceil(WG / lanes)),
        flops: 5 * n as u64,
    });
    Ok(y)
}

/// CPU reference (f64) of [`softmax`] on rows of `len` elements.
pub fn softmax_cpu(x: &[f32], len: usize, scale: f32) -> Vec<f32> {
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks(len) {
        let scaled: Vec<f64> = row.iter().map(|&v| scale as f64 * v as f64).collect();
        let m = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = scaled.iter().map(|&v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        y.extend(e.iter().map(|&v| (v / s) as f32));
    }
    y
}
