// vicinity_kv_reduce.wgsl — VVT vicinity attention: sums the per-chunk partials of
// vicinity_kv(_vec4).wgsl ([chunks, B·heads, 4d, d+1], column d = ksum) and splits them into
// KV = clampmag(Σ φ_kᵀ v) ([B·heads, 4d, d]) and ksum = Σ φ_k ([B·heads, 4d], NOT clamped, as
// in the official code). clampmag(t) = sign(t) · clamp(|t|, 1e-4, 1e4) (exact zeros stay zero).
//
// Bindings: 0 params, 1 partials (read, [chunks, total]), 2 kv (write, [B·heads, 4d, d]),
//           3 ksum (write, [B·heads, 4d]).
// Dispatch: one invocation per partial column (total = B·heads·4d·(d+1)); ceil(total / WG)
//   workgroups folded into (x, y). Each invocation adds its `chunks` partials in chunk order
//   (deterministic, at most 64 terms).
// Workgroup memory: none.

struct Params {
    total: u32,
    chunks: u32,
    d: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> kv: array<f32>;
@group(0) @binding(3) var<storage, read_write> ksum: array<f32>;

override WG: u32 = 64u;

fn clampmag(t: f32) -> f32 {
    return sign(t) * clamp(abs(t), 1e-4, 1e4);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let e = (wid.x + wid.y * nwg.x) * WG + lid;
    if (e >= params.total) {
        return;
    }
    var s = 0.0;
    for (var c = 0u; c < params.chunks; c++) {
        s += partials[c * params.total + e];
    }
    let row = e / (params.d + 1u);
    let j = e % (params.d + 1u);
    if (j == params.d) {
        ksum[row] = s;
    } else {
        kv[row * params.d + j] = clampmag(s);
    }
}
