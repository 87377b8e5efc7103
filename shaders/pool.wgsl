// pool.wgsl — averaging kernels, selected by the MODE override:
//   MODE 0, avg_pool2d: x [P, H, W] (P = B * C planes) -> y [P, OH, OW], one invocation per
//     output; the window [oh*sh - ph, +kh) x [ow*sw - pw, +kw) is clipped to the padded input for
//     the `count_include_pad` divisor and to the input for the summed elements (PyTorch rules,
//     ceil_mode = false).
//   MODE 1, strided mean: y[o] = mean_k x[(o / inner) * len * inner + o % inner + k * inner],
//     k < len — mean_spatial is inner = 1, len = H*W; mean_tokens ([B, N, C]) is inner = C, len = N.
//     LANES invocations share an output (a power of two dividing WG): 1 = each invocation sums its
//     output alone (no barriers; right for many outputs), more for few long reductions.
//
// Bindings: 0 params, 1 x (read), 2 y (write). Fields of Params a mode does not use are 0.
// With X_UNIFORM (MODE 1, lavapipe: an activation of at most 64 KiB,
// `Graph::with_activation_uniforms`) x is a uniform buffer: one gather across the SIMD lanes
// there, where a storage load is a loop over them.
// Dispatch: MODE 0: ceil(n / WG) workgroups; MODE 1: ceil(n / (WG / LANES)); folded into (x, y).
// Workgroup memory: WG f32 (partial sums, MODE 1 with LANES > 1) = 256 B at WG = 64.

struct Params {
    n: u32,            // outputs
    inner: u32,        // MODE 1
    len: u32,          // MODE 1
    in_h: u32,         // MODE 0 from here on
    in_w: u32,
    out_h: u32,
    out_w: u32,
    kernel_h: u32,
    kernel_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_h: u32,
    pad_w: u32,
    count_include_pad: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
#if X_UNIFORM
@group(0) @binding(1) var<uniform> x_uniform: array<vec4<f32>, 4096>;
fn load_x(i: u32) -> f32 { return x_uniform[i >> 2u][i & 3u]; }
#else
@group(0) @binding(1) var<storage, read> x: array<f32>;
fn load_x(i: u32) -> f32 { return x[i]; }
#endif
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

override WG: u32 = 64u;
override MODE: u32 = 0u;
override LANES: u32 = 1u;
// x is a uniform buffer of 64 KiB (MODE 1; header).
override X_UNIFORM: bool = false;

var<workgroup> partial: array<f32, WG>;

fn avg_pool(o: u32) {
    let ow = o % params.out_w;
    let oh = (o / params.out_w) % params.out_h;
    let plane = o / (params.out_w * params.out_h);
    // Window bounds in padded coordinates (shifted by +pad so that they stay unsigned).
    let h0 = oh * params.stride_h;
    let w0 = ow * params.stride_w;
    let h1 = min(h0 + params.kernel_h, params.in_h + 2u * params.pad_h);
    let w1 = min(w0 + params.kernel_w, params.in_w + 2u * params.pad_w);
    let padded_count = (h1 - h0) * (w1 - w0);
    let hs = max(h0, params.pad_h) - params.pad_h;
    let ws = max(w0, params.pad_w) - params.pad_w;
    let he = min(h1 - params.pad_h, params.in_h);
    let we = min(w1 - params.pad_w, params.in_w);
    var s = 0.0;
    for (var h = hs; h < he; h++) {
        let row = (plane * params.in_h + h) * params.in_w;
        for (var w = ws; w < we; w++) {
            s += load_x(row + w);
        }
    }
    let count = select((he - hs) * (we - ws), padded_count, params.count_include_pad != 0u);
    y[o] = s / f32(count);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let wg_index = wid.x + wid.y * nwg.x;
    if (MODE == 0u) {
        let o = wg_index * WG + lid;
        if (o < params.n) {
            avg_pool(o);
        }
        return;
    }

    let lane = lid % LANES;
    let o = wg_index * (WG / LANES) + lid / LANES;
    let in_range = o < params.n; // lanes past the end still reach the barriers
    let inner = params.inner;
    let base = (o / inner) * params.len * inner + o % inner;
    var s = 0.0;
    if (in_range) {
        for (var k = lane; k < params.len; k += LANES) {
            s += load_x(base + k * inner);
        }
    }
    if (LANES > 1u) {
        partial[lid] = s;
        workgroupBarrier();
        for (var half = LANES / 2u; half > 0u; half /= 2u) {
            if (lane < half) {
                partial[lid] += partial[lid + half];
            }
            workgroupBarrier();
        }
        s = partial[lid - lane];
    }
    if (in_range && lane == 0u) {
        y[o] = s / f32(params.len);
    }
}
