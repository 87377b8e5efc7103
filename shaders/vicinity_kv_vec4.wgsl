// vicinity_kv_vec4.wgsl — vicinity_kv.wgsl as a register-tiled GEMM with vec4 loads: per-chunk
// partial sums of
//     KV⁺[bh] = Σ_n φ_k(n)ᵀ [v_n | 1]        ([4d, d+1] per image·head bh)
// φ_k(n) = [k_n cos α_n | k_n sin α_n | k_n cos β_n | k_n sin β_n], k = relu(k) applied on load;
// column d is ksum = Σ_n φ_k(n). Same partials layout and reduction as the scalar kernel; this
// one needs d, ld, k_off and v_off to be multiples of 4 (every VVT configuration).
//
// Bindings: 0 params, 1 qkv (read, tokens [B, N, ld] as vec4), 2 trig (read, [N] vec4:
//           cos α, sin α, cos β, sin β), 3 partials (write, [chunks, B·heads, 4d, d+1]).
// Dispatch: one invocation per (chunk, bh, group of 4 lanes i, block of 8 columns j), the
//   column block fastest; ceil(items / WG) workgroups folded into (x, y) by `ops::grid`.
// Tile: 16 rows of KV⁺ (4 lanes × 4 trig factors) × 8 columns, as 4 × 2 mat4x4 accumulators
//   (`acc.f<f><g>`: column i = lane i0+i, components = columns j0+4g ..), plus 4 vec4 of ksum.
//   A step takes 4 tokens: 4 k, 4 trig and 8 v vec4 loads feed 512 FMAs. The tile is written
//   out with no arrays: NIR keeps loop-indexed register arrays in scratch memory, a per-lane
//   loop on lavapipe (see gemm_tile.wgsl). The ksum accumulators run in every column block;
//   only block 0 stores them.
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
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> trig: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;

override WG: u32 = 64u;

struct Acc {
    f00: mat4x4<f32>, f01: mat4x4<f32>,
    f10: mat4x4<f32>, f11: mat4x4<f32>,
    f20: mat4x4<f32>, f21: mat4x4<f32>,
    f30: mat4x4<f32>, f31: mat4x4<f32>,
    ks0: vec4<f32>, ks1: vec4<f32>, ks2: vec4<f32>, ks3: vec4<f32>,
}

// c[i] += Σ_j a[i][j] · b[j] (16 vec4 FMAs; as gemm_tile.wgsl).
fn mad_row(c: vec4<f32>, a: vec4<f32>, b: mat4x4<f32>) -> vec4<f32> {
    return fma(b[3], vec4<f32>(a.w), fma(b[2], vec4<f32>(a.z), fma(b[1], vec4<f32>(a.y), fma(b[0], vec4<f32>(a.x), c))));
}

fn mad(c: mat4x4<f32>, a: mat4x4<f32>, b: mat4x4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(mad_row(c[0], a[0], b), mad_row(c[1], a[1], b), mad_row(c[2], a[2], b), mad_row(c[3], a[3], b));
}

// φ for trig factor f of 4 tokens: column t = k_t · trig_t[f] (rounded per factor, as the
// reference forms k * cos(α)); transposed so that column i is lane i over the 4 tokens.
fn phi(k: mat4x4<f32>, s: vec4<f32>) -> mat4x4<f32> {
    return transpose(mat4x4<f32>(k[0] * s.x, k[1] * s.y, k[2] * s.z, k[3] * s.w));
}

fn row_sums(p: mat4x4<f32>) -> vec4<f32> {
    // Σ over the 4 tokens for each lane, in token order (p is lanes × tokens after `phi`).
    return vec4<f32>(dot(p[0], vec4<f32>(1.0)), dot(p[1], vec4<f32>(1.0)), dot(p[2], vec4<f32>(1.0)), dot(p[3], vec4<f32>(1.0)));
}

fn store_block(base: u32, cols: u32, j0: u32, ncols: u32, c: mat4x4<f32>) {
    // base: flat index of row (f·d + i0), column 0; c[i] = lane i0+i, columns j0 .. j0+3.
    for (var i = 0u; i < 4u; i++) {
        let row = base + i * cols + j0;
        let v = c[i];
        if (ncols > 0u) { partials[row] = v.x; }
        if (ncols > 1u) { partials[row + 1u] = v.y; }
        if (ncols > 2u) { partials[row + 2u] = v.z; }
        if (ncols > 3u) { partials[row + 3u] = v.w; }
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
    let jb = item % params.jblocks;
    var r = item / params.jblocks;
    let i4 = r % (d / 4u);
    r = r / (d / 4u);
    let bh = r % params.bh;
    let chunk = r / params.bh;
    let b = bh / params.heads;
    let h = bh % params.heads;
    let t0 = chunk * params.chunk_len;
    let t1 = min(t0 + params.chunk_len, n);
    let i0 = i4 * 4u;
    let j0 = jb * 8u;
    // Columns j0+4 .. j0+7 exist unless d ends inside this block (d % 8 == 4).
    let hi = j0 + 4u < d;
    let row4 = params.ld / 4u;
    let k4 = (params.k_off + h * d + i0) / 4u;
    let v4 = (params.v_off + h * d + j0) / 4u;
    let v4_hi = select(v4, v4 + 1u, hi);
    let img = b * n;

    var acc: Acc;
    for (var t = t0; t < t1; t += 4u) {
        // Tokens past the chunk end read the last token with k zeroed: φ = 0 contributes nothing.
        let ta = t;
        let tb = min(t + 1u, t1 - 1u);
        let tc = min(t + 2u, t1 - 1u);
        let td = min(t + 3u, t1 - 1u);
        let ka = max(qkv[(img + ta) * row4 + k4], vec4<f32>(0.0));
        let kb = select(vec4<f32>(0.0), max(qkv[(img + tb) * row4 + k4], vec4<f32>(0.0)), t + 1u < t1);
        let kc = select(vec4<f32>(0.0), max(qkv[(img + tc) * row4 + k4], vec4<f32>(0.0)), t + 2u < t1);
        let kd = select(vec4<f32>(0.0), max(qkv[(img + td) * row4 + k4], vec4<f32>(0.0)), t + 3u < t1);
        let k = mat4x4<f32>(ka, kb, kc, kd);
        // Rows: trig factor f of the 4 tokens.
        let tr = transpose(mat4x4<f32>(trig[ta], trig[tb], trig[tc], trig[td]));
        let vlo = mat4x4<f32>(qkv[(img + ta) * row4 + v4], qkv[(img + tb) * row4 + v4],
                              qkv[(img + tc) * row4 + v4], qkv[(img + td) * row4 + v4]);
        var vhi = mat4x4<f32>();
        if (hi) {
            vhi = mat4x4<f32>(qkv[(img + ta) * row4 + v4_hi], qkv[(img + tb) * row4 + v4_hi],
                              qkv[(img + tc) * row4 + v4_hi], qkv[(img + td) * row4 + v4_hi]);
        }
        let p0 = phi(k, tr[0]);
        acc.f00 = mad(acc.f00, p0, vlo);
        acc.f01 = mad(acc.f01, p0, vhi);
        acc.ks0 += row_sums(p0);
        let p1 = phi(k, tr[1]);
        acc.f10 = mad(acc.f10, p1, vlo);
        acc.f11 = mad(acc.f11, p1, vhi);
        acc.ks1 += row_sums(p1);
        let p2 = phi(k, tr[2]);
        acc.f20 = mad(acc.f20, p2, vlo);
        acc.f21 = mad(acc.f21, p2, vhi);
        acc.ks2 += row_sums(p2);
        let p3 = phi(k, tr[3]);
        acc.f30 = mad(acc.f30, p3, vlo);
        acc.f31 = mad(acc.f31, p3, vhi);
        acc.ks3 += row_sums(p3);
    }
    let cols = d + 1u;
    let base = (chunk * params.bh + bh) * 4u * d + i0; // row f·d + i0 is base + f·d
    let nhi = select(0u, 4u, hi);
    store_block((base) * cols, cols, j0, 4u, acc.f00);
    store_block((base) * cols, cols, j0 + 4u, nhi, acc.f01);
    store_block((base + d) * cols, cols, j0, 4u, acc.f10);
    store_block((base + d) * cols, cols, j0 + 4u, nhi, acc.f11);
    store_block((base + 2u * d) * cols, cols, j0, 4u, acc.f20);
    store_block((base + 2u * d) * cols, cols, j0 + 4u, nhi, acc.f21);
    store_block((base + 3u * d) * cols, cols, j0, 4u, acc.f30);
    store_block((base + 3u * d) * cols, cols, j0 + 4u, nhi, acc.f31);
    if (jb == 0u) {
        let ks = mat4x4<f32>(acc.ks0, acc.ks1, acc.ks2, acc.ks3); // column f, component = lane
        for (var f = 0u; f < 4u; f++) {
            let v = ks[f];
            let row = (base + f * d) * cols + d;
            partials[row] = v.x;
            partials[row + cols] = v.y;
            partials[row + 2u * cols] = v.z;
            partials[row + 3u * cols] = v.w;
        }
    }
}
