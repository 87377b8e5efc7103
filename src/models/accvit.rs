//! ACC-ViT ("Atrous Convolution's Comeback in Vision Transformers"), as the project's contract
//! reconstructs it: no official code or weights exist, so shared/spec/accvit.md defines the network
//! and shared/reference/contract.py (`--family accvit`) is its executable PyTorch form; tensor names
//! here are the contract's `state_dict` names, unchanged.
//!
//! Network: a conv stem (3×3/2 conv + BN + GELU, 3×3 conv), four stages of blocks
//! `x = MBConv(x); x = x + AtrousAttention(LN(x)); x = x + MLP(LN(x))`, then mean pooling,
//! LayerNorm, `tanh(Linear)`, Linear.
//!
//! How it maps onto kernels (all activations channel-last `[B, H, W, C]` after the stem, so every
//! 1×1 conv and Linear is one GEMM over pixels and no layout permute is ever dispatched):
//! - **Stem.** `bn1` folded into `conv1`, GELU in its epilogue. The stem writes NCHW, except
//!   where the device runs dense convs channel-last (`ops::tuning::direct_nhwc_convs`, lavapipe):
//!   there `conv1` stores channel-last and `conv2` is the direct `conv2d_nhwc`.
//! - **Atrous MBConv.** `pre_norm` and `bn1` are folded into `expand` (exact: a 1×1 conv with no
//!   padding), GELU in its epilogue; an NCHW stem output is read through a transposed GEMM operand.
//!   The three dilated depthwise convs (dilation 1, 2, 3, the block's stride), their sum, `bn2`
//!   (folded into their weights and one bias) and GELU are one `atrous_dwconv` dispatch. SE is a
//!   token mean and two tiny Linears (SiLU, sigmoid); its scale multiplies `project`'s input
//!   channels inside that GEMM (`matmul_k_scaled`), which carries the shortcut as its residual. The stride-2 shortcut is `avg_pool 2×2/2` then `shortcut.proj`.
//! - **Atrous attention.** Every branch's `qkv` and the `gate` Linear are one GEMM (weights
//!   concatenated at load time); `atrous_attention` runs all dilation branches in one dispatch,
//!   windows addressed by index arithmetic, relative-position bias gathered from its table, gated
//!   by the per-pixel softmax; the branches' `proj` Linears, the gated sum (`Σ g_i·(P_i o_i + p_i)`,
//!   the biases via the gate channels) and the residual are one GEMM.
//!
//! Input sizes: the stage maps are H/4 .. H/32 and stage s splits its map into 7×7 windows at
//! dilations up to 2^levels[s], so H and W must be multiples of 224.

use crate::error::{Error, Result};
use crate::explain::{dot, softmax_map, Probe};
use crate::graph::{Graph, TensorId};
use crate::ops::conv2d::{conv2d, conv2d_to_nhwc, Conv2dParams};
use crate::ops::tuning;
use crate::ops::family::atrous_attention::{atrous_attention, AtrousAttentionDims, MAX_BRANCHES, MAX_HEAD_DIM, MAX_WINDOW};
use crate::ops::family::atrous_dwconv::{atrous_dwconv, MAX_BRANCHES as MAX_CONV_DILATIONS};
use crate::ops::matmul::{matmul, matmul_k_scaled, BiasAxis, Epilogue};
use crate::ops::pool::{avg_pool2d, mean_tokens};
use crate::ops::unary::activation;
use crate::ops::Activation;

use super::nn::{self, BatchNorm, Scope};
use super::torch_layout::{atrous_attention_table, atrous_dwconv_weights};

/// BatchNorm and LayerNorm eps of the contract (PyTorch defaults).
const BN_EPS: f32 = 1e-5;
const LN_EPS: f32 = 1e-5;

/// The contract's hyper-parameters; `wgvit.config` metadata holds them as JSON with these field
/// names.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccVitConfig {
    pub stem: usize,
    pub dims: [usize; 4],
    pub depths: [usize; 4],
    /// Atrous levels per stage: branches with dilations 1, 2, .., 2^levels.
    pub levels: [usize; 4],
    pub window: usize,
    /// Heads = max(1, C / head_dim).
    pub head_dim: usize,
    /// Parallel depthwise convs in the MBConv, dilations 1 ..= conv_dilations, outputs summed.
    pub conv_dilations: usize,
    pub expansion: usize,
    /// SE bottleneck = C_out / se_div.
    pub se_div: usize,
    pub mlp_ratio: usize,
}

pub fn config(variant: &str) -> Option<AccVitConfig> {
    let (stem, dims, depths) = match variant {
        "tiny" => (64, [64, 128, 256, 512], [2, 2, 5, 2]),
        "small" => (64, [96, 192, 384, 768], [2, 2, 5, 2]),
        "base" => (64, [96, 192, 384, 768], [2, 6, 14, 2]),
        "micro" => (16, [16, 32, 64, 128], [1, 1, 1, 1]),
        _ => return None,
    };
    Some(AccVitConfig {
        stem,
        dims,
        depths,
        levels: [3, 2, 1, 0],
        window: 7,
        head_dim: 32,
        conv_dilations: 3,
        expansion: 4,
        se_div: 4,
        mlp_ratio: 4,
    })
}

impl super::Config for AccVitConfig {
    fn validate(&self) -> std::result::Result<(), String> {
        super::nonzero("dims", &self.dims)?;
        super::nonzero("depths", &self.depths)?;
        let scalars = [
            ("stem", self.stem),
            ("window", self.window),
            ("head_dim", self.head_dim),
            ("conv_dilations", self.conv_dilations),
            ("expansion", self.expansion),
            ("se_div", self.se_div),
            ("mlp_ratio", self.mlp_ratio),
        ];
        for (name, v) in scalars {
            super::nonzero(name, &[v])?;
        }
        if self.conv_dilations > MAX_CONV_DILATIONS {
            return Err(format!("conv_dilations = {} is above the atrous conv kernel's {MAX_CONV_DILATIONS}", self.conv_dilations));
        }
        if self.window > MAX_WINDOW {
            return Err(format!("window = {} is larger than the attention kernel's {MAX_WINDOW}", self.window));
        }
        if let Some(s) = (0..4).find(|&s| self.levels[s] >= MAX_BRANCHES) {
            return Err(format!("levels[{s}] = {} (dilations 1 ..= 2^levels) is out of range 0..={}", self.levels[s], MAX_BRANCHES - 1));
        }
        for s in 0..4 {
            let c = self.dims[s];
            let heads = (c / self.head_dim).max(1);
            if !c.is_multiple_of(heads) {
                return Err(format!("dims[{s}] = {c} does not split into {heads} heads of head_dim = {}", self.head_dim));
            }
            if c / heads > MAX_HEAD_DIM {
                return Err(format!("dims[{s}] = {c} in {heads} head(s) is a head size of {}, above the kernel's {MAX_HEAD_DIM}", c / heads));
            }
            if c < self.se_div {
                return Err(format!("dims[{s}] = {c} leaves no squeeze-excitation channels at se_div = {}", self.se_div));
            }
        }
        Ok(())
    }
}

impl AccVitConfig {
    /// The side every input side must be a multiple of: stage s (map side n / 2^(s+2)) needs
    /// whole windows at its largest dilation.
    pub fn size_unit(&self) -> usize {
        (0..4).map(|s| (4 << s) * self.window * (1 << self.levels[s])).fold(1, lcm)
    }
}

fn lcm(a: usize, b: usize) -> usize {
    let gcd = |mut x: usize, mut y: usize| {
        while y != 0 {
            (x, y) = (y, x % y);
        }
        x
    };
    a / gcd(a, b) * b
}

/// A feature map and its layout: the stem output is NCHW (or channel-last, see the module
/// docs), everything after it channel-last.
#[derive(Clone, Copy, Debug)]
struct Map {
    t: TensorId,
    nchw: bool,
    b: usize,
    h: usize,
    w: usize,
    c: usize,
}

/// The ACC-ViT family in the registry.
pub struct AccVit;

impl super::Family for AccVit {
    type Config = AccVitConfig;
    const PREFIX: &'static str = "accvit";
    const VARIANTS: &'static [&'static str] = &["tiny", "small", "base", "micro"];

    fn variant(name: &str) -> Option<AccVitConfig> {
        config(name)
    }

    fn build(cfg: &AccVitConfig, g: &mut Graph, root: &Scope, input: TensorId, id: &str) -> Result<TensorId> {
        build(g, root, input, id, cfg)
    }
}

struct Builder<'a> {
    cfg: &'a AccVitConfig,
}

impl Builder<'_> {
    fn layer_norm(&self, g: &mut Graph, vb: &Scope, x: TensorId) -> Result<TensorId> {
        nn::layer_norm(g, vb, x, LN_EPS)
    }

    /// `act(x·Wᵀ + bias) + residual` over the pixels of `x`, written channel-last
    /// `[B, H, W, cout]`; an NCHW `x` is read through the transposed GEMM operand.
    fn pointwise(&self, g: &mut Graph, vb: &Scope, x: Map, weight: TensorId, bias: Option<TensorId>, act: Activation, residual: Option<TensorId>) -> Result<Map> {
        let cout = g.shape(weight)[0];
        let hw = x.h * x.w;
        let epi = Epilogue { bias: bias.map(|b| (b, BiasAxis::Col)), act, residual, ..Default::default() };
        let y = if x.nchw {
            let a = g.reshape(x.t, &[x.b, x.c, hw])?;
            vb.op(g, |g| matmul(g, a, weight, true, true, epi))?
        } else {
            let a = g.reshape(x.t, &[x.b * hw, x.c])?;
            vb.op(g, |g| matmul(g, a, weight, false, true, epi))?
        };
        let t = g.reshape(y, &[x.b, x.h, x.w, cout])?;
        Ok(Map { t, nchw: false, c: cout, ..x })
    }

    /// A 1×1 conv `vb` (`weight [cout, cin, 1, 1]`, `bias`) as [`Builder::pointwise`].
    fn conv1x1(&self, g: &mut Graph, vb: &Scope, x: Map, cout: usize, act: Activation, residual: Option<TensorId>) -> Result<Map> {
        let weight = vb.param(g, "weight", &[cout, x.c, 1, 1])?;
        let weight = g.reshape(weight, &[cout, x.c])?;
        let bias = vb.param(g, "bias", &[cout])?;
        self.pointwise(g, vb, x, weight, Some(bias), act, residual)
    }

    fn stem(&self, g: &mut Graph, vb: &Scope, input: TensorId) -> Result<Map> {
        let c = self.cfg.stem;
        let conv1 = vb.pp("conv1");
        let w1 = conv1.tensor("weight", &[c, 3, 3, 3])?;
        let b1 = conv1.tensor("bias", &[c])?;
        let (w1, b1) = BatchNorm::load(&vb.pp("bn1"), c, BN_EPS)?.fold(&w1, Some(&b1));
        let w1 = vb.derived(g, "conv1.weight+stem.bn1", &[c, 3, 3, 3], w1)?;
        let b1 = vb.derived(g, "conv1.bias+stem.bn1", &[c], b1)?;
        let p = |stride: usize| Conv2dParams { stride: (stride, stride), padding: (1, 1), ..Default::default() };
        if tuning::direct_nhwc_convs(&g.profile) {
            // Channel-last from the first conv on, for the direct kernel of the second.
            let x = conv1.op(g, |g| conv2d_to_nhwc(g, input, w1, Some(b1), &p(2), Activation::Gelu))?;
            let x = nn::conv2d_nhwc(g, &vb.pp("conv2"), x, c, 3, p(1), true, Activation::None)?;
            let s = g.shape(x).to_vec();
            return Ok(Map { t: x, nchw: false, b: s[0], h: s[1], w: s[2], c: s[3] });
        }
        let x = conv1.op(g, |g| conv2d(g, input, w1, Some(b1), &p(2), Activation::Gelu))?;
        let x = nn::conv2d(g, &vb.pp("conv2"), x, c, 3, p(1), true, Activation::None)?;
        let s = g.shape(x).to_vec();
        Ok(Map { t: x, nchw: true, b: s[0], c: s[1], h: s[2], w: s[3] })
    }

    /// Atrous inverted residual: `shortcut(x) + project(SE(GELU(BN(Σ_d dw_d(GELU(BN(expand(BN(x)))))))))`.
    fn mbconv(&self, g: &mut Graph, vb: &Scope, x: Map, cout: usize, stride: usize) -> Result<Map> {
        let cfg = self.cfg;
        let (cin, mid, rd) = (x.c, cout * cfg.expansion, cout / cfg.se_div);

        let shortcut = if stride != 1 || cin != cout {
            let sc = vb.pp("shortcut");
            let pooled = if stride == 2 { self.avg_pool2(g, &sc.pp("pool"), x)? } else { x };
            self.conv1x1(g, &sc.pp("proj"), pooled, cout, Activation::None, None)?.t
        } else if x.nchw {
            return Err(Error::Graph(format!("{}: an identity shortcut needs a channel-last input", vb.prefix())));
        } else {
            x.t
        };

        // expand(pre_norm(x)) then bn1, folded: W' = diag(s1)·W·diag(s_pre), b' = s1·(W·t_pre) + t1.
        let pre = BatchNorm::load(&vb.pp("pre_norm"), cin, BN_EPS)?;
        let bn1 = BatchNorm::load(&vb.pp("bn1"), mid, BN_EPS)?;
        let expand = vb.pp("expand");
        let we = expand.tensor("weight", &[mid, cin, 1, 1])?;
        let mut w_fold = vec![0f32; mid * cin];
        let mut b_fold = vec![0f32; mid];
        for o in 0..mid {
            let mut acc = 0f64;
            for i in 0..cin {
                let wv = we[o * cin + i] as f64;
                w_fold[o * cin + i] = (bn1.scale(o) * wv * pre.scale(i)) as f32;
                acc += wv * pre.shift(i);
            }
            b_fold[o] = (bn1.scale(o) * acc + bn1.shift(o)) as f32;
        }
        let we = vb.derived(g, "expand.weight+pre_norm+bn1", &[mid, cin], w_fold)?;
        let be = vb.derived(g, "expand.bias+pre_norm+bn1", &[mid], b_fold)?;
        let h = self.pointwise(g, &expand, x, we, Some(be), Activation::Gelu, None)?;

        // The dilated depthwise convs, summed, bn2 folded (scale into each, one shift), GELU.
        let bn2 = BatchNorm::load(&vb.pp("bn2"), mid, BN_EPS)?;
        let dw = vb.pp("dw");
        let mut folded = Vec::with_capacity(cfg.conv_dilations);
        let mut shift = Vec::new();
        for i in 0..cfg.conv_dilations {
            let wi = dw.pp(i).tensor("weight", &[mid, 1, 3, 3])?;
            let (w, b) = bn2.fold(&wi, None);
            folded.push(w);
            shift = b; // the same for every branch: (0 − mean)·scale + beta
        }
        let dw_refs: Vec<&[f32]> = folded.iter().map(|w| w.as_slice()).collect();
        let wdw = vb.derived(g, "dw.*.weight+bn2", &[cfg.conv_dilations, 3, 3, mid], atrous_dwconv_weights(&dw_refs, mid, &[]))?;
        let bdw = vb.derived(g, "bn2.shift", &[mid], shift)?;
        let t = dw.op(g, |g| atrous_dwconv(g, h.t, wdw, Some(bdw), stride, Activation::Gelu))?;
        let s = g.shape(t).to_vec();
        let h = Map { t, nchw: false, b: s[0], h: s[1], w: s[2], c: s[3] };

        // Squeeze-excitation: mean over pixels → fc1 + SiLU → fc2 + sigmoid → per-channel scale.
        let se = vb.pp("se");
        let tokens = g.reshape(h.t, &[h.b, h.h * h.w, mid])?;
        let pooled = se.op(g, |g| mean_tokens(g, tokens))?;
        // The activations as element-wise passes over the few pooled values, not in the GEMMs'
        // epilogues: both GEMMs then share the qkv projections' pipeline instead of compiling one
        // each with SiLU and with sigmoid (0.13-0.17 s of lavapipe JIT each at the first
        // dispatch); a unary pipeline costs 0.03 s.
        let fc = |g: &mut Graph, vb: &Scope, x: TensorId, cin: usize, cout: usize, act: Activation| -> Result<TensorId> {
            let w = vb.param(g, "weight", &[cout, cin, 1, 1])?;
            let w = g.reshape(w, &[cout, cin])?;
            let bias = vb.param(g, "bias", &[cout])?;
            let y = vb.op(g, |g| crate::ops::matmul::linear(g, x, w, Some(bias), Activation::None))?;
            vb.op(g, |g| activation(g, y, act))
        };
        let s = fc(g, &se.pp("fc1"), pooled, mid, rd, Activation::Silu)?;
        let s = fc(g, &se.pp("fc2"), s, rd, mid, Activation::Sigmoid)?;

        // project(x · s) + shortcut: the scale multiplies the GEMM's input channels as it reads
        // them (`matmul_k_scaled`), so the scaled map is never written.
        let project = vb.pp("project");
        let w = project.param(g, "weight", &[cout, mid, 1, 1])?;
        let w = g.reshape(w, &[cout, mid])?;
        let bias = project.param(g, "bias", &[cout])?;
        let epi = Epilogue { bias: Some((bias, BiasAxis::Col)), residual: Some(shortcut), ..Default::default() };
        let y = project.op(g, |g| matmul_k_scaled(g, tokens, w, false, true, s, epi))?;
        Ok(Map { t: g.reshape(y, &[h.b, h.h, h.w, cout])?, c: cout, ..h })
    }

    /// 2×2/2 average pool: PyTorch's on NCHW; on channel-last maps a one-branch stride-2 atrous
    /// depthwise conv whose lower-right 2×2 taps are ¼ (the centre tap of output (i, j) is input
    /// (2i, 2j), so those taps cover rows 2i, 2i+1 and columns 2j, 2j+1).
    /// Map sides are even here (multiples of 224 halved at most four times).
    fn avg_pool2(&self, g: &mut Graph, vb: &Scope, x: Map) -> Result<Map> {
        if x.nchw {
            let t = vb.op(g, |g| avg_pool2d(g, x.t, (2, 2), (2, 2), (0, 0), true))?;
            return Ok(Map { t, h: x.h / 2, w: x.w / 2, ..x });
        }
        let c = x.c;
        let mut box_w = vec![0f32; 9 * c];
        for tap in [4, 5, 7, 8] {
            box_w[tap * c..(tap + 1) * c].fill(0.25);
        }
        // Keyed by size alone: every 2×2 pool of `c` channels shares it.
        let box_w = g.constant(&format!("wgvit.avg_pool2x2.{c}"), &[1, 3, 3, c], std::sync::Arc::new(box_w))?;
        let t = vb.op(g, |g| atrous_dwconv(g, x.t, box_w, None, 2, Activation::None))?;
        let s = g.shape(t).to_vec();
        Ok(Map { t, h: s[1], w: s[2], ..x })
    }

    /// `x + gated Σ_i proj_i(window-attention_i(LN(x)))` over the dilated partitions.
    fn atrous_attention(&self, g: &mut Graph, vb: &Scope, x: Map, levels: usize) -> Result<TensorId> {
        let c = x.c;
        let heads = (c / self.cfg.head_dim).max(1);
        let dims = AtrousAttentionDims { batch: x.b, h: x.h, w: x.w, channels: c, heads, branches: levels + 1, window: self.cfg.window };
        let nb = dims.branches;
        let table_len = dims.table_len();
        let xn = self.layer_norm(g, &vb.pp("norm1"), x.t)?;

        // Every branch's qkv and the gate logits in one GEMM: rows [qkv_0; ..; qkv_nb−1; gate; 0].
        let (row_in, row_out) = (dims.qkv_row(), dims.out_row());
        let mut w_in = Vec::with_capacity(row_in * c);
        let mut b_in = Vec::with_capacity(row_in);
        let mut tables = Vec::with_capacity(nb);
        for i in 0..nb {
            let branch = vb.pp("branches").pp(i);
            w_in.extend_from_slice(&branch.pp("qkv").tensor("weight", &[3 * c, c])?);
            b_in.extend_from_slice(&branch.pp("qkv").tensor("bias", &[3 * c])?);
            tables.push(branch.tensor("rel_bias", &[table_len, heads])?);
        }
        if nb > 1 {
            w_in.extend_from_slice(&vb.pp("gate").tensor("weight", &[nb, c])?);
            b_in.extend_from_slice(&vb.pp("gate").tensor("bias", &[nb])?);
        }
        w_in.resize(row_in * c, 0.0);
        b_in.resize(row_in, 0.0);
        let w_in = vb.derived(g, "branches.*.qkv.weight+gate.weight", &[row_in, c], w_in)?;
        let b_in = vb.derived(g, "branches.*.qkv.bias+gate.bias", &[row_in], b_in)?;
        let qkv = vb.pp("qkv").op(g, |g| crate::ops::matmul::linear(g, xn, w_in, Some(b_in), Activation::None))?;

        g.probe_all(atrous_probes(vb.prefix(), qkv, &dims, &tables));
        let table_refs: Vec<&[f32]> = tables.iter().map(|t| t.as_slice()).collect();
        let table = vb.derived(g, "branches.*.rel_bias", &[nb, heads, table_len], atrous_attention_table(&table_refs, heads))?;
        let scale = (dims.head_dim() as f64).powf(-0.5) as f32;
        let o = vb.op(g, |g| atrous_attention(g, qkv, table, &dims, scale))?;

        // Output projection of the gated branches: columns [proj_0 .. proj_nb−1 | bias_0 .. | 0].
        let mut w_out = vec![0f32; c * row_out];
        let mut bias = None;
        for i in 0..nb {
            let proj = vb.pp("branches").pp(i).pp("proj");
            let wi = proj.tensor("weight", &[c, c])?;
            let bi = proj.tensor("bias", &[c])?;
            for r in 0..c {
                w_out[r * row_out + i * c..][..c].copy_from_slice(&wi[r * c..(r + 1) * c]);
                if nb > 1 {
                    w_out[r * row_out + nb * c + i] = bi[r];
                }
            }
            if nb == 1 {
                bias = Some(proj.param(g, "bias", &[c])?);
            }
        }
        let w_out = vb.derived(g, "branches.*.proj.weight+bias", &[c, row_out], w_out)?;
        let o = Map { t: o, nchw: false, c: row_out, ..x };
        Ok(self.pointwise(g, &vb.pp("proj"), o, w_out, bias, Activation::None, Some(x.t))?.t)
    }

    fn block(&self, g: &mut Graph, vb: &Scope, x: Map, cout: usize, stride: usize, levels: usize) -> Result<Map> {
        let x = self.mbconv(g, &vb.pp("conv"), x, cout, stride)?;
        let t = self.atrous_attention(g, &vb.pp("attn"), x, levels)?;
        // Shared MLP: x + fc2(GELU(fc1(LN(x)))).
        let c = x.c;
        let hidden = c * self.cfg.mlp_ratio;
        let xn = self.layer_norm(g, &vb.pp("norm2"), t)?;
        let h = nn::linear(g, &vb.pp("mlp.fc1"), xn, hidden, true, Activation::Gelu, None)?;
        let fc2 = vb.pp("mlp.fc2");
        let w2 = fc2.param(g, "weight", &[c, hidden])?;
        let b2 = fc2.param(g, "bias", &[c])?;
        let h = Map { t: h, c: hidden, ..x };
        self.pointwise(g, &fc2, h, w2, Some(b2), Activation::None, Some(t))
    }
}

/// The maps of one atrous attention: each branch's window attention (per head,
/// `softmax(scale·q·kᵀ + rel_bias)` inside the dilated windows, on the stage map) as
/// `<attn>.branches.<i>`, then the gate's weight of each branch at every position as
/// `<attn>.gate.<i>` (a per-position weight, not an attention distribution). `qkv` is the fused
/// projection `[B, H·W, qkv_row]`: branch `i`'s q at columns `3·C·i ..`, k at `3·C·i + C ..`,
/// the gate logits at `3·C·branches ..`.
fn atrous_probes(attn: &str, qkv: TensorId, dims: &AtrousAttentionDims, tables: &[std::sync::Arc<Vec<f32>>]) -> Vec<Probe> {
    let AtrousAttentionDims { h, w, channels: c, heads, branches, window: win, .. } = *dims;
    let (hd, row, n, span) = (dims.head_dim(), dims.qkv_row(), h * w, 2 * win - 1);
    let scale = (hd as f64).powf(-0.5) as f32 as f64;
    let mut probes = Vec::new();
    for (i, table) in tables.iter().enumerate() {
        let dil = dims.dilation(i);
        let table = table.clone();
        probes.push(Probe::new(format!("{attn}.branches.{i}"), (h, w), (h, w), true, vec![qkv], move |t, query| {
            let qkv = t[0];
            let at = |part: usize, head: usize, p: usize| qkv[p * row + 3 * c * i + part * c + head * hd..][..hd].iter().copied();
            // Position (r, col) is token (u, v) of the window with origin (r0, c0) at dilation dil.
            let split = |p: usize| {
                let (r, col) = (p / w, p % w);
                let (u, v) = (r / dil % win, col / dil % win);
                ((u, v), (r - u * dil, col - v * dil))
            };
            let keys = |p: usize| {
                let (_, (r0, c0)) = split(p);
                (0..win * win).map(|j| (r0 + j / win * dil) * w + c0 + j % win * dil).collect()
            };
            let logit = |head: usize, q: usize, k: usize| {
                let (((uq, vq), _), ((uk, vk), _)) = (split(q), split(k));
                let index = (uq + win - 1 - uk) * span + (vq + win - 1 - vk);
                scale * dot(at(0, head, q), at(1, head, k)) + table[index * heads + head] as f64
            };
            softmax_map((n, n, heads), query, keys, logit)
        }));
    }
    if branches > 1 {
        for i in 0..branches {
            probes.push(Probe::new(format!("{attn}.gate.{i}"), (h, w), (h, w), false, vec![qkv], move |t, _| {
                let logits = |p: usize| &t[0][p * row + 3 * c * branches..][..branches];
                let weights = (0..n).map(|p| {
                    let l = logits(p);
                    let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
                    let sum: f64 = l.iter().map(|&x| (x as f64 - max).exp()).sum();
                    (l[i] as f64 - max).exp() / sum
                });
                vec![weights.collect()]
            }));
        }
    }
    probes
}

/// Appends ACC-ViT model `id` with configuration `cfg` to `g`, its parameters read through
/// `root`; returns the logits `[B, classes]` (classes from the weights). Taps: `stem`
/// `[B, C, H/2, W/2]`, `stage0` .. `stage3` channel-last `[B, h, w, C]`, `head.norm`.
pub fn build(g: &mut Graph, root: &Scope, input: TensorId, id: &str, cfg: &AccVitConfig) -> Result<TensorId> {
    let shape = g.shape(input).to_vec();
    let unit = cfg.size_unit();
    if !shape[2].is_multiple_of(unit) || !shape[3].is_multiple_of(unit) {
        let (win, dil) = (cfg.window, 1 << cfg.levels[0]);
        return Err(Error::BadInputShape {
            model: id.into(),
            expected: format!(
                "height and width must be multiples of {unit} ({unit}, {}, {}, ...): stage 1 splits its H/4 map into {win}×{win} windows at dilation up to {dil}",
                2 * unit,
                3 * unit
            ),
            found: shape,
        });
    }
    let b = Builder { cfg };
    let mut x = b.stem(g, &root.pp("stem"), input)?;
    g.tap("stem", x.t);
    for s in 0..4 {
        for j in 0..cfg.depths[s] {
            let stride = if j == 0 { 2 } else { 1 };
            x = b.block(g, &root.pp("stages").pp(s).pp("blocks").pp(j), x, cfg.dims[s], stride, cfg.levels[s])?;
        }
        g.tap(&format!("stage{s}"), x.t);
    }
    let c = cfg.dims[3];
    let head = root.pp("head");
    let tokens = g.reshape(x.t, &[x.b, x.h * x.w, c])?;
    let pooled = head.op(g, |g| mean_tokens(g, tokens))?;
    let pooled = b.layer_norm(g, &head.pp("norm"), pooled)?;
    g.tap("head.norm", pooled);
    // The tanh as its own element-wise pass over the C pooled values, as in the blocks' SE: the
    // GEMM shares the qkv projections' pipeline instead of compiling one with tanh (0.25 s).
    let pre = nn::linear(g, &head.pp("pre_logits"), pooled, c, true, Activation::None, None)?;
    let pre = head.pp("pre_logits").op(g, |g| activation(g, pre, Activation::Tanh))?;
    let fc = head.pp("fc");
    let classes = nn::head_classes(&fc);
    nn::linear(g, &fc, pre, classes, true, Activation::None, None)
}
