// vicinity_gate.wgsl — the end of VVT's vicinity attention plus the block's residual add:
//     c = clampmag(y);  out = residual + clampmag(c + c · s[b])
// with y = out_proj(o) (bias included), s [B, C] the SE gate (sigmoid output) broadcast over the
// N tokens of image b. `c + c·s` (not `c·(1 + s)`) keeps the reference's rounding.
// clampmag(t) = sign(t) · clamp(|t|, 1e-4, 1e4) (exact zeros stay zero).
//
// Bindings: 0 params, 1 y (read, [B, N, C]), 2 s (read, [B, C]), 3 residual (read, [B, N, C]),
//           4 out (write, [B, N, C]).
// Dispatch: RUN consecutive elements per invocation; ceil(total / (WG·RUN)) workgroups folded
//   into (x, y) by `ops::grid`. Workgroup memory: none.

struct Params {
    total: u32,
    c: u32,
    nc: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> s: array<f32>;
@group(0) @binding(3) var<storage, read> residual: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

override WG: u32 = 64u;
override RUN: u32 = 4u;

fn clampmag(t: f32) -> f32 {
    return sign(t) * clamp(abs(t), 1e-4, 1e4);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let first = ((wid.x + wid.y * nwg.x) * WG + lid) * RUN;
    for (var r = 0u; r < RUN; r++) {
        let e = first + r;
        if (e >= params.total) {
            return;
        }
        let gate = s[(e / params.nc) * params.c + e % params.c];
        let cy = clampmag(y[e]);
        out[e] = residual[e] + clampmag(cy + cy * gate);
    }
}
