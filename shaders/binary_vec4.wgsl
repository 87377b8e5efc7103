// binary_vec4.wgsl — binary.wgsl four elements at a time: c = act(a OP b), b broadcast to a's
// shape, for shapes whose last axis is a multiple of 4 and runs contiguously in b too (b's
// last-axis stride 1 and its other strides multiples of 4: equal shapes, per-channel gates of a
// channel-last map, ...). A quarter of the loads and of the index arithmetic of binary.wgsl: on
// CPU devices (lavapipe runs every storage load as a per-lane loop) that is most of its cost.
//
// Bindings: 0 params (shape and strides in vec4 units: d3 = D3 / 4, bs0..bs2 = strides / 4),
// 1 a (read, contiguous, as vec4), 2 b (read, as vec4, addressed through bs0..bs2 and the vec4
// index along the last axis), 3 c (write, as vec4).
// Dispatch: ceil(n / WG) workgroups folded into (x, y), n = numel / 4; one vec4 per invocation.
// OP: 0 add, 1 sub, 2 mul. Workgroup memory: none.

struct Params {
    n: u32,
    d1: u32,
    d2: u32,
    d3: u32,
    bs0: u32,
    bs1: u32,
    bs2: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;

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
    let bv = b[i0 * params.bs0 + i1 * params.bs1 + i2 * params.bs2 + i3];
    let av = a[i];
    var v: vec4<f32>;
    switch OP {
        case 1u: { v = av - bv; }
        case 2u: { v = av * bv; }
        default: { v = av + bv; }
    }
    c[i] = vec4<f32>(activate(v.x, ACT), activate(v.y, ACT), activate(v.z, ACT), activate(v.w, ACT));
}
