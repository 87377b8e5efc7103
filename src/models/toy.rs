//! `toy`: the engine's end-to-end test network, small enough for a committed golden fixture and
//! built from the same core ops the families use. Its PyTorch twin is `tools/make_toy_fixture.py`;
//! the tensor names below are that module's `state_dict` names.
//!
//! ```text
//! input [B, 3, H, W]
//! stem     conv 3x3 s2 p1 (+ BatchNorm folded at load) + GELU      [B, C, H/2, W/2]
//!          permute to channel-last tokens                           [B, h·w, C]
//! blocks.i x = x + proj(window_attention(norm1(x)))   (Swin, no shift, relative position bias)
//!          x = x + fc2(GELU(fc1(norm2(x))))
//! norm, mean over tokens, head                                      [B, classes]
//! ```
//!
//! The window partition never materialises: the attention reads q, k and v straight out of the
//! channel-last qkv projection `[B, h, w, 3C]` through window views and writes its output back in
//! `[B, h, w, C]` order, so `proj` reads it as plain tokens. Widths, heads' count (from the bias
//! table), depth and classes are read off the weights; the window is 4 and the head dim C/heads.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::graph::{Graph, TensorId};
use crate::ops::attention::{attention_strided, AttentionDims, Operand, OutputSpec, View};
use crate::ops::conv2d::{conv2d, fold_batchnorm, Conv2dParams};
use crate::ops::layernorm::layer_norm;
use crate::ops::layout::permute;
use crate::ops::matmul::{linear, matmul, BiasAxis, Epilogue};
use crate::ops::pool::mean_tokens;
use crate::ops::Activation;
use crate::weights::Weights;

const WINDOW: usize = 4;
const LN_EPS: f32 = 1e-5;
const BN_EPS: f32 = 1e-5;

fn shape_of(w: &Weights, name: &str) -> Result<Vec<usize>> {
    w.shape_of(name)
        .map(<[usize]>::to_vec)
        .ok_or_else(|| Error::MissingTensors { file: w.file.clone(), tensors: vec![name.to_string()] })
}

pub fn build(g: &mut Graph, w: &Weights, input: TensorId) -> Result<TensorId> {
    let stem_shape = shape_of(w, "stem.conv.weight")?;
    let dim = stem_shape[0];
    let heads = shape_of(w, "blocks.0.attn.relative_position_bias_table")?.get(1).copied().unwrap_or(0);
    let classes = shape_of(w, "head.weight")?[0];
    let depth = (0..).take_while(|i| w.contains(&format!("blocks.{i}.norm1.weight"))).count();
    if heads == 0 || dim % heads != 0 {
        return Err(Error::Graph(format!("toy: {heads} heads do not divide the width {dim}")));
    }

    let x = g.scope("stem", |g| stem(g, w, input, dim))?;
    let &[batch, _, h, wd] = g.shape(x) else { unreachable!("conv2d output is rank 4") };
    if h % WINDOW != 0 || wd % WINDOW != 0 {
        return Err(Error::BadInputShape {
            model: "toy".into(),
            expected: format!("H and W multiples of {} (the stem halves them into {WINDOW}x{WINDOW} windows)", 2 * WINDOW),
            found: g.shape(input).to_vec(),
        });
    }
    let tokens = permute(g, x, &[0, 2, 3, 1])?;
    let mut x = g.reshape(tokens, &[batch, h * wd, dim])?;
    for i in 0..depth {
        x = g.scope(&format!("blocks.{i}"), |g| block(g, w, &format!("blocks.{i}"), x, (h, wd), heads))?;
    }
    let x = g.scope("norm", |g| layer_norm_named(g, w, "norm", x, dim))?;
    let pooled = mean_tokens(g, x)?;
    let head_w = w.constant(g, "head.weight", &[classes, dim])?;
    let head_b = w.constant(g, "head.bias", &[classes])?;
    g.scope("head", |g| linear(g, pooled, head_w, Some(head_b), Activation::None))
}

/// conv + BatchNorm (folded into the conv's weight and bias) + GELU.
fn stem(g: &mut Graph, w: &Weights, x: TensorId, dim: usize) -> Result<TensorId> {
    let cin = g.shape(x)[1];
    let wshape = [dim, cin, 3, 3];
    let weight = w.param("stem.conv.weight", &wshape)?;
    let bias = w.param("stem.conv.bias", &[dim])?;
    let [gamma, beta, mean, var] = ["weight", "bias", "running_mean", "running_var"].map(|p| w.param(&format!("stem.bn.{p}"), &[dim]));
    let (weight, bias) = fold_batchnorm(&weight, Some(&bias[..]), dim, &gamma?, &beta?, &mean?, &var?, BN_EPS);
    let weight = g.constant("stem.conv.weight+bn", &wshape, Arc::new(weight))?;
    let bias = g.constant("stem.conv.bias+bn", &[dim], Arc::new(bias))?;
    let p = Conv2dParams { stride: (2, 2), padding: (1, 1), ..Default::default() };
    conv2d(g, x, weight, Some(bias), &p, Activation::Gelu)
}

fn layer_norm_named(g: &mut Graph, w: &Weights, name: &str, x: TensorId, dim: usize) -> Result<TensorId> {
    let gamma = w.constant(g, &format!("{name}.weight"), &[dim])?;
    let beta = w.constant(g, &format!("{name}.bias"), &[dim])?;
    layer_norm(g, x, Some(gamma), Some(beta), LN_EPS)
}

/// `x + linear(y)` (weights `{prefix}.{layer}.weight/bias`) with the residual added in the
/// matmul's epilogue.
#[allow(clippy::too_many_arguments)]
fn linear_residual(g: &mut Graph, w: &Weights, prefix: &str, layer: &str, y: TensorId, x: TensorId, n: usize, k: usize) -> Result<TensorId> {
    let weight = w.constant(g, &format!("{prefix}.{layer}.weight"), &[n, k])?;
    let bias = w.constant(g, &format!("{prefix}.{layer}.bias"), &[n])?;
    let epi = Epilogue { bias: Some((bias, BiasAxis::Col)), residual: Some(x), ..Default::default() };
    g.scope(layer, |g| matmul(g, y, weight, false, true, epi))
}

fn block(g: &mut Graph, w: &Weights, name: &str, x: TensorId, (h, wd): (usize, usize), heads: usize) -> Result<TensorId> {
    let &[batch, _, dim] = g.shape(x) else { unreachable!("tokens are rank 3") };
    let p = |s: &str| format!("{name}.{s}");

    let y = g.scope("norm1", |g| layer_norm_named(g, w, &p("norm1"), x, dim))?;
    let qkv_w = w.constant(g, &p("attn.qkv.weight"), &[3 * dim, dim])?;
    let qkv_b = w.constant(g, &p("attn.qkv.bias"), &[3 * dim])?;
    let qkv = g.scope("attn.qkv", |g| linear(g, y, qkv_w, Some(qkv_b), Activation::None))?;
    let bias = relative_position_bias(g, w, &p("attn.relative_position_bias_table"), heads)?;

    let head_dim = dim / heads;
    let n = WINDOW * WINDOW;
    let dims = AttentionDims { batch: batch * (h / WINDOW) * (wd / WINDOW), heads, nq: n, nk: n, d: head_dim, dv: head_dim };
    let window_of_qkv = |part: usize| Operand::new(qkv, View::windows(h, wd, (WINDOW, WINDOW), 3 * dim, part * dim, head_dim));
    let out = OutputSpec { shape: vec![batch, h * wd, dim], view: View::windows(h, wd, (WINDOW, WINDOW), dim, 0, head_dim) };
    let bias = Operand::new(bias, View::contiguous(heads, n, n).shared_batch());
    let scale = (head_dim as f32).powf(-0.5);
    let attn = g.scope("attn", |g| {
        attention_strided(g, window_of_qkv(0), window_of_qkv(1), window_of_qkv(2), Some(bias), &dims, scale, &out)
    })?;
    let x = linear_residual(g, w, name, "attn.proj", attn, x, dim, dim)?;

    let y = g.scope("norm2", |g| layer_norm_named(g, w, &p("norm2"), x, dim))?;
    let hidden = w.shape_of(&p("mlp.fc1.weight")).map_or(4 * dim, |s| s[0]);
    let fc1_w = w.constant(g, &p("mlp.fc1.weight"), &[hidden, dim])?;
    let fc1_b = w.constant(g, &p("mlp.fc1.bias"), &[hidden])?;
    let y = g.scope("mlp.fc1", |g| linear(g, y, fc1_w, Some(fc1_b), Activation::Gelu))?;
    linear_residual(g, w, name, "mlp.fc2", y, x, dim, hidden)
}

/// Swin's relative position bias, gathered on the host: `bias[h, i, j] = table[index(i, j), h]`
/// with `index` the offset `(Δrow, Δcol)` between window tokens `i` and `j`, each shifted into
/// `0..2·WINDOW-1`. Returns the `[heads, n, n]` constant.
fn relative_position_bias(g: &mut Graph, w: &Weights, table_name: &str, heads: usize) -> Result<TensorId> {
    let span = 2 * WINDOW - 1;
    let table = w.param(table_name, &[span * span, heads])?;
    let n = WINDOW * WINDOW;
    let mut bias = vec![0f32; heads * n * n];
    for i in 0..n {
        for j in 0..n {
            let dy = i / WINDOW + WINDOW - 1 - j / WINDOW;
            let dx = i % WINDOW + WINDOW - 1 - j % WINDOW;
            let index = dy * span + dx;
            for hd in 0..heads {
                bias[(hd * n + i) * n + j] = table[index * heads + hd];
            }
        }
    }
    g.constant(&format!("{table_name}[gathered]"), &[heads, n, n], Arc::new(bias))
}
