//! Averaging: `avg_pool2d` (NCHW, PyTorch semantics with `ceil_mode = false`), and the global
//! means `mean_spatial` (`[B, C, H, W] -> [B, C]`) and `mean_tokens` (`[B, N, C] -> [B, C]`).
//!
//! Both means are one strided reduction, `y[o] = mean_k x[base(o) + k * inner]`: over contiguous
//! rows (inner = 1) or down columns (inner = C, which makes neighbouring invocations read
//! neighbouring addresses). A reduction is split over several lanes only when there are too few
//! outputs to occupy the device.

use super::{check_u32, grid, params, tuning, Graph, Kernel, Node, PipelineKey, TensorId, Uniform};
use crate::error::{Error, Result};

const WG: usize = 64;

/// avg_pool2d of `x [B, C, H, W]`; the divisor counts padding cells iff `count_include_pad`.
pub fn avg_pool2d(
    g: &mut Graph,
    x: TensorId,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    count_include_pad: bool,
) -> Result<TensorId> {
    let shape = g.shape(x).to_vec();
    let bad = |why: &str| {
        Error::Graph(format!(
            "avg_pool2d: input {shape:?}, kernel {kernel:?}, stride {stride:?}, padding {padding:?}: {why}"
        ))
    };
    if shape.len() != 4 {
        return Err(bad("input must be [B, C, H, W]"));
    }
    let (planes, h, w) = (shape[0] * shape[1], shape[2], shape[3]);
    if kernel.0 == 0 || kernel.1 == 0 || stride.0 == 0 || stride.1 == 0 {
        return Err(bad("kernel and stride must be positive"));
    }
    if 2 * padding.0 > kernel.0 || 2 * padding.1 > kernel.1 {
        return Err(bad("padding must be at most half the kernel (as in PyTorch)"));
    }
    if h + 2 * padding.0 < kernel.0 || w + 2 * padding.1 < kernel.1 || planes == 0 {
        return Err(bad("the kernel is larger than the padded input"));
    }
    let oh = (h + 2 * padding.0 - kernel.0) / stride.0 + 1;
    let ow = (w + 2 * padding.1 - kernel.1) / stride.1 + 1;
    let n = planes * oh * ow;
    check_u32("avg_pool2d", n.max(g.numel(x)))?;
    let y = g.activation(&[shape[0], shape[1], oh, ow]);
    let p = |v: usize| v as u32;
    g.push(Node {
        label: "avg_pool2d".into(),
        key: PipelineKey::new(Kernel::Pool).with("WG", WG as u32).with("MODE", 0),
        params: Uniform::of(&params::Pool { n: p(n), inner: 0, len: 0, in_h: p(h), in_w: p(w), out_h: p(oh), out_w: p(ow), kernel_h: p(kernel.0), kernel_w: p(kernel.1), stride_h: p(stride.0), stride_w: p(stride.1), pad_h: p(padding.0), pad_w: p(padding.1), count_include_pad: count_include_pad as u32, _pad0: 0, _pad1: 0 }),
        reads: vec![x],
        writes: vec![y],
        workgroups: grid(n.div_ceil(WG)),
        flops: (n * kernel.0 * kernel.1) as u64,
    });
    Ok(y)
}

/// `y[o] = mean_k x[(o / inner) * len * inner + o % inner + k * inner]` for `outputs` outputs.
fn strided_mean(g: &mut Graph, label: &str, x: TensorId, out_shape: &[usize], len: usize, inner: usize) -> Result<TensorId> {
    let outputs: usize = out_shape.iter().product();
    check_u32(label, g.numel(x))?;
    let lanes = tuning::mean_lanes(&g.profile, outputs, len);
    let y = g.activation(out_shape);
    g.push(Node {
        label: label.into(),
        key: PipelineKey::new(Kernel::Pool).with("WG", WG as u32).with("MODE", 1).with("LANES", lanes as u32),
        params: Uniform::of(&params::Pool { n: outputs as u32, inner: inner as u32, len: len as u32, ..Default::default() }),
        reads: vec![x],
        writes: vec![y],
        workgroups: grid(outputs.div_ceil(WG / lanes)),
        flops: g.numel(x) as u64,
    });
    g.offer_uniform(0, "X_UNIFORM");
    Ok(y)
}

/// `[B, C, H, W] -> [B, C]`: mean over the spatial positions.
pub fn mean_spatial(g: &mut Graph, x: TensorId) -> Result<TensorId> {
    let shape = g.shape(x).to_vec();
    if shape.len() != 4 || shape.contains(&0) {
        return Err(Error::Graph(format!("mean_spatial: input must be a non-empty [B, C, H, W], got {shape:?}")));
    }
    strided_mean(g, "mean_spatial", x, &shape[..2], shape[2] * shape[3], 1)
}

/// `[B, N, C] -> [B, C]`: mean over the tokens.
pub fn mean_tokens(g: &mut Graph, x: TensorId) -> Result<TensorId> {
    let shape = g.shape(x).to_vec();
    if shape.len() != 3 || shape.contains(&0) {
        return Err(Error::Graph(format!("mean_tokens: input must be a non-empty [B, N, C], got {shape:?}")));
    }
    strided_mean(g, "mean_tokens", x, &[shape[0], shape[2]], shape[1], shape[2])
}

/// CPU reference of [`avg_pool2d`] on `x [planes, h, w]` (f64 sums).
#[allow(clippy::too_many_arguments)]
pub fn avg_pool2d_cpu(
    x: &[f32],
    planes: usize,
    h: usize,
    w: usize,
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    count_include_pad: bool,
) -> Vec<f32> {
    let oh = (h + 2 * padding.0 - kernel.0) / stride.0 + 1;
    let ow = (w + 2 * padding.1 - kernel.1) / stride.1 + 1;
    let mut y = Vec::with_capacity(planes * oh * ow);
    for p in 0..planes {
        for i in 0..oh {
            for j in 0..ow {
                // PyTorch's AvgPool2d, verbatim in signed arithmetic.
                let hstart = (i * stride.0) as isize - padding.0 as isize;
                let wstart = (j * stride.1) as isize - padding.1 as isize;
                let hend = (hstart + kernel.0 as isize).min((h + padding.0) as isize);
                let wend = (wstart + kernel.1 as isize).min((w + padding.1) as isize);
                let pool_size = (hend - hstart) * (wend - wstart);
                let (hstart, wstart) = (hstart.max(0), wstart.max(0));
                let (hend, wend) = (hend.min(h as isize), wend.min(w as isize));
                let mut s = 0f64;
                for a in hstart..hend {
                    for b in wstart..wend {
                        s += x[(p * h + a as usize) * w + b as usize] as f64;
                    }
                }
                let count = if count_include_pad { pool_size } else { (hend - hstart) * (wend - wstart) };
                y.push((s / count as f64) as f32);
            }
        }
    }
    y
}

/// CPU reference of [`mean_spatial`] on `x [rows, len]` flattened: the mean of each row.
pub fn mean_spatial_cpu(x: &[f32], len: usize) -> Vec<f32> {
    x.chunks(len).map(|r| (r.iter().map(|&v| v as f64).sum::<f64>() / len as f64) as f32).collect()
}

/// CPU reference of [`mean_tokens`] on `x [b, n, c]` flattened.
pub fn mean_tokens_cpu(x: &[f32], b: usize, n: usize, c: usize) -> Vec<f32> {
    let mut y = Vec::with_capacity(b * c);
    for bi in 0..b {
        for ci in 0..c {
            let s: f64 = (0..n).map(|k| x[(bi * n + k) * c + ci] as f64).sum();
            y.push((s / n as f64) as f32);
        }
    }
    y
}
