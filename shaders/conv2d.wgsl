// conv2d.wgsl — dense and grouped 2-D convolution (NCHW) as an implicit GEMM on the register-
// tiled core of gemm_tile.wgsl: out = act(conv(x, weight) + bias).
//
// Per (image b, group g), the GEMM is  out[co, p] = sum_r W[co, r] * X[r, p]  with
// co < M = Cout/groups, p < N = Ho*Wo, r = (ci, i, j) < K = Cin/groups * kh * kw:
// W is the weight [Cout, Cin/groups, kh, kw] read as [groups, M, K] (row-major, no copy) and X is
// im2col(x) gathered on the fly: X[(ci, i, j), (oh, ow)] = x[b, g*Cin/groups + ci,
// oh*sh - ph + i*dh, ow*sw - pw + j*dw], 0 in the padding. GEMM batch t = b*groups + g, so out
// [B, Cout, Ho, Wo] is exactly the [batches, M, N] the tile core stores.
// k walks r in weight order; instead of dividing r by kh*kw and kw for every element, a KStep
// carries the (ci, i, j) of its 4 taps and advances them by increments.
//
// requires: activations, flat_texture, gemm_tile
// Variants: without VEC4 (`Kernel::Conv2d`, any K) the weight is array<f32> and a row segment of
// 4 weights takes 4 scalar loads; with VEC4 (`Kernel::Conv2dVec4`, K % 4 == 0, so every weight
// row and every k step starts on a vec4) one vec4 load moves 4 weights. A constant weight whose
// rows are not a multiple of 4 long (an RGB stem: 3*3*3 = 27 taps) comes padded with zeros to
// K = taps rounded up to 4, so it too takes VEC4 without the masked k step; the im2col reads of
// taps past `taps` are masked to 0.
// With W_TEXTURE (software devices, a constant weight, K % 4 == 0) the weight is a flat rgba32float
// texture (flat_texture.wgsl, `Graph::constant_texture`); with W_UNIFORM (lavapipe, a constant
// weight of at most 64 KiB, K % 4 == 0) a uniform buffer (`Graph::constant_uniform`).
// Bindings: 0 params, 1 x [B, Cin, H, W], 2 weight (storage, or `weight_texture`), 3 bias [Cout]
// (the host binds x in place of an absent bias; BIAS = false never reads it),
// 4 out [B, Cout, Ho, Wo] (with OUT_NHWC [B, Ho, Wo, Cout], or `out_texture` with OUT_TEXTURE).
// OUT_NHWC (one group, Cout % 4 == 0): the output is channel-last, each pixel's 4 channels of a
// block one vec4 store, for a channel-last consumer (conv2d_nhwc.wgsl, ACC-ViT's stem on CPU
// devices); with OUT_TEXTURE (offered under OUT_NHWC) a flat texture.
// Dispatch: workgroups of WG_N * WG_M invocations (a power of two), each owning TM channels x
// TN pixels, 2^lanes_n_log2 of them along the pixels (`ops::tuning::gemm_launch`), over
// batches * tiles_m * tiles_n workgroups folded into (x, y) by `ops::grid`.
// Workgroup memory: none. Edges: channels/pixels past M/N are clamped when loading, skipped
// when storing; padding taps read index b_off (in bounds) and are replaced by 0.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    batches: u32,
    tiles_m: u32,
    tiles_n: u32,
    groups: u32,
    in_c: u32,
    in_h: u32,
    in_w: u32,
    out_w: u32,
    kernel_h: u32,
    kernel_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_h: u32,
    pad_w: u32,
    dil_h: u32,
    dil_w: u32,
    // The real reduction length Cin/groups * kh * kw; `k`, the weight's row length, is it rounded
    // up to 4 when the host padded the weight rows with zeros.
    taps: u32,
    // log2 of the invocations along N (pixels) in a workgroup: `ops::tuning::gemm_launch`.
    lanes_n_log2: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
#if W_TEXTURE
@group(0) @binding(2) var weight_texture: FlatTexture;
// Elements i .. i+3 (i a multiple of 4) of `weight_texture` (flat_texture.wgsl).
fn weight_texture_at(i: u32) -> vec4<f32> {
#if FLAT_IMAGE
    return textureLoad(weight_texture, flat_coords(i));
#else
    return textureLoad(weight_texture, flat_coords(i), 0);
#endif
}
#else
#if W_UNIFORM
// At most 64 KiB, in a uniform buffer of exactly that size (graph::UNIFORM_WINDOW_BYTES).
@group(0) @binding(2) var<uniform> weight_uniform: array<vec4<f32>, 4096>;
#else
#if VEC4
@group(0) @binding(2) var<storage, read> weight: array<vec4<f32>>;
#else
@group(0) @binding(2) var<storage, read> weight: array<f32>;
#endif
#endif
#endif
@group(0) @binding(3) var<storage, read> bias: array<f32>;
#if OUT_TEXTURE
@group(0) @binding(4) var out_texture: texture_storage_2d<rgba32float, write>;
#else
#if OUT_NHWC
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;
#else
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
#endif
#endif

override WG_M: u32 = 8u;
override WG_N: u32 = 8u;
override BIAS: bool = false;
override ACT: u32 = 0u;
// The weight is the texture `weight_texture`, or the uniform buffer `weight_uniform` (header).
override W_TEXTURE: bool = false;
override W_UNIFORM: bool = false;
// The output is channel-last, [B, Ho, Wo, Cout] (one group, Cout % 4 == 0), and with OUT_TEXTURE
// a flat texture (see the header).
override OUT_NHWC: bool = false;
override OUT_TEXTURE: bool = false;

#let W_BOUND_ELSEWHERE = W_TEXTURE + W_UNIFORM
#if !W_BOUND_ELSEWHERE
#if VEC4
fn load_w(i: u32) -> f32 { return weight[i >> 2u][i & 3u]; }
fn load_w4(i: u32) -> vec4<f32> { return weight[i >> 2u]; }
#else
fn load_w(i: u32) -> f32 { return weight[i]; }
fn load_w4(i: u32) -> vec4<f32> { return vec4<f32>(weight[i], weight[i + 1u], weight[i + 2u], weight[i + 3u]); }
#endif
#endif

struct Tile {
    m0: u32,
    n0: u32,
    a_off: u32,
    b_off: u32,
    // Top-left input coordinate (oh*sh - ph, ow*sw - pw) of the tile's pixels, 4 per group.
    ih0: array<vec4<i32>, 2>,
    iw0: array<vec4<i32>, 2>,
}

// The taps (ci, i, j) of reduction indices k .. k+3.
struct KStep {
    k: u32,
    r0: vec3<u32>,
    r1: vec3<u32>,
    r2: vec3<u32>,
    r3: vec3<u32>,
}

fn tap_next(r: vec3<u32>) -> vec3<u32> {
    var c = r.x;
    var i = r.y;
    var j = r.z + 1u;
    let wrap_j = j == params.kernel_w;
    j = select(j, 0u, wrap_j);
    i = select(i, i + 1u, wrap_j);
    let wrap_i = i == params.kernel_h;
    i = select(i, 0u, wrap_i);
    c = select(c, c + 1u, wrap_i);
    return vec3<u32>(c, i, j);
}

fn k_from(k: u32, r0: vec3<u32>) -> KStep {
    let r1 = tap_next(r0);
    let r2 = tap_next(r1);
    return KStep(k, r0, r1, r2, tap_next(r2));
}

fn k_first(t: Tile) -> KStep {
    return k_from(0u, vec3<u32>(0u));
}

fn k_advance(s: KStep) -> KStep {
    return k_from(s.k + 4u, tap_next(s.r3));
}

// W[m, k .. k+3] for output channel row m (clamped); zero at k >= K in the masked step.
fn a_row(t: Tile, m: u32, k: u32, masked: bool) -> vec4<f32> {
#if W_TEXTURE
    // K % 4 == 0, so no step is masked.
    return weight_texture_at(t.a_off + min(m, params.m - 1u) * params.k + k);
#else
#if W_UNIFORM
    // K % 4 == 0, so no step is masked.
    return weight_uniform[(t.a_off + min(m, params.m - 1u) * params.k + k) >> 2u];
#else
    let K = params.k;
    let base = t.a_off + min(m, params.m - 1u) * K;
    if (!masked) {
        return load_w4(base + k);
    }
    let kk = vec4<u32>(k) + vec4<u32>(0u, 1u, 2u, 3u);
    let i = base + min(kk, vec4<u32>(K - 1u));
    let w = vec4<f32>(load_w(i.x), load_w(i.y), load_w(i.z), load_w(i.w));
    return select(vec4<f32>(0.0), w, kk < vec4<u32>(K));
#endif
#endif
}

fn a_block(t: Tile, q: u32, s: KStep, masked: bool) -> mat4x4<f32> {
    let m = t.m0 + 4u * q;
    return mat4x4<f32>(a_row(t, m, s.k, masked), a_row(t, m + 1u, s.k, masked), a_row(t, m + 2u, s.k, masked),
                       a_row(t, m + 3u, s.k, masked));
}

// X[tap r (index kk), pixels n0+4g .. n0+4g+3].
fn b_row(t: Tile, g: u32, r: vec3<u32>, kk: u32) -> vec4<f32> {
    let H = i32(params.in_h);
    let W = i32(params.in_w);
    let ih = t.ih0[g] + vec4<i32>(i32(r.y * params.dil_h));
    let iw = t.iw0[g] + vec4<i32>(i32(r.z * params.dil_w));
    let inside = (ih >= vec4<i32>(0)) & (ih < vec4<i32>(H)) & (iw >= vec4<i32>(0)) & (iw < vec4<i32>(W))
               & vec4<bool>(kk < params.taps);
    let plane = t.b_off + r.x * params.in_h * params.in_w;
    let idx = select(vec4<u32>(t.b_off), vec4<u32>(plane) + vec4<u32>(ih) * params.in_w + vec4<u32>(iw), inside);
    let v = vec4<f32>(x[idx.x], x[idx.y], x[idx.z], x[idx.w]);
    return select(vec4<f32>(0.0), v, inside);
}

fn b_block(t: Tile, g: u32, s: KStep, masked: bool) -> mat4x4<f32> {
    return mat4x4<f32>(b_row(t, g, s.r0, s.k), b_row(t, g, s.r1, s.k + 1u), b_row(t, g, s.r2, s.k + 2u), b_row(t, g, s.r3, s.k + 3u));
}

#if !OUT_NHWC
// Epilogue for out[batch, m, n .. n+3] (batch = b*groups + g, m the channel within the group).
fn store_row(batch: u32, m: u32, n: u32, acc: vec4<f32>) {
    let M = params.m;
    let N = params.n;
    if (m >= M || n >= N) {
        return;
    }
    var v = acc;
#if BIAS
    v += vec4<f32>(bias[(batch % params.groups) * M + m]);
#endif
    let o = (batch * M + m) * N + n;
    for (var i = 0u; i < min(4u, N - n); i++) {
        out[o + i] = activated(v[i]);
    }
}
#endif

#if OUT_NHWC
// Epilogue for channels m .. m+3 of pixels n .. n+3 of image `batch`, channel-last: column i of
// the transposed block is pixel n+i's 4 channels, one vec4 store (M % 4 == 0, so a block is
// whole along the channels or past them).
fn store_block(batch: u32, m: u32, n: u32, c: mat4x4<f32>) {
    let M = params.m;
    let N = params.n;
    if (m >= M) {
        return;
    }
    var b4 = vec4<f32>(0.0);
#if BIAS
    b4 = vec4<f32>(bias[m], bias[m + 1u], bias[m + 2u], bias[m + 3u]);
#endif
    let pixels = transpose(c);
#for I in 0..4
    if (n + I < N) {
        let o = (batch * N + n + I) * M + m;
#if OUT_TEXTURE
        textureStore(out_texture, flat_coords(o), activated4(pixels[I] + b4));
#else
        out[o >> 2u] = activated4(pixels[I] + b4);
#endif
    }
#endfor
}
#else
fn store_block(batch: u32, m: u32, n: u32, c: mat4x4<f32>) {
    store_row(batch, m, n, c[0]);
    store_row(batch, m + 1u, n, c[1]);
    store_row(batch, m + 2u, n, c[2]);
    store_row(batch, m + 3u, n, c[3]);
}
#endif

// Top-left input coordinates (row, column) of output pixels p .. p+3 (clamped to the last pixel).
fn tile_origin(p: u32) -> array<vec4<i32>, 2> {
    let pv = min(vec4<u32>(p) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(params.n - 1u));
    let oh = pv / params.out_w;
    let ow = pv % params.out_w;
    return array<vec4<i32>, 2>(vec4<i32>(oh * params.stride_h) - vec4<i32>(i32(params.pad_h)),
                               vec4<i32>(ow * params.stride_w) - vec4<i32>(i32(params.pad_w)));
}

@compute @workgroup_size(WG_N, WG_M)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let p = tile_position(wid, nwg, lane);
    if (!p.valid) {
        return;
    }
    let c0 = tile_origin(p.n0);
    let c1 = tile_origin(p.n0 + 4u);
    let a_off = (p.batch % params.groups) * params.m * params.k;
    let t = Tile(p.m0, p.n0, a_off, p.batch * params.in_c * params.in_h * params.in_w,
                 array<vec4<i32>, 2>(c0[0], c1[0]), array<vec4<i32>, 2>(c0[1], c1[1]));
    gemm_store(p.batch, t, gemm_accumulate(t));
}
