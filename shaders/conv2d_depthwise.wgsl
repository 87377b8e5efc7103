// conv2d_depthwise.wgsl — depthwise 2-D convolution (groups == Cin == Cout, NCHW):
// out[b, c, oh, ow] = act(bias[c] + sum_{i,j} w[c, 0, i, j] * x[b, c, oh*SH - ph + i*DH, ow*SW - pw + j*DW]).
//
// Each invocation owns TH x 4 outputs of one (b, c) plane: rows oh0 .. oh0+TH-1, columns
// ow0 .. ow0+3 (a named vec4 accumulator per row). For each kernel row i (a runtime loop) it
// loads that row's KW weights, then for each output row the input row segment of
// 3*SW + (KW-1)*DW + 1 floats, which feeds all 4 x KW taps of the row: a 3x3 stride-1 tile
// costs 3 * (3 + 4*6) = 81 loads for 144 FMAs, against 18 loads per output when every tap is
// fetched. Every load is a per-lane loop on a CPU device, so that ratio sets the speed.
// Why the kernel-row loop is the only loop left rolled: the weights and the segment are
// register arrays indexed by the inner loops only, written out by the preprocessor (`#for`:
// kernel size, stride and dilation are `override` constants); an array indexed by a rolled loop
// would live in scratch memory, itself a per-lane loop on lavapipe (walking input rows in the
// outer loop and sharing them across output rows measured 2x slower). lavapipe unrolled these
// loops itself; SwiftShader does not, and runs such a loop about 10x slower than its unrolled
// code.
// With ALL_ROWS (lavapipe, when the tile's rows fit the registers: `ops::tuning`) the kernel-row
// loop is written out too: the (TH − 1)·SH + (KH − 1)·DH + 1 input row segments the tile reads are
// each loaded once and feed every (output row, kernel row) pair that reads them, so a 3x3
// stride-1 tile costs 6 · 6 = 36 loads and its 9 weights for 144 FMAs, not 72 and 9; and the
// tile may be taller (TH up to TH_MAX = 8, `tuning::depthwise_tile_rows`): 10 segments for 8
// rows, 1.25 segments an output row instead of 1.5.
// Padding is read as 0: out-of-range rows/columns read index 0 (in bounds) and are replaced.
//
// With X_TEXTURE (lavapipe: an activation `Graph::with_activation_textures` moved to a flat
// texture, offered when W % 4 == 0) a row segment comes from the texels that cover it: rows and
// planes then start on a texel and the segment's first element sits XS = -pad_w mod 4 into its
// first texel (every column block starts at a multiple of 4), so a 3x3 stride-1 segment of 6
// floats is 3 texel fetches instead of 6 storage loads (a loop over the SIMD lanes there). With
// OUT_TEXTURE (offered when Wo % 4 == 0) each output row segment is one texel store.
//
// Bindings: 0 params, 1 x [B, C, H, W] (or `x_texture`), 2 weight [C, 1, KH, KW] (or
// `weight_uniform`), 3 bias [C] (or `bias_uniform`; the
// weight is bound in its place when BIAS is false), 4 out [B, C, Ho, Wo] (or `out_texture`).
// Dispatch: one invocation per (b, c, row block, column block), `tiles` in all, WG per
// workgroup, ceil(tiles / WG) workgroups folded into (x, y) by `ops::grid`.
// Workgroup memory: none. Registers: KW <= 7 weights, a segment of <= 32 floats (<= 9 texels
// with X_TEXTURE), TH vec4s; with ALL_ROWS KH <= ALL_KH_MAX rows of weights and up to ROWS_MAX
// segments.
// requires: activations, flat_texture

struct Params {
    tiles: u32,
    channels: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    col_blocks: u32,
    row_blocks: u32,
    pad_h: u32,
    pad_w: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
#if X_TEXTURE
@group(0) @binding(1) var x_texture: FlatTexture;
// Elements i .. i+3 (i a multiple of 4) of `x_texture` (flat_texture.wgsl).
fn x_texture_at(i: u32) -> vec4<f32> {
#if FLAT_IMAGE
    return textureLoad(x_texture, flat_coords(i));
#else
    return textureLoad(x_texture, flat_coords(i), 0);
#endif
}
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
#endif
#if W_UNIFORM
// A constant of at most 64 KiB in a uniform buffer of that size (graph::UNIFORM_WINDOW_BYTES).
@group(0) @binding(2) var<uniform> weight_uniform: array<vec4<f32>, 4096>;
fn weight_at(i: u32) -> f32 { return weight_uniform[i >> 2u][i & 3u]; }
#else
@group(0) @binding(2) var<storage, read> weight: array<f32>;
fn weight_at(i: u32) -> f32 { return weight[i]; }
#endif
#if BIAS_UNIFORM
@group(0) @binding(3) var<uniform> bias_uniform: array<vec4<f32>, 4096>;
fn bias_at(i: u32) -> f32 { return bias_uniform[i >> 2u][i & 3u]; }
#else
@group(0) @binding(3) var<storage, read> bias: array<f32>;
fn bias_at(i: u32) -> f32 { return bias[i]; }
#endif
#if OUT_TEXTURE
@group(0) @binding(4) var out_texture: texture_storage_2d<rgba32float, write>;
#else
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
#endif

override WG: u32 = 64u;
override KH: u32 = 3u;
override KW: u32 = 3u;
override SH: u32 = 1u;
override SW: u32 = 1u;
override DH: u32 = 1u;
override DW: u32 = 1u;
// Output rows per invocation: 1 .. 4, up to TH_MAX with ALL_ROWS.
override TH: u32 = 4u;
override BIAS: bool = false;
override ACT: u32 = 0u;
// x / out are flat textures (see the header); XS = -pad_w mod 4, the offset of every row
// segment in its first texel.
override X_TEXTURE: bool = false;
override OUT_TEXTURE: bool = false;
override XS: u32 = 0u;
// Every input row of the tile loaded once (header).
override ALL_ROWS: bool = false;
// The weight and the bias are constants in uniform buffers (lavapipe: one gather across the SIMD
// lanes, where a storage load is a loop over them).
override W_UNIFORM: bool = false;
override BIAS_UNIFORM: bool = false;

// Capacities (the host keeps KW <= K_MAX and the segment within SEG_MAX).
const K_MAX: u32 = 7u;
const SEG_MAX: u32 = 32u;
const SEG_TEXELS_MAX: u32 = 9u;
// ALL_ROWS capacities (the host checks them): kernel rows, and the input rows of a tile.
const ALL_KH_MAX: u32 = 3u;
const ROWS_MAX: u32 = 10u;
const TH_MAX: u32 = 8u;

// The input row segment x[ih, iw0 .. iw0 + 3*SW + (KW-1)*DW], one load per column (zeros
// outside the image).
fn row_segment(x_plane: u32, ih: i32, iw0: i32) -> array<f32, SEG_MAX> {
    let row_ok = (ih >= 0) & (ih < i32(params.in_h));
    var seg: array<f32, SEG_MAX>;
#if X_TEXTURE
    // The texels holding elements e0 - XS .. e0 + len - 1 (e0 - XS is a multiple of 4, negative
    // only before the first row of the first plane, where every element is masked).
    let first = i32(x_plane) + ih * i32(params.in_w) + iw0 - i32(XS);
    var texels: array<vec4<f32>, SEG_TEXELS_MAX>;
#for T in 0..(XS + 3 * SW + (KW - 1) * DW + 4) / 4
    texels[T] = x_texture_at(u32(max(first + 4 * i32(T), 0)));
#endfor
#endif
#for Q in 0..3 * SW + (KW - 1) * DW + 1
    {
        let iw = iw0 + i32(Q);
        let ok = row_ok & (iw >= 0) & (iw < i32(params.in_w));
#if X_TEXTURE
        seg[Q] = select(0.0, texels[(XS + Q) / 4u][(XS + Q) % 4u], ok);
#else
        seg[Q] = select(0.0, x[select(0u, x_plane + u32(ih) * params.in_w + u32(iw), ok)], ok);
#endif
    }
#endfor
    return seg;
}

// One kernel row applied to one output row: sum_j w[j] * seg[j*DW + {0, SW, 2SW, 3SW}].
fn taps(seg: array<f32, SEG_MAX>, w: array<f32, K_MAX>) -> vec4<f32> {
    var sum = vec4<f32>(0.0);
#for J in 0..KW
    sum = fma(vec4<f32>(w[J]), vec4<f32>(seg[J * DW], seg[J * DW + SW], seg[J * DW + 2u * SW], seg[J * DW + 3u * SW]), sum);
#endfor
    return sum;
}

// One kernel row i applied to one output row (row_segment, then taps).
fn row_taps(x_plane: u32, ih: i32, iw0: i32, w: array<f32, K_MAX>) -> vec4<f32> {
    return taps(row_segment(x_plane, ih, iw0), w);
}

// Activation and store of out[plane, oh, ow0 .. ow0+3], skipping what lies past the edges.
fn store_row(plane: u32, oh: u32, ow0: u32, v: vec4<f32>) {
    if (oh >= params.out_h) {
        return;
    }
    let o = (plane * params.out_h + oh) * params.out_w + ow0;
#if OUT_TEXTURE
    // Wo % 4 == 0: the segment is whole and starts on a texel.
    textureStore(out_texture, flat_coords(o), activated4(v));
#else
    for (var q = 0u; q < min(4u, params.out_w - ow0); q++) {
        out[o + q] = activated(v[q]);
    }
#endif
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let tile = (wid.x + wid.y * nwg.x) * WG + lid;
    if (tile >= params.tiles) {
        return;
    }
    let H = params.in_h;
    let W = params.in_w;
    let col_block = tile % params.col_blocks;
    let row_block = (tile / params.col_blocks) % params.row_blocks;
    let plane = tile / (params.col_blocks * params.row_blocks); // b * C + c
    let c = plane % params.channels;
    let oh0 = row_block * TH;
    let ow0 = col_block * 4u;

    let iw0 = i32(ow0 * SW) - i32(params.pad_w);
    let ih0 = i32(oh0 * SH) - i32(params.pad_h);
    let x_plane = plane * H * W;
#if ALL_ROWS
    var w_all: array<array<f32, K_MAX>, ALL_KH_MAX>;
#for I in 0..KH
#for J in 0..KW
    w_all[I][J] = weight_at((c * KH + I) * KW + J);
#endfor
#endfor
    var rows: array<array<f32, SEG_MAX>, ROWS_MAX>;
#for R in 0..(TH - 1) * SH + (KH - 1) * DH + 1
    rows[R] = row_segment(x_plane, ih0 + i32(R), iw0);
#endfor
    // Indexed by the written-out rows only, so registers (header).
    var acc: array<vec4<f32>, TH_MAX>;
#for R in 0..TH
#for I in 0..KH
    acc[R] += taps(rows[R * SH + I * DH], w_all[I]);
#endfor
#endfor
    var b = 0.0;
#if BIAS
    b = bias_at(c);
#endif
#for R in 0..TH
    store_row(plane, oh0 + R, ow0, acc[R] + b);
#endfor
#else
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var i = 0u; i < KH; i++) {
        var w: array<f32, K_MAX>;
#for J in 0..KW
        w[J] = weight_at((c * KH + i) * KW + J);
#endfor
        let ih = ih0 + i32(i * DH);
        acc0 += row_taps(x_plane, ih, iw0, w);
#if TH > 1
        acc1 += row_taps(x_plane, ih + i32(SH), iw0, w);
#endif
#if TH > 2
        acc2 += row_taps(x_plane, ih + i32(2u * SH), iw0, w);
#endif
#if TH > 3
        acc3 += row_taps(x_plane, ih + i32(3u * SH), iw0, w);
#endif
    }

    var b = 0.0;
#if BIAS
    b = bias_at(c);
#endif
    store_row(plane, oh0, ow0, acc0 + b);
#if TH > 1
    store_row(plane, oh0 + 1u, ow0, acc1 + b);
#endif
#if TH > 2
    store_row(plane, oh0 + 2u, ow0, acc2 + b);
#endif
#if TH > 3
    store_row(plane, oh0 + 3u, ow0, acc3 + b);
#endif
#endif
}
