// vicinity_apply.wgsl — VVT vicinity attention, q side, as a register-tiled GEMM, with the
// official clamps in order:
//     z_n = clampmag(1 / (φ_q(n) · ksum + 1e-4))
//     o_n = clampmag(clampmag(φ_q(n) · KV) · z_n)
// per image·head, φ_q(n) = [q_n cos α_n | q_n sin α_n | q_n cos β_n | q_n sin β_n], q = relu(q)
// applied on load, KV and ksum from family/vicinity_kv_reduce.wgsl. Linear in N: a token only
// meets the [4d, d] + [4d] summary of its head, never another token.
// clampmag(t) = sign(t) · clamp(|t|, 1e-4, 1e4) (exact zeros stay zero).
// requires: mad4
//
// Variants: with VEC4 (`Kernel::VicinityApplyVec4`: d, ld and q_off multiples of 4, every VVT
// configuration) qkv, kv, ksum and out are array<vec4<f32>> and a group of 4 lanes is one load
// or store; without (`Kernel::VicinityApply`, any d and offsets) they are array<f32>, a group
// is 4 scalar accesses, and lanes past d read as 0 and are never stored.
// Bindings: 0 params, 1 qkv (read, tokens [B, N, ld], q of head h at columns q_off + h·d ..),
//           2 trig (read, [N] vec4: cos α, sin α, cos β, sin β), 3 kv (read, [B·heads, 4d, d],
//           clamped), 4 ksum (read, [B·heads, 4d]), 5 out (write, tokens [B, N, out_ld], head h
//           at columns h·d ..: heads merged).
// Dispatch: one invocation per (bh, block of 8 output lanes, block of 4·TQ tokens), tokens
//   fastest, so the kv/ksum addresses are uniform across a workgroup (one broadcast load on a
//   GPU); ceil(items / WG) workgroups folded into (x, y) by `ops::grid`.
// Tile: 4·TQ tokens × 8 lanes as TQ × 2 mat4x4 accumulators (`acc.c<q><g>`: column i = token
//   4q+i, components = lanes j0+4g ..) and TQ vec4 denominators. A step is 4 head lanes of q
//   (k = f·d + i0 .. +3 for each trig factor f): 4·TQ q vec4 loads, then per factor 8 kv and 1
//   ksum vec4 loads; with TQ = 4, 2304 FMAs per 52 loads. The denominator is recomputed by each
//   lane block rather than stored and re-read. TQ = 1 (`ops::tuning::vicinity_token_quads`, small
//   problems on CPU-like devices) has a quarter of the code: lavapipe JIT-compiles it in about
//   1 s instead of 2.5 s.
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
#if VEC4
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> trig: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> kv: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> ksum: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> trig: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> kv: array<f32>;
@group(0) @binding(4) var<storage, read> ksum: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
#endif

override WG: u32 = 64u;
// Token quads per invocation: 4 or 1.
override TQ: u32 = 4u;

// Four consecutive floats at float index i of qkv, kv or ksum: the first `valid`, the rest 0;
// and the store of the first `valid` components of v at out[i ..]. With VEC4, i is a multiple
// of 4 and valid is 4.
#if VEC4
fn qkv4(i: u32, valid: u32) -> vec4<f32> { return qkv[i >> 2u]; }
fn kv4(i: u32, valid: u32) -> vec4<f32> { return kv[i >> 2u]; }
fn ksum4(i: u32, valid: u32) -> vec4<f32> { return ksum[i >> 2u]; }
fn store4(i: u32, valid: u32, v: vec4<f32>) { out[i >> 2u] = v; }
#else
fn qkv4(i: u32, valid: u32) -> vec4<f32> {
    let last = i + valid - 1u;
    return vec4<f32>(qkv[i], select(0.0, qkv[min(i + 1u, last)], valid > 1u),
                     select(0.0, qkv[min(i + 2u, last)], valid > 2u), select(0.0, qkv[min(i + 3u, last)], valid > 3u));
}
fn kv4(i: u32, valid: u32) -> vec4<f32> {
    let last = i + valid - 1u;
    return vec4<f32>(kv[i], select(0.0, kv[min(i + 1u, last)], valid > 1u),
                     select(0.0, kv[min(i + 2u, last)], valid > 2u), select(0.0, kv[min(i + 3u, last)], valid > 3u));
}
fn ksum4(i: u32, valid: u32) -> vec4<f32> {
    let last = i + valid - 1u;
    return vec4<f32>(ksum[i], select(0.0, ksum[min(i + 1u, last)], valid > 1u),
                     select(0.0, ksum[min(i + 2u, last)], valid > 2u), select(0.0, ksum[min(i + 3u, last)], valid > 3u));
}
fn store4(i: u32, valid: u32, v: vec4<f32>) {
    out[i] = v.x;
    if (valid > 1u) { out[i + 1u] = v.y; }
    if (valid > 2u) { out[i + 2u] = v.z; }
    if (valid > 3u) { out[i + 3u] = v.w; }
}
#endif

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

// Where one invocation's KV columns are: `col` the first of the low 4 (`nlo` of them real), the
// high 4 at col + 4 when `hi` (`nhi` real).
struct Cols {
    col: u32,
    nlo: u32,
    hi: bool,
    nhi: u32,
}

fn clampmag(t: vec4<f32>) -> vec4<f32> {
    return sign(t) * clamp(abs(t), vec4<f32>(1e-4), vec4<f32>(1e4));
}

// φ_q of a token group for trig factors s (one per token): column t = q_t · s[t], rounded per
// factor as the reference forms q * cos(α).
fn phi(q: mat4x4<f32>, s: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(q[0] * s.x, q[1] * s.y, q[2] * s.z, q[3] * s.w);
}

fn dots(a: mat4x4<f32>, ks: vec4<f32>) -> vec4<f32> {
    return vec4<f32>(dot(a[0], ks), dot(a[1], ks), dot(a[2], ks), dot(a[3], ks));
}

// One trig factor f of one step: KV rows `rows[r]` (flat index of row f·d + i0 + r, column 0;
// rows past d repeat the last real one, multiplied by q = 0), ksum of those rows `ks`.
fn factor_step(acc: ptr<function, Acc>, g0: Group, g1: Group, g2: Group, g3: Group, f: u32, rows: vec4<u32>, c: Cols, ks: vec4<f32>) {
    let blo = mat4x4<f32>(kv4(rows.x + c.col, c.nlo), kv4(rows.y + c.col, c.nlo), kv4(rows.z + c.col, c.nlo), kv4(rows.w + c.col, c.nlo));
    var bhi = mat4x4<f32>();
    if (c.hi) {
        let col = c.col + 4u;
        bhi = mat4x4<f32>(kv4(rows.x + col, c.nhi), kv4(rows.y + col, c.nhi), kv4(rows.z + col, c.nhi), kv4(rows.w + col, c.nhi));
    }
    let a0 = phi(g0.q, g0.tr[f]);
    (*acc).c00 = mad((*acc).c00, a0, blo);
    (*acc).c01 = mad((*acc).c01, a0, bhi);
    (*acc).den0 += dots(a0, ks);
#if TQ > 1
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
#endif
}

// q lanes i0 .. i0+3 (`valid` of them real) of tokens n0 .. n0+3 (past n: the last token).
fn load_q(base: u32, ld: u32, n0: u32, n: u32, valid: u32) -> mat4x4<f32> {
    let z = vec4<f32>(0.0);
    return mat4x4<f32>(
        max(qkv4(base + min(n0, n - 1u) * ld, valid), z),
        max(qkv4(base + min(n0 + 1u, n - 1u) * ld, valid), z),
        max(qkv4(base + min(n0 + 2u, n - 1u) * ld, valid), z),
        max(qkv4(base + min(n0 + 3u, n - 1u) * ld, valid), z));
}

fn load_trig(n0: u32, n: u32) -> mat4x4<f32> {
    return transpose(mat4x4<f32>(trig[min(n0, n - 1u)], trig[min(n0 + 1u, n - 1u)], trig[min(n0 + 2u, n - 1u)], trig[min(n0 + 3u, n - 1u)]));
}

fn store_group(obase: u32, out_ld: u32, n0: u32, n: u32, c: Cols, c_lo: mat4x4<f32>, c_hi: mat4x4<f32>, den: vec4<f32>) {
    let z = clampmag(vec4<f32>(1.0) / (den + vec4<f32>(1e-4)));
    for (var i = 0u; i < 4u; i++) {
        if (n0 + i >= n) {
            return;
        }
        let o = obase + (n0 + i) * out_ld;
        store4(o, c.nlo, clampmag(clampmag(c_lo[i]) * z[i]));
        if (c.hi) {
            store4(o + 4u, c.nhi, clampmag(clampmag(c_hi[i]) * z[i]));
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
    let ld = params.ld;
    let tb = item % params.token_blocks;
    let r = item / params.token_blocks;
    let jb = r % params.jblocks;
    let bh = r / params.jblocks;
    let b = bh / params.heads;
    let h = bh % params.heads;
    let n0 = tb * 4u * TQ;
    let j0 = jb * 8u;
    // Lanes j0+4 .. j0+7 exist unless d ends inside this block.
    let hi = j0 + 4u < d;
    let c = Cols(j0, min(4u, d - j0), hi, select(0u, min(4u, d - j0 - 4u), hi));
    let qbase = b * n * ld + params.q_off + h * d; // + token · ld + lane
    let kv_base = bh * 4u * d * d; // flat index of row 0 of this head's KV
    let ks_base = bh * 4u * d; // flat index of this head's ksum

    var g0 = Group(mat4x4<f32>(), load_trig(n0, n));
#if TQ > 1
    var g1 = Group(mat4x4<f32>(), load_trig(n0 + 4u, n));
    var g2 = Group(mat4x4<f32>(), load_trig(n0 + 8u, n));
    var g3 = Group(mat4x4<f32>(), load_trig(n0 + 12u, n));
#else
    var g1: Group; // unused
    var g2: Group;
    var g3: Group;
#endif
    var acc: Acc;
    for (var i0 = 0u; i0 < d; i0 += 4u) {
        let valid = min(4u, d - i0);
        g0.q = load_q(qbase + i0, ld, n0, n, valid);
#if TQ > 1
        g1.q = load_q(qbase + i0, ld, n0 + 4u, n, valid);
        g2.q = load_q(qbase + i0, ld, n0 + 8u, n, valid);
        g3.q = load_q(qbase + i0, ld, n0 + 12u, n, valid);
#endif
        let last = i0 + valid - 1u;
        // Flat index of KV rows i0 .. i0+3 of factor 0 (the factors follow d·d apart). Written
        // out per factor: a loop over f would index the registers dynamically.
        let rows = vec4<u32>(kv_base) + vec4<u32>(i0, min(i0 + 1u, last), min(i0 + 2u, last), min(i0 + 3u, last)) * d;
        let fd = d * d;
        factor_step(&acc, g0, g1, g2, g3, 0u, rows, c, ksum4(ks_base + i0, valid));
        factor_step(&acc, g0, g1, g2, g3, 1u, rows + vec4<u32>(fd), c, ksum4(ks_base + d + i0, valid));
        factor_step(&acc, g0, g1, g2, g3, 2u, rows + vec4<u32>(2u * fd), c, ksum4(ks_base + 2u * d + i0, valid));
        factor_step(&acc, g0, g1, g2, g3, 3u, rows + vec4<u32>(3u * fd), c, ksum4(ks_base + 3u * d + i0, valid));
    }
    let obase = b * n * params.out_ld + h * d + j0;
    store_group(obase, params.out_ld, n0, n, c, acc.c00, acc.c01, acc.den0);
#if TQ > 1
    store_group(obase, params.out_ld, n0 + 4u, n, c, acc.c10, acc.c11, acc.den1);
    store_group(obase, params.out_ld, n0 + 8u, n, c, acc.c20, acc.c21, acc.den2);
    store_group(obase, params.out_ld, n0 + 12u, n, c, acc.c30, acc.c31, acc.den3);
#endif
}
