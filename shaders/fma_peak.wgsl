// fma_peak.wgsl — measures the device's f32 FMA throughput: the denominator of every kernel
// efficiency ratio `wgvit bench-ops` reports.
//
// Each invocation keeps 8 independent vec4 accumulators (enough independent chains to hide FMA
// latency on a CPU or GPU) and runs `iters` rounds of 8 vec4 FMAs: 64 FMAs = 128 FLOP per round.
// Bindings: 0 params {iters}, 1 seed (read, 4 floats), 2 sink (write, one float per invocation,
// so nothing is optimised away). Dispatch: any number of workgroups of WG invocations.
// Workgroup memory: none.

struct Params {
    iters: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> seed: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> sink: array<f32>;

override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = seed[0] + vec4<f32>(f32(gid.x) * 1e-7);
    let m = vec4<f32>(0.9999, 0.9998, 0.9997, 0.9996);
    var a0 = s; var a1 = s + 0.1; var a2 = s + 0.2; var a3 = s + 0.3;
    var a4 = s + 0.4; var a5 = s + 0.5; var a6 = s + 0.6; var a7 = s + 0.7;
    for (var i = 0u; i < params.iters; i = i + 1u) {
        a0 = fma(a0, m, s); a1 = fma(a1, m, s); a2 = fma(a2, m, s); a3 = fma(a3, m, s);
        a4 = fma(a4, m, s); a5 = fma(a5, m, s); a6 = fma(a6, m, s); a7 = fma(a7, m, s);
    }
    let t = (a0 + a1) + (a2 + a3) + (a4 + a5) + (a6 + a7);
    sink[gid.x + gid.y * nwg.x * WG] = t.x + t.y + t.z + t.w;
}
