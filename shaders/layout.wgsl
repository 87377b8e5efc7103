// layout.wgsl — strided copy: for every index (i_0 .. i_{rank-1}) of a box `dims`,
//   out[out_base + sum_k i_k * out_strides[k]] = x[in_base + sum_k i_k * in_strides[k]].
// permute (in strides permuted, out contiguous), slice (in offset and row stride) and concat
// (one node per input: out offset and row stride) are all this kernel with different params.
//
// Axis k = 0 is the *innermost* one (fastest-varying index). The host merges axes that stay
// contiguous on both sides and drops size-1 axes, so rank <= 6 here and usually 1-3.
// Uniform arrays need a 16-byte element stride, hence the vec4<u32> packing: axis k lives in
// component k % 4 of element k / 4.
//
// Bindings: 0 params, 1 x (read), 2 out (write; a concat writes disjoint parts in several nodes).
// Dispatch: ceil(n / WG) workgroups folded into (x, y) by `ops::grid`; invocation i copies the
// elements i*RUN .. i*RUN + RUN-1 of the box (n = ceil(numel / RUN)), decomposing its first index
// once and stepping the innermost axis after that — the divisions are what a CPU device pays for.
// Workgroup memory: none.

struct Params {
    n: u32,          // invocations with work: ceil(numel / RUN)
    numel: u32,      // elements in the box
    in_base: u32,
    out_base: u32,
    rank: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    dims: array<vec4<u32>, 2>,
    in_strides: array<vec4<u32>, 2>,
    out_strides: array<vec4<u32>, 2>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

override WG: u32 = 64u;
override RUN: u32 = 4u;

// (source, destination) addresses of the box element with linear index `linear`.
fn locate(linear: u32) -> vec2<u32> {
    var rest = linear;
    var at = vec2<u32>(params.in_base, params.out_base);
    for (var k = 0u; k < params.rank; k++) {
        let d = params.dims[k / 4u][k % 4u];
        let i = rest % d;
        rest /= d;
        at += i * vec2<u32>(params.in_strides[k / 4u][k % 4u], params.out_strides[k / 4u][k % 4u]);
    }
    return at;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let item = (wid.x + wid.y * nwg.x) * WG + lid;
    if (item >= params.n) {
        return;
    }
    let first = item * RUN;
    let d0 = params.dims[0].x;
    let step = vec2<u32>(params.in_strides[0].x, params.out_strides[0].x);
    let count = min(RUN, params.numel - first);
    var at = locate(first);
    var i0 = first % d0;
    for (var r = 0u; r < count; r++) {
        out[at.y] = x[at.x];
        i0 += 1u;
        if (i0 < d0) {
            at += step;
        } else {
            i0 = 0u; // carry into the outer axes: decompose afresh
            at = locate(first + r + 1u);
        }
    }
}
