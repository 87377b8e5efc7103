//! HAT-Net (Vision Transformers with Hierarchical Attention), from the official `state_dict`
//! names unchanged. Spec: shared/spec/hatnet.md; PyTorch twin: tools/reference/hatnet.py.
//!
//! Everything stays NCHW as in the official code. A block is
//! `x = x + proj(H-MHSA(GN(x)))`, `x = x + GN(conv1x1(SiLU(dw(SiLU(conv1x1(GN(x)))))))`, where
//! H-MHSA (stages 0–2) is window attention inside G×G cells read straight out of the NCHW qkv map
//! (the cell partition is index arithmetic in the attention kernel's views: no permute copies),
//! `g = GN(x + local)`, then attention of `q(g)` to the r×r average-pooled, normalised `kv(.)`
//! tokens, plus `g`. Stage 3 is plain multi-head attention over all tokens.
//!
//! Layouts other than NCHW, where they load better:
//! - A plain-attention stage whose token count is not a multiple of 4 (stage 3 at 224: 7 × 7)
//!   runs token-major, `[B, H, W, C]` ([`Builder::token_major_block`]): NCHW rows of 49 tokens
//!   would leave its GEMMs reading the map one float at a time, where channel rows load as vec4s.
//!   Its GroupNorms run channel-last and its depthwise conv is the channel-last 3 × 3 kernel.
//! - A global attention's pooled map whose token count is not a multiple of 4 (7 × 7 at 224) is
//!   normalised into channel-last tokens, which `kv` projects as `tokens · Wᵀ`.
//! - A downsampling conv that the device runs as a GEMM over gathered channel-last patches
//!   (lavapipe) reads a channel-last map.
//! - The GroupNorms on either side change the layout as they write (no permute dispatch), and a
//!   stage's tap (`stage<s>`) is in the layout the stage wrote.
//!
//! `attn.proj_norm.*` is in every checkpoint but unused by the official forward: it is accepted
//! and ignored.

use crate::error::{Error, Result};
use crate::explain::{dot, softmax_map, Probe};
use crate::graph::{Graph, TensorId};
use crate::ops::attention::{attention_strided, AttentionDims, Operand, OutputSpec, View};
use crate::ops::binary::add;
use crate::ops::family::atrous_dwconv::atrous_dwconv;
use crate::ops::groupnorm::{group_norm_relayout, Layout, Sum};
use crate::ops::layout::permute;
use crate::ops::conv2d_nhwc::runs_as_patch_gemm;
use crate::ops::matmul::{linear, matmul, BiasAxis, Epilogue};
use crate::ops::pool::{avg_pool2d, mean_spatial, mean_tokens};
use crate::ops::Activation;

use super::nn::{self, conv_params, Scope};
use super::torch_layout::atrous_dwconv_weights;

const EPS: f32 = 1e-6;

/// The official model's hyper-parameters; `wgvit.config` metadata holds them as JSON with these
/// field names.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HatNetConfig {
    pub dims: [usize; 4],
    /// Heads = dim / head_dim.
    pub head_dim: usize,
    pub depths: [usize; 4],
    /// Depthwise kernel of each stage's inverted residual.
    pub kernels: [usize; 4],
    pub expansions: [usize; 4],
    /// Local attention runs inside G×G cells of each stage (1: plain attention over all tokens).
    pub grid_sizes: [usize; 4],
    /// Global attention reads r×r average-pooled tokens (unused where the grid is 1).
    pub pool_ratios: [usize; 4],
}

impl super::Config for HatNetConfig {
    fn validate(&self) -> std::result::Result<(), String> {
        super::nonzero("dims", &self.dims)?;
        super::nonzero("head_dim", &[self.head_dim])?;
        super::nonzero("kernels", &self.kernels)?;
        super::nonzero("expansions", &self.expansions)?;
        super::nonzero("grid_sizes", &self.grid_sizes)?;
        super::nonzero("pool_ratios", &self.pool_ratios)?;
        if let Some(s) = (0..4).find(|&s| !self.dims[s].is_multiple_of(self.head_dim)) {
            return Err(format!("dims[{s}] = {} is not a multiple of head_dim = {}", self.dims[s], self.head_dim));
        }
        if let Some(s) = (0..4).find(|&s| self.kernels[s].is_multiple_of(2)) {
            return Err(format!("kernels[{s}] = {} is even; the depthwise conv keeps the map size only with odd kernels", self.kernels[s]));
        }
        Ok(())
    }
}

pub fn config(variant: &str) -> Option<HatNetConfig> {
    let (dims, head_dim, depths, kernels, expansions) = match variant {
        "tiny" => ([48, 96, 240, 384], 48, [2, 2, 6, 3], [3, 3, 3, 3], [8, 8, 4, 4]),
        "small" => ([64, 128, 320, 512], 64, [2, 3, 8, 3], [3, 3, 3, 3], [8, 8, 4, 4]),
        "medium" => ([64, 128, 320, 512], 64, [3, 6, 18, 3], [5, 3, 5, 3], [8, 8, 4, 4]),
        "large" => ([64, 128, 320, 640], 64, [3, 8, 27, 3], [3, 3, 3, 3], [8, 8, 4, 4]),
        "micro" => ([16, 32, 48, 64], 16, [1, 1, 2, 1], [5, 3, 3, 3], [2, 2, 2, 2]),
        _ => return None,
    };
    Some(HatNetConfig { dims, head_dim, depths, kernels, expansions, grid_sizes: [8, 7, 7, 1], pool_ratios: [8, 4, 2, 1] })
}

/// The four stage sides for an input side `n`: a stem of two stride-2, pad-1, 3×3 convs, then
/// one more such conv before each later stage.
fn stage_sides(n: usize) -> [usize; 4] {
    let s0 = n.div_ceil(2).div_ceil(2);
    [s0, s0.div_ceil(2), s0.div_ceil(4), s0.div_ceil(8)]
}

impl HatNetConfig {
    /// The official model reshapes each stage into G×G cells and average-pools it r×r, so every
    /// stage side must be a multiple of its grid and at least its pool ratio (the official
    /// configuration: input sides 224k, or 224k-3 ..= 224k-1).
    pub fn accepts_side(&self, n: usize) -> bool {
        let sides = stage_sides(n);
        n > 0
            && (0..4).all(|s| {
                let (side, grid) = (sides[s], self.grid_sizes[s]);
                grid == 1 || (side.is_multiple_of(grid) && side >= self.pool_ratios[s])
            })
    }

    /// The first 13 accepted input sides up to `limit`, for error messages.
    fn accepted_sides(&self, limit: usize) -> Vec<usize> {
        (1..=limit).filter(|&n| self.accepts_side(n)).take(13).collect()
    }
}

/// The HAT-Net family in the registry.
pub struct HatNet;

impl super::Family for HatNet {
    type Config = HatNetConfig;
    const PREFIX: &'static str = "hatnet";
    const VARIANTS: &'static [&'static str] = &["tiny", "small", "medium", "large", "micro"];

    fn variant(name: &str) -> Option<HatNetConfig> {
        config(name)
    }

    fn build(cfg: &HatNetConfig, g: &mut Graph, root: &Scope, input: TensorId, id: &str) -> Result<TensorId> {
        build(g, root, input, id, cfg)
    }
}

struct Builder<'a> {
    cfg: &'a HatNetConfig,
}

impl Builder<'_> {
    fn group_norm(&self, g: &mut Graph, vb: &Scope, x: TensorId, sum: Option<Sum>, act: Activation) -> Result<TensorId> {
        nn::group_norm(g, vb, x, 1, EPS, sum, act)
    }

    /// GroupNorm(1, C) of a map in layout `input`, written in layout `output` (4-D where they
    /// differ).
    fn group_norm_relayout(&self, g: &mut Graph, vb: &Scope, x: TensorId, sum: Option<Sum>, input: Layout, output: Layout) -> Result<TensorId> {
        let shape = g.shape(x);
        let c = if input == Layout::Nchw { shape[1] } else { shape[shape.len() - 1] };
        let gamma = vb.param(g, "weight", &[c])?;
        let beta = vb.param(g, "bias", &[c])?;
        vb.op(g, |g| group_norm_relayout(g, x, gamma, beta, EPS, sum, Activation::None, input, output))
    }

    /// 1×1 conv as a GEMM `W[Cout, Cin] · x[b][Cin, H·W]` with the bias, activation and residual
    /// fused into its epilogue.
    fn pointwise(&self, g: &mut Graph, vb: &Scope, x: TensorId, cout: usize, bias: bool, act: Activation, residual: Option<TensorId>) -> Result<TensorId> {
        let [b, cin, h, w] = dims4(g.shape(x));
        let weight = vb.param(g, "weight", &[cout, cin, 1, 1])?;
        let weight = g.reshape(weight, &[cout, cin])?;
        let bias = if bias { Some((vb.param(g, "bias", &[cout])?, BiasAxis::Row)) } else { None };
        let residual = match residual {
            Some(r) => Some(g.reshape(r, &[b, cout, h * w])?),
            None => None,
        };
        let tokens = g.reshape(x, &[b, cin, h * w])?;
        let y = vb.op(g, |g| matmul(g, weight, tokens, false, false, Epilogue { alpha: 1.0, bias, act, residual }))?;
        g.reshape(y, &[b, cout, h, w])
    }

    /// The 1×1 conv producing attention operands: token-major (`x[b]ᵀ · Wᵀ` → `[B, H·W, Cout]`,
    /// a token's channels contiguous, so the attention loads 4 channels as one vec4) when the
    /// head dim allows it, else the NCHW map (`W · x[b]`, as [`Builder::pointwise`]). Any token
    /// count: rows of `Cout` channels start on a vec4 whatever it is, so the 7 × 7 pooled tokens
    /// and last stage at 224 read as vec4 too (hatnet-tiny: one attention pipeline fewer, the
    /// attentions 0.88 of their time on lavapipe).
    fn project(&self, g: &mut Graph, vb: &Scope, x: TensorId, cout: usize) -> Result<Projection> {
        let [b, cin, h, w] = dims4(g.shape(x));
        let tokens = h * w;
        let token_major = self.cfg.head_dim.is_multiple_of(4);
        let weight = vb.param(g, "weight", &[cout, cin, 1, 1])?;
        let weight = g.reshape(weight, &[cout, cin])?;
        let bias = vb.param(g, "bias", &[cout])?;
        let x = g.reshape(x, &[b, cin, tokens])?;
        let tensor = vb.op(g, |g| {
            if token_major {
                matmul(g, x, weight, true, true, Epilogue { bias: Some((bias, BiasAxis::Col)), ..Default::default() })
            } else {
                matmul(g, weight, x, false, false, Epilogue { bias: Some((bias, BiasAxis::Row)), ..Default::default() })
            }
        })?;
        Ok(Projection { tensor, tokens, row: cout, token_major })
    }

    /// A block on an NCHW map; its output in layout `out`.
    fn block(&self, g: &mut Graph, vb: &Scope, stage: usize, x: TensorId, out: Layout) -> Result<TensorId> {
        let attn = vb.pp("attn");
        attn.ignore("proj_norm.weight");
        attn.ignore("proj_norm.bias");
        let x = self.attention(g, &attn, stage, x)?;
        self.inverted_residual(g, &vb.pp("conv"), stage, x, out)
    }

    /// `x + H-MHSA(x)` (the residual is fused into the projection).
    fn attention(&self, g: &mut Graph, vb: &Scope, stage: usize, x: TensorId) -> Result<TensorId> {
        let [b, c, h, w] = dims4(g.shape(x));
        let d = self.cfg.head_dim;
        let heads = c / d;
        let scale = (d as f32).powf(-0.5);
        let hw = h * w;
        let t = self.group_norm(g, &vb.pp("norm"), x, None, Activation::None)?;
        let qkv = self.project(g, &vb.pp("qkv"), t, 3 * c)?;
        let grid = self.cfg.grid_sizes[stage];
        // The attention outputs are written as the NCHW map the next ops read.
        let nchw_out = View::strided(0, c * hw, d * hw, 1, hw);

        if grid == 1 {
            let o = self.all_token_attention(g, vb, qkv, (h, w), &OutputSpec { shape: vec![b, c, h, w], view: nchw_out })?;
            return self.pointwise(g, &vb.pp("proj"), o, c, true, Activation::None, Some(x));
        }

        // Local attention inside each G×G cell of the map, cells addressed in the views: channel
        // `first` of an operand whose pixels are `pixel` elements apart and channels `channel`.
        let (gh, gw) = (h / grid, w / grid);
        let cell = |first: usize, batch_stride: usize, (pixel, channel): (usize, usize)| View {
            offset: first * channel,
            batch_split: [gh, gw],
            batch_strides: [batch_stride, grid * w * pixel, grid * pixel],
            head: d * channel,
            token_split: grid,
            token_strides: [w * pixel, pixel],
            channel,
        };
        let qkv_cell = |part: usize| cell(part * c, 3 * c * hw, qkv.strides());
        let dims = AttentionDims { batch: b * gh * gw, heads, nq: grid * grid, nk: grid * grid, d, dv: d };
        let local = vb.pp("local").op(g, |g| attention_strided(
            g,
            Operand::new(qkv.tensor, qkv_cell(0)),
            Operand::new(qkv.tensor, qkv_cell(1)),
            Operand::new(qkv.tensor, qkv_cell(2)),
            None,
            &dims,
            scale,
            &OutputSpec { shape: vec![b, c, h, w], view: cell(0, c * hw, (1, hw)) },
        ))?;
        g.probe(Probe::new(format!("{}.local", vb.prefix()), (h, w), (h, w), true, vec![qkv.tensor], move |t, query| {
            let at = |part: usize, head: usize, p: usize| (0..d).map(move |ch| t[0][qkv.index(p, part * c + head * d + ch)]);
            let cell = |p: usize| {
                let (y0, x0) = (p / w / grid * grid, p % w / grid * grid);
                (0..grid * grid).map(|i| (y0 + i / grid) * w + x0 + i % grid).collect()
            };
            softmax_map((hw, hw, heads), query, cell, |head, q, k| scale as f64 * dot(at(0, head, q), at(1, head, k)))
        }));
        let grid_x = self.group_norm(g, &vb.pp("grid_norm"), x, Some(Sum::Input(local)), Activation::None)?;

        // Global attention of every position to the pooled tokens.
        let q = self.project(g, &vb.pp("q"), grid_x, c)?;
        let r = self.cfg.pool_ratios[stage];
        let pooled = vb.op(g, |g| avg_pool2d(g, grid_x, (r, r), (r, r), (0, 0), true))?;
        let [_, _, ph, pw] = dims4(g.shape(pooled));
        let pooled_grid = (ph, pw);
        let kv = if d.is_multiple_of(4) && !(ph * pw).is_multiple_of(4) {
            // A pooled map whose token count is not a multiple of 4 (7 × 7 at 224): its norm
            // writes it channel-last, so that `kv` = tokens · Wᵀ loads channels as vec4s, where
            // the NCHW map's rows of 49 tokens load one float at a time.
            let t = self.group_norm_relayout(g, &vb.pp("ds_norm"), pooled, None, Layout::Nchw, Layout::ChannelsLast)?;
            let t = g.reshape(t, &[b, ph * pw, c])?;
            let tensor = self.pointwise_tokens(g, &vb.pp("kv"), t, 2 * c, true, Activation::None, None)?;
            Projection { tensor, tokens: ph * pw, row: 2 * c, token_major: true }
        } else {
            let pooled = self.group_norm(g, &vb.pp("ds_norm"), pooled, None, Activation::None)?;
            self.project(g, &vb.pp("kv"), pooled, 2 * c)?
        };
        let m = kv.tokens;
        g.probe(Probe::new(format!("{}.global", vb.prefix()), (h, w), pooled_grid, true, vec![q.tensor, kv.tensor], move |t, query| {
            let q_at = |head: usize, p: usize| (0..d).map(move |ch| t[0][q.index(p, head * d + ch)]);
            let k_at = |head: usize, j: usize| (0..d).map(move |ch| t[1][kv.index(j, head * d + ch)]);
            softmax_map((hw, m, heads), query, |_| (0..m).collect(), |head, p, j| scale as f64 * dot(q_at(head, p), k_at(head, j)))
        }));
        let dims = AttentionDims { batch: b, heads, nq: hw, nk: m, d, dv: d };
        let global = vb.pp("global").op(g, |g| attention_strided(
            g,
            Operand::new(q.tensor, q.view(0, d)),
            Operand::new(kv.tensor, kv.view(0, d)),
            Operand::new(kv.tensor, kv.view(c, d)),
            None,
            &dims,
            scale,
            &OutputSpec { shape: vec![b, c, h, w], view: nchw_out },
        ))?;
        let merged = vb.op(g, |g| add(g, global, grid_x))?;
        self.pointwise(g, &vb.pp("proj"), merged, c, true, Activation::None, Some(x))
    }

    /// `x + GN(conv1x1(SiLU(dw(SiLU(conv1x1(GN(x)))))))`.
    fn inverted_residual(&self, g: &mut Graph, vb: &Scope, stage: usize, x: TensorId, out: Layout) -> Result<TensorId> {
        let c = g.shape(x)[1];
        let hidden = c * self.cfg.expansions[stage];
        let k = self.cfg.kernels[stage];
        let t = self.group_norm(g, &vb.pp("conv1.0"), x, None, Activation::None)?;
        let t = self.pointwise(g, &vb.pp("conv1.1"), t, hidden, false, Activation::Silu, None)?;
        let t = nn::conv2d(g, &vb.pp("conv2.0"), t, hidden, k, conv_params(1, k / 2, hidden), false, Activation::Silu)?;
        let t = self.pointwise(g, &vb.pp("conv3.0"), t, c, false, Activation::None, None)?;
        // x + GN(t): the residual is added in the norm's own pass, which also writes the layout
        // the next op reads.
        self.group_norm_relayout(g, &vb.pp("conv3.1"), t, Some(Sum::Output(x)), Layout::Nchw, out)
    }
}

impl Builder<'_> {
    /// Multi-head attention of every token of an `h × w` map to every token, q, k and v read from
    /// the packed `qkv` projection (either layout), written as `out` says; with its probe.
    fn all_token_attention(&self, g: &mut Graph, vb: &Scope, qkv: Projection, (h, w): (usize, usize), out: &OutputSpec) -> Result<TensorId> {
        let (hw, c, d) = (h * w, qkv.row / 3, self.cfg.head_dim);
        let heads = c / d;
        let scale = (d as f32).powf(-0.5);
        g.probe(Probe::new(vb.prefix(), (h, w), (h, w), true, vec![qkv.tensor], move |t, query| {
            let at = |part: usize, head: usize, p: usize| (0..d).map(move |ch| t[0][qkv.index(p, part * c + head * d + ch)]);
            softmax_map((hw, hw, heads), query, |_| (0..hw).collect(), |head, q, k| scale as f64 * dot(at(0, head, q), at(1, head, k)))
        }));
        let dims = AttentionDims { batch: out.shape[0], heads, nq: hw, nk: hw, d, dv: d };
        vb.op(g, |g| attention_strided(
            g,
            Operand::new(qkv.tensor, qkv.view(0, d)),
            Operand::new(qkv.tensor, qkv.view(c, d)),
            Operand::new(qkv.tensor, qkv.view(2 * c, d)),
            None,
            &dims,
            scale,
            out,
        ))
    }

    /// Whether `stage` runs token-major on an `h × w` map (see the module docs): plain attention
    /// (grid 1), a token count that NCHW rows would not load as vec4s, and the shapes the
    /// channel-last kernels take (3 × 3 depthwise, channels and heads in vec4s).
    fn token_major_stage(&self, stage: usize, c: usize, h: usize, w: usize) -> bool {
        let hidden = c * self.cfg.expansions[stage];
        self.cfg.grid_sizes[stage] == 1
            && !(h * w).is_multiple_of(4)
            && self.cfg.kernels[stage] == 3
            && self.cfg.head_dim.is_multiple_of(4)
            && c.is_multiple_of(4)
            && hidden.is_multiple_of(4)
    }

    /// A 1×1 conv on token-major `x [B, N, Cin]`: `x · Wᵀ` with the bias, activation and residual
    /// (`[B, N, cout]`) fused.
    #[allow(clippy::too_many_arguments)]
    fn pointwise_tokens(&self, g: &mut Graph, vb: &Scope, x: TensorId, cout: usize, bias: bool, act: Activation, residual: Option<TensorId>) -> Result<TensorId> {
        let cin = *g.shape(x).last().unwrap_or(&0);
        let weight = vb.param(g, "weight", &[cout, cin, 1, 1])?;
        let weight = g.reshape(weight, &[cout, cin])?;
        let bias = if bias { Some((vb.param(g, "bias", &[cout])?, BiasAxis::Col)) } else { None };
        vb.op(g, |g| matmul(g, x, weight, false, true, Epilogue { alpha: 1.0, bias, act, residual }))
    }

    /// [`Builder::block`] of a plain-attention stage on a token-major map `x [B, H, W, C]`; its
    /// output in layout `out`.
    fn token_major_block(&self, g: &mut Graph, vb: &Scope, stage: usize, x: TensorId, out: Layout) -> Result<TensorId> {
        let [b, h, w, c] = dims4(g.shape(x));
        let hw = h * w;
        let tokens = g.reshape(x, &[b, hw, c])?;

        // x + proj(MHSA(GN(x))).
        let attn = vb.pp("attn");
        attn.ignore("proj_norm.weight");
        attn.ignore("proj_norm.bias");
        let t = self.group_norm_relayout(g, &attn.pp("norm"), tokens, None, Layout::ChannelsLast, Layout::ChannelsLast)?;
        let qkv = self.pointwise_tokens(g, &attn.pp("qkv"), t, 3 * c, true, Activation::None, None)?;
        let qkv = Projection { tensor: qkv, tokens: hw, row: 3 * c, token_major: true };
        let dims = AttentionDims { batch: b, heads: c / self.cfg.head_dim, nq: hw, nk: hw, d: self.cfg.head_dim, dv: self.cfg.head_dim };
        let o = self.all_token_attention(g, &attn, qkv, (h, w), &OutputSpec::merged(&dims))?;
        let x = self.pointwise_tokens(g, &attn.pp("proj"), o, c, true, Activation::None, Some(tokens))?;

        // x + GN(conv1x1(SiLU(dw(SiLU(conv1x1(GN(x))))))).
        let conv = vb.pp("conv");
        let hidden = c * self.cfg.expansions[stage];
        let t = self.group_norm_relayout(g, &conv.pp("conv1.0"), x, None, Layout::ChannelsLast, Layout::ChannelsLast)?;
        let t = self.pointwise_tokens(g, &conv.pp("conv1.1"), t, hidden, false, Activation::Silu, None)?;
        let t = g.reshape(t, &[b, h, w, hidden])?;
        let dw = conv.pp("conv2.0");
        let weight = dw.tensor("weight", &[hidden, 1, 3, 3])?;
        let weight = dw.derived(g, "weight#channels_last", &[1, 3, 3, hidden], atrous_dwconv_weights(&[&weight], hidden, &[]))?;
        let t = dw.op(g, |g| atrous_dwconv(g, t, weight, None, 1, Activation::Silu))?;
        let t = g.reshape(t, &[b, hw, hidden])?;
        let t = self.pointwise_tokens(g, &conv.pp("conv3.0"), t, c, false, Activation::None, None)?;
        let (t, x) = (g.reshape(t, &[b, h, w, c])?, g.reshape(x, &[b, h, w, c])?);
        self.group_norm_relayout(g, &conv.pp("conv3.1"), t, Some(Sum::Output(x)), Layout::ChannelsLast, out)
    }
}

/// An attention operand from [`Builder::project`]: `row` channels for each of `tokens` positions,
/// token-major (`[B, tokens, row]`) or the NCHW map (`[B, row, tokens]`).
#[derive(Clone, Copy)]
struct Projection {
    tensor: TensorId,
    tokens: usize,
    row: usize,
    token_major: bool,
}

impl Projection {
    /// The distances (elements) between neighbouring tokens and between neighbouring channels.
    fn strides(&self) -> (usize, usize) {
        if self.token_major {
            (self.row, 1)
        } else {
            (1, self.tokens)
        }
    }

    /// Where channel `ch` of token `p` of the first image is.
    fn index(&self, p: usize, ch: usize) -> usize {
        let (token, channel) = self.strides();
        p * token + ch * channel
    }

    /// Heads of `d` channels from channel `first` on, over every token.
    fn view(&self, first: usize, d: usize) -> View {
        let (token, channel) = self.strides();
        View::strided(first * channel, self.tokens * self.row, d * channel, token, channel)
    }
}

fn dims4(s: &[usize]) -> [usize; 4] {
    [s[0], s[1], s[2], s[3]]
}

/// Appends HAT-Net model `id` with configuration `cfg` to `g`, its parameters read through
/// `root`; returns the logits `[B, classes]` (classes from the weights).
pub fn build(g: &mut Graph, root: &Scope, input: TensorId, id: &str, cfg: &HatNetConfig) -> Result<TensorId> {
    let shape = g.shape(input).to_vec();
    if !cfg.accepts_side(shape[2]) || !cfg.accepts_side(shape[3]) {
        // The official grids (8, 7, 7, 1) give 221–224, 445–448, 669–672, ...
        let sides = cfg.accepted_sides(crate::preprocess::MAX_SIDE);
        let examples: Vec<String> = sides.iter().take(12).map(usize::to_string).collect();
        let expected = if sides.is_empty() {
            format!(
                "every stage splits into {:?} cells (grid_sizes) of at least {:?} pooled tokens (pool_ratios), and no side up to {} does",
                cfg.grid_sizes,
                cfg.pool_ratios,
                crate::preprocess::MAX_SIDE
            )
        } else {
            format!(
                "every stage splits into {:?} cells (grid_sizes), so height and width must each be one of {}{}",
                cfg.grid_sizes,
                examples.join(", "),
                if sides.len() > examples.len() { ", ..." } else { "" }
            )
        };
        return Err(Error::BadInputShape { model: id.into(), expected, found: shape });
    }
    let dims = cfg.dims;
    let b = Builder { cfg };
    let embed = root.pp("patch_embed");
    let x = nn::conv2d(g, &embed.pp(0), input, 16, 3, conv_params(2, 1, 1), true, Activation::None)?;
    let x = b.group_norm(g, &embed.pp(1), x, None, Activation::Silu)?;
    let mut x = nn::conv2d(g, &embed.pp(3), x, dims[0], 3, conv_params(2, 1, 1), true, Activation::None)?;
    g.tap("patch_embed", x);
    // A downsampling conv that the device runs as a GEMM over gathered channel-last patches
    // (`runs_as_patch_gemm`: lavapipe, from 4 MFLOP) reads a channel-last map: the norms on
    // either side write and read that layout (the stage's last block writes its output so), and
    // the conv loads channels as vec4s instead of gathering NCHW pixels one float at a time.
    let (sides_h, sides_w) = (stage_sides(shape[2]), stage_sides(shape[3]));
    let mut channels_last_into = [false; 4];
    for stage in 1..4 {
        let input = [shape[0], sides_h[stage - 1], sides_w[stage - 1], dims[stage - 1]];
        channels_last_into[stage] = runs_as_patch_gemm(&g.profile, input, dims[stage], (3, 3), &conv_params(2, 1, 1));
    }
    let mut layout = Layout::Nchw;
    for stage in 0..4 {
        let token_major = b.token_major_stage(stage, dims[stage], sides_h[stage], sides_w[stage]);
        let stage_layout = if token_major { Layout::ChannelsLast } else { Layout::Nchw };
        if stage > 0 {
            let ds = root.pp(format!("ds{}", stage + 1));
            if layout == Layout::ChannelsLast && !dims[stage].is_multiple_of(4) {
                // A token-major stage before a conv the channel-last kernels cannot take.
                x = ds.op(g, |g| permute(g, x, &[0, 3, 1, 2]))?;
                layout = Layout::Nchw;
            }
            let y = if layout == Layout::ChannelsLast {
                nn::conv2d_nhwc(g, &ds.pp("conv"), x, dims[stage], 3, conv_params(2, 1, 1), true, Activation::None)?
            } else {
                nn::conv2d(g, &ds.pp("conv"), x, dims[stage], 3, conv_params(2, 1, 1), true, Activation::None)?
            };
            x = b.group_norm_relayout(g, &ds.pp("norm"), y, None, layout, stage_layout)?;
        } else if token_major {
            x = root.pp(format!("stage{stage}")).op(g, |g| permute(g, x, &[0, 2, 3, 1]))?;
        }
        // The stage's last block writes the layout the next downsampling conv reads.
        let out_layout = if stage < 3 && channels_last_into[stage + 1] { Layout::ChannelsLast } else { stage_layout };
        for j in 0..cfg.depths[stage] {
            let vb = root.pp("blocks").pp(stage).pp(j);
            let out = if j + 1 == cfg.depths[stage] { out_layout } else { stage_layout };
            x = if token_major { b.token_major_block(g, &vb, stage, x, out)? } else { b.block(g, &vb, stage, x, out)? };
        }
        layout = out_layout;
        // In the layout the stage wrote: NCHW, or channel-last [B, H, W, C].
        g.tap(&format!("stage{stage}"), x);
    }
    let pooled = if layout == Layout::ChannelsLast {
        let [n, h, w, c] = dims4(g.shape(x));
        let tokens = g.reshape(x, &[n, h * w, c])?;
        root.op(g, |g| mean_tokens(g, tokens))?
    } else {
        root.op(g, |g| mean_spatial(g, x))?
    };
    g.tap("pre_logits", pooled);
    let head = root.pp("classifier.1");
    let classes = nn::head_classes(&head);
    let weight = head.param(g, "weight", &[classes, dims[3]])?;
    let bias = head.param(g, "bias", &[classes])?;
    head.op(g, |g| linear(g, pooled, weight, Some(bias), Activation::None))
}
