// vicinity_apply.wgsl — VVT vicinity attention, q side, with the official clamps in order:
//     z_n = clampmag(1 / (φ_q(n) · ksum + 1e-4))
//     o_n = clampmag(clampmag(φ_q(n) · KV) · z_n)
// per image·head, φ_q(n) = [q_n cos α_n | q_n sin α_n | q_n cos β_n | q_n sin β_n], q = relu(q)
// applied on load, KV and ksum from vicinity_kv_reduce.wgsl. Linear in N: a token only meets
// the [4d, d] + [4d] summary of its head, never another token. This is the general kernel (any
// d, any column offsets); vicinity_apply_vec4.wgsl is the fast one for aligned shapes.
// clampmag(t) = sign(t) · clamp(|t|, 1e-4, 1e4) (exact zeros stay zero).
//
// Bindings: 0 params, 1 qkv (read, tokens [B, N, ld], q of head h at columns q_off + h·d ..),
//           2 trig (read, [N] vec4: cos α, sin α, cos β, sin β), 3 kv (read, [B·heads, 4d, d]),
//           4 ksum (read, [B·heads, 4d]), 5 out (write, tokens [B, N, out_ld], head h at
//           columns h·d ..: heads merged).
// Dispatch: one invocation per (bh, block of JB output lanes, block of TM tokens), tokens
//   fastest, so the kv/ksum addresses are uniform across a workgroup (one broadcast load on a GPU);
//   ceil(items / WG) workgroups folded into (x, y) by `ops::grid`.
// Registers: a TM × JB accumulator tile plus TM denominators. Per head lane i: TM q loads, then
//   per trig factor JB kv loads and one ksum load feed TM·(JB + 1) FMAs. The denominator
//   is recomputed by each lane block (1/JB extra work) rather than stored and re-read.
// Workgroup memory: none.

struct Params {
    items: u32,
    n: u32,
    heads: u32,
    d: u32,
    ld: u32,
    q_off: u32,
    out_ld: u32,
    token_blocks: u32,
    jblocks: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> trig: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> kv: array<f32>;
@group(0) @binding(4) var<storage, read> ksum: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

override WG: u32 = 64u;
override TM: u32 = 8u;
override JB: u32 = 8u;

const MAX_TM: u32 = 8u;
const MAX_JB: u32 = 8u;

fn clampmag(t: f32) -> f32 {
    return sign(t) * clamp(abs(t), 1e-4, 1e4);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let item = (wid.x + wid.y * nwg.x) * WG + lid;
    if (item >= params.items) {
        return;
    }
    let d = params.d;
    let n = params.n;
    let tb = item % params.token_blocks;
    let r = item / params.token_blocks;
    let jb = r % params.jblocks;
    let bh = r / params.jblocks;
    let b = bh / params.heads;
    let h = bh % params.heads;
    let n0 = tb * TM;
    let j0 = jb * JB;
    let kv_base = bh * 4u * d * d;
    let ks_base = bh * 4u * d;

    var tr: array<vec4<f32>, MAX_TM>;
    var qrow: array<u32, MAX_TM>;
    var den: array<f32, MAX_TM>;
    var acc: array<f32, MAX_TM * MAX_JB>; // [t * MAX_JB + jj]
    for (var t = 0u; t < TM; t++) {
        let nt = min(n0 + t, n - 1u); // rows past the end repeat the last one; never stored
        tr[t] = trig[nt];
        qrow[t] = (b * n + nt) * params.ld + params.q_off + h * d;
        den[t] = 0.0;
    }
    for (var e = 0u; e < MAX_TM * MAX_JB; e++) {
        acc[e] = 0.0;
    }
    for (var i = 0u; i < d; i++) {
        var qv: array<f32, MAX_TM>;
        for (var t = 0u; t < TM; t++) {
            qv[t] = max(qkv[qrow[t] + i], 0.0);
        }
        for (var f = 0u; f < 4u; f++) {
            let row = kv_base + (f * d + i) * d;
            let ks = ksum[ks_base + f * d + i];
            var kvj: array<f32, MAX_JB>;
            for (var jj = 0u; jj < JB; jj++) {
                kvj[jj] = kv[row + min(j0 + jj, d - 1u)];
            }
            for (var t = 0u; t < TM; t++) {
                // φ_q rounded to f32 per factor, as the reference forms q * cos(α).
                let a = tr[t][f] * qv[t];
                den[t] = fma(a, ks, den[t]);
                for (var jj = 0u; jj < JB; jj++) {
                    acc[t * MAX_JB + jj] = fma(a, kvj[jj], acc[t * MAX_JB + jj]);
                }
            }
        }
    }
    for (var t = 0u; t < TM; t++) {
        let nt = n0 + t;
        if (nt >= n) {
            break;
        }
        let z = clampmag(1.0 / (den[t] + 1e-4));
        let orow = (b * n + nt) * params.out_ld + h * d;
        for (var jj = 0u; jj < JB; jj++) {
            let j = j0 + jj;
            if (j < d) {
                out[orow + j] = clampmag(clampmag(acc[t * MAX_JB + jj]) * z);
            }
        }
    }
}
