//! LaViT's residual attention downsampling between stages (shaders/family/attention_downsample.wgsl):
//! the last attention matrix of stage m−1, averaged over its heads, goes through a
//! single-channel 2×2 / stride-2 conv over its query map (one slice per key), is scaled per head
//! of stage m and added to the logits of stage m's first layer (LaViT passes it as the residual
//! of its logits GEMM). One invocation per (batch, query, key) of the new stage writes every head;
//! the 4·Hp reads of a tap column are the op's whole cost (0.2–1 ms per stage transition at 224
//! on lavapipe).

use super::{check_u32, grid, params, Graph, Kernel, Node, PipelineKey, TensorId, Uniform};
use crate::error::{Error, Result};

/// `prev` `[B, Hp, 4·h·w, M]` (the previous stage's carried attention over its `2h × 2w` query map)
/// → `[B, heads, h·w, M]` = `gamma[h] · (conv2x2/2(mean over Hp) + conv_bias)`, the conv being
/// `weight [1, 1, 2, 2]` slid over the query map of every key slice.
pub fn attention_downsample(g: &mut Graph, prev: TensorId, (h, w): (usize, usize), weight: TensorId, bias: TensorId, gamma: TensorId) -> Result<TensorId> {
    let ps = g.shape(prev).to_vec();
    let heads = g.numel(gamma);
    let bad = |why: &str| {
        Error::Graph(format!(
            "attention_downsample: prev {ps:?} to a {h}x{w} map, weight {:?}, bias {:?}, gamma {:?}: {why}",
            g.shape(weight),
            g.shape(bias),
            g.shape(gamma)
        ))
    };
    let &[batch, heads_prev, np, m] = ps.as_slice() else {
        return Err(bad("prev must be [B, heads, queries, keys]"));
    };
    if np != 4 * h * w || h * w == 0 {
        return Err(bad(&format!("prev has {np} queries; a 2x2/2 conv to {h}x{w} needs {}", 4 * h * w)));
    }
    if g.numel(weight) != 4 || g.numel(bias) != 1 || heads == 0 || [batch, heads_prev, m].contains(&0) {
        return Err(bad("expected a [1, 1, 2, 2] weight, a [1] bias and a non-empty gamma"));
    }
    check_u32("attention_downsample", g.numel(prev))?;
    let n = h * w;
    check_u32("attention_downsample out", batch * heads * n * m)?;
    let out = g.activation(&[batch, heads, n, m]);
    const WG: usize = 64;
    let items = batch * n * m;
    g.push(Node {
        label: "attention_downsample".into(),
        key: PipelineKey::new(Kernel::AttentionDownsample).with("WG", WG as u32),
        params: Uniform::of(&params::AttentionDownsample {
            batch: batch as u32,
            heads_prev: heads_prev as u32,
            heads: heads as u32,
            h: h as u32,
            w: w as u32,
            m: m as u32,
            _p0: 0,
            _p1: 0,
        }),
        reads: vec![prev, weight, bias, gamma],
        writes: vec![out],
        workgroups: grid(items.div_ceil(WG)),
        flops: (items * (4 * heads_prev + 9 + heads)) as u64,
    });
    Ok(out)
}

/// CPU reference of [`attention_downsample`] (f64).
pub fn attention_downsample_cpu(prev: &[f32], prev_shape: [usize; 4], (h, w): (usize, usize), weight: &[f32], bias: f32, gamma: &[f32]) -> Vec<f32> {
    let [batch, hp, _, m] = prev_shape;
    let heads = gamma.len();
    let n = h * w;
    let mut out = vec![0f32; batch * heads * n * m];
    for b in 0..batch {
        for y in 0..h {
            for xq in 0..w {
                for j in 0..m {
                    let mut d = bias as f64;
                    for (t, &wt) in weight.iter().enumerate() {
                        let (dy, dx) = (t / 2, t % 2);
                        let q = (2 * y + dy) * 2 * w + 2 * xq + dx;
                        let mean: f64 = (0..hp).map(|k| prev[((b * hp + k) * 4 * n + q) * m + j] as f64).sum::<f64>() / hp as f64;
                        d += wt as f64 * mean;
                    }
                    for (hh, &gm) in gamma.iter().enumerate() {
                        out[((b * heads + hh) * n + y * w + xq) * m + j] = (gm as f64 * d) as f32;
                    }
                }
            }
        }
    }
    out
}
