// atrous_dwconv.wgsl — summed dilated depthwise 3×3 convolutions on a channel-last map (ACC-ViT's
// atrous MBConv), with a per-channel bias and an activation fused:
//     out[b, oh, ow, c] = act(bias[c] + Σ_{i < NB} Σ_{ky, kx < 3} w[i, ky, kx, c]
//                                  · x[b, oh·S + (ky − 1)·(i + 1), ow·S + (kx − 1)·(i + 1), c])
// i.e. NB parallel depthwise convs with dilation d = i + 1 and padding d (so every branch has the
// same output size, (H − 1) / S + 1), zeros outside the image. The model folds the BatchNorm that
// follows the sum into `w` (scale) and `bias`, so one pass replaces three convs, a sum, a BN and a
// GELU. With NB = 1, S = 2 and a 2×2 box of ¼ in the lower-right taps it is a 2×2/2 average pool.
//
// Bindings: 0 params, 1 x [B, H, W, C] (vec4 over channels), 2 w [NB, 3, 3, C] (tap-major, the
// channels innermost so a vec4 of four channels is one load), 3 bias [C] (the host binds its
// placeholder there when BIAS is false), 4 out [B, Ho, Wo, C]. C % 4 == 0 (checked by the host).
// With W_UNIFORM (lavapipe, constants of at most 64 KiB, `Graph::constant_uniform`) w and the
// bias are uniform buffers: one gather across the SIMD lanes there instead of a loop over them;
// with X_UNIFORM (lavapipe, one branch: the 2×2 average pool, whose inputs are ACC-ViT's stage
// inputs, at most 64 KiB in the digit model) x is one too (`Graph::with_activation_uniforms`).
// Dispatch: one invocation per (b, oh, run of TP output columns, group of 4 channels), channel
// group fastest (neighbouring invocations read neighbouring 16-byte vectors of the same pixel),
// `total` in all (lib/channel_runs.wgsl), WG per workgroup, ceil(total / WG) workgroups folded
// into (x, y) by `ops::grid`.
// Registers: the NB·9 ≤ 27 weight vec4s of the channel group, loaded once and reused for the TP
// outputs of the run; the preprocessor writes their loops out (`#for`: NB is an override), so
// every index is a constant and they stay in registers (a rolled index would put them in scratch
// memory, a per-lane loop on CPU devices; SwiftShader does not unroll constant-trip loops). The
// centre tap is shared by every branch: its weights are summed once, so an output costs NB·8 + 1
// input loads (25 for NB = 3), not NB·9.
// With X_TEXTURE (lavapipe: an activation `Graph::with_activation_textures` moved to a flat
// texture, the expand GEMM's output in ACC-ViT's MBConv) each vec4 of channels is one texel
// fetch, a vectorised gather there where a storage load is a loop over the SIMD lanes; with
// OUT_TEXTURE each output vec4 is one texel store. Bindings 1 and 4 are then `x_texture` and
// `out_texture`.
// Workgroup memory: none.
// requires: activations, flat_texture, channel_runs

struct Params {
    total: u32,      // invocations: B * Ho * col_blocks * C4
    c4: u32,         // C / 4
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    col_blocks: u32, // ceil(Wo / TP)
    _pad: u32,
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
#if X_UNIFORM
@group(0) @binding(1) var<uniform> x: array<vec4<f32>, 4096>;
#else
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
#endif
#endif
#if W_UNIFORM
// Each at most 64 KiB, in uniform buffers of exactly that size (graph::UNIFORM_WINDOW_BYTES).
@group(0) @binding(2) var<uniform> w: array<vec4<f32>, 4096>;
#if BIAS
@group(0) @binding(3) var<uniform> bias: array<vec4<f32>, 4096>;
#else
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
#endif
#else
@group(0) @binding(2) var<storage, read> w: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
#endif
#if OUT_TEXTURE
@group(0) @binding(4) var out_texture: texture_storage_2d<rgba32float, write>;
#else
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;
#endif

override WG: u32 = 64u;
// Branches (dilations 1 .. NB), 1 ..= 3.
override NB: u32 = 3u;
// Stride, 1 or 2.
override S: u32 = 1u;
// Output columns per invocation.
override TP: u32 = 4u;
override BIAS: bool = false;
override ACT: u32 = 0u;
override X_TEXTURE: bool = false;
override OUT_TEXTURE: bool = false;
// The weights and the bias are uniform buffers (header).
override W_UNIFORM: bool = false;
// x is a uniform buffer (an activation of at most 64 KiB; header).
override X_UNIFORM: bool = false;
// The run of TP outputs written out with shared input fetches (see `main`), not a loop.
override RUN_WRITTEN_OUT: bool = false;

const MAX_NB: u32 = 3u;

fn load_x(row_base: u32, ih: i32, iw: i32, cg: u32) -> vec4<f32> {
    // `&`, not `&&`: a short-circuit is a branch, and SwiftShader's compile time grows
    // exponentially with the branches of a written-out loop (`conv2d_depthwise.wgsl`).
    let ok = (ih >= 0) & (ih < i32(params.in_h)) & (iw >= 0) & (iw < i32(params.in_w));
    let i = select(0u, (row_base + u32(ih)) * params.in_w + u32(iw), ok) * params.c4 + cg;
#if X_TEXTURE
    return select(vec4<f32>(0.0), x_texture_at(4u * i), ok);
#else
    return select(vec4<f32>(0.0), x[i], ok);
#endif
}

// Output column iw / S of input row ih: the centre tap (its weights summed over the branches, in
// `wc`) plus each branch's 8 outer taps, in that order. `wo` is indexed by constants only.
fn output_at(wo: array<array<vec4<f32>, 8>, MAX_NB>, wc: vec4<f32>, b0: vec4<f32>, row_base: u32, ih: i32, iw: i32, cg: u32) -> vec4<f32> {
    var acc = fma(wc, load_x(row_base, ih, iw, cg), b0);
#for I in 0..NB
#for T in 0..8
    {
        let tap = select(T, T + 1u, T >= 4u);
        let dy = (i32(tap / 3u) - 1) * i32(I + 1u);
        let dx = (i32(tap % 3u) - 1) * i32(I + 1u);
        acc = fma(wo[I][T], load_x(row_base, ih + dy, iw + dx, cg), acc);
    }
#endfor
#endfor
    return acc;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let c4 = params.c4;
    let at = run_position(wid, nwg, lid, c4);
    if (!at.valid) {
        return;
    }
    let b = at.b;
    let oh = at.oh;
    let cb = at.cb;
    let cg = at.cg;

    // Weights of this channel group: 8 outer taps per branch, plus the shared centre.
    var wo: array<array<vec4<f32>, 8>, MAX_NB>;
    var wc = vec4<f32>(0.0);
#for I in 0..NB
#for T in 0..9
#if T == 4
    wc += w[(I * 9u + T) * c4 + cg];
#else
    wo[I][select(T, T - 1u, T > 4u)] = w[(I * 9u + T) * c4 + cg];
#endif
#endfor
#endfor
    var b0 = vec4<f32>(0.0);
#if BIAS
    b0 = bias[cg];
#endif

    let row_base = b * params.in_h;
    let ih = i32(oh * S);
#if RUN_WRITTEN_OUT
    // The run's TP outputs written out, every input column an offset from one base: the fetches
    // two outputs share (at S = 2, 11 of an output's 25 with the next one's) are then the same
    // expression, and the compiler fetches them once. Outputs past the map's edge are computed
    // from zero-padded reads and not stored.
    let iw0 = i32(cb * TP * S);
#for J in 0..TP
    {
        let ow = cb * TP + J;
        let acc = output_at(wo, wc, b0, row_base, ih, iw0 + i32(J * S), cg);
        if (ow < params.out_w) {
            store_out(((b * params.out_h + oh) * params.out_w + ow) * c4 + cg, acc);
        }
    }
#endfor
#else
    let ow_end = min(cb * TP + TP, params.out_w);
    for (var ow = cb * TP; ow < ow_end; ow++) {
        let acc = output_at(wo, wc, b0, row_base, ih, i32(ow * S), cg);
        store_out(((b * params.out_h + oh) * params.out_w + ow) * c4 + cg, acc);
    }
#endif
}
