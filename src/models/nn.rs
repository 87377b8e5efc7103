//! The shared model builder: a [`Scope`] is a checkpoint prefix (as candle-nn's
//! `VarBuilder::pp`) that names both a layer's tensors and the graph nodes it appends, so tensor
//! names and profile labels come from one place and cannot drift apart; and the PyTorch modules
//! every family uses (`nn.Linear`, `nn.LayerNorm`, `nn.GroupNorm`, `nn.Conv2d`, an inference
//! `nn.BatchNorm2d`), read by their `state_dict` names.
//!
//! ```text
//! let attn = root.pp("blocks").pp(0).pp("attn");       // "blocks.0.attn"
//! let t = nn::layer_norm(g, &attn.pp("norm"), x, 1e-6)?; // blocks.0.attn.norm.{weight,bias},
//!                                                        // node "blocks.0.attn.norm.layer_norm"
//! ```

use std::fmt::Display;
use std::sync::Arc;

use crate::error::Result;
use crate::graph::{Graph, TensorId};
use crate::ops::conv2d::{conv2d as conv2d_op, Conv2dParams};
use crate::ops::groupnorm::{group_norm as group_norm_op, Sum};
use crate::ops::layernorm::layer_norm_add as layer_norm_add_op;
use crate::ops::matmul::{linear as linear_op, matmul, BiasAxis, Epilogue};
use crate::ops::Activation;
use crate::weights::WeightReader;

use super::torch_layout::fold_batchnorm;

/// A checkpoint prefix over the weights one graph build reads.
#[derive(Clone)]
pub struct Scope<'a> {
    reader: &'a WeightReader<'a>,
    prefix: String,
}

impl<'a> Scope<'a> {
    /// The checkpoint's top level.
    pub fn root(reader: &'a WeightReader<'a>) -> Self {
        Self { reader, prefix: String::new() }
    }

    /// The child scope `prefix.name`.
    pub fn pp(&self, name: impl Display) -> Self {
        Self { reader: self.reader, prefix: self.name(&name.to_string()) }
    }

    /// The scope's prefix (`blocks.0.attn`); empty at the root.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full checkpoint name of tensor `leaf` in this scope.
    pub fn name(&self, leaf: &str) -> String {
        if self.prefix.is_empty() {
            leaf.to_string()
        } else {
            format!("{}.{leaf}", self.prefix)
        }
    }

    pub fn reader(&self) -> &'a WeightReader<'a> {
        self.reader
    }

    /// Tensor `leaf`'s data on the host (to fold or concatenate before it becomes a constant).
    pub fn tensor(&self, leaf: &str, shape: &[usize]) -> Result<Arc<Vec<f32>>> {
        self.reader.param(&self.name(leaf), shape)
    }

    /// Tensor `leaf` as a graph constant keyed by its checkpoint name.
    pub fn param(&self, g: &mut Graph, leaf: &str, shape: &[usize]) -> Result<TensorId> {
        self.reader.constant(g, &self.name(leaf), shape)
    }

    /// A parameter derived on the host (folded, concatenated, transposed), keyed
    /// `prefix.<what>` where `what` says what it was made from (`expand.weight+pre_norm+bn1`).
    pub fn derived(&self, g: &mut Graph, what: &str, shape: &[usize], data: Vec<f32>) -> Result<TensorId> {
        g.constant(&self.name(what), shape, Arc::new(data))
    }

    /// Marks `leaf` as known but intentionally unused.
    pub fn ignore(&self, leaf: &str) {
        self.reader.ignore(&self.name(leaf));
    }

    /// The stored shape of `leaf`, if the weights have it.
    pub fn shape_of(&self, leaf: &str) -> Option<&'a [usize]> {
        self.reader.shape_of(&self.name(leaf))
    }

    pub fn contains(&self, leaf: &str) -> bool {
        self.reader.contains(&self.name(leaf))
    }

    /// Runs `f`, labelling the nodes it appends `prefix.<op>`.
    pub fn op<T>(&self, g: &mut Graph, f: impl FnOnce(&mut Graph) -> T) -> T {
        g.labelled(&self.prefix, f)
    }
}

/// The class count of a classifier head `vb` (`nn.Linear(C, classes)`): its weight's rows, else
/// (the weight missing: reported as such by the build) its bias's length, else ImageNet's 1000.
pub fn head_classes(vb: &Scope) -> usize {
    let rows = |leaf: &str| vb.shape_of(leaf).and_then(|s| s.first().copied()).filter(|&n| n > 0);
    rows("weight").or_else(|| rows("bias")).unwrap_or(1000)
}

/// `nn.Linear` on `x [.., K]`: `act(x·weightᵀ + bias) + residual` (`weight [out, K]`, `bias [out]`
/// when `bias`; `residual` shaped like the output), one GEMM.
pub fn linear(g: &mut Graph, vb: &Scope, x: TensorId, out: usize, bias: bool, act: Activation, residual: Option<TensorId>) -> Result<TensorId> {
    let shape = g.shape(x).to_vec();
    let k = *shape.last().unwrap_or(&0);
    let weight = vb.param(g, "weight", &[out, k])?;
    let bias = if bias { Some(vb.param(g, "bias", &[out])?) } else { None };
    let Some(residual) = residual else {
        return vb.op(g, |g| linear_op(g, x, weight, bias, act));
    };
    let rows = g.numel(x) / k.max(1);
    let x2 = g.reshape(x, &[rows, k])?;
    let epi = Epilogue { alpha: 1.0, bias: bias.map(|b| (b, BiasAxis::Col)), act, residual: Some(residual) };
    let y = vb.op(g, |g| matmul(g, x2, weight, false, true, epi))?;
    let mut out_shape = shape;
    if let Some(last) = out_shape.last_mut() {
        *last = out;
    }
    g.reshape(y, &out_shape)
}

/// `nn.LayerNorm` over the last axis of `x`.
pub fn layer_norm(g: &mut Graph, vb: &Scope, x: TensorId, eps: f32) -> Result<TensorId> {
    layer_norm_add(g, vb, x, eps, None)
}

/// [`layer_norm`] with `add` added to its output in the same pass (`ops::layernorm::layer_norm_add`).
pub fn layer_norm_add(g: &mut Graph, vb: &Scope, x: TensorId, eps: f32, add: Option<TensorId>) -> Result<TensorId> {
    let c = *g.shape(x).last().unwrap_or(&0);
    let gamma = vb.param(g, "weight", &[c])?;
    let beta = vb.param(g, "bias", &[c])?;
    vb.op(g, |g| layer_norm_add_op(g, x, Some(gamma), Some(beta), eps, add))
}

/// `nn.GroupNorm(groups, C)` of `x [B, C, ..]`, then `act`, with `sum` added to its input or its
/// output.
pub fn group_norm(g: &mut Graph, vb: &Scope, x: TensorId, groups: usize, eps: f32, sum: Option<Sum>, act: Activation) -> Result<TensorId> {
    let c = g.shape(x).get(1).copied().unwrap_or(0);
    let gamma = vb.param(g, "weight", &[c])?;
    let beta = vb.param(g, "bias", &[c])?;
    vb.op(g, |g| group_norm_op(g, x, groups, gamma, beta, eps, sum, act))
}

/// `nn.Conv2d(Cin, cout, k, ...)` on NCHW `x`, with the activation fused.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(g: &mut Graph, vb: &Scope, x: TensorId, cout: usize, k: usize, p: Conv2dParams, bias: bool, act: Activation) -> Result<TensorId> {
    let cin = g.shape(x).get(1).copied().unwrap_or(0) / p.groups.max(1);
    let weight = vb.param(g, "weight", &[cout, cin, k, k])?;
    let bias = if bias { Some(vb.param(g, "bias", &[cout])?) } else { None };
    vb.op(g, |g| conv2d_op(g, x, weight, bias, &p, act))
}

/// [`conv2d`] on a channel-last map `x [B, H, W, Cin]` (one group), writing `[B, Ho, Wo, cout]`
/// ([`crate::ops::conv2d_nhwc`]).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_nhwc(g: &mut Graph, vb: &Scope, x: TensorId, cout: usize, k: usize, p: Conv2dParams, bias: bool, act: Activation) -> Result<TensorId> {
    let cin = g.shape(x).get(3).copied().unwrap_or(0);
    let weight = vb.param(g, "weight", &[cout, cin, k, k])?;
    let bias = if bias { Some(vb.param(g, "bias", &[cout])?) } else { None };
    vb.op(g, |g| crate::ops::conv2d_nhwc::conv2d_nhwc(g, x, weight, bias, &p, act))
}

/// Square-kernel conv parameters: stride, padding and groups (dilation 1).
pub fn conv_params(stride: usize, padding: usize, groups: usize) -> Conv2dParams {
    Conv2dParams { stride: (stride, stride), padding: (padding, padding), dilation: (1, 1), groups }
}

/// An inference `nn.BatchNorm2d`'s tensors; `y = scale · x + shift` (f64).
pub struct BatchNorm {
    pub gamma: Arc<Vec<f32>>,
    pub beta: Arc<Vec<f32>>,
    pub mean: Arc<Vec<f32>>,
    pub var: Arc<Vec<f32>>,
    pub eps: f32,
}

impl BatchNorm {
    /// Reads `weight`, `bias`, `running_mean`, `running_var` of `c` channels (PyTorch's int64
    /// `num_batches_tracked` counter is training state: ignored).
    pub fn load(vb: &Scope, c: usize, eps: f32) -> Result<Self> {
        let get = |k: &str| vb.tensor(k, &[c]);
        let bn = Self { gamma: get("weight")?, beta: get("bias")?, mean: get("running_mean")?, var: get("running_var")?, eps };
        vb.ignore("num_batches_tracked");
        Ok(bn)
    }

    pub fn scale(&self, i: usize) -> f64 {
        self.gamma[i] as f64 / (self.var[i] as f64 + self.eps as f64).sqrt()
    }

    pub fn shift(&self, i: usize) -> f64 {
        self.beta[i] as f64 - self.mean[i] as f64 * self.scale(i)
    }

    /// This BN folded into the conv before it (output channels = BN channels).
    pub fn fold(&self, weight: &[f32], bias: Option<&[f32]>) -> (Vec<f32>, Vec<f32>) {
        fold_batchnorm(weight, bias, self.gamma.len(), &self.gamma, &self.beta, &self.mean, &self.var, self.eps)
    }
}
