// layernorm.wgsl — y = (x - mean) / sqrt(var + eps) * gamma + beta over the last dim of x.
//
// x is `rows` rows of `c` contiguous elements (channels-last tokens); var is the biased variance.
// Statistics are two-pass: the mean first, then the sum of squares *centred on that mean*, so a
// large common offset (x + 1000) costs no precision (E[x²] - E[x]² would cancel catastrophically).
// The mean itself is summed relative to the row's first element, so its rounding error scales
// with the spread of the row rather than with the offset.
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
// requires: elem, flat_texture, row_lanes

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


@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let lane = lid % LANES;
    let row = (wid.x + wid.y * nwg.x) * (WG / LANES) + lid / LANES;
    // Rows past the end keep running (with no work) because every lane must reach the barriers.
    let in_range = row < params.rows;
    let c = params.c;
    let base = row * c;

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
    let n = f32(c) * ELEMS;
    let mean = shift + s / n;

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
    let rstd = 1.0 / sqrt(q / n + params.eps);

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
