// binary.wgsl — c = act(a OP b) with b broadcast to a's shape (numpy rules, rank <= 4).
//
// Element type V from lib/elem.wgsl: f32, or vec4<f32> (VEC4) where the last axis is a multiple
// of 4 and runs contiguously in b too (its last-axis stride 1, its other strides multiples of 4);
// n, d3 and the strides count V elements.
// Bindings: 0 params, 1 a (read, contiguous, shape [d0,d1,d2,d3]), 2 b (read, addressed through
// the strides bs0..bs3 — 0 on a broadcast axis), 3 c (write, same shape as a).
// Dispatch: ceil(n / WG) workgroups folded into (x, y); one V per invocation.
// OP: 0 add, 1 sub, 2 mul. Workgroup memory: none.
// requires: elem

struct Params {
    n: u32,
    d1: u32,
    d2: u32,
    d3: u32,
    bs0: u32,
    bs1: u32,
    bs2: u32,
    bs3: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<V>;
@group(0) @binding(2) var<storage, read> b: array<V>;
@group(0) @binding(3) var<storage, read_write> c: array<V>;

override OP: u32 = 0u;
override ACT: u32 = 0u;
override WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= params.n) {
        return;
    }
    let i3 = i % params.d3;
    var r = i / params.d3;
    let i2 = r % params.d2;
    r = r / params.d2;
    let i1 = r % params.d1;
    let i0 = r / params.d1;
    let bv = b[i0 * params.bs0 + i1 * params.bs1 + i2 * params.bs2 + i3 * params.bs3];
    let av = a[i];
    var v: V;
    switch OP {
        case 1u: { v = av - bv; }
        case 2u: { v = av * bv; }
        default: { v = av + bv; }
    }
    c[i] = activated_v(v);
}
