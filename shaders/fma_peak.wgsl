// fma_peak.wgsl — measures the device's f32 FMA throughput: the denominator of every kernel
// efficiency ratio `wgvit bench-ops` reports.
//
// Each invocation keeps CHAINS independent vec4 accumulators and runs `iters` rounds of 8 vec4
// FMAs (32 FMAs = 64 FLOP per round). The host takes the best of CHAINS = 2, 4 and 8: how many
// chains hide the FMA latency without spilling depends on the device. A CPU device holds each
// vec4 component in one SIMD register, so 8 chains need 32 registers plus m and s: more than
// x86 has without AVX-512, all it has with (AMD EPYC with AVX-512: lavapipe 96 GFLOP/s at 8
// chains, 119 at 4; SwiftShader 11 at 8, 14 at 2). The preprocessor writes the chains out
// (`#for`), so `a` is indexed by constants and stays in registers.
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
// Independent accumulators: 2, 4 or 8 (a divisor of the 8 FMAs per round).
override CHAINS: u32 = 8u;

const MAX_CHAINS: u32 = 8u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let s = seed[0] + vec4<f32>(f32(gid.x) * 1e-7);
    let m = vec4<f32>(0.9999, 0.9998, 0.9997, 0.9996);
    var a: array<vec4<f32>, MAX_CHAINS>;
#for C in 0..CHAINS
    a[C] = s + f32(C) * 0.1;
#endfor
    for (var i = 0u; i < params.iters; i = i + 1u) {
#for R in 0..8 / CHAINS
#for C in 0..CHAINS
        a[C] = fma(a[C], m, s);
#endfor
#endfor
    }
    var t = vec4<f32>(0.0);
#for C in 0..CHAINS
    t += a[C];
#endfor
    sink[gid.x + gid.y * nwg.x * WG] = t.x + t.y + t.z + t.w;
}
