// vicinity_kv.wgsl — VVT vicinity attention, k side: per-chunk partial sums of
//     KV⁺[bh] = Σ_n φ_k(n)ᵀ [v_n | 1]        ([4d, d+1] per image·head bh)
// where φ_k(n) = [k_n cos α_n | k_n sin α_n | k_n cos β_n | k_n sin β_n] with k = relu(k) (the
// kernel feature map is applied on load) and column d (the appended 1) is ksum = Σ_n φ_k(n).
// Row f·d + i of KV⁺ belongs to trig factor f and head lane i. The trig factors are never
// multiplied into a stored φ: they come from the host's [N] vec4 table per token.
// vicinity_kv_reduce.wgsl then sums the chunks in a fixed order and applies the clamps.
// This is the general kernel (any d and column offsets); vicinity_kv_vec4.wgsl is the fast one
// for the aligned shapes of every VVT configuration.
//
// Bindings: 0 params, 1 qkv (read, tokens [B, N, ld]: k of head h at columns k_off + h·d ..,
//           v at v_off + h·d ..), 2 trig (read, [N] vec4: cos α, sin α, cos β, sin β),
//           3 partials (write, [chunks, B·heads, 4d, d+1]).
// Dispatch: one invocation per (chunk, bh, lane i < d, block of JB columns of d+1), ordered
//   with the column block fastest; ceil(items / WG) workgroups folded into (x, y) by `ops::grid`.
//   A chunk is `chunk_len` consecutive tokens: the split reduction over N keeps every serial f32
//   sum short and gives the device chunks · bh · d · jblocks independent invocations.
// Registers: JB vec4 accumulators (the four trig features of lane i × JB columns); per token one
//   k load, one trig vec4 and JB v loads feed 4·JB FMAs.
// Workgroup memory: none.

struct Params {
    items: u32,
    n: u32,
    heads: u32,
    bh: u32,
    d: u32,
    ld: u32,
    k_off: u32,
    v_off: u32,
    chunk_len: u32,
    jblocks: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> trig: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;

override WG: u32 = 64u;
override JB: u32 = 8u;

const MAX_JB: u32 = 8u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let item = (wid.x + wid.y * nwg.x) * WG + lid;
    if (item >= params.items) {
        return;
    }
    let d = params.d;
    let jb = item % params.jblocks;
    var r = item / params.jblocks;
    let i = r % d;
    r = r / d;
    let bh = r % params.bh;
    let chunk = r / params.bh;
    let b = bh / params.heads;
    let h = bh % params.heads;
    let t0 = chunk * params.chunk_len;
    let t1 = min(t0 + params.chunk_len, params.n);
    let j0 = jb * JB;
    let kcol = params.k_off + h * d + i;
    let vcol = params.v_off + h * d;

    var acc: array<vec4<f32>, MAX_JB>;
    for (var jj = 0u; jj < MAX_JB; jj++) {
        acc[jj] = vec4<f32>(0.0);
    }
    for (var t = t0; t < t1; t++) {
        let row = (b * params.n + t) * params.ld;
        // φ_k rounded to f32 per factor, as the reference forms k * cos(α) before its matmul.
        let phi = trig[t] * max(qkv[row + kcol], 0.0);
        for (var jj = 0u; jj < JB; jj++) {
            let j = j0 + jj;
            let vj = qkv[row + vcol + min(j, d - 1u)];
            // Column d is the ones column (ksum); columns past it are padding of the last block.
            let vv = select(select(vj, 1.0, j == d), 0.0, j > d);
            acc[jj] = fma(phi, vec4<f32>(vv), acc[jj]);
        }
    }
    let cols = d + 1u;
    let base = (chunk * params.bh + bh) * 4u * d;
    for (var jj = 0u; jj < JB; jj++) {
        let j = j0 + jj;
        if (j > d) {
            break;
        }
        for (var f = 0u; f < 4u; f++) {
            partials[(base + f * d + i) * cols + j] = acc[jj][f];
        }
    }
}
