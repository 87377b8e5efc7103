//! Atrous depthwise convolution (ACC-ViT's atrous MBConv): `NB` parallel depthwise 3×3 convs with
//! dilation 1, 2, .. NB (padding = dilation, a shared stride of 1 or 2) over a channel-last map,
//! summed, plus a per-channel bias and a fused activation — one dispatch
//! (`shaders/family/atrous_dwconv.wgsl`).
//!
//! Weights are `[NB, 3, 3, C]`: branch, tap row, tap column, channel (channels innermost, so the
//! kernel loads four channels of a tap as one vec4). A PyTorch depthwise weight `[C, 1, 3, 3]` per
//! branch converts with `models::torch_layout::atrous_dwconv_weights`. Every branch has the same output size
//! `(H − 1) / S + 1` because its padding equals its dilation; with stride 2 the centre tap of
//! output `(i, j)` is input `(2i, 2j)`.

use super::{check_u32, grid, params, tuning, Activation, Graph, Kernel, Node, PipelineKey, TensorId, Uniform};
use crate::error::{Error, Result};

/// Most branches (dilations 1 ..= 3) the kernel holds weights for.
pub const MAX_BRANCHES: usize = 3;
const WG: u32 = 64;
/// Output columns per invocation (the weights are loaded once per run).
const TP: usize = 4;

/// Output side for an input side `n` and stride `s` (every branch pads by its dilation).
pub fn out_side(n: usize, stride: usize) -> usize {
    (n - 1) / stride + 1
}

/// `x [B, H, W, C]` → `act(Σ_branches dwconv3x3(x, dilation i + 1) + bias)` `[B, Ho, Wo, C]`;
/// `weight [NB, 3, 3, C]`, `bias [C]`.
pub fn atrous_dwconv(g: &mut Graph, x: TensorId, weight: TensorId, bias: Option<TensorId>, stride: usize, act: Activation) -> Result<TensorId> {
    let xs = g.shape(x).to_vec();
    let ws = g.shape(weight).to_vec();
    let bad = |why: String| Error::Graph(format!("atrous_dwconv: x {xs:?} (expected [B, H, W, C]), weight {ws:?} (expected [branches, 3, 3, C]), stride {stride}: {why}"));
    let &[b, h, w, c] = xs.as_slice() else {
        return Err(bad("x must have rank 4".into()));
    };
    let &[nb, 3, 3, wc] = ws.as_slice() else {
        return Err(bad("weight must be [branches, 3, 3, C]".into()));
    };
    if wc != c {
        return Err(bad(format!("weight has {wc} channels, x has {c}")));
    }
    if nb == 0 || nb > MAX_BRANCHES {
        return Err(bad(format!("1 ..= {MAX_BRANCHES} branches are supported, got {nb}")));
    }
    if !matches!(stride, 1 | 2) {
        return Err(bad("stride must be 1 or 2".into()));
    }
    if [b, h, w, c].contains(&0) {
        return Err(bad("empty tensor".into()));
    }
    if !c.is_multiple_of(4) {
        return Err(bad(format!("C = {c} must be a multiple of 4 (channels are loaded as vec4)")));
    }
    if let Some(t) = bias {
        if g.numel(t) != c {
            return Err(bad(format!("bias of shape {:?} needs {c} elements", g.shape(t))));
        }
    }
    let (oh, ow) = (out_side(h, stride), out_side(w, stride));
    let col_blocks = ow.div_ceil(TP);
    let total = b * oh * col_blocks * (c / 4);
    check_u32("atrous_dwconv x", g.numel(x))?;
    check_u32("atrous_dwconv invocations", total + WG as usize)?;
    // On lavapipe the weights and the bias from uniform buffers, when both are constants that fit.
    let (weight, bias, uniform) = match tuning::constant_uniforms(&g.profile).then(|| g.constant_uniform(weight)).flatten() {
        Some(w) => match bias {
            None => (w, None, true),
            Some(t) => match g.constant_uniform(t) {
                Some(bu) => (w, Some(bu), true),
                None => (weight, bias, false),
            },
        },
        None => (weight, bias, false),
    };
    let filler = g.placeholder();
    let y = g.activation(&[b, oh, ow, c]);
    let u = |v: usize| v as u32;
    g.push(Node {
        label: format!("atrous_dwconv{nb}_s{stride}"),
        key: PipelineKey::new(Kernel::AtrousDwconv)
            .with("WG", WG)
            .with("NB", u(nb))
            .with("S", u(stride))
            .with("TP", u(TP))
            .with("BIAS", bias.is_some() as u32)
            .with("ACT", act as u32)
            .with("RUN_WRITTEN_OUT", tuning::atrous_dwconv_run_written_out(&g.profile, nb) as u32)
            .with("W_UNIFORM", uniform as u32),
        params: Uniform::of(&params::AtrousDwconv { total: u(total), c4: u(c / 4), in_h: u(h), in_w: u(w), out_h: u(oh), out_w: u(ow), col_blocks: u(col_blocks), _pad: 0 }),
        reads: vec![x, weight, bias.unwrap_or(filler)],
        writes: vec![y],
        workgroups: grid(total.div_ceil(WG as usize)),
        flops: 2 * (b * oh * ow * c * (8 * nb + 1)) as u64,
    });
    // Channel-last with C % 4 == 0: every vec4 of channels is one texel of a flat texture.
    g.offer_texture(0, "X_TEXTURE");
    g.offer_texture(3, "OUT_TEXTURE");
    // One branch (the average pool) only: the three-branch conv's input is over 64 KiB at the
    // first stages, and a uniform variant for the later ones would be a second pipeline of the
    // model's costliest JIT (0.84 s on lavapipe).
    if nb == 1 {
        g.offer_uniform(0, "X_UNIFORM");
    }
    Ok(y)
}

/// CPU reference of [`atrous_dwconv`] (f64 accumulation, each branch summed as its own conv).
#[allow(clippy::too_many_arguments)]
pub fn atrous_dwconv_cpu(x: &[f32], shape: [usize; 4], weight: &[f32], branches: usize, bias: Option<&[f32]>, stride: usize, act: Activation) -> Vec<f32> {
    let [b, h, w, c] = shape;
    let (oh, ow) = (out_side(h, stride), out_side(w, stride));
    let mut out = Vec::with_capacity(b * oh * ow * c);
    for bi in 0..b {
        for i in 0..oh {
            for j in 0..ow {
                for ch in 0..c {
                    let mut acc = bias.map_or(0.0, |bv| bv[ch] as f64);
                    for br in 0..branches {
                        let d = (br + 1) as isize;
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let ih = (i * stride) as isize + (ky as isize - 1) * d;
                                let iw = (j * stride) as isize + (kx as isize - 1) * d;
                                if ih < 0 || iw < 0 || ih >= h as isize || iw >= w as isize {
                                    continue;
                                }
                                let xv = x[((bi * h + ih as usize) * w + iw as usize) * c + ch] as f64;
                                acc += xv * weight[((br * 3 + ky) * 3 + kx) * c + ch] as f64;
                            }
                        }
                    }
                    out.push(act.cpu(acc as f32));
                }
            }
        }
    }
    out
}
