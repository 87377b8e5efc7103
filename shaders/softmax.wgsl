// softmax.wgsl — y = softmax(scale * x) over the last dim: max-subtracted, exp, divided by the sum.
//
// x is `rows` rows of `len` contiguous elements, of which the first `valid` take part (the
// rest is padding: `ops::softmax::softmax_padded`, LaViT's keys padded to a multiple of 4; y is 0
// there, whatever x holds). No exp argument is ever positive (no overflow for any input range).
// With LANES = 1 (an invocation per row: CPU-like devices) two sweeps over a row: the running
// max and the sum of exp(scale * x - max), the sum rescaled by exp(old max - new max) when the
// max grows; then y = exp(scale * x - max) / sum. A row is loaded twice and stored once, for a
// second exp per element: on lavapipe every storage load and store is a per-lane loop, worth
// many exps. With more lanes three sweeps, each reduced across the row's lanes: the max of
// scale * x; e = exp(scale * x - max) stored into y while summing; y *= 1 / sum.
//
// Bindings: 0 params, 1 x [rows, len] (read), 2 y [rows, len] (write).
// Dispatch: ceil(rows / (WG / LANES)) workgroups folded into (x, y) by `ops::grid`.
//   LANES invocations share one row (a power of two dividing WG); LANES = 1: one invocation loops
//   over its row alone, no barriers — fastest on a CPU device (lavapipe) for short rows.
// Each lane re-reads in the last sweep only the y elements it wrote itself, so the sweeps need no
// barrier beyond the reductions.
// Lanes of a row combine their maxima and sums with `lanes_reduce` (lib/row_lanes.wgsl).
// Workgroup memory: WG f32 (row_lanes.wgsl) = 256 B at WG = 64.
// requires: row_lanes

struct Params {
    rows: u32,
    len: u32,
    scale: f32,
    valid: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

override WG: u32 = 64u;
override LANES: u32 = 1u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let lane = lid % LANES;
    let row = (wid.x + wid.y * nwg.x) * (WG / LANES) + lid / LANES;
    // Rows past the end keep running (with no work) because every lane must reach the barriers.
    let in_range = row < params.rows;
    let len = params.len;
    let valid = params.valid;
    let base = row * len;
    let scale = params.scale;

    if (LANES == 1u) {
        if (in_range) {
            // -3e38 rather than -inf (WGSL has no infinity literal): the first element's
            // rescale exp(-3e38 - v) of the empty sum is 0.
            var m = -3.0e38;
            var s = 0.0;
            for (var k = 0u; k < valid; k++) {
                let v = scale * x[base + k];
                if (v > m) {
                    s = s * exp(m - v) + 1.0;
                    m = v;
                } else {
                    s += exp(v - m);
                }
            }
            let inv = 1.0 / s;
            for (var k = 0u; k < valid; k++) {
                y[base + k] = exp(scale * x[base + k] - m) * inv;
            }
            for (var k = valid; k < len; k++) {
                y[base + k] = 0.0;
            }
        }
        return;
    }

    // -3e38 rather than -inf: WGSL has no infinity literal; a lane with no element keeps it and
    // its exp(-huge) term vanishes in the combination below.
    var m = -3.0e38;
    if (in_range) {
        for (var k = lane; k < valid; k += LANES) {
            m = max(m, scale * x[base + k]);
        }
    }
    m = lanes_reduce(lid, m, true);

    var s = 0.0;
    if (in_range) {
        for (var k = lane; k < valid; k += LANES) {
            let e = exp(scale * x[base + k] - m);
            y[base + k] = e;
            s += e;
        }
    }
    s = lanes_reduce(lid, s, false);
    let inv = 1.0 / s;

    if (in_range) {
        for (var k = lane; k < valid; k += LANES) {
            y[base + k] *= inv;
        }
        for (var k = valid + lane; k < len; k += LANES) {
            y[base + k] = 0.0;
        }
    }
}
