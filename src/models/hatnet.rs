//! HAT-Net (Vision Transformers with Hierarchical Attention), from the official `state_dict`
//! names unchanged. Spec: shared/spec/hatnet.md; PyTorch twin: tools/reference/hatnet.py.
//!
//! Everything stays NCHW as in the official code. A block is
//! `x = x + proj(H-MHSA(GN(x)))`, `x = x + GN(conv1x1(SiLU(dw(SiLU(conv1x1(GN(x)))))))`, where
//! H-MHSA (stages 0–2) is window attention inside G×G cells read straight out of the NCHW qkv map
//! (the cell partition is index arithmetic in the attention kernel's views: no permute copies),
//! `g = GN(x + local)`, then attention of `q(g)` to the r×r average-pooled, normalised `kv(.)`
//! tokens, plus `g`. Stage 3 is plain multi-head attention over all tokens.
//! `attn.proj_norm.*` is in every checkpoint but unused by the official forward: it is accepted
//! and ignored.

use crate::error::{Error, Result};
use crate::graph::{Graph, TensorId};
use crate::ops::attention::{attention_strided, AttentionDims, Operand, OutputSpec, View};
use crate::ops::conv2d::{conv2d, Conv2dParams};
use crate::ops::elementwise::add;
use crate::ops::groupnorm::group_norm;
use crate::ops::matmul::{linear, matmul, BiasAxis, Epilogue};
use crate::ops::pool::{avg_pool2d, mean_spatial};
use crate::ops::Activation;
use crate::weights::Weights;

const GRID_SIZES: [usize; 4] = [8, 7, 7, 1];
const POOL_RATIOS: [usize; 4] = [8, 4, 2, 1];
const EPS: f32 = 1e-6;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HatNetConfig {
    pub dims: [usize; 4],
    pub head_dim: usize,
    pub depths: [usize; 4],
    pub kernels: [usize; 4],
    pub expansions: [usize; 4],
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
    Some(HatNetConfig { dims, head_dim, depths, kernels, expansions })
}

/// Stage-0 side for an input side `n`: two stride-2, pad-1, 3×3 convs.
fn stem_side(n: usize) -> usize {
    n.div_ceil(2).div_ceil(2)
}

/// The official model reshapes each stage into G×G cells, so stage 0 must be a multiple of 56:
/// input sides 224k, or 224k-3 ..= 224k-1.
pub fn accepts_side(n: usize) -> bool {
    n > 0 && stem_side(n) % 56 == 0
}

fn conv_params(stride: usize, padding: usize, groups: usize) -> Conv2dParams {
    Conv2dParams { stride: (stride, stride), padding: (padding, padding), dilation: (1, 1), groups }
}

struct Builder<'a> {
    g: &'a mut Graph,
    w: &'a Weights,
    cfg: HatNetConfig,
}

impl Builder<'_> {
    fn param(&mut self, name: &str, shape: &[usize]) -> Result<TensorId> {
        self.w.constant(self.g, name, shape)
    }

    fn group_norm(&mut self, name: &str, x: TensorId, add: Option<TensorId>, act: Activation) -> Result<TensorId> {
        let c = self.g.shape(x)[1];
        let gamma = self.param(&format!("{name}.weight"), &[c])?;
        let beta = self.param(&format!("{name}.bias"), &[c])?;
        self.g.scope(name, |g| group_norm(g, x, 1, gamma, beta, EPS, add, act))
    }

    /// 1×1 conv as a GEMM `W[Cout, Cin] · x[b][Cin, H·W]` with the bias, activation and residual
    /// fused into its epilogue.
    fn pointwise(&mut self, name: &str, x: TensorId, cout: usize, bias: bool, act: Activation, residual: Option<TensorId>) -> Result<TensorId> {
        let [b, cin, h, w] = dims4(self.g.shape(x));
        let weight = self.param(&format!("{name}.weight"), &[cout, cin, 1, 1])?;
        let weight = self.g.reshape(weight, &[cout, cin])?;
        let bias = if bias { Some((self.param(&format!("{name}.bias"), &[cout])?, BiasAxis::Row)) } else { None };
        let residual = match residual {
            Some(r) => Some(self.g.reshape(r, &[b, cout, h * w])?),
            None => None,
        };
        let tokens = self.g.reshape(x, &[b, cin, h * w])?;
        let y = self.g.scope(name, |g| matmul(g, weight, tokens, false, false, Epilogue { alpha: 1.0, bias, act, residual }))?;
        self.g.reshape(y, &[b, cout, h, w])
    }

    fn conv(&mut self, name: &str, x: TensorId, cout: usize, k: usize, p: Conv2dParams, bias: bool, act: Activation) -> Result<TensorId> {
        let cin = self.g.shape(x)[1] / p.groups;
        let weight = self.param(&format!("{name}.weight"), &[cout, cin, k, k])?;
        let bias = if bias { Some(self.param(&format!("{name}.bias"), &[cout])?) } else { None };
        self.g.scope(name, |g| conv2d(g, x, weight, bias, &p, act))
    }

    fn block(&mut self, prefix: &str, stage: usize, x: TensorId) -> Result<TensorId> {
        self.w.ignore(&format!("{prefix}.attn.proj_norm.weight"));
        self.w.ignore(&format!("{prefix}.attn.proj_norm.bias"));
        let x = self.attention(&format!("{prefix}.attn"), stage, x)?;
        self.inverted_residual(&format!("{prefix}.conv"), stage, x)
    }

    /// `x + H-MHSA(x)` (the residual is fused into the projection).
    fn attention(&mut self, p: &str, stage: usize, x: TensorId) -> Result<TensorId> {
        let [b, c, h, w] = dims4(self.g.shape(x));
        let d = self.cfg.head_dim;
        let heads = c / d;
        let scale = (d as f32).powf(-0.5);
        let hw = h * w;
        let t = self.group_norm(&format!("{p}.norm"), x, None, Activation::None)?;
        let qkv = self.pointwise(&format!("{p}.qkv"), t, 3 * c, true, Activation::None, None)?;
        let grid = GRID_SIZES[stage];
        let nchw = |offset: usize, batch_stride: usize, plane: usize| View::strided(offset, batch_stride, d * plane, 1, plane);

        if grid == 1 {
            let dims = AttentionDims { batch: b, heads, nq: hw, nk: hw, d, dv: d };
            let out = OutputSpec { shape: vec![b, c, h, w], view: nchw(0, c * hw, hw) };
            let o = self.g.scope(p, |g| attention_strided(
                g,
                Operand::new(qkv, nchw(0, 3 * c * hw, hw)),
                Operand::new(qkv, nchw(c * hw, 3 * c * hw, hw)),
                Operand::new(qkv, nchw(2 * c * hw, 3 * c * hw, hw)),
                None,
                &dims,
                scale,
                &out,
            ))?;
            return self.pointwise(&format!("{p}.proj"), o, c, true, Activation::None, Some(x));
        }

        // Local attention inside each G×G cell of the NCHW map, cells addressed in the views.
        let (gh, gw) = (h / grid, w / grid);
        let cell = |offset: usize, batch_stride: usize| View {
            offset,
            batch_split: [gh, gw],
            batch_strides: [batch_stride, grid * w, grid],
            head: d * hw,
            token_split: grid,
            token_strides: [w, 1],
            channel: hw,
        };
        let dims = AttentionDims { batch: b * gh * gw, heads, nq: grid * grid, nk: grid * grid, d, dv: d };
        let local = self.g.scope(&format!("{p}.local"), |g| attention_strided(
            g,
            Operand::new(qkv, cell(0, 3 * c * hw)),
            Operand::new(qkv, cell(c * hw, 3 * c * hw)),
            Operand::new(qkv, cell(2 * c * hw, 3 * c * hw)),
            None,
            &dims,
            scale,
            &OutputSpec { shape: vec![b, c, h, w], view: cell(0, c * hw) },
        ))?;
        let grid_x = self.group_norm(&format!("{p}.grid_norm"), x, Some(local), Activation::None)?;

        // Global attention of every position to the pooled tokens.
        let q = self.pointwise(&format!("{p}.q"), grid_x, c, true, Activation::None, None)?;
        let r = POOL_RATIOS[stage];
        let pooled = avg_pool2d(self.g, grid_x, (r, r), (r, r), (0, 0), true)?;
        let pooled = self.group_norm(&format!("{p}.ds_norm"), pooled, None, Activation::None)?;
        let kv = self.pointwise(&format!("{p}.kv"), pooled, 2 * c, true, Activation::None, None)?;
        let m = self.g.numel(kv) / (b * 2 * c);
        let dims = AttentionDims { batch: b, heads, nq: hw, nk: m, d, dv: d };
        let global = self.g.scope(&format!("{p}.global"), |g| attention_strided(
            g,
            Operand::new(q, nchw(0, c * hw, hw)),
            Operand::new(kv, nchw(0, 2 * c * m, m)),
            Operand::new(kv, nchw(c * m, 2 * c * m, m)),
            None,
            &dims,
            scale,
            &OutputSpec { shape: vec![b, c, h, w], view: nchw(0, c * hw, hw) },
        ))?;
        let merged = self.g.scope(p, |g| add(g, global, grid_x))?;
        self.pointwise(&format!("{p}.proj"), merged, c, true, Activation::None, Some(x))
    }

    /// `x + GN(conv1x1(SiLU(dw(SiLU(conv1x1(GN(x)))))))`.
    fn inverted_residual(&mut self, p: &str, stage: usize, x: TensorId) -> Result<TensorId> {
        let c = self.g.shape(x)[1];
        let hidden = c * self.cfg.expansions[stage];
        let k = self.cfg.kernels[stage];
        let t = self.group_norm(&format!("{p}.conv1.0"), x, None, Activation::None)?;
        let t = self.pointwise(&format!("{p}.conv1.1"), t, hidden, false, Activation::Silu, None)?;
        let t = self.conv(&format!("{p}.conv2.0"), t, hidden, k, conv_params(1, k / 2, hidden), false, Activation::Silu)?;
        let t = self.pointwise(&format!("{p}.conv3.0"), t, c, false, Activation::None, None)?;
        let t = self.group_norm(&format!("{p}.conv3.1"), t, None, Activation::None)?;
        self.g.scope(p, |g| add(g, x, t))
    }
}

fn dims4(s: &[usize]) -> [usize; 4] {
    [s[0], s[1], s[2], s[3]]
}

/// Appends HAT-Net `variant` to `g`; returns the logits `[B, classes]` (classes from the weights).
pub fn build(g: &mut Graph, w: &Weights, input: TensorId, variant: &str) -> Result<TensorId> {
    let id = format!("hatnet-{variant}");
    let cfg = config(variant).ok_or_else(|| Error::NotImplemented { id: id.clone() })?;
    let shape = g.shape(input).to_vec();
    if !accepts_side(shape[2]) || !accepts_side(shape[3]) {
        return Err(Error::BadInputShape {
            model: id,
            expected: "height and width must each be 224·k or up to 3 pixels less (e.g. 221–224, 445–448, 669–672): \
                       the official model splits every stage into 8×8 / 7×7 cells"
                .into(),
            found: shape,
        });
    }
    let dims = cfg.dims;
    let mut b = Builder { g, w, cfg: cfg.clone() };
    let x = b.conv("patch_embed.0", input, 16, 3, conv_params(2, 1, 1), true, Activation::None)?;
    let x = b.group_norm("patch_embed.1", x, None, Activation::Silu)?;
    let mut x = b.conv("patch_embed.3", x, dims[0], 3, conv_params(2, 1, 1), true, Activation::None)?;
    b.g.tap("patch_embed", x);
    for stage in 0..4 {
        if stage > 0 {
            let name = format!("ds{}", stage + 1);
            let y = b.conv(&format!("{name}.conv"), x, dims[stage], 3, conv_params(2, 1, 1), true, Activation::None)?;
            x = b.group_norm(&format!("{name}.norm"), y, None, Activation::None)?;
        }
        for j in 0..cfg.depths[stage] {
            x = b.block(&format!("blocks.{stage}.{j}"), stage, x)?;
        }
        b.g.tap(&format!("stage{stage}"), x);
    }
    let pooled = mean_spatial(b.g, x)?;
    b.g.tap("pre_logits", pooled);
    let classes = w.shape_of("classifier.1.weight").map(|s| s[0]).unwrap_or(1000);
    let weight = b.param("classifier.1.weight", &[classes, dims[3]])?;
    let bias = b.param("classifier.1.bias", &[classes])?;
    linear(b.g, pooled, weight, Some(bias), Activation::None)
}
