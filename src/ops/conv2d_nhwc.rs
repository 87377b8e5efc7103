//! Dense 2-D convolution on channel-last maps, computed directly (`shaders/conv2d_nhwc.wgsl`):
//! `x [B, H, W, Cin]` → `act(conv2d(x, weight) + bias)` `[B, Ho, Wo, Cout]`, the weight in
//! PyTorch's layout `[Cout, Cin, kh, kw]` (one group). Each invocation owns a run of output
//! columns of one row and 4 output channels, and fetches each input vec4 of its span once for
//! every tap of a kernel row; why that beats the im2col gather of [`super::conv2d`] on CPU
//! devices is in the shader's header. Cin and Cout must be multiples of 4 (channels move as
//! vec4s, one texel each when a tensor lives in a flat texture).
//!
//! The kernel reads the weight as `[kh, kw, Cin, Cout]` (output channels innermost): a constant
//! weight is re-laid on the host, a computed one by a permute.

use super::conv2d::{conv2d_shape, Conv2dParams};
use super::matmul::conv_patches_gemm;
use super::{check_u32, grid, layout, params, tuning, Activation, ConstantBinding, Graph, Kernel, Node, PipelineKey, TensorId, Uniform};
use crate::error::{Error, Result};

const WG: u32 = 64;
/// Most output columns an invocation owns, and most input columns its span holds (the shader's
/// `TP_MAX`, `SPAN_MAX`). Runs of 32 fetch less (accvit-digits' second stem conv 0.33 against
/// 0.42 ms with its weights in a texture) but cost lavapipe 0.6 s of JIT against 0.25 s, and
/// with the weights in a uniform buffer the forward was no faster (1.01, Intel Xeon).
pub const MAX_RUN: usize = 16;
const MAX_SPAN: usize = 40;

/// `y = act(conv2d(x, weight) + bias)` with `x [B, H, W, Cin]` and `y [B, Ho, Wo, Cout]`.
pub fn conv2d_nhwc(g: &mut Graph, x: TensorId, weight: TensorId, bias: Option<TensorId>, p: &Conv2dParams, act: Activation) -> Result<TensorId> {
    let xs = g.shape(x).to_vec();
    let ws = g.shape(weight).to_vec();
    let bad = |why: String| Error::Graph(format!("conv2d_nhwc: x {xs:?} (expected [B, H, W, Cin]), weight {ws:?} (expected [Cout, Cin, kh, kw]), {p:?}: {why}"));
    let &[b, h, w, cin] = xs.as_slice() else {
        return Err(bad("x must have rank 4".into()));
    };
    // The shape rules of the NCHW conv, on the same sizes.
    let s = conv2d_shape(&[b, cin, h, w], &ws, bias.map(|t| g.numel(t)), p).map_err(|e| bad(e.to_string()))?;
    if p.groups != 1 {
        return Err(bad("one group only".into()));
    }
    if !cin.is_multiple_of(4) || !s.out_c.is_multiple_of(4) {
        return Err(bad(format!("Cin = {cin} and Cout = {} must be multiples of 4 (channels move as vec4s)", s.out_c)));
    }
    let (kh, kw) = s.kernel;
    let flops = 2 * (b * s.out_h * s.out_w * s.out_c * cin * kh * kw) as u64;
    if runs_as_patch_gemm(&g.profile, [b, h, w, cin], s.out_c, s.kernel, p) {
        let rows = taps_inner(g, weight, &s)?;
        if let Some(y) = conv_patches_gemm(g, x, (kh, kw), p.stride.0, p.padding.0, rows, bias, act)? {
            return g.reshape(y, &[b, s.out_h, s.out_w, s.out_c]);
        }
    }
    // The longest run whose span fits the kernel's registers.
    let tap_span = (kw - 1) * p.dilation.1 + 1;
    if tap_span > MAX_SPAN {
        return Err(bad(format!("the dilated kernel row spans {tap_span} input columns, above the kernel's {MAX_SPAN}")));
    }
    let run = s.out_w.min(MAX_RUN).min((MAX_SPAN - tap_span) / p.stride.1 + 1);
    let col_blocks = s.out_w.div_ceil(run);
    let total = b * s.out_h * col_blocks * (s.out_c / 4);
    check_u32("conv2d_nhwc x", g.numel(x))?;
    check_u32("conv2d_nhwc out", b * s.out_h * s.out_w * s.out_c)?;
    check_u32("conv2d_nhwc invocations", total + WG as usize)?;

    let taps_last = taps_outermost(g, weight)?;
    let (weight_read, weight_bound) = super::constant_operand(g, taps_last, true);
    let filler = g.placeholder();
    let y = g.activation(&[b, s.out_h, s.out_w, s.out_c]);
    let u = |v: usize| v as u32;
    g.push(Node {
        label: format!("conv2d_nhwc{kh}x{kw}"),
        key: PipelineKey::new(Kernel::Conv2dNhwc)
            .with("WG", WG)
            .with("KH", u(kh))
            .with("KW", u(kw))
            .with("SH", u(p.stride.0))
            .with("SW", u(p.stride.1))
            .with("DH", u(p.dilation.0))
            .with("DW", u(p.dilation.1))
            .with("TP", u(run))
            .with("W_TEXTURE", (weight_bound == ConstantBinding::Texture) as u32)
            .with("W_UNIFORM", (weight_bound == ConstantBinding::Uniform) as u32)
            .with("BIAS", bias.is_some() as u32)
            .with("ACT", act as u32),
        params: Uniform::of(&params::Conv2dNhwc {
            total: u(total),
            cin4: u(cin / 4),
            cout4: u(s.out_c / 4),
            in_h: u(h),
            in_w: u(w),
            out_h: u(s.out_h),
            out_w: u(s.out_w),
            col_blocks: u(col_blocks),
            pad_h: u(p.padding.0),
            pad_w: u(p.padding.1),
            _p0: 0,
            _p1: 0,
        }),
        reads: vec![x, weight_read, bias.unwrap_or(filler)],
        writes: vec![y],
        workgroups: grid(total.div_ceil(WG as usize)),
        flops,
    });
    // Channel-last with Cin, Cout % 4 == 0: every vec4 of channels is one texel of a flat texture.
    g.offer_texture(0, "X_TEXTURE");
    g.offer_texture(3, "OUT_TEXTURE");
    Ok(y)
}

/// Whether [`conv2d_nhwc`] runs a conv of `x [B, H, W, Cin]` to `cout` channels with `kernel` and
/// `p` as the GEMM over its gathered patches (`tuning::conv_nhwc_as_gemm`): the GEMM's gather
/// takes one stride and one padding for both axes and no dilation. False for shapes the conv
/// refuses. A model that can lay its map out either way asks it first (VVT's patch embeds).
pub fn runs_as_patch_gemm(profile: &crate::kernels::DeviceProfile, [b, h, w, cin]: [usize; 4], cout: usize, (kh, kw): (usize, usize), p: &Conv2dParams) -> bool {
    let square = p.stride.0 == p.stride.1 && p.padding.0 == p.padding.1 && p.dilation == (1, 1) && p.groups == 1;
    let Ok(s) = conv2d_shape(&[b, cin, h, w], &[cout, cin, kh, kw], None, p) else { return false };
    let flops = 2 * (b * s.out_h * s.out_w * cout * cin * kh * kw) as u64;
    square && cin.is_multiple_of(4) && cout.is_multiple_of(4) && tuning::conv_nhwc_as_gemm(profile, flops)
}

/// `weight [Cout, Cin, kh, kw]` as `[Cout, kh·kw·Cin]` (a patch's (ky, kx, c) order, one row per
/// output channel).
fn taps_inner(g: &mut Graph, weight: TensorId, s: &super::conv2d::Conv2dShape) -> Result<TensorId> {
    let rows = permuted_weight(g, weight, &[0, 2, 3, 1], "taps_inner")?;
    g.reshape(rows, &[s.out_c, s.kernel.0 * s.kernel.1 * s.in_c])
}

/// `weight [Cout, Cin, kh, kw]` as `[kh, kw, Cin, Cout]`.
fn taps_outermost(g: &mut Graph, weight: TensorId) -> Result<TensorId> {
    permuted_weight(g, weight, &[2, 3, 1, 0], "taps_outermost")
}

/// `weight` permuted by `perm`: on the host for a constant (a derived constant, `{key}#{name}`),
/// else by a permute on the device.
fn permuted_weight(g: &mut Graph, weight: TensorId, perm: &[usize; 4], name: &str) -> Result<TensorId> {
    let shape = g.shape(weight).to_vec();
    let Some((key, data)) = g.constant_data(weight) else {
        return layout::permute(g, weight, perm);
    };
    let out = layout::permute_cpu(data, &shape, perm);
    let permuted: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let key = format!("{key}#{name}");
    g.constant(&key, &permuted, std::sync::Arc::new(out))
}

/// CPU reference of [`conv2d_nhwc`]: the NCHW reference on permuted copies.
pub fn conv2d_nhwc_cpu(x: &[f32], x_shape: [usize; 4], w: &[f32], w_shape: &[usize], bias: Option<&[f32]>, p: &Conv2dParams, act: Activation) -> (Vec<f32>, Vec<usize>) {
    let [b, h, wd, c] = x_shape;
    let x_nchw = layout::permute_cpu(x, &[b, h, wd, c], &[0, 3, 1, 2]);
    let (y, ys) = super::conv2d::conv2d_cpu(&x_nchw, &[b, c, h, wd], w, w_shape, bias, p, act);
    let y_nhwc = layout::permute_cpu(&y, &ys, &[0, 2, 3, 1]);
    (y_nhwc, vec![ys[0], ys[2], ys[3], ys[1]])
}
