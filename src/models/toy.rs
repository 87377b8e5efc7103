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

use crate::error::{Error, Result};
use crate::graph::{Graph, TensorId};
use crate::ops::attention::{attention_strided, AttentionDims, Operand, OutputSpec, View};
use crate::ops::conv2d::{conv2d, Conv2dParams};
use crate::ops::layout::permute;
use crate::ops::pool::mean_tokens;
use crate::ops::Activation;
use crate::weights::Weights;

use super::nn::{self, BatchNorm, Scope};
use super::torch_layout::relative_position_bias;

const WINDOW: usize = 4;
const LN_EPS: f32 = 1e-5;
const BN_EPS: f32 = 1e-5;

/// The toy network in the registry: id `toy`, no configuration (everything is read off the
/// weights), input 32×32.
pub struct Toy;

/// The toy network has no hyper-parameters of its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToyConfig {}

impl super::Config for ToyConfig {
    fn validate(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}

impl super::Family for Toy {
    type Config = ToyConfig;
    const PREFIX: &'static str = "toy";
    const VARIANTS: &'static [&'static str] = &[""];

    fn variant(name: &str) -> Option<ToyConfig> {
        name.is_empty().then(ToyConfig::default)
    }

    fn default_input(_cfg: &ToyConfig, _weights: &Weights) -> (usize, usize) {
        (32, 32)
    }

    fn build(_cfg: &ToyConfig, g: &mut Graph, root: &Scope, input: TensorId, _id: &str) -> Result<TensorId> {
        build(g, root, input)
    }
}

fn shape_of(vb: &Scope, leaf: &str) -> Result<Vec<usize>> {
    vb.shape_of(leaf)
        .map(<[usize]>::to_vec)
        .ok_or_else(|| Error::MissingTensors { file: vb.reader().file().to_string(), tensors: vec![vb.name(leaf)] })
}

pub fn build(g: &mut Graph, root: &Scope, input: TensorId) -> Result<TensorId> {
    let dim = shape_of(root, "stem.conv.weight")?.first().copied().unwrap_or(0);
    let heads = shape_of(root, "blocks.0.attn.relative_position_bias_table")?.get(1).copied().unwrap_or(0);
    let classes = shape_of(root, "head.weight")?.first().copied().unwrap_or(0);
    let depth = (0..).take_while(|i| root.contains(&format!("blocks.{i}.norm1.weight"))).count();
    if heads == 0 || dim % heads != 0 {
        return Err(Error::Graph(format!("toy: {heads} heads do not divide the width {dim}")));
    }

    let x = stem(g, &root.pp("stem"), input, dim)?;
    let &[batch, _, h, wd] = g.shape(x) else { unreachable!("conv2d output is rank 4") };
    if h % WINDOW != 0 || wd % WINDOW != 0 {
        return Err(Error::BadInputShape {
            model: "toy".into(),
            expected: format!("H and W multiples of {} (the stem halves them into {WINDOW}x{WINDOW} windows)", 2 * WINDOW),
            found: g.shape(input).to_vec(),
        });
    }
    let tokens = root.op(g, |g| permute(g, x, &[0, 2, 3, 1]))?;
    let mut x = g.reshape(tokens, &[batch, h * wd, dim])?;
    for i in 0..depth {
        x = block(g, &root.pp("blocks").pp(i), x, (h, wd), heads)?;
    }
    let x = nn::layer_norm(g, &root.pp("norm"), x, LN_EPS)?;
    let pooled = root.op(g, |g| mean_tokens(g, x))?;
    nn::linear(g, &root.pp("head"), pooled, classes, true, Activation::None, None)
}

/// conv + BatchNorm (folded into the conv's weight and bias) + GELU.
fn stem(g: &mut Graph, vb: &Scope, x: TensorId, dim: usize) -> Result<TensorId> {
    let cin = g.shape(x)[1];
    let wshape = [dim, cin, 3, 3];
    let conv = vb.pp("conv");
    let weight = conv.tensor("weight", &wshape)?;
    let bias = conv.tensor("bias", &[dim])?;
    let (weight, bias) = BatchNorm::load(&vb.pp("bn"), dim, BN_EPS)?.fold(&weight, Some(&bias[..]));
    let weight = vb.derived(g, "conv.weight+bn", &wshape, weight)?;
    let bias = vb.derived(g, "conv.bias+bn", &[dim], bias)?;
    let p = Conv2dParams { stride: (2, 2), padding: (1, 1), ..Default::default() };
    vb.op(g, |g| conv2d(g, x, weight, Some(bias), &p, Activation::Gelu))
}

fn block(g: &mut Graph, vb: &Scope, x: TensorId, (h, wd): (usize, usize), heads: usize) -> Result<TensorId> {
    let &[batch, _, dim] = g.shape(x) else { unreachable!("tokens are rank 3") };

    let y = nn::layer_norm(g, &vb.pp("norm1"), x, LN_EPS)?;
    let attn = vb.pp("attn");
    let qkv = nn::linear(g, &attn.pp("qkv"), y, 3 * dim, true, Activation::None, None)?;
    let span = 2 * WINDOW - 1;
    let table = attn.tensor("relative_position_bias_table", &[span * span, heads])?;
    let n = WINDOW * WINDOW;
    let bias = attn.derived(g, "relative_position_bias_table[gathered]", &[heads, n, n], relative_position_bias(&table, WINDOW, heads))?;

    let head_dim = dim / heads;
    let dims = AttentionDims { batch: batch * (h / WINDOW) * (wd / WINDOW), heads, nq: n, nk: n, d: head_dim, dv: head_dim };
    let window_of_qkv = |part: usize| Operand::new(qkv, View::windows(h, wd, (WINDOW, WINDOW), 3 * dim, part * dim, head_dim));
    let out = OutputSpec { shape: vec![batch, h * wd, dim], view: View::windows(h, wd, (WINDOW, WINDOW), dim, 0, head_dim) };
    let bias = Operand::new(bias, View::contiguous(heads, n, n).shared_batch());
    let scale = (head_dim as f32).powf(-0.5);
    let a = attn.op(g, |g| {
        attention_strided(g, window_of_qkv(0), window_of_qkv(1), window_of_qkv(2), Some(bias), &dims, scale, &out)
    })?;
    let x = nn::linear(g, &attn.pp("proj"), a, dim, true, Activation::None, Some(x))?;

    let y = nn::layer_norm(g, &vb.pp("norm2"), x, LN_EPS)?;
    let mlp = vb.pp("mlp");
    let hidden = mlp.shape_of("fc1.weight").and_then(|s| s.first().copied()).unwrap_or(4 * dim);
    let y = nn::linear(g, &mlp.pp("fc1"), y, hidden, true, Activation::Gelu, None)?;
    nn::linear(g, &mlp.pp("fc2"), y, dim, true, Activation::None, Some(x))
}
