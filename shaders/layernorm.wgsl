// layernorm.wgsl — y = (x - mean) / sqrt(var + eps) * gamma + beta over the last dim of x.
//
// x is `rows` rows of `c` contiguous elements (channels-last tokens); var is the biased variance.
// Statistics never form E[x²] - E[x]² (which would cancel catastrophically under a large common
// offset, x + 1000). With LANES = 1 (an invocation per row: CPU-like devices) they take one pass,
// Welford's update per component on the row less its first element (the running mean moves by
// (v - mean) / n, M2 by (v - mean_old) * (v - mean_new)), then Chan's merge of the components
// (lib/moments.wgsl): the row is read twice in all, not three times, and on lavapipe every
// storage load is a per-lane loop. With more lanes they are two-pass: the mean (summed relative to the row's first element, so its rounding
// scales with the spread of the row rather than with the offset), then the sum of squares
// centred on it, each reduced across the row's lanes.
//
// Element type V from lib/elem.wgsl: f32, or vec4<f32> (VEC4) when the row length is a multiple of 4;
// `c` counts V elements, ELEMS floats each.
// Bindings: 0 params, 1 x [rows, c] (read), 2 gamma [c] (read), 3 beta [c] (read),
//           4 y [rows, c] (write; with Y_TEXTURE a write-only flat rgba32float storage texture).
//           With ADD, 4 add [add_rows, c] (read), added to the normalised rows (row r takes add
//           row r % add_rows: LaViT's position embedding over a batch), and y moves to 5.
//           A layer without affine binds constant ones / zeros. With X_UNIFORM / AFFINE_UNIFORM
//           (VEC4, lavapipe) x (`Graph::with_activation_uniforms`), and gamma and beta (constants,
//           `Graph::constant_uniform`), are uniform buffers of 64 KiB: one gather across the SIMD
//           lanes there, where a storage load is a loop over them.
// Dispatch: ceil(rows / (WG / LANES)) workgroups folded into (x, y) by `ops::grid`.
//   LANES invocations share one row (LANES a power of two dividing WG); LANES = 1 means every
//   invocation loops over a whole row alone — no barriers and no workgroup memory traffic, which
//   is what a CPU device (lavapipe) runs fastest for short rows.
// Lanes of a row combine their sums with `lanes_reduce` (lib/row_lanes.wgsl).
// Workgroup memory: WG f32 (row_lanes.wgsl) = 256 B at WG = 64.
// requires: elem, flat_texture, moments, row_lanes

struct Params {
    rows: u32,
    c: u32,
    eps: f32,
    // ADD: rows of `add`, repeated over x's rows.
    add_rows: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
#if X_UNIFORM
@group(0) @binding(1) var<uniform> x: array<vec4<f32>, 4096>;
#else
@group(0) @binding(1) var<storage, read> x: array<V>;
#endif
#if AFFINE_UNIFORM
@group(0) @binding(2) var<uniform> gamma: array<vec4<f32>, 4096>;
@group(0) @binding(3) var<uniform> beta: array<vec4<f32>, 4096>;
#else
@group(0) @binding(2) var<storage, read> gamma: array<V>;
@group(0) @binding(3) var<storage, read> beta: array<V>;
#endif
#if ADD
@group(0) @binding(4) var<storage, read> add: array<V>;
#if Y_TEXTURE
@group(0) @binding(5) var y_texture: texture_storage_2d<rgba32float, write>;
#else
@group(0) @binding(5) var<storage, read_write> y: array<V>;
#endif
#else
#if Y_TEXTURE
@group(0) @binding(4) var y_texture: texture_storage_2d<rgba32float, write>;
#else
@group(0) @binding(4) var<storage, read_write> y: array<V>;
#endif
#endif

override WG: u32 = 64u;
override LANES: u32 = 1u;
// y is a flat texture (VEC4 only), written as a storage texture: an activation
// `Graph::with_activation_textures` moved to a texture, read by matmuls as A_TEXTURE / B_TEXTURE.
override Y_TEXTURE: bool = false;
// x, and gamma and beta, are uniform buffers (VEC4 only; header).
override X_UNIFORM: bool = false;
override AFFINE_UNIFORM: bool = false;
// A tensor added to the output (header).
override ADD: bool = false;


// One row's (mean, M2) in one pass (LANES = 1): Welford's update per component over the row's
// `c` elements less its first one, then the components merged (lib/moments.wgsl). The shift keeps
// the running mean near 0, where its rounding at each update scales with the row's spread: around
// a common offset (x + 1000) every update would round to the offset's ulp.
fn row_moments(base: u32, c: u32) -> Moments {
    let shift = first(x[base]);
    var mean = splat(0.0);
    var m2 = splat(0.0);
    for (var k = 0u; k < c; k++) {
        welford(&mean, &m2, x[base + k] - splat(shift), k + 1u);
    }
    let row = component_moments(c, mean, m2);
    return Moments(row.n, shift + row.mean, row.m2);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let lane = lid % LANES;
    let row = (wid.x + wid.y * nwg.x) * (WG / LANES) + lid / LANES;
    // Rows past the end keep running (with no work) because every lane must reach the barriers.
    let in_range = row < params.rows;
    let c = params.c;
    let base = row * c;

    let n = f32(c) * ELEMS;
    var mean = 0.0;
    var rstd = 0.0;
    if (LANES == 1u) {
        if (in_range) {
            let moments = row_moments(base, c);
            mean = moments.mean;
            rstd = 1.0 / sqrt(moments.m2 / n + params.eps);
        }
    } else {
        var shift = 0.0;
        var s = 0.0;
        if (in_range) {
            shift = first(x[base]);
            var sv = splat(0.0);
            for (var k = lane; k < c; k += LANES) {
                sv += x[base + k] - splat(shift);
            }
            s = hsum(sv);
        }
        s = lanes_reduce(lid, s, false);
        mean = shift + s / n;

        var q = 0.0;
        if (in_range) {
            var qv = splat(0.0);
            for (var k = lane; k < c; k += LANES) {
                let d = x[base + k] - splat(mean);
                qv += d * d;
            }
            q = hsum(qv);
        }
        q = lanes_reduce(lid, q, false);
        rstd = 1.0 / sqrt(q / n + params.eps);
    }

    if (in_range) {
#if ADD
        let add_base = (row % params.add_rows) * c;
#endif
        for (var k = lane; k < c; k += LANES) {
#if ADD
            let v = (x[base + k] - splat(mean)) * splat(rstd) * gamma[k] + beta[k] + add[add_base + k];
#else
            let v = (x[base + k] - splat(mean)) * splat(rstd) * gamma[k] + beta[k];
#endif
#if Y_TEXTURE
            textureStore(y_texture, flat_coords((base + k) * 4u), v);
#else
            y[base + k] = v;
#endif
        }
    }
}
