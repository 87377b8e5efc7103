// atrous_attention.wgsl — ACC-ViT's atrous attention, every dilation branch in one dispatch:
// window attention with a relative-position bias over the dilated partitions of a channel-last
// map, each branch's output scaled by its softmax gate, written side by side for one fused output
// projection.
//
// Partition of branch i (dilation d = 2^i, window WIN): window (g, a, g', a') holds the pixels
//     row = (g·WIN + u)·d + a,  col = (g'·WIN + v)·d + a'      (token (u, v), row-major)
// so d = 1 is plain WIN×WIN windowing and d = H / WIN the grid. Windows are enumerated by their
// origin: window row R (0 .. H/WIN) starts at (R / d)·WIN·d + R % d, likewise for columns; the
// partition and its inverse are this index arithmetic in the loads and stores (no copies).
//
// Input `qkv` [B, H, W, row_in] per pixel: branch i's q, k, v at channels i·3C + {0, C, 2C}
// (head h at + h·hd), then, when GATE, the NB gate logits at nb·3C (padded to 4 channels).
// Output `out` [B, H, W, row_out]: channels i·C + h·hd .. hold g_i · attention_i, and when GATE the
// 4 channels at nb·C hold (g_0 .. g_{nb-1}, 0 ..): the projection Σ_i g_i (P_i o_i + p_i) is then
// one GEMM over [g_0 o_0, .., g_{nb-1} o_{nb-1}, g] with the weight [P_0 .. P_{nb-1}, p_0 .. p_{nb-1}].
// The gate g = softmax over the branches of the gate logits, per pixel.
// `table` [nb, heads, (2·WIN − 1)²]: the relative-position bias, gathered in the loop:
// bias(query (u, v), key (u', v')) = table[i, h, (u − u' + WIN − 1)·(2·WIN − 1) + v − v' + WIN − 1].
//
// Bindings: 0 params, 1 qkv (read; `qkv_texture` with QKV_TEXTURE), 2 table (read;
// `table_uniform` with TABLE_UNIFORM), 3 out (write); qkv and out as vec4 (every
// channel offset is a multiple of 4: the host checks C, hd % 4 == 0 and pads the gate to 4).
// Dispatch: one workgroup per (image, branch, window, head) — every branch has H·W / WIN² windows —
// folded into (x, y) by `ops::grid`; one invocation per QB consecutive query tokens of the window
// (WG = ceil(WIN² / QB) rounded up to 8; the last invocation's tokens past WIN² recompute token
// WIN² − 1 and are never stored). k/v addresses depend only on the workgroup, so each k/v load is
// a broadcast across it, and each feeds the invocation's QB queries: on lavapipe, where loads
// and not FMAs bound the kernel, QB = 4 (`ops::tuning::atrous_attention_queries`).
// Softmax: online (running max m and sum l), rescaled once per key row of the window: a row's WIN
// scores go to a register array. The loops over channels (D4) and a key row (WIN) are written
// out by the preprocessor (`#for`), so every array index is a constant: SwiftShader does not
// unroll loops itself. The key-row loop stays a loop.
// Registers: q and the accumulator as QB·D4 vec4 each (head dim hd = 4·D4 ≤ 64), QB·WIN scores.
// The gate is on when nb > 1 (a uniform branch, not an override: one pipeline serves every
// branch count; lavapipe JIT-compiles each pipeline at its first dispatch, 0.45 s for this one).
// Workgroup memory: none (on CPU devices barriers cost more than re-reading cached k/v rows).
//
// With QKV_TEXTURE (lavapipe: `Graph::with_activation_textures` moved qkv to a flat texture, which
// its GEMM stores) every q/k/v vec4 is one texel fetch, a gather across the SIMD lanes, where a
// storage load is a loop over them in Mesa 22.3 (broadcast address or not). Each k/v texel is
// fetched ceil(WIN² / QB) times, too few to pay for the texture store where stores are costly
// (the GEMM's store cost accvit-tiny more than its four-query attention gained). With
// TABLE_UNIFORM (lavapipe, the table a constant of at most 64 KiB) the bias comes from a uniform
// buffer, one gather.
// requires: flat_texture

struct Params {
    batch: u32,
    h: u32,
    w: u32,
    c: u32,        // channels per branch
    heads: u32,
    hd: u32,       // head dim = 4 * D4
    nb: u32,       // branches
    wins_w: u32,   // W / WIN
    wins: u32,     // (H / WIN) * (W / WIN), windows per branch and image
    row_in4: u32,  // qkv row / 4
    row_out4: u32, // out row / 4
    gate4: u32,    // nb * 3C / 4: the gate logits in a qkv row
    scale: f32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
#if QKV_TEXTURE
@group(0) @binding(1) var qkv_texture: FlatTexture;
// Elements i .. i+3 (i a multiple of 4) of `qkv_texture` (flat_texture.wgsl).
fn qkv_texture_at(i: u32) -> vec4<f32> {
#if FLAT_IMAGE
    return textureLoad(qkv_texture, flat_coords(i));
#else
    return textureLoad(qkv_texture, flat_coords(i), 0);
#endif
}
// The vec4 of qkv at vec4 index i.
fn qkv4(i: u32) -> vec4<f32> { return qkv_texture_at(i << 2u); }
#else
@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;
fn qkv4(i: u32) -> vec4<f32> { return qkv[i]; }
#endif
#if TABLE_UNIFORM
// A uniform buffer of 64 KiB (graph::UNIFORM_WINDOW_BYTES) holds the table and zeros after it.
@group(0) @binding(2) var<uniform> table_uniform: array<vec4<f32>, 4096>;
fn table_at(i: u32) -> f32 { return table_uniform[i >> 2u][i & 3u]; }
#else
@group(0) @binding(2) var<storage, read> table: array<f32>;
fn table_at(i: u32) -> f32 { return table[i]; }
#endif
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;

override WG: u32 = 56u;
override WIN: u32 = 7u;
override D4: u32 = 8u;
// qkv is a flat texture, the table a uniform buffer (header).
override QKV_TEXTURE: bool = false;
override TABLE_UNIFORM: bool = false;
// Query tokens per invocation: 1 .. MAX_QB (header).
override QB: u32 = 1u;

const MAX_D4: u32 = 16u;
const MAX_WIN: u32 = 8u;
const MAX_QB: u32 = 4u;
// Finite stand-in for -inf: exp(NEG - s) is 0 without inf - inf.
const NEG: f32 = -3.0e38;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let wg = wid.x + wid.y * nwg.x;
    let q0 = lid * QB;
    if (wg >= params.batch * params.nb * params.wins * params.heads || q0 >= WIN * WIN) {
        return;
    }
    let h = wg % params.heads;
    var r = wg / params.heads;
    let wi = r % params.wins;
    r = r / params.wins;
    let br = r % params.nb;
    let b = r / params.nb;

    // Window origin.
    let d = 1u << br;
    let wr = wi / params.wins_w;
    let wc = wi % params.wins_w;
    let r0 = (wr / d) * WIN * d + wr % d;
    let c0 = (wc / d) * WIN * d + wc % d;
    let img = b * params.h;

    let c4 = params.c / 4u;
    let qoff = br * 3u * c4 + h * D4;
    let side = 2u * WIN - 1u;
    // Per query token (u, v): its pixel, and the table index of its bias towards key (0, 0);
    // towards key (u', v') it is u'·side + v' lower.
    var qpix: array<u32, MAX_QB>;
    var bias_at: array<u32, MAX_QB>;
    var qr: array<vec4<f32>, MAX_QB * MAX_D4>;
    var acc: array<vec4<f32>, MAX_QB * MAX_D4>;
    var m: array<f32, MAX_QB>;
    var l: array<f32, MAX_QB>;
#for RR in 0..QB
    {
        let qi = min(q0 + RR, WIN * WIN - 1u);
        let u = qi / WIN;
        let v = qi % WIN;
        qpix[RR] = (img + r0 + u * d) * params.w + c0 + v * d;
        bias_at[RR] = (br * params.heads + h) * side * side + (u + WIN - 1u) * side + v + WIN - 1u;
        let q_at = qpix[RR] * params.row_in4 + qoff;
#for C in 0..D4
        qr[RR * MAX_D4 + C] = qkv4(q_at + C) * params.scale;
        acc[RR * MAX_D4 + C] = vec4<f32>(0.0);
#endfor
        m[RR] = NEG;
        l[RR] = 0.0;
    }
#endfor

    let kstep = d * params.row_in4;
    for (var up = 0u; up < WIN; up++) {
        let k_row = ((img + r0 + up * d) * params.w + c0) * params.row_in4 + qoff + c4;
        let bias_up = up * side;
        var s: array<f32, MAX_QB * MAX_WIN>;
        var row_max = m;
#for VP in 0..WIN
        {
            let k_at = k_row + VP * kstep;
            var dot4: array<vec4<f32>, MAX_QB>;
#for RR in 0..QB
            dot4[RR] = vec4<f32>(0.0);
#endfor
#for C in 0..D4
            {
                let kv = qkv4(k_at + C);
#for RR in 0..QB
                dot4[RR] = fma(qr[RR * MAX_D4 + C], kv, dot4[RR]);
#endfor
            }
#endfor
#for RR in 0..QB
            {
                let sv = dot4[RR].x + dot4[RR].y + dot4[RR].z + dot4[RR].w + table_at(bias_at[RR] - bias_up - VP);
                s[RR * MAX_WIN + VP] = sv;
                row_max[RR] = max(row_max[RR], sv);
            }
#endfor
        }
#endfor
#for RR in 0..QB
        {
            let correction = exp(m[RR] - row_max[RR]);
            m[RR] = row_max[RR];
            l[RR] *= correction;
#for C in 0..D4
            acc[RR * MAX_D4 + C] *= correction;
#endfor
        }
#endfor
#for VP in 0..WIN
        {
            var p: array<f32, MAX_QB>;
#for RR in 0..QB
            p[RR] = exp(s[RR * MAX_WIN + VP] - m[RR]);
            l[RR] += p[RR];
#endfor
            let v_at = k_row + VP * kstep + c4;
#for C in 0..D4
            {
                let vv = qkv4(v_at + C);
#for RR in 0..QB
                acc[RR * MAX_D4 + C] = fma(vec4<f32>(p[RR]), vv, acc[RR * MAX_D4 + C]);
#endfor
            }
#endfor
        }
#endfor
    }

#for RR in 0..QB
    if (q0 + RR < WIN * WIN) {
        var f = 1.0 / l[RR];
        if (params.nb > 1u) {
            // Softmax over the nb gate logits of this pixel (lanes past nb read as -inf -> weight 0).
            let nb = params.nb;
            let valid = vec4<bool>(true, nb > 1u, nb > 2u, nb > 3u);
            let logits = select(vec4<f32>(NEG), qkv4(qpix[RR] * params.row_in4 + params.gate4), valid);
            let gm = max(max(logits.x, logits.y), max(logits.z, logits.w));
            let e = exp(logits - gm);
            let gate = e / (e.x + e.y + e.z + e.w);
            f = gate[br] * f;
            if (br == 0u && h == 0u) {
                out[qpix[RR] * params.row_out4 + nb * c4] = gate;
            }
        }
        let o_at = qpix[RR] * params.row_out4 + br * c4 + h * D4;
#for C in 0..D4
        out[o_at + C] = acc[RR * MAX_D4 + C] * f;
#endfor
    }
#endfor
}
