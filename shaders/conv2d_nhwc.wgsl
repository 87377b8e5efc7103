// conv2d_nhwc.wgsl — dense 2-D convolution on channel-last maps, computed directly (no im2col):
//     out[b, oh, ow, co] = act(bias[co] + Σ_{i < KH, j < KW, ci} w[i, j, ci, co]
//                                         · x[b, oh·SH − ph + i·DH, ow·SW − pw + j·DW, ci]),
// zeros outside the map.
// Why a direct kernel: on a CPU device every load is the cost (a storage load is a loop over the
// SIMD lanes on lavapipe, a texel fetch a vectorised gather), and the implicit GEMM of
// conv2d.wgsl gathers each im2col element on its own, KH·KW times per input value. Here an
// invocation owns a run of TP output columns of one row and 4 output channels: per kernel row
// and group of 4 input channels it fetches the run's input span once, (TP − 1)·SW + (KW − 1)·DW
// + 1 vec4s (one texel each: channels are innermost), and each of the KW taps' 4 × 4 weight
// blocks once, and feeds them to all TP outputs. A 3×3 stride-1 conv with TP = 16 fetches 18 +
// 12 vec4s per kernel row and 4 input channels for 768 FMAs, one per 26; the 16 × 4
// implicit-GEMM tile loads one value per 8 FMAs.
//
// Bindings: 0 params, 1 x [B, H, W, Cin] (vec4 over channels, or `x_texture`), 2 w [KH, KW,
// Cin, Cout] (vec4 over output channels, or `w_texture` / `w_uniform`), 3 bias [Cout] (the host
// binds its placeholder there when BIAS is false), 4 out [B, Ho, Wo, Cout] (or `out_texture`).
// Cin % 4 == 0 and Cout % 4 == 0 (the host checks). With X_TEXTURE / W_TEXTURE / OUT_TEXTURE the
// tensor is a flat rgba32float texture (flat_texture.wgsl): a constant weight on software
// devices, activations `Graph::with_activation_textures` moved to textures on lavapipe. With
// W_UNIFORM (lavapipe, a constant weight of at most 64 KiB, `Graph::constant_uniform`) the weight
// is a uniform buffer.
// Dispatch: one invocation per (b, oh, run of TP columns, group of 4 output channels), the
// channel group fastest (neighbours fetch the same input texels; lib/channel_runs.wgsl), `total`
// in all, WG per workgroup, ceil(total / WG) workgroups folded into (x, y) by `ops::grid`.
// Registers: TP accumulator vec4s, the span (≤ SPAN_MAX vec4s), 4 weight vec4s; every loop
// over them is written out by the preprocessor (`#for`), so every index is a constant (a rolled
// index would put the array in scratch memory, a per-lane loop on CPU devices). The kernel-row
// and input-channel loops stay rolled. Workgroup memory: none.
// requires: activations, flat_texture, channel_runs

struct Params {
    total: u32,      // invocations: B * Ho * col_blocks * Cout/4
    cin4: u32,       // Cin / 4
    cout4: u32,      // Cout / 4
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    col_blocks: u32, // ceil(Wo / TP)
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
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
#endif
#if W_TEXTURE
@group(0) @binding(2) var w_texture: FlatTexture;
// Elements i .. i+3 (i a multiple of 4) of `w_texture` (flat_texture.wgsl).
fn w_texture_at(i: u32) -> vec4<f32> {
#if FLAT_IMAGE
    return textureLoad(w_texture, flat_coords(i));
#else
    return textureLoad(w_texture, flat_coords(i), 0);
#endif
}
#else
#if W_UNIFORM
// At most 64 KiB, in a uniform buffer of exactly that size (graph::UNIFORM_WINDOW_BYTES).
@group(0) @binding(2) var<uniform> w_uniform: array<vec4<f32>, 4096>;
#else
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
#endif
#endif
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
#if OUT_TEXTURE
@group(0) @binding(4) var out_texture: texture_storage_2d<rgba32float, write>;
#else
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;
#endif

override WG: u32 = 64u;
override KH: u32 = 3u;
override KW: u32 = 3u;
override SH: u32 = 1u;
override SW: u32 = 1u;
override DH: u32 = 1u;
override DW: u32 = 1u;
// Output columns per invocation, 1 ..= TP_MAX (the host keeps the span within SPAN_MAX).
override TP: u32 = 16u;
override BIAS: bool = false;
override ACT: u32 = 0u;
override X_TEXTURE: bool = false;
override W_TEXTURE: bool = false;
override W_UNIFORM: bool = false;
override OUT_TEXTURE: bool = false;

// Capacities (the host keeps TP and the span within them).
const TP_MAX: u32 = 16u;
const SPAN_MAX: u32 = 40u;

// x[row, iw, channels 4·c4 .. 4·c4 + 3], zero outside the map (`row` = b·H + ih, valid when
// `row_ok`).
fn load_x(row: u32, row_ok: bool, iw: i32, c4: u32) -> vec4<f32> {
    // `&`, not `&&`: a short-circuit is a branch, and SwiftShader's compile time grows with the
    // branches of written-out code.
    let ok = row_ok & (iw >= 0) & (iw < i32(params.in_w));
    let i = select(0u, (row * params.in_w + u32(iw)) * params.cin4 + c4, ok);
#if X_TEXTURE
    return select(vec4<f32>(0.0), x_texture_at(4u * i), ok);
#else
    return select(vec4<f32>(0.0), x[i], ok);
#endif
}

// Output channels 4·co4 .. 4·co4 + 3 of weight row i (in vec4s: ((kh·KW + kw)·Cin + ci)·Cout/4 + co4).
fn load_w(i: u32) -> vec4<f32> {
#if W_TEXTURE
    return w_texture_at(4u * i);
#else
#if W_UNIFORM
    return w_uniform[i];
#else
    return w[i];
#endif
#endif
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let cout4 = params.cout4;
    let at = run_position(wid, nwg, lid, cout4);
    if (!at.valid) {
        return;
    }
    let b = at.b;
    let oh = at.oh;
    let cb = at.cb;
    let co4 = at.cg;

    var b0 = vec4<f32>(0.0);
#if BIAS
    b0 = bias[co4];
#endif
    var acc: array<vec4<f32>, TP_MAX>;
#for P in 0..TP
    acc[P] = b0;
#endfor

    let iw0 = i32(cb * TP * SW) - i32(params.pad_w);
    // Weight vec4s between input channels, and between taps.
    let w_ci = cout4;
    let w_tap = 4u * params.cin4 * cout4;
    // A zero the driver cannot see through (`nwg.z` is 1) in the channel loop's bound: Mesa
    // 22.3's lavapipe inlines uniforms that alone decide a loop, and compiles a variant for every
    // distinct value (gemm_tile.wgsl's `k_opaque_zero`).
    let cin4 = params.cin4 + nwg.z - 1u;
    for (var i = 0u; i < KH; i++) {
        let ih = i32(oh * SH + i * DH) - i32(params.pad_h);
        let row_ok = (ih >= 0) & (ih < i32(params.in_h));
        let row = b * params.in_h + u32(max(ih, 0));
        for (var c4 = 0u; c4 < cin4; c4++) {
            var span: array<vec4<f32>, SPAN_MAX>;
#for Q in 0..(TP - 1) * SW + (KW - 1) * DW + 1
            span[Q] = load_x(row, row_ok, iw0 + i32(Q), c4);
#endfor
#for J in 0..KW
            {
                let wi = (i * KW + J) * w_tap + 4u * c4 * w_ci + co4;
                let wm = mat4x4<f32>(load_w(wi), load_w(wi + w_ci), load_w(wi + 2u * w_ci), load_w(wi + 3u * w_ci));
#for P in 0..TP
                acc[P] += wm * span[P * SW + J * DW];
#endfor
            }
#endfor
        }
    }

    let ow0 = cb * TP;
    let o = ((b * params.out_h + oh) * params.out_w + ow0) * cout4 + co4;
#for P in 0..TP
    if (ow0 + P < params.out_w) {
        store_out(o + P * cout4, acc[P]);
    }
#endfor
}
