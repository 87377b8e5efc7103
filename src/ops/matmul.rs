//! Batched matrix multiply with a fused epilogue, and `linear` (PyTorch `nn.Linear`) on top.
//!
//! `out[t] = act(alpha · op(a)[t % a_batches] · op(b)[t % b_batches] + bias) + residual[t]`,
//! `op` an optional transpose. Batch dims broadcast numpy-style as long as the operand with fewer
//! batch elements has batch dims equal to the trailing batch dims of the other (a rank-2
//! operand is the common case), which makes its batch index the output's modulo its count.
//!
//! Kernel (shaders/matmul.wgsl on the gemm_tile.wgsl core): every invocation computes a 16 x 8
//! register tile, k advancing by 4. On lavapipe every storage load is a loop over the SIMD
//! lanes, so FMAs per loaded float decide the speed; that is why the tile is tall and why the
//! loads are vec4 wherever the shapes allow. Which loads is picked here: vec4 along each
//! operand's stored contiguous dimension when that dimension and N are multiples of 4
//! (`Kernel::MatmulVec4`, measured ~1.7-2x faster than element loads), else the element kernel
//! (`Kernel::Matmul`) with vec4 blocks for each operand whose contiguous dimension is a multiple
//! of 4 (a constant one then comes from a texture on CPU-like devices) and element loads for the
//! rest. Rows/columns past the edges are clamped when loading and skipped when
//! storing, so any shape is exact; k is never over-read (a masked last step takes K % 4).
//!
//! Absent bias/residual bindings are filled with the graph's placeholder (never read), keeping the
//! bind-group layout at 4 reads + 1 write for every variant but [`matmul_k_scaled`]'s (a fifth
//! read, the scale). An activation operand read in vec4 blocks and the vec4 kernel's output may
//! move to textures (`Graph::with_activation_textures`); on lavapipe a small activation operand or
//! residual may be read as a uniform buffer (`Graph::with_activation_uniforms`), and so may a
//! small constant operand or bias (`Graph::constant_uniform`).

use super::{check_u32, grid, params, tuning, Activation, ConstantBinding, Graph, Kernel, Node, PipelineKey, TensorId, Uniform};
use crate::error::{Error, Result};

/// Which dimension a bias vector runs along.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BiasAxis {
    /// `bias[M]`, one value per output row (e.g. conv output channels).
    Row,
    /// `bias[N]`, one value per output column (e.g. `nn.Linear` features).
    Col,
}

/// What is applied to `alpha · a·b` before it is stored: `act(alpha·ab + bias) + residual`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Epilogue {
    pub alpha: f32,
    pub bias: Option<(TensorId, BiasAxis)>,
    pub act: Activation,
    /// Same number of elements as the output, laid out like it.
    pub residual: Option<TensorId>,
}

impl Default for Epilogue {
    fn default() -> Self {
        Self { alpha: 1.0, bias: None, act: Activation::None, residual: None }
    }
}

/// How loads are issued. `Auto` is what [`matmul`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulLoads {
    /// `Vec4` when the shapes allow it, else `Scalar`.
    Auto,
    /// Element loads with generic strides: any shape.
    Scalar,
    /// The vec4 code path with each vec4 assembled from four scalar loads (benchmark baseline:
    /// same tiling and arithmetic as `Vec4`, only the load width differs). Needs `Vec4`'s shapes.
    Vec4FromScalars,
    /// `array<vec4<f32>>` loads and stores.
    Vec4,
}

/// Register tile and workgroup shape of one matmul kernel. [`matmul`] takes the device's for the
/// GEMM's size (`ops::tuning::matmul_tiling`); `wgvit bench-ops --sweep` measures others.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatmulTiling {
    /// Output rows per invocation: 4, 8, 12 or 16.
    pub tm: u32,
    /// Output columns per invocation: 4, 8 or 16.
    pub tn: u32,
    /// Invocations per workgroup along M and N (`wg_m * wg_n <= 256`).
    pub wg_m: u32,
    pub wg_n: u32,
    pub loads: MatmulLoads,
}

impl Default for MatmulTiling {
    /// The large-GEMM tiling of a graph built without a device (`ops::tuning`, default profile).
    fn default() -> Self {
        tuning::matmul_tiling(&crate::kernels::DeviceProfile::default(), u64::MAX)
    }
}

/// Shapes of one matmul after the batch broadcast was resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatmulShape {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub batch_dims: Vec<usize>,
    pub a_batches: usize,
    pub b_batches: usize,
    /// Columns of op(b) as stored: `n`, or fewer when the output's columns are padded
    /// ([`matmul_padded_columns`]).
    pub b_n: usize,
    /// Rows of op(a) as stored: `m`, or more when only the first `m` are wanted
    /// ([`matmul_first_rows`]).
    pub a_m: usize,
}

impl MatmulShape {
    /// One unbatched `[m, k] · [k, n]` product, its operands stored at exactly those sizes.
    pub fn single(m: usize, n: usize, k: usize) -> MatmulShape {
        MatmulShape { m, n, k, batch_dims: vec![], a_batches: 1, b_batches: 1, b_n: n, a_m: m }
    }

    pub fn batches(&self) -> usize {
        crate::graph::numel_of(&self.batch_dims)
    }

    pub fn out_shape(&self) -> Vec<usize> {
        let mut s = self.batch_dims.clone();
        s.extend([self.m, self.n]);
        s
    }
}

/// Checks the operand shapes and resolves M, N, K and the batch broadcast.
pub fn matmul_shape(a_shape: &[usize], b_shape: &[usize], trans_a: bool, trans_b: bool) -> Result<MatmulShape> {
    let bad = |why: &str| {
        Error::Graph(format!(
            "matmul: a {a_shape:?}{} · b {b_shape:?}{}: {why}",
            if trans_a { "ᵀ" } else { "" },
            if trans_b { "ᵀ" } else { "" }
        ))
    };
    if a_shape.len() < 2 || b_shape.len() < 2 {
        return Err(bad("both operands need rank >= 2"));
    }
    let (ra, rb) = (a_shape.len(), b_shape.len());
    let (m, ka) = if trans_a { (a_shape[ra - 1], a_shape[ra - 2]) } else { (a_shape[ra - 2], a_shape[ra - 1]) };
    let (kb, n) = if trans_b { (b_shape[rb - 1], b_shape[rb - 2]) } else { (b_shape[rb - 2], b_shape[rb - 1]) };
    if ka != kb {
        return Err(bad(&format!("inner dimensions differ ({ka} vs {kb})")));
    }
    if m == 0 || n == 0 || ka == 0 {
        return Err(bad("empty matrix"));
    }
    let strip = |dims: &[usize]| -> Vec<usize> { dims.iter().copied().skip_while(|&d| d == 1).collect() };
    let (a_batch, b_batch) = (strip(&a_shape[..ra - 2]), strip(&b_shape[..rb - 2]));
    let (long, short) = if a_batch.len() >= b_batch.len() { (&a_batch, &b_batch) } else { (&b_batch, &a_batch) };
    if long[long.len() - short.len()..] != short[..] {
        return Err(bad("batch dims do not broadcast (the smaller batch must equal the trailing batch dims of the larger)"));
    }
    // Keep the caller's leading 1s on the output (numpy keeps the larger rank).
    let rank = (ra - 2).max(rb - 2);
    let mut batch_dims = vec![1; rank - long.len()];
    batch_dims.extend_from_slice(long);
    Ok(MatmulShape {
        m,
        n,
        k: ka,
        batch_dims,
        a_batches: a_batch.iter().product(),
        b_batches: b_batch.iter().product(),
        b_n: n,
        a_m: m,
    })
}

/// out = act(alpha · op(a)·op(b) + bias) + residual. See the module docs for shapes.
pub fn matmul(g: &mut Graph, a: TensorId, b: TensorId, trans_a: bool, trans_b: bool, epi: Epilogue) -> Result<TensorId> {
    let s = matmul_shape(g.shape(a), g.shape(b), trans_a, trans_b)?;
    push_gemm_tuned(g, a, b, &s, trans_a, trans_b, epi)
}

/// Pushes the GEMM of shape `s` with the device's tiling for its size and kernel.
fn push_gemm_tuned(g: &mut Graph, a: TensorId, b: TensorId, s: &MatmulShape, trans_a: bool, trans_b: bool, epi: Epilogue) -> Result<TensorId> {
    let flops = 2 * (s.batches() * s.m * s.n * s.k) as u64;
    let tiling = tuning::gemm_tiling(&g.profile, flops, vec4_compatible(s, trans_a, trans_b));
    push_gemm(g, a, b, s, trans_a, trans_b, epi, tiling, None, None)
}

/// Whether the vec4 kernel may run on these shapes: every vec4 the kernel touches must start at a
/// multiple of 4 floats, i.e. the stored contiguous dimension of a and of b, and N, are % 4.
pub fn vec4_compatible(s: &MatmulShape, trans_a: bool, trans_b: bool) -> bool {
    let (a_contig, b_contig) = contiguous_dims(s, trans_a, trans_b);
    a_contig.is_multiple_of(4) && b_contig.is_multiple_of(4) && s.n.is_multiple_of(4)
}

/// The stored contiguous dimension of a and of b: what decides whether each loads vec4 blocks
/// (op(a)'s stored rows `a_m` and op(b)'s stored columns `b_n`, not M and N).
fn contiguous_dims(s: &MatmulShape, trans_a: bool, trans_b: bool) -> (usize, usize) {
    (if trans_a { s.a_m } else { s.k }, if trans_b { s.k } else { s.b_n })
}

/// [`matmul`] with `b` stored as rows (`b [.., N, K]`, op(b) = bᵀ) and the output's rows padded
/// to `columns` ≥ N: `[.., M, columns]`, where every column past N repeats column N − 1. The
/// product's columns then start at multiples of 4 whatever N is, so the GEMMs that read it load
/// whole vec4s (LaViT's keys and values: 49 reduced tokens padded to 52). A column bias and a
/// residual are output-shaped (`columns` wide).
pub fn matmul_padded_columns(g: &mut Graph, a: TensorId, b: TensorId, trans_a: bool, epi: Epilogue, columns: usize) -> Result<TensorId> {
    let mut s = matmul_shape(g.shape(a), g.shape(b), trans_a, true)?;
    if columns < s.n {
        return Err(Error::Graph(format!("matmul_padded_columns: {columns} columns cannot hold the product's {}", s.n)));
    }
    (s.b_n, s.n) = (s.n, columns);
    push_gemm_tuned(g, a, b, &s, trans_a, true, epi)
}

/// [`matmul`] over the first `rows` rows of op(a), `a` stored transposed (`a [.., K, M']`,
/// op(a) = aᵀ, M' ≥ `rows`): `[.., rows, N]`. The product of a GEMM whose output rows were padded
/// ([`matmul_padded_columns`]) read back without its padding, with vec4 loads along the padded
/// rows (LaViT's 49 queries of its last stage, stored as 52). A row bias and a residual are
/// output-shaped (`rows` long).
pub fn matmul_first_rows(g: &mut Graph, a: TensorId, b: TensorId, trans_b: bool, epi: Epilogue, rows: usize) -> Result<TensorId> {
    let mut s = matmul_shape(g.shape(a), g.shape(b), true, trans_b)?;
    if rows == 0 || rows > s.m {
        return Err(Error::Graph(format!("matmul_first_rows: {rows} of op(a)'s {} rows", s.m)));
    }
    (s.a_m, s.m) = (s.m, rows);
    push_gemm_tuned(g, a, b, &s, true, trans_b, epi)
}

/// [`matmul`] with an explicit kernel configuration (benchmarks, tuning).
pub fn matmul_tiled(
    g: &mut Graph,
    a: TensorId,
    b: TensorId,
    trans_a: bool,
    trans_b: bool,
    epi: Epilogue,
    tiling: MatmulTiling,
) -> Result<TensorId> {
    let s = matmul_shape(g.shape(a), g.shape(b), trans_a, trans_b)?;
    push_gemm(g, a, b, &s, trans_a, trans_b, epi, tiling, None, None)
}

/// [`matmul`] with op(a)'s columns scaled per batch entry: `op(a)[t][m, k] · k_scale[t, k]`,
/// `k_scale` of `batches × K` elements. A squeeze-excitation's channel scale folded into the
/// GEMM that reads the scaled map, instead of an element-wise pass that writes it. Needs the vec4
/// kernel's shapes (the contiguous dims and N multiples of 4) and K % 4 == 0.
pub fn matmul_k_scaled(g: &mut Graph, a: TensorId, b: TensorId, trans_a: bool, trans_b: bool, k_scale: TensorId, epi: Epilogue) -> Result<TensorId> {
    let s = matmul_shape(g.shape(a), g.shape(b), trans_a, trans_b)?;
    let want = s.batches() * s.k;
    if g.numel(k_scale) != want {
        return Err(Error::Graph(format!(
            "matmul_k_scaled: k_scale of shape {:?} needs batches × K = {} × {} = {want} elements",
            g.shape(k_scale),
            s.batches(),
            s.k
        )));
    }
    if !vec4_compatible(&s, trans_a, trans_b) || !s.k.is_multiple_of(4) {
        return Err(Error::Graph(format!(
            "matmul_k_scaled: needs the contiguous dims, N and K to be multiples of 4 (M {}, N {}, K {}, trans_a {trans_a}, trans_b {trans_b})",
            s.m, s.n, s.k
        )));
    }
    let flops = 2 * (s.batches() * s.m * s.n * s.k) as u64;
    let tiling = tuning::matmul_tiling(&g.profile, flops);
    push_gemm(g, a, b, &s, trans_a, trans_b, epi, tiling, None, Some(k_scale))
}

/// Pushes the GEMM node: `a` is op(a) `[.., M, K]` as stored, or with `patches` the tensor its
/// rows are gathered from (then M, K come from `s` and `a` is read by the gather alone).
#[allow(clippy::too_many_arguments)]
fn push_gemm(
    g: &mut Graph,
    a: TensorId,
    b: TensorId,
    s: &MatmulShape,
    trans_a: bool,
    trans_b: bool,
    epi: Epilogue,
    tiling: MatmulTiling,
    patches: Option<PatchGather>,
    k_scale: Option<TensorId>,
) -> Result<TensorId> {
    let out_shape = s.out_shape();
    let out_numel = crate::graph::numel_of(&out_shape);
    check_u32("matmul a", g.numel(a))?;
    check_u32("matmul b", g.numel(b))?;
    check_u32("matmul out", out_numel)?;
    let bias_code = match epi.bias {
        None => 0,
        Some((t, axis)) => {
            let (want, code) = match axis {
                BiasAxis::Row => (s.m, 1),
                BiasAxis::Col => (s.n, 2),
            };
            if g.numel(t) != want {
                return Err(Error::Graph(format!(
                    "matmul: {axis:?} bias of shape {:?} needs {want} elements (output {out_shape:?})",
                    g.shape(t)
                )));
            }
            code
        }
    };
    if let Some(r) = epi.residual {
        if g.numel(r) != out_numel {
            return Err(Error::Graph(format!("matmul: residual of shape {:?} does not match the output {out_shape:?}", g.shape(r))));
        }
    }
    if !matches!(tiling.tm, 4 | 8 | 12 | 16) || !matches!(tiling.tn, 4 | 8 | 16) || !tiling.wg_n.is_power_of_two() || !tiling.wg_m.is_power_of_two() || tiling.wg_m * tiling.wg_n > 256 {
        return Err(Error::Graph(format!("matmul: unsupported tiling {tiling:?} (tm in {{4, 8, 12, 16}}, tn in {{4, 8, 16}}, wg_m and wg_n powers of two, wg_m * wg_n <= 256)")));
    }
    let fits_vec4 = vec4_compatible(s, trans_a, trans_b);
    let (a_contig, b_contig) = contiguous_dims(s, trans_a, trans_b);
    // The kernel (storage as f32 or vec4) and whether each operand's k-step blocks load as vec4.
    // Without the vec4 kernel (N or one operand odd) an operand whose contiguous dim is % 4 still
    // takes vec4 blocks: four element loads from a buffer, one texel fetch from a texture.
    let (kernel, a_vec4, b_vec4) = match tiling.loads {
        MatmulLoads::Auto if fits_vec4 => (Kernel::MatmulVec4, true, true),
        MatmulLoads::Auto => (Kernel::Matmul, a_contig.is_multiple_of(4), b_contig.is_multiple_of(4)),
        MatmulLoads::Scalar => (Kernel::Matmul, false, false),
        MatmulLoads::Vec4FromScalars | MatmulLoads::Vec4 if !fits_vec4 => {
            return Err(Error::Graph(format!(
                "matmul: {:?} loads need the contiguous dims and N to be multiples of 4 (M {}, N {}, K {}, trans_a {trans_a}, trans_b {trans_b})",
                tiling.loads, s.m, s.n, s.k
            )));
        }
        MatmulLoads::Vec4FromScalars => (Kernel::Matmul, true, true),
        MatmulLoads::Vec4 => (Kernel::MatmulVec4, true, true),
    };
    if patches.is_some() && (trans_a || !a_vec4 || s.batches() != 1 || !s.k.is_multiple_of(4)) {
        return Err(Error::Graph(format!("matmul: gathered patches need vec4 A loads, K % 4 == 0 and one batch (K {}, loads {:?})", s.k, tiling.loads)));
    }
    // Constant operands (weights) from uniform buffers or flat textures where the device prefers
    // it. Only with vec4 block loads, whose offsets are all multiples of 4 (a texel); a bias's
    // loads are (both take only whole vec4s).
    let (a_read, a_bound) = super::constant_operand(g, a, a_vec4);
    let (b_read, b_bound) = super::constant_operand(g, b, b_vec4);
    let filler = g.placeholder();
    let (bias_read, bias_bound) = match epi.bias {
        Some((t, _)) => super::constant_operand(g, t, true),
        None => (filler, ConstantBinding::Buffer),
    };
    let launch = tuning::gemm_launch(&g.profile, &tiling, s.m, s.n);
    // A GEMM with too few tiles to keep the cores busy and a long reduction splits it: batch
    // entry t of a [splits, M, N] result takes the t-th share of K, scaled by `splits` with the
    // bias added, and their mean is the product (no activation or residual to apply after).
    let tile_count = s.m.div_ceil(tiling.tm as usize) * s.n.div_ceil(tiling.tn as usize);
    let splittable = s.batches() == 1 && s.k.is_multiple_of(4) && epi.act == Activation::None && epi.residual.is_none() && k_scale.is_none();
    let wanted = if splittable { tuning::gemm_k_splits(&g.profile, tile_count, s.k, 2 * (s.m * s.n * s.k) as u64) } else { 1 };
    // Shares are whole k steps, so rounding the share up to 4 can leave fewer of them.
    let k_chunk = s.k.div_ceil(wanted).next_multiple_of(4);
    let splits = s.k.div_ceil(k_chunk);
    let batches = if splits > 1 { splits } else { s.batches() };
    let out = if splits > 1 { g.activation(&[splits, s.m, s.n]) } else { g.activation(&out_shape) };
    let alpha = epi.alpha * splits as f32;
    let workgroups = batches * launch.tiles_m * launch.tiles_n;
    let key = PipelineKey::new(kernel)
        .with("TM", tiling.tm)
        .with("TN", tiling.tn)
        .with("WG_M", tiling.wg_m)
        .with("WG_N", tiling.wg_n)
        .with("TRANS_A", trans_a as u32)
        .with("TRANS_B", trans_b as u32)
        .with("A_TEXTURE", (a_bound == ConstantBinding::Texture) as u32)
        .with("B_TEXTURE", (b_bound == ConstantBinding::Texture) as u32)
        .with("A_UNIFORM", (a_bound == ConstantBinding::Uniform) as u32)
        .with("B_UNIFORM", (b_bound == ConstantBinding::Uniform) as u32)
        .with("BIAS_TEXTURE", (bias_bound == ConstantBinding::Texture) as u32)
        .with("BIAS_UNIFORM", (bias_bound == ConstantBinding::Uniform) as u32)
        .with("A_VEC4", a_vec4 as u32)
        .with("B_VEC4", b_vec4 as u32)
        .with("BIAS", bias_code)
        .with("RESIDUAL", epi.residual.is_some() as u32)
        .with("ACT", epi.act as u32)
        .with("K_TAIL", !s.k.is_multiple_of(4) as u32)
        .with("STORE_LOOP", tuning::gemm_store_loop(&g.profile, tiling.tm, tiling.tn) as u32)
        .with("A_PATCHES", patches.is_some() as u32)
        .with("A_PATCH_PAD", patches.is_some_and(|p| p.pad > 0) as u32)
        .with("K_SCALE", k_scale.is_some() as u32)
        .with("K_SPLIT", (splits > 1) as u32);
    let p = |v: usize| v as u32;
    let gather = patches.unwrap_or_default();
    g.push(Node {
        label: "matmul".into(),
        key,
        params: Uniform::of(&params::Matmul { m: p(s.m), n: p(s.n), k: p(s.k), batches: p(batches), tiles_m: p(launch.tiles_m), tiles_n: p(launch.tiles_n), a_batches: p(s.a_batches), b_batches: p(s.b_batches), alpha, lanes_n_log2: launch.lanes_n_log2,
            patch_cols: gather.cols, patch_area: gather.area, patch_stride_img: gather.stride_img, patch_stride_row: gather.stride_row, patch_stride_col: gather.stride_col,
            patch_k_stride0: gather.k_stride0, patch_k_stride1: gather.k_stride1, patch_k_len1: gather.k_len1, patch_k_len2: gather.k_len2, k_chunk: p(k_chunk),
            patch_pad: gather.pad, patch_h: gather.h, patch_w: gather.w, patch_pad_offset: gather.pad_offset, b_n: p(s.b_n), a_m: p(s.a_m), _p1: 0, _p2: 0 }),
        reads: [a_read, b_read, bias_read, epi.residual.unwrap_or(filler)].into_iter().chain(k_scale).collect(),
        writes: vec![out],
        workgroups: grid(workgroups),
        flops: 2 * (s.batches() * s.m * s.n * s.k) as u64,
    });
    // An activation operand in vec4 blocks may be a texture, or when small a uniform buffer; the
    // vec4 kernel's output may be a texture.
    // Each operand texel is fetched once per tile along the other side of the output.
    let tiles = |len: usize, tile: u32| len.div_ceil(tile as usize).min(u32::MAX as usize) as u32;
    if a_vec4 && a_bound == ConstantBinding::Buffer {
        g.offer_texture_fetched(0, "A_TEXTURE", tiles(s.n, tiling.tn));
        g.offer_uniform(0, "A_UNIFORM");
    }
    if b_vec4 && b_bound == ConstantBinding::Buffer {
        g.offer_texture_fetched(1, "B_TEXTURE", tiles(s.m, tiling.tm));
        g.offer_uniform(1, "B_UNIFORM");
    }
    if kernel == Kernel::MatmulVec4 {
        g.offer_texture(if k_scale.is_some() { 5 } else { 4 }, "OUT_TEXTURE");
        if epi.residual.is_some() {
            g.offer_uniform(3, "RESIDUAL_UNIFORM");
        }
    }
    if splits > 1 {
        let shares = g.reshape(out, &[1, splits, s.m * s.n])?;
        let product = super::pool::mean_tokens(g, shares)?;
        return g.reshape(product, &out_shape);
    }
    Ok(out)
}

/// Non-overlapping `p × p` patches of an image `[B, C, H, W]` (`channels_last: false`: a patch's
/// elements in (c, ky, kx) order, PyTorch's conv weight layout) or of a token map `[B, H, W, C]`
/// (`channels_last: true`: (ky, kx, c) order), one GEMM row per patch in (image, row, column)
/// order. A conv with kernel = stride = p is `patches · weightᵀ` ([`patch_linear`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Patches {
    pub batch: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub p: usize,
    pub channels_last: bool,
}

/// Where a patch row and its k-th element lie in the source (the kernel's `patch_*` uniforms).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct PatchGather {
    cols: u32,
    area: u32,
    stride_img: u32,
    stride_row: u32,
    stride_col: u32,
    k_stride0: u32,
    k_stride1: u32,
    k_len1: u32,
    k_len2: u32,
    /// Zero padding around the map (`A_PATCH_PAD` when > 0), the map's height and width, and
    /// the offset of a padded origin's first real element.
    pad: u32,
    h: u32,
    w: u32,
    pad_offset: u32,
}

impl Patches {
    /// GEMM rows: patches over the batch.
    pub fn rows(&self) -> usize {
        self.batch * (self.h / self.p) * (self.w / self.p)
    }

    /// Elements per patch (the GEMM's K).
    pub fn patch_len(&self) -> usize {
        self.c * self.p * self.p
    }

    /// The source's shape.
    pub fn source_shape(&self) -> Vec<usize> {
        if self.channels_last {
            vec![self.batch, self.h, self.w, self.c]
        } else {
            vec![self.batch, self.c, self.h, self.w]
        }
    }

    /// The source viewed in 6-D and the permutation that lays its patches out as rows.
    pub fn view_and_perm(&self) -> ([usize; 6], [usize; 6]) {
        let (b, hp, wp, c, p) = (self.batch, self.h / self.p, self.w / self.p, self.c, self.p);
        if self.channels_last {
            ([b, hp, p, wp, p, c], [0, 1, 3, 2, 4, 5])
        } else {
            ([b, c, hp, p, wp, p], [0, 2, 4, 1, 3, 5])
        }
    }

    /// The in-kernel gather, when k's innermost run (channels, or a patch row of the image) is a
    /// multiple of 4 long, so that every vec4 load is one aligned run.
    fn gather(&self) -> Option<PatchGather> {
        let (h, w, c, p) = (self.h, self.w, self.c, self.p);
        let u = |v: usize| u32::try_from(v).ok();
        let (hp, wp) = (h / p, w / p);
        let (row, col, k0, k1, len2) = if self.channels_last {
            (p * w * c, p * c, w * c, c, c)
        } else {
            (p * w, p, h * w, w, p)
        };
        if !len2.is_multiple_of(4) || (!self.channels_last && !w.is_multiple_of(4)) {
            return None;
        }
        Some(PatchGather {
            cols: u(wp)?,
            area: u(hp * wp)?,
            stride_img: u(h * w * c)?,
            stride_row: u(row)?,
            stride_col: u(col)?,
            k_stride0: u(k0)?,
            k_stride1: u(k1)?,
            k_len1: u(p)?,
            k_len2: u(len2)?,
            ..Default::default()
        })
    }
}

/// A conv with kernel = stride = p and no padding, as one GEMM: `patches(x) · weightᵀ + bias` →
/// `[rows, N]` for `weight [N, K]` laid out in the patches' element order. The kernel gathers
/// A's rows from `x` itself where the layout allows vec4 runs (`A_PATCHES`); otherwise a permute
/// copies the patches out first.
pub fn patch_linear(g: &mut Graph, x: TensorId, patches: Patches, weight: TensorId, bias: Option<TensorId>) -> Result<TensorId> {
    let bad = |why: String| Error::Graph(format!("patch_linear: {patches:?}: {why}"));
    if patches.p == 0 || !patches.h.is_multiple_of(patches.p) || !patches.w.is_multiple_of(patches.p) {
        return Err(bad("the map must be a whole number of patches".into()));
    }
    let (rows, k) = (patches.rows(), patches.patch_len());
    if rows == 0 || k == 0 {
        return Err(bad("the map must be a whole, non-empty number of patches".into()));
    }
    if g.shape(x) != patches.source_shape().as_slice() {
        return Err(bad(format!("x has shape {:?}, expected {:?}", g.shape(x), patches.source_shape())));
    }
    let &[n, kw] = g.shape(weight) else {
        return Err(bad(format!("weight {:?} must be [out, {k}]", g.shape(weight))));
    };
    if kw != k {
        return Err(bad(format!("weight {:?} must be [out, {k}]", g.shape(weight))));
    }
    let epi = Epilogue { bias: bias.map(|t| (t, BiasAxis::Col)), ..Default::default() };
    let s = MatmulShape::single(rows, n, k);
    let tiling = tuning::gemm_tiling(&g.profile, 2 * (rows * n * k) as u64, vec4_compatible(&s, false, true));
    match patches.gather() {
        Some(gather) if tiling.loads == MatmulLoads::Auto => push_gemm(g, x, weight, &s, false, true, epi, tiling, Some(gather), None),
        _ => {
            let (view, perm) = patches.view_and_perm();
            let x6 = g.reshape(x, &view)?;
            let copied = super::layout::permute(g, x6, &perm)?;
            let a = g.reshape(copied, &[rows, k])?;
            matmul(g, a, weight, false, true, epi)
        }
    }
}

/// A conv over a channel-last map `x [B, H, W, C]` (kernel `kh × kw`, one stride and one zero
/// padding for both axes, no dilation, one group) as one GEMM whose A rows are its patches,
/// gathered by the kernel itself (`A_PATCHES`; `A_PATCH_PAD` when padded, reading zeros outside
/// the map): row (image, oy, ox), element (ky, kx, c), against `weight [N, kh·kw·C]` in that
/// order, plus the bias and `act`. Returns `[B·Ho·Wo, N]`, or `None` where the gather does not
/// apply (C % 4 != 0, a padded map side of 2^16 or more, or offsets past 32 bits).
#[allow(clippy::too_many_arguments)]
pub fn conv_patches_gemm(g: &mut Graph, x: TensorId, (kh, kw): (usize, usize), stride: usize, pad: usize, weight: TensorId, bias: Option<TensorId>, act: Activation) -> Result<Option<TensorId>> {
    let &[b, h, w, c] = g.shape(x) else {
        return Err(Error::Graph(format!("conv_patches_gemm: x {:?} must be [B, H, W, C]", g.shape(x))));
    };
    let k = kh * kw * c;
    let (Some(ho), Some(wo)) = ((h + 2 * pad).checked_sub(kh).map(|v| v / stride.max(1) + 1), (w + 2 * pad).checked_sub(kw).map(|v| v / stride.max(1) + 1)) else {
        return Err(Error::Graph(format!("conv_patches_gemm: a {kh} × {kw} kernel does not fit the map {h} × {w} padded by {pad}")));
    };
    if stride == 0 || g.shape(weight).len() != 2 || g.shape(weight)[1] != k {
        return Err(Error::Graph(format!("conv_patches_gemm: weight {:?} must be [out, {k}] and the stride ({stride}) positive", g.shape(weight))));
    }
    let u = |v: usize| u32::try_from(v).ok();
    let fits_pixels = h + 2 * pad < 1 << 16 && w + 2 * pad < 1 << 16;
    let gather = (|| {
        Some(PatchGather {
            cols: u(wo)?,
            area: u(ho * wo)?,
            stride_img: u(h * w * c)?,
            stride_row: u(stride * w * c)?,
            stride_col: u(stride * c)?,
            k_stride0: u(w * c)?,
            k_stride1: u(c)?,
            k_len1: u(kw)?,
            k_len2: u(c)?,
            pad: u(pad)?,
            h: u(h)?,
            w: u(w)?,
            pad_offset: u(pad * (w * c + c))?,
        })
    })();
    let rows = b * ho * wo;
    let n = g.shape(weight)[0];
    let tiling = tuning::conv_patches_tiling(&g.profile, 2 * (rows * n * k) as u64);
    let (Some(gather), true, true, MatmulLoads::Auto) = (gather, c.is_multiple_of(4), fits_pixels, tiling.loads) else {
        return Ok(None);
    };
    check_u32("conv_patches_gemm x", b * (h + 2 * pad) * (w + 2 * pad) * c)?;
    let epi = Epilogue { bias: bias.map(|t| (t, BiasAxis::Col)), act, ..Default::default() };
    let s = MatmulShape::single(rows, n, k);
    push_gemm(g, x, weight, &s, false, true, epi, tiling, Some(gather), None).map(Some)
}

/// `nn.Linear`: x [.., K] · weightᵀ (weight [N, K]) + bias [N] → [.., N], then `act`.
pub fn linear(g: &mut Graph, x: TensorId, weight: TensorId, bias: Option<TensorId>, act: Activation) -> Result<TensorId> {
    let xs = g.shape(x).to_vec();
    let ws = g.shape(weight).to_vec();
    let (Some(&k), [n, kw]) = (xs.last(), ws.as_slice()) else {
        return Err(Error::Graph(format!("linear: x {xs:?} must have rank >= 1 and weight {ws:?} rank 2 [out, in]")));
    };
    if k != *kw {
        return Err(Error::Graph(format!("linear: x {xs:?} has {k} features but weight {ws:?} expects {kw}")));
    }
    let rows = xs[..xs.len() - 1].iter().product::<usize>();
    let x2 = g.reshape(x, &[rows, k])?;
    let epi = Epilogue { bias: bias.map(|t| (t, BiasAxis::Col)), act, ..Default::default() };
    let y = matmul(g, x2, weight, false, true, epi)?;
    let mut ys = xs[..xs.len() - 1].to_vec();
    ys.push(*n);
    g.reshape(y, &ys)
}

/// CPU reference of [`matmul`] (f64 accumulation). Returns the output and its shape.
#[allow(clippy::too_many_arguments)]
pub fn matmul_cpu(
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    trans_a: bool,
    trans_b: bool,
    alpha: f32,
    bias: Option<(&[f32], BiasAxis)>,
    act: Activation,
    residual: Option<&[f32]>,
) -> (Vec<f32>, Vec<usize>) {
    let s = matmul_shape(a_shape, b_shape, trans_a, trans_b).expect("valid matmul shapes");
    let (m, n, k) = (s.m, s.n, s.k);
    let mut out = vec![0f32; s.batches() * m * n];
    for t in 0..s.batches() {
        let ao = (t % s.a_batches) * m * k;
        let bo = (t % s.b_batches) * k * n;
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0f64;
                for p in 0..k {
                    let av = if trans_a { a[ao + p * m + i] } else { a[ao + i * k + p] };
                    let bv = if trans_b { b[bo + j * k + p] } else { b[bo + p * n + j] };
                    acc += av as f64 * bv as f64;
                }
                let mut v = alpha as f64 * acc;
                match bias {
                    Some((bv, BiasAxis::Row)) => v += bv[i] as f64,
                    Some((bv, BiasAxis::Col)) => v += bv[j] as f64,
                    None => {}
                }
                let o = t * m * n + i * n + j;
                let mut y = act.cpu(v as f32);
                if let Some(r) = residual {
                    y += r[o];
                }
                out[o] = y;
            }
        }
    }
    (out, s.out_shape())
}
