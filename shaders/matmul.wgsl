// matmul.wgsl — batched out = act(alpha * op(a) · op(b) + bias) + residual, op = optional
// transpose, on the register-tiled core of gemm_tile.wgsl.
//
// Shapes (per batch): op(a) is [M, K], op(b) is [K, N], out is [M, N], all contiguous row-major;
// stored a is [M, K] ([K, M] if TRANS_A), stored b is [K, N] ([N, K] if TRANS_B). Batch `t` of
// out reads batch `t % a_batches` of a and `t % b_batches` of b (a count of 1 broadcasts).
//
// requires: activations, flat_texture, gemm_tile
// Variants: without VEC4 (`Kernel::Matmul`, any shape) every tensor is an array<f32> and
// `load_a4`/`load_b4` gather four consecutive elements with four scalar loads; with VEC4
// (`Kernel::MatmulVec4`) a, b, residual and out are array<vec4<f32>> and one load moves four
// floats: valid only when every offset passed to a `*4` helper is a multiple of 4 (the stored
// contiguous dims of a and b, and N, are multiples of 4; the host checks). `bias` stays scalar
// (or a texture).
// With A_TEXTURE / B_TEXTURE (software devices, under A_VEC4 / B_VEC4: a constant operand, or on
// lavapipe an activation moved to a texture) or BIAS_TEXTURE it is read from a flat rgba32float
// texture (flat_texture.wgsl) instead of a storage buffer, whatever the kernel's storage type.
// With A_UNIFORM / B_UNIFORM (lavapipe, under A_VEC4 / B_VEC4: a constant operand of at most 64
// KiB, `Graph::constant_uniform`, or an activation as small, `Graph::with_activation_uniforms`)
// it is a uniform buffer of 64 KiB, which lavapipe reads with one gather where a texel fetch
// takes the sampler's path (`examples/load_paths.rs`); RESIDUAL_UNIFORM (the vec4 kernel) reads
// the residual so, BIAS_UNIFORM a constant bias.
// With OUT_TEXTURE (the vec4 kernel only) out is a flat texture written at `flat_coords`: an
// activation `Graph::with_activation_textures` moved to a texture, which the next matmuls read
// as their A_TEXTURE / B_TEXTURE.
// Bindings: 0 params (uniform), 1 a (storage, or `a_texture`), 2 b (storage, or `b_texture`),
// 3 bias (storage, or `bias_texture`; [M] if BIAS == 1, [N] if BIAS == 2), 4 residual (like out),
// 5 out (storage, or the storage texture `out_texture`); with K_SCALE 5 k_scale and 6 out. The
// host binds its placeholder buffer in place of an absent bias or residual.
// K_SCALE (the vec4 kernel, K % 4 == 0): op(a)[t][m, k] is multiplied by k_scale[t, k], a per
// batch entry scale of the reduction (ACC-ViT's squeeze-excitation folded into the GEMM that
// follows it, instead of an element-wise pass over A); applied to B's rows in each k step.
// K_SPLIT (one batch of a and b, K % 4 == 0, no residual or activation): the reduction is split
// in chunks of k_chunk, batch entry t of out takes chunk t (`ops::matmul`: GEMMs with too few
// tiles to keep the cores busy; a mean over the entries, with alpha and the bias scaled to
// match, finishes them).
//
// Loads: with A_VEC4 (B_VEC4) the A (B) block of a k step is four `load_a4` (`load_b4`) along a's
// (b's) stored contiguous dimension, whichever it is (a transposed operand becomes `transpose()`
// of the loaded block: free register renaming); otherwise element by element (any shape) from
// the tile's row (column) offsets, clamped into the matrix once per tile (`a_row_offsets`,
// `b_col_offsets`). The masked last step (K_TAIL) always loads element by element. Each
// operand decides for itself (its contiguous dimension % 4 == 0, the host checks), so a texture
// weight keeps its one-fetch vec4 blocks when the other side or N is odd (HAT-Net's and LaViT's
// 7 x 7 = 49-token last stage at 224, where N = 49).
// A_PATCHES (under A_VEC4, not TRANS_A, one batch): A is not stored as [M, K] but gathered from
// the non-overlapping p x p patches of an image [B, C, H, W] or a token map [B, H, W, C] (a conv
// with kernel = stride = p as one GEMM, no im2col copy; `ops::matmul::Patches`). Row m is patch
// (img, py, px), element offset img * patch_stride_img + py * patch_stride_row + px *
// patch_stride_col (computed once per tile row); k walks (k0, k1, k2) with k2 innermost and
// contiguous (patch_k_len2 % 4 == 0), offset k0 * patch_k_stride0 + k1 * patch_k_stride1 + k2,
// advanced by counters in the KStep instead of divisions.
// A_PATCH_PAD (under A_PATCHES, a token map): the patches overlap and reach past the map, a conv
// of any kernel, stride and zero padding on a channel-last map (`ops::matmul::ConvPatches`):
// patch origins are taken in padded coordinates (patch_stride_row and _col step by the conv's
// stride), each row also carries its origin's padded (y, x), and a k step's block of each row
// is read only where y + ky and x + kx fall inside the map (pad <= . < size + pad), at the
// origin plus the step's offset less patch_pad_offset (pad rows and pad columns); zeros
// elsewhere. Every channel run of 4 lies in one pixel, so a block is all in or all out.
// Edges: rows/columns past M/N are clamped when loading (every read is in bounds and real data)
// and skipped when storing; k past K is never read (zeros in the masked last step). Padded
// columns (b_n < N, `ops::matmul::matmul_padded_columns`): B is loaded as its b_n stored
// columns, clamped the same way, so the output's columns past b_n repeat stored ones. The
// first rows (a_m > M, `ops::matmul::matmul_first_rows`): A is addressed as its a_m stored rows
// and only the first M are stored.
// Dispatch: workgroups of WG_N * WG_M invocations (a power of two), each owning TM x TN
// outputs, 2^lanes_n_log2 of them along N and the rest along M (the host fits the workgroup's
// tile to the GEMM: `ops::tuning::gemm_launch`); the batches * tiles_m * tiles_n workgroups
// are folded into (x, y) by `ops::grid`. Workgroup memory: none.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    batches: u32,
    tiles_m: u32,
    tiles_n: u32,
    a_batches: u32,
    b_batches: u32,
    alpha: f32,
    // log2 of the invocations along N in a workgroup (the rest run along M): `ops::tuning`.
    lanes_n_log2: u32,
    // A_PATCHES geometry (header): patches per row and per image, a patch's origin strides,
    // and k's decomposition (k1 < patch_k_len1, k2 < patch_k_len2) with its strides.
    patch_cols: u32,
    patch_area: u32,
    patch_stride_img: u32,
    patch_stride_row: u32,
    patch_stride_col: u32,
    patch_k_stride0: u32,
    patch_k_stride1: u32,
    patch_k_len1: u32,
    patch_k_len2: u32,
    // K_SPLIT: the reduction's share of each batch entry (a multiple of 4).
    k_chunk: u32,
    // A_PATCH_PAD (header): the padding, the map's height and width, and the offset of the
    // padded origin's first real element (pad · (W·C + C)).
    patch_pad: u32,
    patch_h: u32,
    patch_w: u32,
    patch_pad_offset: u32,
    // Columns of op(b) as stored (b's rows with TRANS_B): n, or fewer when the output's columns
    // are padded (`ops::matmul::matmul_padded_columns`; header: Edges).
    b_n: u32,
    // Rows of op(a) as stored (a's columns with TRANS_A): m, or more when only the first m rows
    // are wanted (`ops::matmul::matmul_first_rows`; the rest are never read into the output).
    a_m: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;

// An operand in a texture or a uniform buffer is not a storage buffer.
#let A_BOUND_ELSEWHERE = A_TEXTURE + A_UNIFORM
#let B_BOUND_ELSEWHERE = B_TEXTURE + B_UNIFORM

#if VEC4
#if !A_BOUND_ELSEWHERE
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
fn load_a(i: u32) -> f32 { return a[i >> 2u][i & 3u]; }
fn load_a4(i: u32) -> vec4<f32> { return a[i >> 2u]; }
#endif
#if !B_BOUND_ELSEWHERE
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
fn load_b(i: u32) -> f32 { return b[i >> 2u][i & 3u]; }
fn load_b4(i: u32) -> vec4<f32> { return b[i >> 2u]; }
#endif
#if RESIDUAL_UNIFORM
@group(0) @binding(4) var<uniform> residual: array<vec4<f32>, 4096>;
#else
@group(0) @binding(4) var<storage, read> residual: array<vec4<f32>>;
#endif
fn load_residual(i: u32) -> f32 { return residual[i >> 2u][i & 3u]; }
fn load_residual4(i: u32) -> vec4<f32> { return residual[i >> 2u]; }
#if K_SCALE
// The scale of op(a)'s columns per batch entry, [batches, K]; out moves to binding 6.
@group(0) @binding(5) var<storage, read> k_scale: array<vec4<f32>>;
#if OUT_TEXTURE
@group(0) @binding(6) var out_texture: texture_storage_2d<rgba32float, write>;
#else
@group(0) @binding(6) var<storage, read_write> out: array<vec4<f32>>;
#endif
#else
#if OUT_TEXTURE
@group(0) @binding(5) var out_texture: texture_storage_2d<rgba32float, write>;
#else
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;
#endif
#endif
#if OUT_TEXTURE
fn store_out4(i: u32, v: vec4<f32>) { textureStore(out_texture, flat_coords(i), v); }
#else
fn store_out4(i: u32, v: vec4<f32>) { out[i >> 2u] = v; }
#endif
#else
#if !A_BOUND_ELSEWHERE
@group(0) @binding(1) var<storage, read> a: array<f32>;
fn load_a(i: u32) -> f32 { return a[i]; }
fn load_a4(i: u32) -> vec4<f32> { return vec4<f32>(a[i], a[i + 1u], a[i + 2u], a[i + 3u]); }
#endif
#if !B_BOUND_ELSEWHERE
@group(0) @binding(2) var<storage, read> b: array<f32>;
fn load_b(i: u32) -> f32 { return b[i]; }
fn load_b4(i: u32) -> vec4<f32> { return vec4<f32>(b[i], b[i + 1u], b[i + 2u], b[i + 3u]); }
#endif
@group(0) @binding(4) var<storage, read> residual: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

fn load_residual(i: u32) -> f32 { return residual[i]; }
fn store_out(i: u32, v: f32) { out[i] = v; }
#endif

// bias[i .. i+3] for i % 4 == 0, of a bias of `len` elements (past the end: never stored). A
// texture holds the bias's whole texels (`Graph::constant_texture`), so i + 3 is in it.
#if BIAS_TEXTURE
@group(0) @binding(3) var bias_texture: FlatTexture;
// Elements i .. i+3 (i a multiple of 4) of `bias_texture` (flat_texture.wgsl).
fn bias_texture_at(i: u32) -> vec4<f32> {
#if FLAT_IMAGE
    return textureLoad(bias_texture, flat_coords(i));
#else
    return textureLoad(bias_texture, flat_coords(i), 0);
#endif
}
fn load_bias4(i: u32, len: u32) -> vec4<f32> { return bias_texture_at(i); }
#else
#if BIAS_UNIFORM
// A uniform buffer of 64 KiB holds the bias and zeros after it.
@group(0) @binding(3) var<uniform> bias_uniform: array<vec4<f32>, 4096>;
fn load_bias4(i: u32, len: u32) -> vec4<f32> { return bias_uniform[i >> 2u]; }
#else
@group(0) @binding(3) var<storage, read> bias: array<f32>;
fn load_bias4(i: u32, len: u32) -> vec4<f32> {
    return vec4<f32>(bias[min(i, len - 1u)], bias[min(i + 1u, len - 1u)], bias[min(i + 2u, len - 1u)], bias[min(i + 3u, len - 1u)]);
}
#endif
#endif

#if A_TEXTURE
@group(0) @binding(1) var a_texture: FlatTexture;
// Elements i .. i+3 (i a multiple of 4) of `a_texture` (flat_texture.wgsl).
fn a_texture_at(i: u32) -> vec4<f32> {
#if FLAT_IMAGE
    return textureLoad(a_texture, flat_coords(i));
#else
    return textureLoad(a_texture, flat_coords(i), 0);
#endif
}
fn load_a(i: u32) -> f32 { return a_texture_at(i & ~3u)[i & 3u]; }
fn load_a4(i: u32) -> vec4<f32> { return a_texture_at(i); }
#endif

#if A_UNIFORM
// A constant of at most 64 KiB in a uniform buffer of exactly that size (graph::UNIFORM_WINDOW_BYTES).
@group(0) @binding(1) var<uniform> a_uniform: array<vec4<f32>, 4096>;
fn load_a(i: u32) -> f32 { return a_uniform[i >> 2u][i & 3u]; }
fn load_a4(i: u32) -> vec4<f32> { return a_uniform[i >> 2u]; }
#endif

#if B_UNIFORM
@group(0) @binding(2) var<uniform> b_uniform: array<vec4<f32>, 4096>;
fn load_b(i: u32) -> f32 { return b_uniform[i >> 2u][i & 3u]; }
fn load_b4(i: u32) -> vec4<f32> { return b_uniform[i >> 2u]; }
#endif

#if B_TEXTURE
@group(0) @binding(2) var b_texture: FlatTexture;
// Elements i .. i+3 (i a multiple of 4) of `b_texture` (flat_texture.wgsl).
fn b_texture_at(i: u32) -> vec4<f32> {
#if FLAT_IMAGE
    return textureLoad(b_texture, flat_coords(i));
#else
    return textureLoad(b_texture, flat_coords(i), 0);
#endif
}
fn load_b(i: u32) -> f32 { return b_texture_at(i & ~3u)[i & 3u]; }
fn load_b4(i: u32) -> vec4<f32> { return b_texture_at(i); }
#endif

override WG_M: u32 = 8u;
override WG_N: u32 = 8u;
override TRANS_A: bool = false;
override TRANS_B: bool = false;
// a, b or the bias is a flat texture (flat_texture.wgsl): `a_texture`, `b_texture`, `bias_texture`.
override A_TEXTURE: bool = false;
override B_TEXTURE: bool = false;
// a or b is a constant in a uniform buffer (`a_uniform`, `b_uniform`; header).
override A_UNIFORM: bool = false;
override B_UNIFORM: bool = false;
// The residual is a uniform buffer (the vec4 kernel: an activation of at most 64 KiB).
override RESIDUAL_UNIFORM: bool = false;
override BIAS_TEXTURE: bool = false;
// The bias is a uniform buffer (lavapipe; header).
override BIAS_UNIFORM: bool = false;
// The vec4 kernel's output is a flat texture, written as a storage texture (`out_texture`).
override OUT_TEXTURE: bool = false;
// An operand's k-step blocks as vec4 (over either variant: over the scalar one, `load_a4` /
// `load_b4` are four element loads, or one texel fetch from a texture).
override A_VEC4: bool = false;
override B_VEC4: bool = false;
// A's rows are gathered from patches (header), overlapping and padded with A_PATCH_PAD.
override A_PATCHES: bool = false;
override A_PATCH_PAD: bool = false;
// op(a)[t][m, k] is scaled by k_scale[t, k] (header; the vec4 kernel, K % 4 == 0).
override K_SCALE: bool = false;
// 0: no bias, 1: bias[M] along rows, 2: bias[N] along columns.
override BIAS: u32 = 0u;
override RESIDUAL: bool = false;
override ACT: u32 = 0u;

// Whether the tile carries per-row offsets into a (patches imply vec4 A loads: the host checks).
#let A_ROWS = A_PATCHES + 1 - A_VEC4
struct Tile {
    m0: u32,
    n0: u32,
    a_off: u32,
    b_off: u32,
#if A_ROWS
    // Per tile row, 4 rows per vec4 (TM / 4 used): its patch origin in a (A_PATCHES), or where
    // its k = 0 element lies in a, rows clamped into the matrix (element loads, !A_VEC4).
    a_rows: array<vec4<u32>, 4>,
#endif
#if A_PATCH_PAD
    // Per tile row, its patch origin's padded (y, x) as y << 16 | x.
    a_pix: array<vec4<u32>, 4>,
#endif
#if !B_VEC4
    // Where each tile column's k = 0 element lies in b (columns clamped; TN / 4 used).
#if TN > 8
    b_cols: array<vec4<u32>, 4>,
#else
    b_cols: array<vec4<u32>, 2>,
#endif
#endif
#if K_SCALE
    // Where the batch entry's k_scale row starts (in vec4s).
    k_scale_off: u32,
#endif
#if K_SPLIT
    // The tile's share of the reduction: k_begin .. k_end (gemm_tile.wgsl).
    k_begin: u32,
    k_end: u32,
#endif
}

struct KStep {
    k: u32,
#if A_PATCHES
    // k = (k0 * patch_k_len1 + k1) * patch_k_len2 + k2, and its offset in a patch.
    k0: u32,
    k1: u32,
    k2: u32,
    offset: u32,
#endif
}

// Indices i .. i+3 clamped into 0 .. len - 1 (rows or columns past the edge load real data).
fn clamped4(i: u32, len: u32) -> vec4<u32> {
    return min(vec4<u32>(i) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(len - 1u));
}

#if A_PATCHES
fn k_first(t: Tile) -> KStep {
#if K_SPLIT
    // k_begin's place in a patch (k_begin % 4 == 0 and patch_k_len2 % 4 == 0: k2 steps by 4).
    let k2 = t.k_begin % params.patch_k_len2;
    let k01 = t.k_begin / params.patch_k_len2;
    let k1 = k01 % params.patch_k_len1;
    let k0 = k01 / params.patch_k_len1;
    return KStep(t.k_begin, k0, k1, k2, k0 * params.patch_k_stride0 + k1 * params.patch_k_stride1 + k2);
#else
    return KStep(0u, 0u, 0u, 0u, 0u);
#endif
}

fn k_advance(s: KStep) -> KStep {
    var k0 = s.k0;
    var k1 = s.k1;
    var k2 = s.k2 + 4u;
    var offset = s.offset + 4u;
    let wrap2 = k2 == params.patch_k_len2;
    k2 = select(k2, 0u, wrap2);
    k1 = select(k1, k1 + 1u, wrap2);
    offset = select(offset, offset - params.patch_k_len2 + params.patch_k_stride1, wrap2);
    let wrap1 = k1 == params.patch_k_len1;
    k1 = select(k1, 0u, wrap1);
    k0 = select(k0, k0 + 1u, wrap1);
    offset = select(offset, offset - params.patch_k_len1 * params.patch_k_stride1 + params.patch_k_stride0, wrap1);
    return KStep(s.k + 4u, k0, k1, k2, offset);
}

// Patch origins of rows m .. m+3 (clamped into the matrix).
fn patch_origins(m: u32) -> vec4<u32> {
    let mc = clamped4(m, params.m);
    let img = mc / params.patch_area;
    let r = mc % params.patch_area;
    return img * params.patch_stride_img + (r / params.patch_cols) * params.patch_stride_row
        + (r % params.patch_cols) * params.patch_stride_col;
}

// Padded (y, x) of the patch origins of rows m .. m+3 (clamped), as y << 16 | x: the origin
// strides over a row are the conv's stride times W·C and C.
fn patch_pixels(m: u32) -> vec4<u32> {
    let r = clamped4(m, params.m) % params.patch_area;
    let step = params.patch_stride_col / params.patch_k_stride1;
    let y = (r / params.patch_cols) * step;
    return (y << vec4<u32>(16u)) | ((r % params.patch_cols) * step);
}
#else
fn k_first(t: Tile) -> KStep {
#if K_SPLIT
    return KStep(t.k_begin);
#else
    return KStep(0u);
#endif
}

fn k_advance(s: KStep) -> KStep {
    return KStep(s.k + 4u);
}
#endif

#if !A_VEC4
fn a_row_offsets(a_off: u32, m: u32) -> vec4<u32> {
    let mc = clamped4(m, params.m);
    return vec4<u32>(a_off) + select(mc * params.k, mc, TRANS_A);
}

// a[i], a[i + stride], a[i + 2 stride], a[i + 3 stride].
fn load_a_strided4(i: u32, stride: u32) -> vec4<f32> {
    return vec4<f32>(load_a(i), load_a(i + stride), load_a(i + 2u * stride), load_a(i + 3u * stride));
}
#endif

#if !B_VEC4
fn b_col_offsets(b_off: u32, n: u32) -> vec4<u32> {
    let nc = clamped4(n, params.b_n);
    return vec4<u32>(b_off) + select(nc, nc * params.k, TRANS_B);
}

fn load_b_strided4(i: u32, stride: u32) -> vec4<f32> {
    return vec4<f32>(load_b(i), load_b(i + stride), load_b(i + 2u * stride), load_b(i + 3u * stride));
}
#endif

// The masked last k step (K % 4 != 0) loads element by element.
#if K_TAIL
// op(a)[m, kk], m clamped into the matrix, zero when kk >= K (only in the masked step).
fn a_elem(t: Tile, m: u32, kk: u32) -> f32 {
    let mc = min(m, params.m - 1u);
    let kc = min(kk, params.k - 1u);
    let i = select(t.a_off + mc * params.k + kc, t.a_off + kc * params.a_m + mc, TRANS_A);
    return select(0.0, load_a(i), kk < params.k);
}

// op(b)[kk, n], n clamped, zero when kk >= K.
fn b_elem(t: Tile, kk: u32, n: u32) -> f32 {
    let nc = min(n, params.b_n - 1u);
    let kc = min(kk, params.k - 1u);
    let i = select(t.b_off + kc * params.b_n + nc, t.b_off + nc * params.k + kc, TRANS_B);
    return select(0.0, load_b(i), kk < params.k);
}

fn a_row(t: Tile, m: u32, k: u32) -> vec4<f32> {
    return vec4<f32>(a_elem(t, m, k), a_elem(t, m, k + 1u), a_elem(t, m, k + 2u), a_elem(t, m, k + 3u));
}

fn b_row(t: Tile, kk: u32, n: u32) -> vec4<f32> {
    return vec4<f32>(b_elem(t, kk, n), b_elem(t, kk, n + 1u), b_elem(t, kk, n + 2u), b_elem(t, kk, n + 3u));
}
#endif

fn a_block(t: Tile, q: u32, s: KStep, masked: bool) -> mat4x4<f32> {
#if A_PATCHES
    // K % 4 == 0 (the host checks): no step is masked.
    let rows = t.a_rows[q];
#if A_PATCH_PAD
    let pad = vec4<u32>(params.patch_pad);
    let y = (t.a_pix[q] >> vec4<u32>(16u)) + vec4<u32>(s.k0);
    let x = (t.a_pix[q] & vec4<u32>(0xffffu)) + vec4<u32>(s.k1);
    let inside = (y >= pad) & (y < pad + vec4<u32>(params.patch_h)) & (x >= pad) & (x < pad + vec4<u32>(params.patch_w));
    let at = select(vec4<u32>(0u), rows + vec4<u32>(s.offset - params.patch_pad_offset), inside);
    let zero = vec4<f32>(0.0);
    return mat4x4<f32>(select(zero, load_a4(at.x), inside.x), select(zero, load_a4(at.y), inside.y),
                       select(zero, load_a4(at.z), inside.z), select(zero, load_a4(at.w), inside.w));
#else
    return mat4x4<f32>(load_a4(rows.x + s.offset), load_a4(rows.y + s.offset), load_a4(rows.z + s.offset),
                       load_a4(rows.w + s.offset));
#endif
#else
    let M = params.m;
    // op(a)'s stored rows: a's row length under TRANS_A (at least M).
    let A_M = params.a_m;
    let m = t.m0 + 4u * q;
    let k = s.k;
#if K_TAIL
    if (masked) {
        return mat4x4<f32>(a_row(t, m, k), a_row(t, m + 1u, k), a_row(t, m + 2u, k), a_row(t, m + 3u, k));
    }
#endif
#if A_VEC4
#if TRANS_A
    // A_M % 4 == 0: a group of 4 stored rows is wholly in range or wholly past the edge.
    let base = t.a_off + min(m, A_M - 4u);
    return transpose(mat4x4<f32>(load_a4(base + k * A_M), load_a4(base + (k + 1u) * A_M),
                                 load_a4(base + (k + 2u) * A_M), load_a4(base + (k + 3u) * A_M)));
#else
    let K = params.k;
    let base = t.a_off + k;
    return mat4x4<f32>(load_a4(base + min(m, M - 1u) * K), load_a4(base + min(m + 1u, M - 1u) * K),
                       load_a4(base + min(m + 2u, M - 1u) * K), load_a4(base + min(m + 3u, M - 1u) * K));
#endif
#else
    // Element loads from row offsets computed once per tile (`a_row_offsets`: a row-major a whose
    // K % 4 != 0, or a transposed one whose M % 4 != 0): an add per load, no clamps.
    let r = t.a_rows[q];
#if TRANS_A
    let o = k * A_M;
    return mat4x4<f32>(load_a_strided4(r.x + o, A_M), load_a_strided4(r.y + o, A_M),
                       load_a_strided4(r.z + o, A_M), load_a_strided4(r.w + o, A_M));
#else
    return mat4x4<f32>(load_a4(r.x + k), load_a4(r.y + k), load_a4(r.z + k), load_a4(r.w + k));
#endif
#endif
#endif
}

#if K_SCALE
// B's rows k .. k+3 scaled by the batch entry's k_scale: the same as scaling A's columns, on the
// TN / 4 B blocks of a step instead of its TM / 4 A blocks, with one scale load a step.
fn b_block(t: Tile, g: u32, s: KStep, masked: bool) -> mat4x4<f32> {
    let b = b_block_loaded(t, g, s, masked);
    let sc = k_scale[t.k_scale_off + (s.k >> 2u)];
    return mat4x4<f32>(b[0] * sc.x, b[1] * sc.y, b[2] * sc.z, b[3] * sc.w);
}

fn b_block_loaded(t: Tile, g: u32, s: KStep, masked: bool) -> mat4x4<f32> {
#else
fn b_block(t: Tile, g: u32, s: KStep, masked: bool) -> mat4x4<f32> {
#endif
    // op(b)'s stored columns (fewer than the output's when those are padded).
    let N = params.b_n;
    let n = t.n0 + 4u * g;
    let k = s.k;
#if K_TAIL
    if (masked) {
        return mat4x4<f32>(b_row(t, k, n), b_row(t, k + 1u, n), b_row(t, k + 2u, n), b_row(t, k + 3u, n));
    }
#endif
#if B_VEC4
#if TRANS_B
    let K = params.k;
    let base = t.b_off + k;
    return transpose(mat4x4<f32>(load_b4(base + min(n, N - 1u) * K), load_b4(base + min(n + 1u, N - 1u) * K),
                                 load_b4(base + min(n + 2u, N - 1u) * K), load_b4(base + min(n + 3u, N - 1u) * K)));
#else
    // N % 4 == 0: a group of 4 columns is wholly in range or wholly past the edge.
    let base = t.b_off + min(n, N - 4u);
    return mat4x4<f32>(load_b4(base + k * N), load_b4(base + (k + 1u) * N),
                       load_b4(base + (k + 2u) * N), load_b4(base + (k + 3u) * N));
#endif
#else
    // Element loads from column offsets computed once per tile (`b_col_offsets`).
    let c = t.b_cols[g];
#if TRANS_B
    return transpose(mat4x4<f32>(load_b4(c.x + k), load_b4(c.y + k), load_b4(c.z + k), load_b4(c.w + k)));
#else
    let o = k * N;
    return transpose(mat4x4<f32>(load_b_strided4(c.x + o, N), load_b_strided4(c.y + o, N),
                                 load_b_strided4(c.z + o, N), load_b_strided4(c.w + o, N)));
#endif
#endif
}

#if !VEC4
// Element i of the output, with the residual added.
fn store_elem(i: u32, e: f32) {
#if RESIDUAL
    store_out(i, e + load_residual(i));
#else
    store_out(i, e);
#endif
}
#endif

// Epilogue for out[batch, m, n .. n+3], `bias` its row's bias (BIAS != 0); nothing past M or N
// is stored.
fn store_row(batch: u32, m: u32, n: u32, acc: vec4<f32>, bias: vec4<f32>) {
    let M = params.m;
    let N = params.n;
    if (m >= M || n >= N) {
        return;
    }
    var v = params.alpha * acc;
#if BIAS
    v += bias;
#endif
    v = activated4(v);
    let o = (batch * M + m) * N + n;
#if VEC4
    // N % 4 == 0 here: every row segment is whole.
#if RESIDUAL
    v += load_residual4(o);
#endif
    store_out4(o, v);
#else
    // Element by element, the three past the first guarded by N, written out: a loop over the
    // segment's length made SwiftShader's pipeline creation 1.6× slower (hatnet-tiny's
    // blocks.3.0.attn.proj, N = 49: 0.44–0.56 s against 0.28–0.30 s).
    store_elem(o, v.x);
    if (n + 1u < N) { store_elem(o + 1u, v.y); }
    if (n + 2u < N) { store_elem(o + 2u, v.z); }
    if (n + 3u < N) { store_elem(o + 3u, v.w); }
#endif
}

// Epilogue for the block out[batch, m .. m+3, n .. n+3] (column i of c is row m + i). Its bias
// is loaded once for the block, not once per row: SwiftShader writes out every load of the
// tile's written-out epilogue for each lane, and a row bias from a texture was a texel fetch
// and a dynamic component pick per row (BIAS 1: the 4 rows' biases are one texel, m % 4 == 0).
fn store_block(batch: u32, m: u32, n: u32, c: mat4x4<f32>) {
#if BIAS == 1
    let rows = load_bias4(m, params.m);
    store_row(batch, m, n, c[0], vec4<f32>(rows.x));
    store_row(batch, m + 1u, n, c[1], vec4<f32>(rows.y));
    store_row(batch, m + 2u, n, c[2], vec4<f32>(rows.z));
    store_row(batch, m + 3u, n, c[3], vec4<f32>(rows.w));
#else
#if BIAS == 2
    let cols = load_bias4(n, params.n);
#else
    let cols = vec4<f32>(0.0);
#endif
    store_row(batch, m, n, c[0], cols);
    store_row(batch, m + 1u, n, c[1], cols);
    store_row(batch, m + 2u, n, c[2], cols);
    store_row(batch, m + 3u, n, c[3], cols);
#endif
}

@compute @workgroup_size(WG_N, WG_M)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let p = tile_position(wid, nwg, lane);
    if (!p.valid) {
        return;
    }
    // (With A_PATCHES there is one batch entry, so a_off is 0.)
    let a_off = (p.batch % params.a_batches) * params.a_m * params.k;
    let b_off = (p.batch % params.b_batches) * params.k * params.b_n;
#if A_ROWS
    var rows: array<vec4<u32>, 4>;
#for Q in 0..TM / 4
#if A_PATCHES
    rows[Q] = patch_origins(p.m0 + 4u * Q);
#else
    rows[Q] = a_row_offsets(a_off, p.m0 + 4u * Q);
#endif
#endfor
#endif
#if A_PATCH_PAD
    var pix: array<vec4<u32>, 4>;
#for Q in 0..TM / 4
    pix[Q] = patch_pixels(p.m0 + 4u * Q);
#endfor
#endif
#if !B_VEC4
#if TN > 8
    var cols: array<vec4<u32>, 4>;
#else
    var cols: array<vec4<u32>, 2>;
#endif
#for G in 0..TN / 4
    cols[G] = b_col_offsets(b_off, p.n0 + 4u * G);
#endfor
#endif
    // One constructor, not the tile's fields set one by one in a `var`: that cost SwiftShader's
    // GEMMs 3–7 % of their time.
    let t = Tile(p.m0, p.n0, a_off, b_off
#if A_ROWS
                 , rows
#endif
#if A_PATCH_PAD
                 , pix
#endif
#if !B_VEC4
                 , cols
#endif
#if K_SCALE
                 , p.batch * (params.k >> 2u)
#endif
#if K_SPLIT
                 , p.batch * params.k_chunk, min((p.batch + 1u) * params.k_chunk, params.k)
#endif
    );
    gemm_store(p.batch, t, gemm_accumulate(t));
}
