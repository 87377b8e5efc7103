//! 2-D convolution, NCHW, PyTorch weight layout `[Cout, Cin/groups, kh, kw]`, any kernel size,
//! stride, padding, dilation and groups, with an optional bias and a fused activation.
//!
//! Three kernels, picked from the shapes:
//! - **1x1, stride 1, no padding, one group** is a matmul: `weight[Cout, Cin] · x[b][Cin, H*W]`
//!   with the bias along rows (views only, no copy) — the pointwise convs of the models.
//! - **depthwise** (`groups == Cin == Cout`, kernel width <= 7): `conv2d_depthwise.wgsl`, every
//!   invocation a 4-row x 4-column output tile; per kernel row it holds that row's weights and
//!   one input row segment per output row in registers, so each loaded input feeds every tap
//!   of the row; kernel size, stride and dilation are pipeline constants.
//! - everything else (dense, grouped, depthwise with odd geometry): `conv2d.wgsl`, an implicit
//!   GEMM per (image, group) — `out[co, p] = Σ_r W[co, r] · im2col(x)[r, p]` with the im2col
//!   gathered on the fly — on the register-tiled core matmul uses, with the tile
//!   `ops::tuning::conv_gemm_tiling` picks (16 channels x 8 pixels per invocation for large convs;
//!   8 x 4 under 32 MFLOP on lavapipe). A constant weight whose rows are not a multiple
//!   of 4 long is padded with zeros so the vec4 variant takes it.
//!
//! Padding reads as zero. [`conv2d_cpu`] is the f64-accumulating reference the tests use.

use super::matmul::{matmul, BiasAxis, Epilogue};
use super::{check_u32, grid, params, tuning, Activation, ConstantBinding, Graph, Kernel, Node, PipelineKey, TensorId, Uniform};
use crate::error::{Error, Result};

/// Stride, padding, dilation (each `(h, w)`) and groups of a 2-D convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dParams {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Self { stride: (1, 1), padding: (0, 0), dilation: (1, 1), groups: 1 }
    }
}

/// Resolved geometry of one convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    pub batch: usize,
    pub in_c: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_c: usize,
    pub out_h: usize,
    pub out_w: usize,
    pub kernel: (usize, usize),
}

/// Checks the shapes and parameters; returns the geometry or an error naming them.
pub fn conv2d_shape(x_shape: &[usize], w_shape: &[usize], bias_len: Option<usize>, p: &Conv2dParams) -> Result<Conv2dShape> {
    let bad = |why: String| Error::Graph(format!("conv2d: x {x_shape:?}, weight {w_shape:?}, {p:?}: {why}"));
    let (&[batch, in_c, in_h, in_w], &[out_c, w_in, kh, kw]) = (x_shape, w_shape) else {
        return Err(bad("x must be [B, Cin, H, W] and weight [Cout, Cin/groups, kh, kw]".into()));
    };
    if p.groups == 0 || p.stride.0 == 0 || p.stride.1 == 0 || p.dilation.0 == 0 || p.dilation.1 == 0 {
        return Err(bad("groups, stride and dilation must be >= 1".into()));
    }
    if in_c % p.groups != 0 || out_c % p.groups != 0 || w_in * p.groups != in_c {
        return Err(bad(format!("Cin {in_c} and Cout {out_c} must split into {} groups of weight[1] = {w_in} input channels", p.groups)));
    }
    if batch == 0 || in_c == 0 || out_c == 0 || kh == 0 || kw == 0 {
        return Err(bad("empty tensor".into()));
    }
    let out = |size: usize, pad: usize, dil: usize, k: usize, stride: usize| -> Option<usize> {
        let span = dil * (k - 1) + 1;
        (size + 2 * pad >= span).then(|| (size + 2 * pad - span) / stride + 1)
    };
    let (Some(out_h), Some(out_w)) = (
        out(in_h, p.padding.0, p.dilation.0, kh, p.stride.0),
        out(in_w, p.padding.1, p.dilation.1, kw, p.stride.1),
    ) else {
        return Err(bad("the dilated kernel is larger than the padded input".into()));
    };
    if let Some(n) = bias_len {
        if n != out_c {
            return Err(bad(format!("bias has {n} elements, expected Cout = {out_c}")));
        }
    }
    Ok(Conv2dShape { batch, in_c, in_h, in_w, out_c, out_h, out_w, kernel: (kh, kw) })
}

/// Depthwise: invocations per workgroup, output rows per invocation, and the register arrays of
/// conv2d_depthwise.wgsl (one kernel row of weights, one input row segment).
const DW_WG: u32 = 64;
const DW_ROWS: usize = 4;
const DW_MAX_KW: usize = 7;
const DW_MAX_SEGMENT: usize = 32;
/// With every input row of a tile in registers (`ALL_ROWS`): most kernel rows and input rows.
const DW_ALL_ROWS_MAX_KH: usize = 3;
const DW_ALL_ROWS_MAX_ROWS: usize = 10;

/// y = act(conv2d(x, weight) + bias); x [B, Cin, H, W] → [B, Cout, Ho, Wo].
pub fn conv2d(g: &mut Graph, x: TensorId, weight: TensorId, bias: Option<TensorId>, p: &Conv2dParams, act: Activation) -> Result<TensorId> {
    let s = checked_shape(g, x, weight, bias, p)?;
    let (kh, kw) = s.kernel;
    if (kh, kw) == (1, 1) && p.stride == (1, 1) && p.padding == (0, 0) && p.groups == 1 {
        return conv1x1(g, x, weight, bias, &s, act);
    }
    let segment = 3 * p.stride.1 + (kw - 1) * p.dilation.1 + 1;
    if p.groups == s.in_c && s.out_c == s.in_c && kw <= DW_MAX_KW && segment <= DW_MAX_SEGMENT {
        return depthwise(g, x, weight, bias, p, &s, act);
    }
    implicit_gemm(g, x, weight, bias, p, &s, act, false)
}

/// [`conv2d`] writing its output channel-last: x `[B, Cin, H, W]` → `[B, Ho, Wo, Cout]`, for a
/// channel-last consumer ([`super::conv2d_nhwc`]). Always the implicit GEMM; one group, Cout a
/// multiple of 4 (a pixel's channels are stored 4 at a time).
pub fn conv2d_to_nhwc(g: &mut Graph, x: TensorId, weight: TensorId, bias: Option<TensorId>, p: &Conv2dParams, act: Activation) -> Result<TensorId> {
    let s = checked_shape(g, x, weight, bias, p)?;
    if p.groups != 1 || !s.out_c.is_multiple_of(4) {
        return Err(Error::Graph(format!(
            "conv2d_to_nhwc: weight {:?}, {p:?}: a channel-last output needs one group and Cout a multiple of 4",
            g.shape(weight)
        )));
    }
    implicit_gemm(g, x, weight, bias, p, &s, act, true)
}

/// [`conv2d_shape`] of the operands, every tensor within the kernels' u32 indices.
fn checked_shape(g: &Graph, x: TensorId, weight: TensorId, bias: Option<TensorId>, p: &Conv2dParams) -> Result<Conv2dShape> {
    let s = conv2d_shape(g.shape(x), g.shape(weight), bias.map(|b| g.numel(b)), p)?;
    check_u32("conv2d x", g.numel(x))?;
    check_u32("conv2d weight", g.numel(weight))?;
    check_u32("conv2d out", s.batch * s.out_c * s.out_h * s.out_w)?;
    Ok(s)
}

fn conv1x1(g: &mut Graph, x: TensorId, weight: TensorId, bias: Option<TensorId>, s: &Conv2dShape, act: Activation) -> Result<TensorId> {
    let w2 = g.reshape(weight, &[s.out_c, s.in_c])?;
    let x3 = g.reshape(x, &[s.batch, s.in_c, s.in_h * s.in_w])?;
    let epi = Epilogue { bias: bias.map(|b| (b, BiasAxis::Row)), act, ..Default::default() };
    let y = matmul(g, w2, x3, false, false, epi)?;
    g.reshape(y, &[s.batch, s.out_c, s.out_h, s.out_w])
}

fn depthwise(g: &mut Graph, x: TensorId, weight: TensorId, bias: Option<TensorId>, p: &Conv2dParams, s: &Conv2dShape, act: Activation) -> Result<TensorId> {
    let (kh, kw) = s.kernel;
    // TH = 4 (8 for large convs on maps of 8 rows or more where every input row of the tile is
    // loaded once and the tile's rows fit the registers: `tuning::depthwise_tile_rows`), so that
    // a kernel shape needs one pipeline per model: rows past out_h are computed and not stored.
    // On a small map that wastes part of a small dispatch; another pipeline cost lavapipe
    // 0.14–0.25 s of JIT at its first dispatch.
    let tile_rows = |rows: usize| (rows - 1) * p.stride.0 + (kh - 1) * p.dilation.0 + 1;
    let device_all_rows = tuning::depthwise_all_rows(&g.profile);
    let fits_all_rows = |rows: usize| device_all_rows && kh <= DW_ALL_ROWS_MAX_KH && tile_rows(rows) <= DW_ALL_ROWS_MAX_ROWS;
    let rows = [tuning::depthwise_tile_rows(&g.profile, s.out_h, s.batch * s.out_c * s.out_h * s.out_w), DW_ROWS].into_iter().find(|&r| fits_all_rows(r)).unwrap_or(DW_ROWS);
    let col_blocks = s.out_w.div_ceil(4);
    let row_blocks = s.out_h.div_ceil(rows);
    let tiles = s.batch * s.out_c * row_blocks * col_blocks;
    check_u32("conv2d depthwise tiles", tiles)?;
    let y = g.activation(&[s.batch, s.out_c, s.out_h, s.out_w]);
    let c = |v: usize| v as u32;
    let all_rows = fits_all_rows(rows);
    // Constant weights and biases from uniform buffers where the device prefers it.
    let weight_uniform = super::constant_uniform_scalars(g, weight);
    let bias_uniform = bias.and_then(|t| super::constant_uniform_scalars(g, t));
    g.push(Node {
        label: format!("conv2d_dw{kh}x{kw}"),
        key: PipelineKey::new(Kernel::Conv2dDepthwise)
            .with("WG", DW_WG)
            .with("KH", c(kh))
            .with("KW", c(kw))
            .with("SH", c(p.stride.0))
            .with("SW", c(p.stride.1))
            .with("DH", c(p.dilation.0))
            .with("DW", c(p.dilation.1))
            .with("TH", c(rows))
            .with("BIAS", bias.is_some() as u32)
            .with("ACT", act as u32)
            .with("XS", c((4 - p.padding.1 % 4) % 4))
            .with("ALL_ROWS", all_rows as u32)
            .with("W_UNIFORM", weight_uniform.is_some() as u32)
            .with("BIAS_UNIFORM", bias_uniform.is_some() as u32),
        params: Uniform::of(&params::Conv2dDepthwise { tiles: c(tiles), channels: c(s.out_c), in_h: c(s.in_h), in_w: c(s.in_w), out_h: c(s.out_h), out_w: c(s.out_w), col_blocks: c(col_blocks), row_blocks: c(row_blocks), pad_h: c(p.padding.0), pad_w: c(p.padding.1), _p0: 0, _p1: 0 }),
        reads: vec![x, weight_uniform.unwrap_or(weight), bias_uniform.or(bias).unwrap_or(weight)],
        writes: vec![y],
        workgroups: grid(tiles.div_ceil(DW_WG as usize)),
        flops: 2 * (s.batch * s.out_c * s.out_h * s.out_w * kh * kw) as u64,
    });
    // x, when its rows start on texels, and the output, when its rows are whole texels, may be
    // textures (lavapipe: the 1x1 convs or linears around an MLP's depthwise conv write and read
    // them).
    if s.in_w.is_multiple_of(4) {
        // An input row is fetched once per kernel row that reads it, its column blocks' segments
        // overlapping: about 2 texels per texel advanced.
        g.offer_texture_fetched(0, "X_TEXTURE", (2 * kh / (p.stride.0 * p.stride.1)).max(1) as u32);
    }
    if s.out_w.is_multiple_of(4) {
        g.offer_texture(3, "OUT_TEXTURE");
    }
    Ok(y)
}

/// A constant `weight` of `rows` rows of `taps` values as rows padded with zeros to a multiple
/// of 4, as a derived constant; `None` when the weight is computed on the device.
fn weight_rows_padded_to_4(g: &mut Graph, weight: TensorId, rows: usize, taps: usize) -> Result<Option<TensorId>> {
    let Some((key, data)) = g.constant_data(weight) else { return Ok(None) };
    let k = taps.next_multiple_of(4);
    let mut padded = vec![0f32; rows * k];
    for (dst, src) in padded.chunks_exact_mut(k).zip(data.chunks_exact(taps)) {
        dst[..taps].copy_from_slice(src);
    }
    let key = format!("{key}#rows4");
    g.constant(&key, &[rows, k], std::sync::Arc::new(padded)).map(Some)
}

#[allow(clippy::too_many_arguments)]
fn implicit_gemm(g: &mut Graph, x: TensorId, weight: TensorId, bias: Option<TensorId>, p: &Conv2dParams, s: &Conv2dShape, act: Activation, out_nhwc: bool) -> Result<TensorId> {
    let (kh, kw) = s.kernel;
    let groups = p.groups;
    let m = s.out_c / groups;
    let n = s.out_h * s.out_w;
    let taps = s.in_c / groups * kh * kw;
    // Weight rows of a length not a multiple of 4 (RGB stems: 3·3·3 = 27, 3·7·7 = 147 taps) are
    // padded with zeros, so that these convs share the vec4 pipeline of the model's other convs
    // instead of compiling the element-load one with its masked k step (0.36–0.39 s of lavapipe
    // JIT at the first dispatch, one per bundled model).
    let padded = if taps.is_multiple_of(4) { None } else { weight_rows_padded_to_4(g, weight, s.out_c, taps)? };
    let (weight, k) = match padded {
        Some(w) => (w, taps.next_multiple_of(4)),
        None => (weight, taps),
    };
    // A constant weight read through a uniform buffer or a flat texture where the device prefers it.
    let (weight_read, weight_bound) = super::constant_operand(g, weight, k.is_multiple_of(4));
    let batches = s.batch * groups;
    let t = tuning::conv_gemm_tiling(&g.profile, 2 * (batches * m * n * taps) as u64, m);
    let launch = tuning::gemm_launch(&g.profile, &t, m, n);
    let y = if out_nhwc { g.activation(&[s.batch, s.out_h, s.out_w, s.out_c]) } else { g.activation(&[s.batch, s.out_c, s.out_h, s.out_w]) };
    let c = |v: usize| v as u32;
    g.push(Node {
        label: format!("conv2d{kh}x{kw}"),
        // Weight rows start on a vec4 when K % 4 == 0 (the weight is [groups, M, K] row-major).
        key: PipelineKey::new(if k.is_multiple_of(4) { Kernel::Conv2dVec4 } else { Kernel::Conv2d })
            .with("TM", t.tm)
            .with("TN", t.tn)
            .with("WG_M", t.wg_m)
            .with("WG_N", t.wg_n)
            .with("K_TAIL", !k.is_multiple_of(4) as u32)
            .with("STORE_LOOP", tuning::gemm_store_loop(&g.profile, t.tm, t.tn) as u32)
            .with("W_TEXTURE", (weight_bound == ConstantBinding::Texture) as u32)
            .with("W_UNIFORM", (weight_bound == ConstantBinding::Uniform) as u32)
            .with("OUT_NHWC", out_nhwc as u32)
            .with("BIAS", bias.is_some() as u32)
            .with("ACT", act as u32),
        params: Uniform::of(&params::Conv2d { m: c(m), n: c(n), k: c(k), batches: c(batches), tiles_m: c(launch.tiles_m), tiles_n: c(launch.tiles_n), groups: c(groups), in_c: c(s.in_c / groups), in_h: c(s.in_h), in_w: c(s.in_w), out_w: c(s.out_w), kernel_h: c(kh), kernel_w: c(kw), stride_h: c(p.stride.0), stride_w: c(p.stride.1), pad_h: c(p.padding.0), pad_w: c(p.padding.1), dil_h: c(p.dilation.0), dil_w: c(p.dilation.1), taps: c(taps), lanes_n_log2: launch.lanes_n_log2, _p0: 0, _p1: 0, _p2: 0 }),
        reads: vec![x, weight_read, bias.unwrap_or(x)],
        writes: vec![y],
        workgroups: grid(batches * launch.tiles_m * launch.tiles_n),
        flops: 2 * (batches * m * n * taps) as u64,
    });
    if out_nhwc {
        // Every pixel's channels are whole texels (Cout % 4 == 0).
        g.offer_texture(3, "OUT_TEXTURE");
    }
    Ok(y)
}

/// CPU reference of [`conv2d`] (f64 accumulation). Returns the output and its shape.
pub fn conv2d_cpu(x: &[f32], x_shape: &[usize], w: &[f32], w_shape: &[usize], bias: Option<&[f32]>, p: &Conv2dParams, act: Activation) -> (Vec<f32>, Vec<usize>) {
    let s = conv2d_shape(x_shape, w_shape, bias.map(|b| b.len()), p).expect("valid conv2d shapes");
    let (kh, kw) = s.kernel;
    let (cin_g, cout_g) = (s.in_c / p.groups, s.out_c / p.groups);
    let mut out = vec![0f32; s.batch * s.out_c * s.out_h * s.out_w];
    for b in 0..s.batch {
        for co in 0..s.out_c {
            let grp = co / cout_g;
            for oh in 0..s.out_h {
                for ow in 0..s.out_w {
                    let mut acc = bias.map_or(0.0, |bv| bv[co] as f64);
                    for ci in 0..cin_g {
                        let cx = grp * cin_g + ci;
                        for i in 0..kh {
                            let ih = (oh * p.stride.0 + i * p.dilation.0) as isize - p.padding.0 as isize;
                            if ih < 0 || ih >= s.in_h as isize {
                                continue;
                            }
                            for j in 0..kw {
                                let iw = (ow * p.stride.1 + j * p.dilation.1) as isize - p.padding.1 as isize;
                                if iw < 0 || iw >= s.in_w as isize {
                                    continue;
                                }
                                let xv = x[((b * s.in_c + cx) * s.in_h + ih as usize) * s.in_w + iw as usize];
                                let wv = w[((co * cin_g + ci) * kh + i) * kw + j];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    out[((b * s.out_c + co) * s.out_h + oh) * s.out_w + ow] = act.cpu(acc as f32);
                }
            }
        }
    }
    (out, vec![s.batch, s.out_c, s.out_h, s.out_w])
}
