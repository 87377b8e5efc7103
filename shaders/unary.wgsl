// unary.wgsl — y = act(alpha * x + beta), element-wise. Covers scale/shift and every activation.
//
// Bindings: 0 params (uniform), 1 x (read), 2 y (write); x and y have `n` elements.
// Dispatch: ceil(n / WG) workgroups folded into (x, y) by `ops::grid`; one element per invocation.
// Workgroup memory: none.
// requires: activations

struct Params {
    n: u32,
    alpha: f32,
    beta: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

override ACT: u32 = 0u;
override WG: u32 = 256u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = (wid.x + wid.y * nwg.x) * WG + lid;
    if (i >= params.n) {
        return;
    }
    y[i] = activated(params.alpha * x[i] + params.beta);
}
