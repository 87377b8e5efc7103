// vicinity_kv.wgsl — VVT vicinity attention, k side, as a register-tiled GEMM: per-chunk
// partial sums of
//     KV⁺[bh] = Σ_n φ_k(n)ᵀ [v_n | 1]        ([4d, d+1] per image·head bh)
// where φ_k(n) = [k_n cos α_n | k_n sin α_n | k_n cos β_n | k_n sin β_n] with k = relu(k) (the
// kernel feature map is applied on load) and column d (the appended 1) is ksum = Σ_n φ_k(n).
// Row f·d + i of KV⁺ belongs to trig factor f and head lane i. The trig factors are never
// multiplied into a stored φ: they come from the host's [N] vec4 table per token.
// family/vicinity_kv_reduce.wgsl then sums the chunks in a fixed order and applies the clamps.
// requires: mad4
//
// Variants: with VEC4 (`Kernel::VicinityKvVec4`: d, ld, k_off and v_off multiples of 4, every
// VVT configuration) qkv is array<vec4<f32>> and a group of 4 lanes or columns is one load;
// without (`Kernel::VicinityKv`, any d and offsets) it is array<f32> and a group is 4 scalar
// loads, lanes and columns past d reading as 0 (and never stored).
// Bindings: 0 params, 1 qkv (read, tokens [B, N, ld]: k of head h at columns k_off + h·d ..,
//           v at v_off + h·d ..), 2 trig (read, [N] vec4: cos α, sin α, cos β, sin β),
//           3 partials (write, [chunks, B·heads, 4d, d+1]).
// Dispatch: one invocation per (chunk, bh, group of 4 lanes i, block of 4·JQ columns j), the
//   column block fastest; ceil(items / WG) workgroups folded into (x, y) by `ops::grid`. A chunk
//   is `chunk_len` consecutive tokens: the split reduction over N keeps every serial f32 sum
//   short and gives the device chunks · bh · ceil(d/4) · ceil(d/8) independent invocations.
// Tile: 16 rows of KV⁺ (4 lanes × 4 trig factors) × 4·JQ columns, as 4 × JQ mat4x4
//   accumulators (`acc.f<f><g>`: column i = lane i0+i, components = columns j0+4g ..), plus 4
//   vec4 of ksum. With JQ = 2 a step takes 4 tokens: 4 k, 4 trig and 8 v vec4 loads feed 512
//   FMAs. JQ = 1 (`ops::tuning::vicinity_column_quads`, small problems on CPU-like devices) has
//   half the FMA code, for lavapipe's JIT. The ksum accumulators run in every column block; only
//   block 0 stores them.
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
#if VEC4
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;
#else
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
#endif
@group(0) @binding(2) var<storage, read> trig: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> partials: array<f32>;

override WG: u32 = 64u;
// Column quads per invocation: 2 or 1.
override JQ: u32 = 2u;

// qkv[i .. i+3] (i in floats): the first `valid` of them, the rest 0. With VEC4, i is a
// multiple of 4 and valid is 4.
#if VEC4
fn qkv4(i: u32, valid: u32) -> vec4<f32> {
    return qkv[i >> 2u];
}
#else
fn qkv4(i: u32, valid: u32) -> vec4<f32> {
    let last = i + valid - 1u;
    return vec4<f32>(qkv[i], select(0.0, qkv[min(i + 1u, last)], valid > 1u),
                     select(0.0, qkv[min(i + 2u, last)], valid > 2u), select(0.0, qkv[min(i + 3u, last)], valid > 3u));
}
#endif

struct Acc {
    f00: mat4x4<f32>, f01: mat4x4<f32>,
    f10: mat4x4<f32>, f11: mat4x4<f32>,
    f20: mat4x4<f32>, f21: mat4x4<f32>,
    f30: mat4x4<f32>, f31: mat4x4<f32>,
    ks0: vec4<f32>, ks1: vec4<f32>, ks2: vec4<f32>, ks3: vec4<f32>,
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

// Lanes i0 .. i0 + nrows - 1 (c[i] = lane i0+i) × columns j0 .. j0 + ncols - 1; `base` is the flat
// index of row (f·d + i0), column 0.
fn store_block(base: u32, cols: u32, j0: u32, nrows: u32, ncols: u32, c: mat4x4<f32>) {
    for (var i = 0u; i < nrows; i++) {
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
    let lane_groups = (d + 3u) / 4u;
    let jb = item % params.jblocks;
    var r = item / params.jblocks;
    let i4 = r % lane_groups;
    r = r / lane_groups;
    let bh = r % params.bh;
    let chunk = r / params.bh;
    let b = bh / params.heads;
    let h = bh % params.heads;
    let t0 = chunk * params.chunk_len;
    let t1 = min(t0 + params.chunk_len, n);
    let i0 = i4 * 4u;
    let j0 = jb * 4u * JQ;
    // Columns j0+4 .. j0+7 exist unless d ends inside this block (or the block is 4 wide).
    let hi = JQ > 1u && j0 + 4u < d;
    let nrows = min(4u, d - i0);
    let nlo = min(4u, d - j0);
    let nhi = select(0u, min(4u, d - j0 - 4u), hi);
    let kcol = params.k_off + h * d + i0;
    let vcol = params.v_off + h * d + j0;
    let vcol_hi = select(vcol, vcol + 4u, hi);
    let img = b * n;
    let ld = params.ld;

    var acc: Acc;
    for (var t = t0; t < t1; t += 4u) {
        // Tokens past the chunk end read the last token with k zeroed: φ = 0 contributes nothing.
        let ta = t;
        let tb = min(t + 1u, t1 - 1u);
        let tc = min(t + 2u, t1 - 1u);
        let td = min(t + 3u, t1 - 1u);
        let ka = max(qkv4((img + ta) * ld + kcol, nrows), vec4<f32>(0.0));
        let kb = select(vec4<f32>(0.0), max(qkv4((img + tb) * ld + kcol, nrows), vec4<f32>(0.0)), t + 1u < t1);
        let kc = select(vec4<f32>(0.0), max(qkv4((img + tc) * ld + kcol, nrows), vec4<f32>(0.0)), t + 2u < t1);
        let kd = select(vec4<f32>(0.0), max(qkv4((img + td) * ld + kcol, nrows), vec4<f32>(0.0)), t + 3u < t1);
        let k = mat4x4<f32>(ka, kb, kc, kd);
        // Rows: trig factor f of the 4 tokens.
        let tr = transpose(mat4x4<f32>(trig[ta], trig[tb], trig[tc], trig[td]));
        let vlo = mat4x4<f32>(qkv4((img + ta) * ld + vcol, nlo), qkv4((img + tb) * ld + vcol, nlo),
                              qkv4((img + tc) * ld + vcol, nlo), qkv4((img + td) * ld + vcol, nlo));
#if JQ > 1
        var vhi = mat4x4<f32>();
        if (hi) {
            vhi = mat4x4<f32>(qkv4((img + ta) * ld + vcol_hi, nhi), qkv4((img + tb) * ld + vcol_hi, nhi),
                              qkv4((img + tc) * ld + vcol_hi, nhi), qkv4((img + td) * ld + vcol_hi, nhi));
        }
#endif
        let p0 = phi(k, tr[0]);
        acc.f00 = mad(acc.f00, p0, vlo);
#if JQ > 1
        acc.f01 = mad(acc.f01, p0, vhi);
#endif
        acc.ks0 += row_sums(p0);
        let p1 = phi(k, tr[1]);
        acc.f10 = mad(acc.f10, p1, vlo);
#if JQ > 1
        acc.f11 = mad(acc.f11, p1, vhi);
#endif
        acc.ks1 += row_sums(p1);
        let p2 = phi(k, tr[2]);
        acc.f20 = mad(acc.f20, p2, vlo);
#if JQ > 1
        acc.f21 = mad(acc.f21, p2, vhi);
#endif
        acc.ks2 += row_sums(p2);
        let p3 = phi(k, tr[3]);
        acc.f30 = mad(acc.f30, p3, vlo);
#if JQ > 1
        acc.f31 = mad(acc.f31, p3, vhi);
#endif
        acc.ks3 += row_sums(p3);
    }
    let cols = d + 1u;
    let base = (chunk * params.bh + bh) * 4u * d + i0; // row f·d + i0 is base + f·d
    store_block((base) * cols, cols, j0, nrows, nlo, acc.f00);
#if JQ > 1
    store_block((base) * cols, cols, j0 + 4u, nrows, nhi, acc.f01);
#endif
    store_block((base + d) * cols, cols, j0, nrows, nlo, acc.f10);
#if JQ > 1
    store_block((base + d) * cols, cols, j0 + 4u, nrows, nhi, acc.f11);
#endif
    store_block((base + 2u * d) * cols, cols, j0, nrows, nlo, acc.f20);
#if JQ > 1
    store_block((base + 2u * d) * cols, cols, j0 + 4u, nrows, nhi, acc.f21);
#endif
    store_block((base + 3u * d) * cols, cols, j0, nrows, nlo, acc.f30);
#if JQ > 1
    store_block((base + 3u * d) * cols, cols, j0 + 4u, nrows, nhi, acc.f31);
#endif
    if (jb == 0u) {
        let ks = mat4x4<f32>(acc.ks0, acc.ks1, acc.ks2, acc.ks3); // column f, component = lane
        for (var f = 0u; f < 4u; f++) {
            let v = ks[f];
            let row = (base + f * d) * cols + d;
            partials[row] = v.x;
            if (nrows > 1u) { partials[row + cols] = v.y; }
            if (nrows > 2u) { partials[row + 2u * cols] = v.z; }
            if (nrows > 3u) { partials[row + 3u * cols] = v.w; }
        }
    }
}
