// vicinity_apply_vec4.wgsl — vicinity_apply.wgsl as a register-tiled GEMM with vec4 loads:
//     z_n = clampmag(1 / (φ_q(n) · ksum + 1e-4))
//     o_n = clampmag(clampmag(φ_q(n) · KV) · z_n)
// per image·head, φ_q(n) = [q_n cos α_n | q_n sin α_n | q_n cos β_n | q_n sin β_n], q = relu(q)
// applied on load. Needs d, ld and q_off to be multiples of 4 (every VVT configuration).
// clampmag(t) = sign(t) · clamp(|t|, 1e-4, 1e4) (exact zeros stay zero).
//
// Bindings: 0 params, 1 qkv (read, tokens [B, N, ld] as vec4), 2 trig (read, [N] vec4:
//           cos α, sin α, cos β, sin β), 3 kv (read, [B·heads, 4d, d] as vec4, clamped),
//           4 ksum (read, [B·heads, 4d] as vec4), 5 out (write, tokens [B, N, heads·d] as vec4).
// Dispatch: one invocation per (bh, block of 8 output lanes, block of 16 tokens), tokens
//   fastest, so the kv/ksum addresses are uniform across a workgroup; ceil(items / WG)
//   workgroups folded into (x, y) by `ops::grid`.
// Tile: 16 tokens × 8 lanes as 4 × 2 mat4x4 accumulators (`acc.c<q><g>`: column i = token
//   4q+i, components = lanes j0+4g ..) and 4 vec4 denominators. A step is 4 head lanes of q
//   (k = f·d + i0 .. +3 for each trig factor f): 16 q vec4 loads, then per factor 8 kv and 1
//   ksum vec4 loads: 2304 FMAs per 52 loads. Written out with no arrays: NIR keeps
//   loop-indexed register arrays in scratch memory, a per-lane loop on lavapipe (gemm_tile.wgsl).
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
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> trig: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> kv: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> ksum: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;

override WG: u32 = 64u;

struct Acc {
    c00: mat4x4<f32>, c01: mat4x4<f32>,
    c10: mat4x4<f32>, c11: mat4x4<f32>,
    c20: mat4x4<f32>, c21: mat4x4<f32>,
    c30: mat4x4<f32>, c31: mat4x4<f32>,
    den0: vec4<f32>, den1: vec4<f32>, den2: vec4<f32>, den3: vec4<f32>,
}

// Per token group: q of the 4 tokens (columns, relu'd, 4 lanes each) and their trig factors
// (row f = factor f of the 4 tokens).
struct Group {
    q: mat4x4<f32>,
    tr: mat4x4<f32>,
}

fn clampmag(t: vec4<f32>) -> vec4<f32> {
    return sign(t) * clamp(abs(t), vec4<f32>(1e-4), vec4<f32>(1e4));
}

// c[i] += Σ_j a[i][j] · b[j] (16 vec4 FMAs; as gemm_tile.wgsl).
fn mad_row(c: vec4<f32>, a: vec4<f32>, b: mat4x4<f32>) -> vec4<f32> {
    return fma(b[3], vec4<f32>(a.w), fma(b[2], vec4<f32>(a.z), fma(b[1], vec4<f32>(a.y), fma(b[0], vec4<f32>(a.x), c))));
}

fn mad(c: mat4x4<f32>, a: mat4x4<f32>, b: mat4x4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(mad_row(c[0], a[0], b), mad_row(c[1], a[1], b), mad_row(c[2], a[2], b), mad_row(c[3], a[3], b));
}

// φ_q of a token group for trig factors s (one per token): column t = q_t · s[t], rounded per
// factor as the reference forms q * cos(α).
fn phi(q: mat4x4<f32>, s: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(q[0] * s.x, q[1] * s.y, q[2] * s.z, q[3] * s.w);
}

fn dots(a: mat4x4<f32>, ks: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(dot(a[0], ks), dot(a[1], ks), dot(a[2], ks), dot(a[3], ks));
}

// One trig factor f of one step: KV rows f·d + i0 .. +3 (`row`: vec4 index of the first, `d4`
// vec4 per row), ksum of those rows `ks`.
fn factor_step(acc: ptr<function, Acc>, g0: Group, g1: Group, g2: Group, g3: Group, f: u32, row: u32, d4: u32, j4: u32, j4_hi: u32, hi: bool, ks: vec4<f32>) {
    let blo = mat4x4<f32>(kv[row + j4], kv[row + d4 + j4], kv[row + 2u * d4 + j4], kv[row + 3u * d4 + j4]);
    var bhi = mat4x4<f32>();
    if (hi) {
        bhi = mat4x4<f32>(kv[row + j4_hi], kv[row + d4 + j4_hi], kv[row + 2u * d4 + j4_hi], kv[row + 3u * d4 + j4_hi]);
    }
    let a0 = phi(g0.q, g0.tr[f]);
    (*acc).c00 = mad((*acc).c00, a0, blo);
    (*acc).c01 = mad((*acc).c01, a0, bhi);
    (*acc).den0 += dots(a0, ks);
    let a1 = phi(g1.q, g1.tr[f]);
    (*acc).c10 = mad((*acc).c10, a1, blo);
    (*acc).c11 = mad((*acc).c11, a1, bhi);
    (*acc).den1 += dots(a1, ks);
    let a2 = phi(g2.q, g2.tr[f]);
    (*acc).c20 = mad((*acc).c20, a2, blo);
    (*acc).c21 = mad((*acc).c21, a2, bhi);
    (*acc).den2 += dots(a2, ks);
    let a3 = phi(g3.q, g3.tr[f]);
    (*acc).c30 = mad((*acc).c30, a3, blo);
    (*acc).c31 = mad((*acc).c31, a3, bhi);
    (*acc).den3 += dots(a3, ks);
}

fn load_q(base: u32, row4: u32, n0: u32, n: u32, i4: u32) -> mat4x4<f32> {
    let z = vec4<f32>(0.0);
    return mat4x4<f32>(
        max(qkv[base + min(n0, n - 1u) * row4 + i4], z),
        max(qkv[base + min(n0 + 1u, n - 1u) * row4 + i4], z),
        max(qkv[base + min(n0 + 2u, n - 1u) * row4 + i4], z),
        max(qkv[base + min(n0 + 3u, n - 1u) * row4 + i4], z));
}

fn load_trig(n0: u32, n: u32) -> mat4x4<f32> {
    return transpose(mat4x4<f32>(trig[min(n0, n - 1u)], trig[min(n0 + 1u, n - 1u)], trig[min(n0 + 2u, n - 1u)], trig[min(n0 + 3u, n - 1u)]));
}

fn store_group(obase: u32, out4: u32, n0: u32, n: u32, hi: bool, c_lo: mat4x4<f32>, c_hi: mat4x4<f32>, den: vec4<f32>) {
    let z = clampmag(vec4<f32>(1.0) / (den + vec4<f32>(1e-4)));
    for (var i = 0u; i < 4u; i++) {
        if (n0 + i >= n) {
            return;
        }
        let o = obase + (n0 + i) * out4;
        out[o] = clampmag(clampmag(c_lo[i]) * z[i]);
        if (hi) {
            out[o + 1u] = clampmag(clampmag(c_hi[i]) * z[i]);
        }
    }
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
    let d4 = d / 4u;
    let tb = item % params.token_blocks;
    let r = item / params.token_blocks;
    let jb = r % params.jblocks;
    let bh = r / params.jblocks;
    let b = bh / params.heads;
    let h = bh % params.heads;
    let n0 = tb * 16u;
    let j4 = jb * 2u;
    // Lanes j0+4 .. j0+7 exist unless d ends inside this block (d % 8 == 4).
    let hi = j4 + 1u < d4;
    let j4_hi = select(j4, j4 + 1u, hi);
    let row4 = params.ld / 4u;
    let qbase = b * n * row4 + (params.q_off + h * d) / 4u; // + token · row4 + lane group
    let kv_base = bh * 4u * d * d4; // vec4 index of row 0 of this head's KV
    let ks_base = bh * d; // vec4 index of this head's ksum (4d floats)

    var g0 = Group(mat4x4<f32>(), load_trig(n0, n));
    var g1 = Group(mat4x4<f32>(), load_trig(n0 + 4u, n));
    var g2 = Group(mat4x4<f32>(), load_trig(n0 + 8u, n));
    var g3 = Group(mat4x4<f32>(), load_trig(n0 + 12u, n));
    var acc: Acc;
    for (var i4 = 0u; i4 < d4; i4++) {
        g0.q = load_q(qbase, row4, n0, n, i4);
        g1.q = load_q(qbase, row4, n0 + 4u, n, i4);
        g2.q = load_q(qbase, row4, n0 + 8u, n, i4);
        g3.q = load_q(qbase, row4, n0 + 12u, n, i4);
        let row = kv_base + i4 * 4u * d4;
        factor_step(&acc, g0, g1, g2, g3, 0u, row, d4, j4, j4_hi, hi, ksum[ks_base + i4]);
        factor_step(&acc, g0, g1, g2, g3, 1u, row + d * d4, d4, j4, j4_hi, hi, ksum[ks_base + d4 + i4]);
        factor_step(&acc, g0, g1, g2, g3, 2u, row + 2u * d * d4, d4, j4, j4_hi, hi, ksum[ks_base + 2u * d4 + i4]);
        factor_step(&acc, g0, g1, g2, g3, 3u, row + 3u * d * d4, d4, j4, j4_hi, hi, ksum[ks_base + 3u * d4 + i4]);
    }
    let out4 = params.out_ld / 4u;
    let obase = b * n * out4 + h * d4 + j4;
    store_group(obase, out4, n0, n, hi, acc.c00, acc.c01, acc.den0);
    store_group(obase, out4, n0 + 4u, n, hi, acc.c10, acc.c11, acc.den1);
    store_group(obase, out4, n0 + 8u, n, hi, acc.c20, acc.c21, acc.den2);
    store_group(obase, out4, n0 + 12u, n, hi, acc.c30, acc.c31, acc.den3);
}
