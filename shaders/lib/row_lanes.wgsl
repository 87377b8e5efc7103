// row_lanes.wgsl — the reduction across the LANES invocations that share one row, for the row
// kernels (layernorm.wgsl, softmax.wgsl require it): a tree over workgroup memory after
// which every lane of the row holds the result. The including shader provides `override WG` and
// `override LANES` (a power of two dividing WG). With LANES = 1 it is the identity: no memory,
// no barriers. Call it in uniform control flow (it has barriers).
// Workgroup memory: WG f32 (256 B at WG = 64), reused by successive reductions.

var<workgroup> lane_partials: array<f32, WG>;

// The sum (is_max false) or the maximum (is_max true) of v over the lanes of invocation lid's row.
fn lanes_reduce(lid: u32, v: f32, is_max: bool) -> f32 {
    if (LANES == 1u) {
        return v;
    }
    let lane = lid % LANES;
    workgroupBarrier(); // every lane has read the previous reduction's result
    lane_partials[lid] = v;
    workgroupBarrier();
    for (var half = LANES / 2u; half > 0u; half /= 2u) {
        if (lane < half) {
            let a = lane_partials[lid];
            let b = lane_partials[lid + half];
            lane_partials[lid] = select(a + b, max(a, b), is_max);
        }
        workgroupBarrier();
    }
    return lane_partials[lid - lane];
}
