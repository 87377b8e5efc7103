//! VVT (Vicinity Vision Transformer), from the official `state_dict` names unchanged, at any input
//! resolution (the graph is built per input size). Spec: shared/spec/vvt.md; PyTorch twin:
//! tools/reference/vvt.py.
//!
//! Four stages of PVTv2-style overlapping patch embedding (conv 7×7/s4 then 3×3/s2, LayerNorm
//! eps 1e-5), blocks `t += attn(LN(t))`, `t += MixFFN(LN(t))` (eps 1e-6), a stage LayerNorm, then
//! the token mean and the head. Tokens are channels-last `[B, N, C]`, `n = row·W + col`.
//!
//! Attention (ops::vicinity_attention): SE gate `s = σ(W₂ relu(W₁ mean(u)))`; q/k/v from ONE
//! GEMM on the concatenated `[q; k; v]` projections (relu of q and k is the kernels' feature
//! map, applied on load); the fused linear vicinity attention reading the stage's angle table
//! (host f64, a graph constant per stage size); `out_proj`; then the gate kernel
//! `t + clampmag(c + c·s)`, `c = clampmag(out_proj)`, which also does the residual add.
//!
//! MixFFN runs channel-major so that the depthwise conv needs no permute: `fc1` is computed as
//! `W₁·uᵀ` → `[B, Hd, N]` (= NCHW `[B, Hd, H, W]`), the 3×3 depthwise conv fuses the exact GELU,
//! and `fc2` reads that map transposed, adding its bias and the residual in the GEMM epilogue.
//! When the hidden map would exceed [`BuildOptions::mlp_band_bytes`] (vvt-tiny at 896² needs
//! 154 MB, over WebGPU's 128 MiB per binding) the MixFFN runs in horizontal bands of token rows,
//! each recomputing one halo row above and below for the 3×3 conv.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::graph::{Graph, TensorId};
use crate::ops::conv2d::{conv2d, Conv2dParams};
use crate::ops::elementwise::add;
use crate::ops::layernorm::layer_norm;
use crate::ops::layout::{concat, permute, slice};
use crate::ops::matmul::{linear, matmul, BiasAxis, Epilogue};
use crate::ops::pool::mean_tokens;
use crate::ops::vicinity_attention::{angle_table, vicinity_attention, vicinity_gate, QkvColumns, VicinityDims};
use crate::ops::Activation;
use crate::weights::Weights;

/// Block and stage norms; the patch-embedding norms use PyTorch's default.
const BLOCK_EPS: f32 = 1e-6;
const PATCH_EPS: f32 = 1e-5;
/// WebGPU's default `maxStorageBufferBindingSize`: no single activation may be larger.
const MAX_BINDING_BYTES: usize = 128 << 20;

/// The official model's hyper-parameters; `wgvit.config` metadata holds them as JSON with these
/// field names.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VvtConfig {
    pub dims: [usize; 4],
    pub heads: [usize; 4],
    pub mlp_ratios: [usize; 4],
    pub depths: [usize; 4],
    /// Feature-reduction ratios: q/k/v are `C / fr` wide.
    pub fr: [usize; 4],
}

pub fn config(variant: &str) -> Option<VvtConfig> {
    let (dims, heads, mlp_ratios, depths, fr) = match variant {
        "tiny" => ([96, 160, 320, 512], [1, 2, 5, 8], [8, 8, 4, 4], [2, 2, 2, 2], [2, 2, 2, 2]),
        "small" => ([96, 160, 320, 512], [1, 2, 5, 8], [8, 8, 4, 4], [3, 3, 9, 3], [2, 2, 2, 2]),
        "medium" => ([96, 160, 320, 512], [1, 2, 5, 8], [8, 8, 4, 4], [3, 3, 27, 3], [2, 2, 2, 2]),
        "large" => ([96, 160, 320, 512], [1, 2, 5, 8], [4, 4, 4, 4], [4, 4, 36, 4], [2, 2, 2, 2]),
        // Not an official model: the official class at reduced width, every fr and several heads.
        "micro" => ([16, 32, 48, 64], [1, 2, 3, 4], [2, 2, 2, 2], [1, 1, 2, 1], [1, 2, 2, 4]),
        _ => return None,
    };
    Some(VvtConfig { dims, heads, mlp_ratios, depths, fr })
}

impl super::Config for VvtConfig {
    fn validate(&self) -> std::result::Result<(), String> {
        super::nonzero("dims", &self.dims)?;
        super::nonzero("heads", &self.heads)?;
        super::nonzero("mlp_ratios", &self.mlp_ratios)?;
        super::nonzero("fr", &self.fr)?;
        for s in 0..4 {
            let (c, fr, heads) = (self.dims[s], self.fr[s], self.heads[s]);
            if !c.is_multiple_of(fr) || !(c / fr).is_multiple_of(heads) {
                return Err(format!("dims[{s}] / fr[{s}] = {c} / {fr} must be a whole multiple of heads[{s}] = {heads}"));
            }
            if !c.is_multiple_of(heads) {
                return Err(format!("dims[{s}] = {c} is not a multiple of heads[{s}] = {heads}"));
            }
        }
        Ok(())
    }
}

/// `(H_i, W_i)` of the four stages for an `h × w` input: ceil(/4), then ceil(/2) three times.
pub fn stage_sizes(h: usize, w: usize) -> [(usize, usize); 4] {
    let s1 = (h.div_ceil(4), w.div_ceil(4));
    let s2 = (s1.0.div_ceil(2), s1.1.div_ceil(2));
    let s3 = (s2.0.div_ceil(2), s2.1.div_ceil(2));
    [s1, s2, s3, (s3.0.div_ceil(2), s3.1.div_ceil(2))]
}

/// Knobs of the graph builder (defaults are what `build` uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuildOptions {
    /// Largest MixFFN hidden map `[B, Hd, rows, W]` in bytes before the MixFFN is split into
    /// bands of token rows.
    pub mlp_band_bytes: usize,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self { mlp_band_bytes: 64 << 20 }
    }
}

fn conv_params(stride: usize, padding: usize, groups: usize) -> Conv2dParams {
    Conv2dParams { stride: (stride, stride), padding: (padding, padding), dilation: (1, 1), groups }
}

struct Builder<'a> {
    g: &'a mut Graph,
    w: &'a Weights,
    cfg: VvtConfig,
    opts: BuildOptions,
}

impl Builder<'_> {
    fn param(&mut self, name: &str, shape: &[usize]) -> Result<TensorId> {
        self.w.constant(self.g, name, shape)
    }

    fn layer_norm(&mut self, name: &str, x: TensorId, eps: f32) -> Result<TensorId> {
        let c = *self.g.shape(x).last().unwrap_or(&0);
        let gamma = self.param(&format!("{name}.weight"), &[c])?;
        let beta = self.param(&format!("{name}.bias"), &[c])?;
        self.g.scope(name, |g| layer_norm(g, x, Some(gamma), Some(beta), eps))
    }

    fn linear(&mut self, name: &str, x: TensorId, out: usize, bias: bool, act: Activation) -> Result<TensorId> {
        let k = *self.g.shape(x).last().unwrap_or(&0);
        let weight = self.param(&format!("{name}.weight"), &[out, k])?;
        let bias = if bias { Some(self.param(&format!("{name}.bias"), &[out])?) } else { None };
        self.g.scope(name, |g| linear(g, x, weight, bias, act))
    }

    /// `patch_embed{i}`: conv, tokens `[B, N, C]`, LayerNorm (eps 1e-5). Returns the tokens.
    fn patch_embed(&mut self, stage: usize, x: TensorId) -> Result<TensorId> {
        let name = format!("patch_embed{}", stage + 1);
        let (k, stride) = if stage == 0 { (7, 4) } else { (3, 2) };
        let (b, cin) = (self.g.shape(x)[0], self.g.shape(x)[1]);
        let c = self.cfg.dims[stage];
        let weight = self.param(&format!("{name}.proj.weight"), &[c, cin, k, k])?;
        let bias = self.param(&format!("{name}.proj.bias"), &[c])?;
        let y = self.g.scope(&format!("{name}.proj"), |g| conv2d(g, x, weight, Some(bias), &conv_params(stride, k / 2, 1), Activation::None))?;
        let [h, w] = [self.g.shape(y)[2], self.g.shape(y)[3]];
        let tokens = permute(self.g, y, &[0, 2, 3, 1])?;
        let tokens = self.g.reshape(tokens, &[b, h * w, c])?;
        self.layer_norm(&format!("{name}.norm"), tokens, PATCH_EPS)
    }

    /// `block{i}.{j}`: `t += attn(norm1(t))`, `t += mlp(norm2(t))`.
    fn block(&mut self, p: &str, stage: usize, t: TensorId, hw: (usize, usize), trig: TensorId) -> Result<TensorId> {
        let u = self.layer_norm(&format!("{p}.norm1"), t, BLOCK_EPS)?;
        let t = self.attention(&format!("{p}.attn"), stage, u, t, trig)?;
        let u = self.layer_norm(&format!("{p}.norm2"), t, BLOCK_EPS)?;
        self.mix_ffn(&format!("{p}.mlp"), stage, u, t, hw)
    }

    /// `residual + VicinityAttention(u)` (spec §3.3); u, residual `[B, N, C]`.
    fn attention(&mut self, p: &str, stage: usize, u: TensorId, residual: TensorId, trig: TensorId) -> Result<TensorId> {
        let [b, n, c] = dims3(self.g.shape(u));
        let (heads, fr) = (self.cfg.heads[stage], self.cfg.fr[stage]);
        let cr = c / fr;
        let d = c / heads / fr;
        if d == 0 || heads * d != cr {
            return Err(Error::Graph(format!("{p}: {c} channels do not split into {heads} heads of (C/heads)/fr with fr = {fr}")));
        }
        // SE gate from the full-width normalised input.
        let m = self.g.scope(&format!("{p}.se_pool"), |g| mean_tokens(g, u))?;
        let s = self.linear(&format!("{p}.se_fc.0"), m, c, false, Activation::Relu)?;
        let s = self.linear(&format!("{p}.se_fc.2"), s, c, false, Activation::Sigmoid)?;

        // q, k, v in one GEMM on the concatenated projections (checkpoint names unchanged).
        let mut weight = Vec::with_capacity(3 * cr * c);
        let mut bias = Vec::with_capacity(3 * cr);
        for proj in ["q_proj", "k_proj", "v_proj"] {
            weight.extend_from_slice(&self.w.param(&format!("{p}.{proj}.weight"), &[cr, c])?);
            bias.extend_from_slice(&self.w.param(&format!("{p}.{proj}.bias"), &[cr])?);
        }
        let weight = self.g.constant(&format!("{p}.[q_proj,k_proj,v_proj].weight"), &[3 * cr, c], Arc::new(weight))?;
        let bias = self.g.constant(&format!("{p}.[q_proj,k_proj,v_proj].bias"), &[3 * cr], Arc::new(bias))?;
        let qkv = self.g.scope(&format!("{p}.qkv"), |g| linear(g, u, weight, Some(bias), Activation::None))?;

        let cols = QkvColumns { row: 3 * cr, q: 0, k: cr, v: 2 * cr };
        let dims = VicinityDims { batch: b, heads, n, d };
        let o = self.g.scope(p, |g| vicinity_attention(g, qkv, &cols, trig, &dims))?;
        let y = self.linear(&format!("{p}.out_proj"), o, c, true, Activation::None)?;
        self.g.scope(p, |g| vicinity_gate(g, y, s, residual))
    }

    /// `residual + fc2(GELU(dwconv(fc1(u))))`, channel-major (see the module docs); u `[B, N, C]`.
    fn mix_ffn(&mut self, p: &str, stage: usize, u: TensorId, residual: TensorId, (h, w): (usize, usize)) -> Result<TensorId> {
        let [b, n, c] = dims3(self.g.shape(u));
        let hd = c * self.cfg.mlp_ratios[stage];
        let w1 = self.param(&format!("{p}.fc1.weight"), &[hd, c])?;
        let b1 = self.param(&format!("{p}.fc1.bias"), &[hd])?;
        let wd = self.param(&format!("{p}.dwconv.dwconv.weight"), &[hd, 1, 3, 3])?;
        let bd = self.param(&format!("{p}.dwconv.dwconv.bias"), &[hd])?;
        let w2 = self.param(&format!("{p}.fc2.weight"), &[c, hd])?;
        let b2 = self.param(&format!("{p}.fc2.bias"), &[c])?;
        let row_bytes = b * hd * w * 4;
        // One band of `rows` output rows (plus its halo) must fit the budget.
        let rows = if row_bytes * h <= self.opts.mlp_band_bytes { h } else { (self.opts.mlp_band_bytes / row_bytes).saturating_sub(2).max(1) };
        let branch = |g: &mut Graph, x: TensorId, rows: usize, res: Option<TensorId>| -> Result<TensorId> {
            let m = g.shape(x)[1];
            let hid = g.scope("fc1", |g| matmul(g, w1, x, false, true, Epilogue { bias: Some((b1, BiasAxis::Row)), ..Default::default() }))?;
            let hid = g.reshape(hid, &[b, hd, rows, w])?;
            let hid = g.scope("dwconv.dwconv", |g| conv2d(g, hid, wd, Some(bd), &conv_params(1, 1, hd), Activation::Gelu))?;
            let hid = g.reshape(hid, &[b, hd, m])?;
            let epi = Epilogue { bias: Some((b2, BiasAxis::Col)), residual: res, ..Default::default() };
            g.scope("fc2", |g| matmul(g, hid, w2, true, true, epi))
        };
        if rows >= h {
            return self.g.scope(p, |g| branch(g, u, h, Some(residual)));
        }
        // Bands of `rows` token rows; each computes its hidden map with one halo row above and
        // below (where they exist), then keeps only its own rows.
        let mut parts = Vec::new();
        for r0 in (0..h).step_by(rows) {
            let r1 = (r0 + rows).min(h);
            let (e0, e1) = (r0.saturating_sub(1), (r1 + 1).min(h));
            if b * hd * (e1 - e0) * w * 4 > MAX_BINDING_BYTES {
                return Err(Error::Graph(format!("{p}: a MixFFN band of {} rows × {w} tokens × {hd} channels × batch {b} exceeds 128 MiB", e1 - e0)));
            }
            let part = self.g.scope(&format!("{p}.band{r0}"), |g| -> Result<TensorId> {
                let x = slice(g, u, 1, e0 * w, (e1 - e0) * w)?;
                let y = branch(g, x, e1 - e0, None)?;
                slice(g, y, 1, (r0 - e0) * w, (r1 - r0) * w)
            })?;
            parts.push(part);
        }
        let y = concat(self.g, &parts, 1)?;
        debug_assert_eq!(self.g.shape(y), [b, n, c]);
        self.g.scope(p, |g| add(g, residual, y))
    }
}

fn dims3(s: &[usize]) -> [usize; 3] {
    [s[0], s[1], s[2]]
}

/// Appends VVT model `id` with configuration `cfg` to `g`; returns the logits `[B, classes]`
/// (classes from the weights).
pub fn build(g: &mut Graph, w: &Weights, input: TensorId, id: &str, cfg: &VvtConfig) -> Result<TensorId> {
    build_with(g, w, input, id, cfg, &BuildOptions::default())
}

/// [`build`] with explicit [`BuildOptions`].
pub fn build_with(g: &mut Graph, w: &Weights, input: TensorId, id: &str, cfg: &VvtConfig, opts: &BuildOptions) -> Result<TensorId> {
    let id = id.to_string();
    let shape = g.shape(input).to_vec();
    let bad = |expected: String| Error::BadInputShape { model: id.clone(), expected, found: shape.clone() };
    let &[batch, 3, h, w_in] = shape.as_slice() else {
        return Err(bad("a [B, 3, H, W] image tensor".into()));
    };
    if batch == 0 || h == 0 || w_in == 0 {
        return Err(bad("a non-empty [B, 3, H, W] image tensor (any H, W >= 1)".into()));
    }
    // Every activation except the (banded) MixFFN hidden map must fit one WebGPU binding.
    let sizes = stage_sizes(h, w_in);
    let largest = (0..4)
        .map(|i| batch * sizes[i].0 * sizes[i].1 * cfg.dims[i].max(3 * cfg.dims[i] / cfg.fr[i]) * 4)
        .chain([batch * 3 * h * w_in * 4, batch * 3 * sizes[0].1 * cfg.dims[0] * cfg.mlp_ratios[0] * 4])
        .max()
        .unwrap_or(0);
    if largest > MAX_BINDING_BYTES {
        return Err(bad(format!(
            "any H, W >= 1, but every activation must fit WebGPU's 128 MiB binding limit; this shape needs a {} MiB tensor \
             (stage 1 alone holds B·ceil(H/4)·ceil(W/4)·{} floats): use a smaller batch or resolution",
            largest >> 20,
            cfg.dims[0].max(3 * cfg.dims[0] / cfg.fr[0])
        )));
    }

    let mut bld = Builder { g, w, cfg: cfg.clone(), opts: *opts };
    let mut x = input;
    let mut t = input;
    for (stage, &(sh, sw)) in sizes.iter().enumerate() {
        t = bld.patch_embed(stage, x)?;
        debug_assert_eq!(bld.g.shape(t), [batch, sh * sw, cfg.dims[stage]]);
        bld.g.tap(&format!("patch_embed{}", stage + 1), t);
        let trig = bld.g.constant(&format!("vvt.angles.{sh}x{sw}"), &[sh * sw, 4], Arc::new(angle_table(sh, sw)))?;
        for j in 0..cfg.depths[stage] {
            let p = format!("block{}.{j}", stage + 1);
            t = bld.block(&p, stage, t, (sh, sw), trig)?;
            bld.g.tap(&p, t);
        }
        t = bld.layer_norm(&format!("norm{}", stage + 1), t, BLOCK_EPS)?;
        bld.g.tap(&format!("norm{}", stage + 1), t);
        if stage < 3 {
            let map = permute(bld.g, t, &[0, 2, 1])?;
            x = bld.g.reshape(map, &[batch, cfg.dims[stage], sh, sw])?;
        }
    }
    let pooled = mean_tokens(bld.g, t)?;
    bld.g.tap("pre_logits", pooled);
    let classes = w.shape_of("head.weight").map(|s| s[0]).unwrap_or(1000);
    bld.linear("head", pooled, classes, true, Activation::None)
}
