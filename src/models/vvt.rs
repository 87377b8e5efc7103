//! VVT (Vicinity Vision Transformer), from the official `state_dict` names unchanged, at any input
//! resolution (the graph is built per input size). Spec: shared/spec/vvt.md; PyTorch twin:
//! tools/reference/vvt.py.
//!
//! Four stages of PVTv2-style overlapping patch embedding (conv 7×7/s4 then 3×3/s2, LayerNorm
//! eps 1e-5; on lavapipe the 3×3 ones read the previous stage's tokens as a channel-last map,
//! as GEMMs over gathered patches, `ops::tuning::conv_nhwc_as_gemm`, with no permute either
//! side), blocks `t += attn(LN(t))`, `t += MixFFN(LN(t))` (eps 1e-6), a stage LayerNorm, then
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
//! Where the token count is not a multiple of 4 (the last stage at 224: 7 × 7) it runs
//! token-major instead: `fc1` as `u·W₁ᵀ` → `[B, N, Hd]`, the channel-last 3×3 depthwise conv
//! (`atrous_dwconv`, one branch), `fc2` as `·W₂ᵀ`. Channel-major, `fc2` would read the hidden map
//! along rows of N tokens one float at a time; token-major, its channels load as vec4s.
//! When the hidden map would exceed [`BuildOptions::mlp_band_bytes`] (vvt-tiny at 896² needs
//! 154 MB, over WebGPU's 128 MiB per binding) the MixFFN runs in horizontal bands of token rows,
//! each recomputing one halo row above and below for the 3×3 conv.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::explain::Probe;
use crate::graph::{Graph, TensorId};
use crate::ops::binary::add;
use crate::ops::conv2d::conv2d;
use crate::ops::family::atrous_dwconv::atrous_dwconv;
use crate::ops::family::vicinity_attention::{angle_table, vicinity_attention, vicinity_gate, QkvColumns, VicinityDims};
use crate::ops::layout::{concat, permute, slice};
use crate::ops::matmul::{matmul, BiasAxis, Epilogue};
use crate::ops::pool::mean_tokens;
use crate::ops::Activation;

use super::nn::{self, conv_params, Scope};
use super::torch_layout::atrous_dwconv_weights;

/// Block and stage norms; the patch-embedding norms use PyTorch's default.
const BLOCK_EPS: f32 = 1e-6;
const PATCH_EPS: f32 = 1e-5;

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

/// The VVT family in the registry.
pub struct Vvt;

impl super::Family for Vvt {
    type Config = VvtConfig;
    const PREFIX: &'static str = "vvt";
    const VARIANTS: &'static [&'static str] = &["tiny", "small", "medium", "large", "micro"];

    fn variant(name: &str) -> Option<VvtConfig> {
        config(name)
    }

    fn build(cfg: &VvtConfig, g: &mut Graph, root: &Scope, input: TensorId, id: &str) -> Result<TensorId> {
        build(g, root, input, id, cfg)
    }
}

struct Builder<'a> {
    cfg: &'a VvtConfig,
    opts: BuildOptions,
    /// The largest tensor one binding may hold on the graph's device.
    max_binding: usize,
}

impl Builder<'_> {
    /// The kernel and stride of `patch_embed{stage + 1}`'s conv.
    fn patch_conv(stage: usize) -> (usize, usize) {
        if stage == 0 {
            (7, 4)
        } else {
            (3, 2)
        }
    }

    /// Whether `patch_embed{stage + 1}` (stage ≥ 1) reads the previous stage's tokens, a map of
    /// `h × w`, channel-last: where its conv runs as the GEMM over gathered patches.
    fn channel_last_embed(&self, g: &Graph, stage: usize, batch: usize, (h, w): (usize, usize)) -> bool {
        let (k, stride) = Self::patch_conv(stage);
        let x = [batch, h, w, self.cfg.dims[stage - 1]];
        crate::ops::conv2d_nhwc::runs_as_patch_gemm(&g.profile, x, self.cfg.dims[stage], (k, k), &conv_params(stride, k / 2, 1))
    }

    /// `patch_embed{i}`: conv, tokens `[B, N, C]`, LayerNorm (eps 1e-5). Returns the tokens.
    /// `x` is NCHW, or channel-last `[B, H, W, C]` where [`Builder::channel_last_embed`] says.
    fn patch_embed(&self, g: &mut Graph, vb: &Scope, stage: usize, x: TensorId, channel_last: bool) -> Result<TensorId> {
        let (k, stride) = Self::patch_conv(stage);
        let b = g.shape(x)[0];
        let c = self.cfg.dims[stage];
        if channel_last {
            let y = nn::conv2d_nhwc(g, &vb.pp("proj"), x, c, k, conv_params(stride, k / 2, 1), true, Activation::None)?;
            let [h, w] = [g.shape(y)[1], g.shape(y)[2]];
            let tokens = g.reshape(y, &[b, h * w, c])?;
            return nn::layer_norm(g, &vb.pp("norm"), tokens, PATCH_EPS);
        }
        let y = nn::conv2d(g, &vb.pp("proj"), x, c, k, conv_params(stride, k / 2, 1), true, Activation::None)?;
        let [h, w] = [g.shape(y)[2], g.shape(y)[3]];
        let tokens = vb.op(g, |g| permute(g, y, &[0, 2, 3, 1]))?;
        let tokens = g.reshape(tokens, &[b, h * w, c])?;
        nn::layer_norm(g, &vb.pp("norm"), tokens, PATCH_EPS)
    }

    /// `block{i}.{j}`: `t += attn(norm1(t))`, `t += mlp(norm2(t))`.
    fn block(&self, g: &mut Graph, vb: &Scope, stage: usize, t: TensorId, hw: (usize, usize), trig: TensorId) -> Result<TensorId> {
        let u = nn::layer_norm(g, &vb.pp("norm1"), t, BLOCK_EPS)?;
        let t = self.attention(g, &vb.pp("attn"), stage, u, t, (trig, hw))?;
        let u = nn::layer_norm(g, &vb.pp("norm2"), t, BLOCK_EPS)?;
        self.mix_ffn(g, &vb.pp("mlp"), stage, u, t, hw)
    }

    /// `residual + VicinityAttention(u)` (spec §3.3); u, residual `[B, N, C]`.
    fn attention(&self, g: &mut Graph, vb: &Scope, stage: usize, u: TensorId, residual: TensorId, (trig, (h, w)): (TensorId, (usize, usize))) -> Result<TensorId> {
        let [b, n, c] = dims3(g.shape(u));
        let (heads, fr) = (self.cfg.heads[stage], self.cfg.fr[stage]);
        let cr = c / fr;
        let d = c / heads / fr;
        if d == 0 || heads * d != cr {
            return Err(Error::Graph(format!("{}: {c} channels do not split into {heads} heads of (C/heads)/fr with fr = {fr}", vb.prefix())));
        }
        // SE gate from the full-width normalised input.
        let m = vb.pp("se_pool").op(g, |g| mean_tokens(g, u))?;
        let s = nn::linear(g, &vb.pp("se_fc.0"), m, c, false, Activation::Relu, None)?;
        let s = nn::linear(g, &vb.pp("se_fc.2"), s, c, false, Activation::Sigmoid, None)?;

        // q, k, v in one GEMM on the concatenated projections (checkpoint names unchanged).
        let mut weight = Vec::with_capacity(3 * cr * c);
        let mut bias = Vec::with_capacity(3 * cr);
        for proj in ["q_proj", "k_proj", "v_proj"] {
            weight.extend_from_slice(&vb.pp(proj).tensor("weight", &[cr, c])?);
            bias.extend_from_slice(&vb.pp(proj).tensor("bias", &[cr])?);
        }
        let weight = vb.derived(g, "[q_proj,k_proj,v_proj].weight", &[3 * cr, c], weight)?;
        let bias = vb.derived(g, "[q_proj,k_proj,v_proj].bias", &[3 * cr], bias)?;
        let qkv = vb.pp("qkv").op(g, |g| crate::ops::matmul::linear(g, u, weight, Some(bias), Activation::None))?;

        let cols = QkvColumns { row: 3 * cr, q: 0, k: cr, v: 2 * cr };
        g.probe(vicinity_probe(vb.prefix(), qkv, (h, w), heads, d, &cols));
        let dims = VicinityDims { batch: b, heads, n, d };
        let o = vb.op(g, |g| vicinity_attention(g, qkv, &cols, trig, &dims))?;
        let y = nn::linear(g, &vb.pp("out_proj"), o, c, true, Activation::None, None)?;
        vb.op(g, |g| vicinity_gate(g, y, s, residual))
    }

    /// `residual + fc2(GELU(dwconv(fc1(u))))`, channel-major (see the module docs); u `[B, N, C]`.
    fn mix_ffn(&self, g: &mut Graph, vb: &Scope, stage: usize, u: TensorId, residual: TensorId, (h, w): (usize, usize)) -> Result<TensorId> {
        let [b, n, c] = dims3(g.shape(u));
        let hd = c * self.cfg.mlp_ratios[stage];
        let (fc1, dw, fc2) = (vb.pp("fc1"), vb.pp("dwconv.dwconv"), vb.pp("fc2"));
        let w1 = fc1.param(g, "weight", &[hd, c])?;
        let b1 = fc1.param(g, "bias", &[hd])?;
        let bd = dw.param(g, "bias", &[hd])?;
        let w2 = fc2.param(g, "weight", &[c, hd])?;
        let b2 = fc2.param(g, "bias", &[c])?;
        let row_bytes = b * hd * w * 4;
        // One band of `rows` output rows (plus its halo) must fit the budget.
        let rows = if row_bytes * h <= self.opts.mlp_band_bytes { h } else { (self.opts.mlp_band_bytes / row_bytes).saturating_sub(2).max(1) };
        if rows >= h && !n.is_multiple_of(4) && c.is_multiple_of(4) && hd.is_multiple_of(4) {
            let hid = fc1.op(g, |g| matmul(g, u, w1, false, true, Epilogue { bias: Some((b1, BiasAxis::Col)), ..Default::default() }))?;
            let hid = g.reshape(hid, &[b, h, w, hd])?;
            let taps = dw.tensor("weight", &[hd, 1, 3, 3])?;
            let taps = dw.derived(g, "weight#channels_last", &[1, 3, 3, hd], atrous_dwconv_weights(&[&taps], hd, &[]))?;
            let hid = dw.op(g, |g| atrous_dwconv(g, hid, taps, Some(bd), 1, Activation::Gelu))?;
            let hid = g.reshape(hid, &[b, n, hd])?;
            let epi = Epilogue { bias: Some((b2, BiasAxis::Col)), residual: Some(residual), ..Default::default() };
            return fc2.op(g, |g| matmul(g, hid, w2, false, true, epi));
        }
        // `at` labels the nodes: the MixFFN itself, or one of its bands (`mlp.band<r0>`).
        let wd = dw.param(g, "weight", &[hd, 1, 3, 3])?;
        let branch = |g: &mut Graph, at: &Scope, x: TensorId, rows: usize, res: Option<TensorId>| -> Result<TensorId> {
            let m = g.shape(x)[1];
            let hid = at.pp("fc1").op(g, |g| matmul(g, w1, x, false, true, Epilogue { bias: Some((b1, BiasAxis::Row)), ..Default::default() }))?;
            let hid = g.reshape(hid, &[b, hd, rows, w])?;
            let hid = at.pp("dwconv.dwconv").op(g, |g| conv2d(g, hid, wd, Some(bd), &conv_params(1, 1, hd), Activation::Gelu))?;
            let hid = g.reshape(hid, &[b, hd, m])?;
            let epi = Epilogue { bias: Some((b2, BiasAxis::Col)), residual: res, ..Default::default() };
            at.pp("fc2").op(g, |g| matmul(g, hid, w2, true, true, epi))
        };
        if rows >= h {
            return branch(g, vb, u, h, Some(residual));
        }
        // Bands of `rows` token rows; each computes its hidden map with one halo row above and
        // below (where they exist), then keeps only its own rows.
        let mut parts = Vec::new();
        for r0 in (0..h).step_by(rows) {
            let r1 = (r0 + rows).min(h);
            let (e0, e1) = (r0.saturating_sub(1), (r1 + 1).min(h));
            if b * hd * (e1 - e0) * w * 4 > self.max_binding {
                return Err(Error::TooLarge(format!(
                    "{}: a MixFFN band of {} rows × {w} tokens × {hd} channels × batch {b} exceeds the device's {} MiB binding limit",
                    vb.prefix(),
                    e1 - e0,
                    self.max_binding >> 20
                )));
            }
            let band = vb.pp(format!("band{r0}"));
            let x = band.op(g, |g| slice(g, u, 1, e0 * w, (e1 - e0) * w))?;
            let y = branch(g, &band, x, e1 - e0, None)?;
            parts.push(band.op(g, |g| slice(g, y, 1, (r0 - e0) * w, (r1 - r0) * w))?);
        }
        let y = vb.op(g, |g| concat(g, &parts, 1))?;
        debug_assert_eq!(g.shape(y), [b, n, c]);
        vb.op(g, |g| add(g, residual, y))
    }
}

/// The effective weights of the vicinity linear attention, per head: `A[q, k] = φ(q)·φ(k) / Σ_k'
/// φ(q)·φ(k')` with `φ(x) = [x cos α, x sin α, x cos β, x sin β]` over ReLU'd q, k (the weights
/// before the forward's magnitude clamps and its denominator epsilon); a query whose every
/// weight is 0 has an all-zero row. The received map is linear in the queries:
/// `Σ_q A[q, k] = φ(k)·Σ_q φ(q) / (φ(q)·Σ_k' φ(k'))`, so it costs O(N·d), not O(N²·d).
fn vicinity_probe(name: &str, qkv: TensorId, (h, w): (usize, usize), heads: usize, d: usize, cols: &QkvColumns) -> Probe {
    let n = h * w;
    let (row, q_col, k_col) = (cols.row, cols.q, cols.k);
    let trig = angle_table(h, w);
    Probe::new(name, (h, w), (h, w), true, vec![qkv], move |t, query| {
        let qkv = t[0];
        let phi = |col: usize, head: usize, p: usize| -> Vec<f64> {
            let x = &qkv[p * row + col + head * d..][..d];
            trig[4 * p..4 * p + 4].iter().flat_map(|&a| x.iter().map(move |&v| v.max(0.0) as f64 * a as f64)).collect()
        };
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let mut maps = vec![vec![0f64; n]; heads];
        for (head, map) in maps.iter_mut().enumerate() {
            let keys: Vec<Vec<f64>> = (0..n).map(|p| phi(k_col, head, p)).collect();
            match query {
                Some(q) => {
                    let fq = phi(q_col, head, q);
                    let scores: Vec<f64> = keys.iter().map(|k| dot(&fq, k)).collect();
                    let total: f64 = scores.iter().sum();
                    if total > 0.0 {
                        map.iter_mut().zip(&scores).for_each(|(m, s)| *m = s / total);
                    }
                }
                None => {
                    let mut key_sum = vec![0f64; 4 * d];
                    keys.iter().for_each(|k| key_sum.iter_mut().zip(k).for_each(|(a, b)| *a += b));
                    let mut weighted = vec![0f64; 4 * d];
                    for p in 0..n {
                        let fq = phi(q_col, head, p);
                        let total = dot(&fq, &key_sum);
                        if total > 0.0 {
                            weighted.iter_mut().zip(&fq).for_each(|(a, b)| *a += b / total);
                        }
                    }
                    map.iter_mut().zip(&keys).for_each(|(m, k)| *m = dot(k, &weighted) / n as f64);
                }
            }
        }
        maps
    })
}

fn dims3(s: &[usize]) -> [usize; 3] {
    [s[0], s[1], s[2]]
}

/// Appends VVT model `id` with configuration `cfg` to `g`, its parameters read through `root`;
/// returns the logits `[B, classes]` (classes from the weights).
pub fn build(g: &mut Graph, root: &Scope, input: TensorId, id: &str, cfg: &VvtConfig) -> Result<TensorId> {
    build_with(g, root, input, id, cfg, &BuildOptions::default())
}

/// [`build`] with explicit [`BuildOptions`].
pub fn build_with(g: &mut Graph, root: &Scope, input: TensorId, id: &str, cfg: &VvtConfig, opts: &BuildOptions) -> Result<TensorId> {
    let id = id.to_string();
    let shape = g.shape(input).to_vec();
    let bad = |expected: String| Error::BadInputShape { model: id.clone(), expected, found: shape.clone() };
    let &[batch, 3, h, w_in] = shape.as_slice() else {
        return Err(bad("a [B, 3, H, W] image tensor".into()));
    };
    if batch == 0 || h == 0 || w_in == 0 {
        return Err(bad("a non-empty [B, 3, H, W] image tensor (any H, W >= 1)".into()));
    }
    // Every activation except the (banded) MixFFN hidden map must fit one binding of the device.
    let max_binding = usize::try_from(g.profile.max_binding_bytes()).unwrap_or(usize::MAX);
    let sizes = stage_sizes(h, w_in);
    let largest = (0..4)
        .map(|i| batch * sizes[i].0 * sizes[i].1 * cfg.dims[i].max(3 * cfg.dims[i] / cfg.fr[i]) * 4)
        .chain([batch * 3 * h * w_in * 4, batch * 3 * sizes[0].1 * cfg.dims[0] * cfg.mlp_ratios[0] * 4])
        .max()
        .unwrap_or(0);
    if largest > max_binding {
        return Err(bad(format!(
            "any H, W >= 1, but every activation must fit the device's {} MiB binding limit; this shape needs a {} MiB tensor \
             (stage 1 alone holds B·ceil(H/4)·ceil(W/4)·{} floats): use a smaller batch or resolution",
            max_binding >> 20,
            largest >> 20,
            cfg.dims[0].max(3 * cfg.dims[0] / cfg.fr[0])
        )));
    }

    let bld = Builder { cfg, opts: *opts, max_binding };
    let mut x = input;
    let mut t = input;
    let mut channel_last = false;
    for (stage, &(sh, sw)) in sizes.iter().enumerate() {
        t = bld.patch_embed(g, &root.pp(format!("patch_embed{}", stage + 1)), stage, x, channel_last)?;
        debug_assert_eq!(g.shape(t), [batch, sh * sw, cfg.dims[stage]]);
        g.tap(&format!("patch_embed{}", stage + 1), t);
        let trig = g.constant(&format!("vvt.angles.{sh}x{sw}"), &[sh * sw, 4], Arc::new(angle_table(sh, sw)))?;
        for j in 0..cfg.depths[stage] {
            let vb = root.pp(format!("block{}", stage + 1)).pp(j);
            t = bld.block(g, &vb, stage, t, (sh, sw), trig)?;
            g.tap(vb.prefix(), t);
        }
        let norm = root.pp(format!("norm{}", stage + 1));
        t = nn::layer_norm(g, &norm, t, BLOCK_EPS)?;
        g.tap(norm.prefix(), t);
        if stage < 3 {
            channel_last = bld.channel_last_embed(g, stage + 1, batch, (sh, sw));
            x = if channel_last {
                g.reshape(t, &[batch, sh, sw, cfg.dims[stage]])?
            } else {
                let map = norm.op(g, |g| permute(g, t, &[0, 2, 1]))?;
                g.reshape(map, &[batch, cfg.dims[stage], sh, sw])?
            };
        }
    }
    let pooled = root.op(g, |g| mean_tokens(g, t))?;
    g.tap("pre_logits", pooled);
    let head = root.pp("head");
    let classes = nn::head_classes(&head);
    nn::linear(g, &head, pooled, classes, true, Activation::None, None)
}
