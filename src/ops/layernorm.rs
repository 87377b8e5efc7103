//! Layer normalisation over the last dim: `y = (x - mean) / sqrt(var + eps) * gamma + beta`, with
//! the biased variance, as `torch.nn.LayerNorm(C)` on channels-last tokens.
//!
//! Statistics never form `E[x²] - E[x]²`, and are taken relative to the row's first element, so
//! rows with a large common offset keep full precision. `LANES` invocations share a row: one per
//! row (no barriers — what a CPU device runs fastest), whose statistics take one pass (Welford's
//! update, then Chan's merge of the vec4 components: the row is read twice in all, not three
//! times), unless a launch has too few rows to fill a GPU, then a workgroup reduction of two
//! passes (the mean, then the centred sum of squares).
//! A missing gamma/beta binds shared constant ones/zeros so that one pipeline serves both.

use std::sync::Arc;

use super::{check_u32, grid, params, tuning, Graph, Kernel, Node, PipelineKey, TensorId, Uniform};
use crate::error::{Error, Result};

const WG: usize = 64;

/// A constant `[n]` filled with `value`, shared by every graph that asks for the same one.
pub fn filled(g: &mut Graph, value: f32, n: usize) -> Result<TensorId> {
    g.constant(&format!("wgvit.filled.{value}.{n}"), &[n], Arc::new(vec![value; n]))
}

/// `x [.., C]` normalised over C; gamma, beta `[C]` (each optional: 1 and 0).
pub fn layer_norm(g: &mut Graph, x: TensorId, gamma: Option<TensorId>, beta: Option<TensorId>, eps: f32) -> Result<TensorId> {
    layer_norm_add(g, x, gamma, beta, eps, None)
}

/// [`layer_norm`] with `add` added to its output, in the same pass: `add [.., R, C]` of R rows,
/// R dividing x's row count, row r of x taking row r % R (LaViT's position embedding `[1, N, C]`
/// over a batch of `[B, N, C]`).
pub fn layer_norm_add(g: &mut Graph, x: TensorId, gamma: Option<TensorId>, beta: Option<TensorId>, eps: f32, add: Option<TensorId>) -> Result<TensorId> {
    let shape = g.shape(x).to_vec();
    let c = match shape.last() {
        Some(&c) if c > 0 => c,
        _ => return Err(Error::Graph(format!("layer_norm: input shape {shape:?} has no non-empty last dim"))),
    };
    for (name, t) in [("gamma", gamma), ("beta", beta)] {
        if let Some(t) = t {
            if g.numel(t) != c {
                return Err(Error::Graph(format!(
                    "layer_norm: {name} has shape {:?}, expected [{c}] for input {shape:?}",
                    g.shape(t)
                )));
            }
        }
    }
    let n = g.numel(x);
    check_u32("layer_norm", n)?;
    let rows = n / c;
    let add_rows = match add {
        Some(t) if g.shape(t).last() == Some(&c) && rows.is_multiple_of(g.numel(t) / c) => g.numel(t) / c,
        Some(t) => {
            return Err(Error::Graph(format!(
                "layer_norm: add has shape {:?}, expected rows of {c} whose count divides the input's {rows} (input {shape:?})",
                g.shape(t)
            )))
        }
        None => 1,
    };
    let gamma = match gamma {
        Some(t) => t,
        None => filled(g, 1.0, c)?,
    };
    let beta = match beta {
        Some(t) => t,
        None => filled(g, 0.0, c)?,
    };
    // vec4 elements where the rows allow: a quarter of the loads.
    let (kernel, width) = if c.is_multiple_of(4) { (Kernel::LayerNormVec4, 4) } else { (Kernel::LayerNorm, 1) };
    let lanes = tuning::row_lanes(&g.profile, rows, c);
    // On lavapipe gamma and beta from uniform buffers, when both are constants that fit.
    let affine_uniform = (kernel == Kernel::LayerNormVec4 && tuning::constant_uniforms(&g.profile))
        .then(|| g.constant_uniform(gamma).zip(g.constant_uniform(beta)))
        .flatten();
    let (gamma, beta) = affine_uniform.unwrap_or((gamma, beta));
    let y = g.activation(&shape);
    g.push(Node {
        label: "layer_norm".into(),
        key: PipelineKey::new(kernel).with("WG", WG as u32).with("LANES", lanes as u32).with("AFFINE_UNIFORM", affine_uniform.is_some() as u32).with("ADD", add.is_some() as u32),
        params: Uniform::of(&params::LayerNorm { rows: rows as u32, c: (c / width) as u32, eps, add_rows: add_rows as u32 }),
        reads: [x, gamma, beta].into_iter().chain(add).collect(),
        writes: vec![y],
        workgroups: grid(rows.div_ceil(WG / lanes)),
        flops: 8 * n as u64,
    });
    // Rows of whole vec4s may be stored to a flat texture, for the matmuls that read them.
    if kernel == Kernel::LayerNormVec4 {
        g.offer_texture(if add.is_some() { 4 } else { 3 }, "Y_TEXTURE");
        g.offer_uniform(0, "X_UNIFORM");
    }
    Ok(y)
}

/// CPU reference (f64 statistics) of [`layer_norm`]; `gamma`/`beta` empty means none.
pub fn layer_norm_cpu(x: &[f32], c: usize, gamma: &[f32], beta: &[f32], eps: f32) -> Vec<f32> {
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks(c) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / c as f64;
        let rstd = 1.0 / (var + eps as f64).sqrt();
        for (k, &v) in row.iter().enumerate() {
            let gk = gamma.get(k).map_or(1.0, |&t| t as f64);
            let bk = beta.get(k).map_or(0.0, |&t| t as f64);
            y.push(((v as f64 - mean) * rstd * gk + bk) as f32);
        }
    }
    y
}
