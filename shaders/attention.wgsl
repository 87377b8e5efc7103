// attention.wgsl — out = softmax(scale * q·kᵀ + bias) · v for every (batch, head, query row),
// with an online softmax (running max and sum): no score matrix is ever stored.
//
// Operands are addressed through views (`View`, built by `ops::attention::View`). Element
// (b, h, t, c) of an operand lives at
//     offset + b0*sb0 + b1*sb1 + b2*sb2 + h*sh + t0*st0 + t1*st1 + c*sc
// where b = (b0*nb1 + b1)*nb2 + b2 and t = t0*nt1 + t1 (mixed-radix splits of the batch and token
// indices). That is enough to read q/k/v straight out of a packed projection, or out of the windows
// or grid cells of a channel-last feature map, and to write the output in the layout the next op
// wants — no permute copies. The bias view addresses (b, h, query, key) with the key as its
// "channel" (stride sc); batch strides of 0 share one bias across the batch.
//
// requires: flat_texture
// Bindings: 0 params (uniform), 1 q, 2 k, 3 v (storage; under VEC4 each may be a flat texture,
// Q_TEXTURE / K_TEXTURE / V_TEXTURE), 4 bias (read; when HAS_BIAS = 0 any tensor is bound
// there and never read), 5 out (write).
// Dispatch: one invocation per (dv chunk, batch·head, group of QB consecutive query rows), rows
// fastest, WG invocations per workgroup whatever the shape (one pipeline serves every sequence
// length: a workgroup may span several batch·head entries), the workgroup count folded into
// (x, y) by `ops::grid`. Neighbouring lanes own neighbouring rows of one head, so they read the
// same k and v rows. On CPU devices loads, not FMAs, bound this kernel (lavapipe runs every
// storage load as a per-lane loop), so the host gives attentions several query rows per
// invocation there (`ops::tuning::attention_variant`): QB = 4 on lavapipe; on SwiftShader QB = 2
// for heads of up to 48 channels and 1 for larger ones, whose written-out code grows with the
// head size and is compiled on every page load. GPUs take QB = 1.
// The preprocessor writes the channel loops out to the overrides D4/DV4 (`#for c`): q and the
// accumulators are arrays indexed by the channel group, and an array indexed by a loop variable
// is memory on a software device (a per-lane loop per access on lavapipe, a gather on
// SwiftShader), where constant indices leave it in registers. A pipeline serves one head size.
// With VEC4 (any variant; `ops::attention` picks it when q, k and v are channel-contiguous,
// every row starts on a vec4 and d, dv % 4 == 0) q, k and v are array<vec4<f32>> and 4 channels
// are one load: on lavapipe each load is a loop over the SIMD lanes, so four scalar loads cost
// about four times one vec4 load.
// Registers: q as QB·D4 vec4 (D4 = ceil(d / 4) <= 16, so d <= 64) and the output accumulators as
// QB·DV4 vec4 (a chunk of at most 64 output channels; a larger dv is split over more invocations,
// each recomputing the scores). Keys go in blocks of KB = 4: their scores are computed first, so
// the running max/sum rescale (one exp and DV4 vec4 multiplies per row) happens once per block,
// not per key.
// Workgroup memory: none (on a CPU device, barriers cost more than re-reading cached k/v rows).

struct View {
    offset: u32,
    nb1: u32,
    nb2: u32,
    sb0: u32,
    sb1: u32,
    sb2: u32,
    sh: u32,
    nt1: u32,
    st0: u32,
    st1: u32,
    sc: u32,
    _pad: u32,
}

struct Params {
    batch: u32,
    heads: u32,
    nq: u32,
    nk: u32,
    d: u32,
    dv: u32,
    chunks: u32,
    scale: f32,
    q: View,
    k: View,
    v: View,
    bias: View,
    o: View,
}

@group(0) @binding(0) var<uniform> params: Params;
#if VEC4
#if Q_TEXTURE
@group(0) @binding(1) var q_texture: FlatTexture;
// Elements i .. i+3 (i a multiple of 4) of `q_texture` (flat_texture.wgsl).
fn q_texture_at(i: u32) -> vec4<f32> {
#if FLAT_IMAGE
    return textureLoad(q_texture, flat_coords(i));
#else
    return textureLoad(q_texture, flat_coords(i), 0);
#endif
}
#else
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
#endif
#if K_TEXTURE
@group(0) @binding(2) var k_texture: FlatTexture;
// Elements i .. i+3 (i a multiple of 4) of `k_texture` (flat_texture.wgsl).
fn k_texture_at(i: u32) -> vec4<f32> {
#if FLAT_IMAGE
    return textureLoad(k_texture, flat_coords(i));
#else
    return textureLoad(k_texture, flat_coords(i), 0);
#endif
}
#else
@group(0) @binding(2) var<storage, read> k: array<vec4<f32>>;
#endif
#if V_TEXTURE
@group(0) @binding(3) var v_texture: FlatTexture;
// Elements i .. i+3 (i a multiple of 4) of `v_texture` (flat_texture.wgsl).
fn v_texture_at(i: u32) -> vec4<f32> {
#if FLAT_IMAGE
    return textureLoad(v_texture, flat_coords(i));
#else
    return textureLoad(v_texture, flat_coords(i), 0);
#endif
}
#else
@group(0) @binding(3) var<storage, read> v: array<vec4<f32>>;
#endif
#else
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
#endif
@group(0) @binding(4) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

override WG: u32 = 64u;
// D4 = ceil(d / 4) and DV4 = ceil(min(dv, 64) / 4), the trip counts of the channel loops (written
// out: q and acc stay in registers).
override D4: u32 = 16u;
override DV4: u32 = 16u;
override HAS_BIAS: bool = false;
// q, k or v (VEC4 only) is a flat texture (flat_texture.wgsl): on lavapipe an activation
// `Graph::with_activation_textures` moved to a texture, read with one texel fetch per vec4.
override Q_TEXTURE: bool = false;
override K_TEXTURE: bool = false;
override V_TEXTURE: bool = false;
// The output channels stored in a loop over the channel groups instead of written out: on
// SwiftShader, which expands every lane's store, for heads over 32 channels the written-out
// stores were a fifth of the pipeline's creation (`ops::tuning::attention_variant`).
override STORE_LOOP: bool = false;
// QB, the query rows per invocation, is a `const` chosen by the variant (`Kernel::Attention`: 1;
// define QB2: 2; define QB4: 4): a const, not an override, because the register arrays
// are sized by it (an override-sized maximum made lavapipe's LLVM compile several times slower).
// The loops over the QB rows are written out by the preprocessor (`#for RR in 0..QB`, QB from
// the defines it sees): SwiftShader does not unroll a loop, and a one-row loop inside the channel
// loop cost it half the kernel's time.
#let QB = 1 + QB2 + 3 * QB4
#if QB4
const QB: u32 = 4u;
#else
#if QB2
const QB: u32 = 2u;
#else
const QB: u32 = 1u;
#endif
#endif

const MAX_D4: u32 = 16u;
const MAX_QD4: u32 = QB * MAX_D4;
const KB: u32 = 4u;
const MAX_QKB: u32 = QB * KB;
// Finite stand-in for -inf as the initial running max: exp(NEG - s) is 0 without inf - inf.
const NEG: f32 = -3.0e38;

fn batch_offset(w: View, b: u32) -> u32 {
    let b2 = b % w.nb2;
    let r = b / w.nb2;
    return w.offset + (r / w.nb1) * w.sb0 + (r % w.nb1) * w.sb1 + b2 * w.sb2;
}

fn token_offset(w: View, t: u32) -> u32 {
    return (t / w.nt1) * w.st0 + (t % w.nt1) * w.st1;
}

// Walks a view's token index 0, 1, 2, ... without a division per step: `row` is the address of
// channel 0 of the current token, `inner` counts t1 within its run of nt1.
struct TokenCursor {
    row: u32,
    inner: u32,
}

fn cursor_next(c: TokenCursor, w: View) -> TokenCursor {
    if (c.inner + 1u == w.nt1) {
        return TokenCursor(c.row + w.st0 - c.inner * w.st1, 0u);
    }
    return TokenCursor(c.row + w.st1, c.inner + 1u);
}

#if VEC4
// Channel stride 1, every row on a vec4 and d, dv multiples of 4 (the host checks): the 4
// channels are one vec4 and none lies past d.
fn load_q4(row: u32, ch: u32) -> vec4<f32> {
#if Q_TEXTURE
    return q_texture_at(row + ch);
#else
    return q[(row + ch) >> 2u];
#endif
}

fn load_k4(row: u32, ch: u32) -> vec4<f32> {
#if K_TEXTURE
    return k_texture_at(row + ch);
#else
    return k[(row + ch) >> 2u];
#endif
}

fn load_v4(row: u32, ch: u32) -> vec4<f32> {
#if V_TEXTURE
    return v_texture_at(row + ch);
#else
    return v[(row + ch) >> 2u];
#endif
}
#else
// Channels past `limit` read as 0 (q, k: they would otherwise pick up a neighbouring head).
fn load_q4(row: u32, ch: u32) -> vec4<f32> {
    let s = params.q.sc;
    let i = row + ch * s;
    let n = params.d;
    return vec4<f32>(select(0.0, q[i], ch < n), select(0.0, q[i + s], ch + 1u < n),
                     select(0.0, q[i + 2u * s], ch + 2u < n), select(0.0, q[i + 3u * s], ch + 3u < n));
}

fn load_k4(row: u32, ch: u32) -> vec4<f32> {
    let s = params.k.sc;
    let i = row + ch * s;
    let n = params.d;
    return vec4<f32>(select(0.0, k[i], ch < n), select(0.0, k[i + s], ch + 1u < n),
                     select(0.0, k[i + 2u * s], ch + 2u < n), select(0.0, k[i + 3u * s], ch + 3u < n));
}

// v channels past dv only feed accumulator lanes that are never stored (lanes are independent),
// so they need no mask.
fn load_v4(row: u32, ch: u32) -> vec4<f32> {
    let s = params.v.sc;
    let i = row + ch * s;
    return vec4<f32>(v[i], v[i + s], v[i + 2u * s], v[i + 3u * s]);
}
#endif

// Output channels dv0 + 4c .. dv0 + 4c + 3 of the row at `o_row` (none past dv).
fn store_channels(o_row: u32, dv0: u32, c: u32, y: vec4<f32>) {
#for E in 0..4
    {
        let ch = c * 4u + E;
        if (dv0 + ch < params.dv) {
            out[o_row + ch * params.o.sc] = y[E];
        }
    }
#endfor
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    // Invocations are numbered over (dv chunk, batch·head, group of QB rows), rows fastest.
    let groups = (params.nq + QB - 1u) / QB;
    let bhs = params.batch * params.heads;
    let item = (wid.x + wid.y * nwg.x) * WG + lid;
    if (item >= groups * bhs * params.chunks) {
        return;
    }
    let i0 = (item % groups) * QB;
    let r = item / groups;
    let bh = r % bhs;
    let chunk = r / bhs;
    let rows = min(QB, params.nq - i0);
    let h = bh % params.heads;
    let b = bh / params.heads;
    let dv0 = chunk * DV4 * 4u;

    // Rows past nq (the last invocation's) recompute row nq - 1 and are never stored.
    var qr: array<vec4<f32>, MAX_QD4>;
    var bias_row: array<u32, QB>;
#for RR in 0..QB
    {
        let i = min(i0 + RR, params.nq - 1u);
        let q_row = batch_offset(params.q, b) + h * params.q.sh + token_offset(params.q, i);
#for c in 0..D4
        {
            qr[RR * MAX_D4 + c] = load_q4(q_row, c * 4u) * params.scale;
        }
#endfor
#if HAS_BIAS
        bias_row[RR] = batch_offset(params.bias, b) + h * params.bias.sh + token_offset(params.bias, i);
#endif
    }
#endfor
    let v_chunk = dv0 * params.v.sc;

    var kc = TokenCursor(batch_offset(params.k, b) + h * params.k.sh, 0u);
    var vc = TokenCursor(batch_offset(params.v, b) + h * params.v.sh, 0u);
    var acc: array<vec4<f32>, MAX_QD4>;
#for RR in 0..QB
    {
#for c in 0..DV4
        {
            acc[RR * MAX_D4 + c] = vec4<f32>(0.0);
        }
#endfor
    }
#endfor
    var m: array<f32, QB>;
    var l: array<f32, QB>;
#for RR in 0..QB
    {
        m[RR] = NEG;
        l[RR] = 0.0;
    }
#endfor

    for (var j0 = 0u; j0 < params.nk; j0 += KB) {
        var s: array<f32, MAX_QKB>;
        var block_max = m;
        for (var jj = 0u; jj < KB; jj++) {
            let j = j0 + jj;
            if (j < params.nk) {
                var dot4: array<vec4<f32>, QB>;
#for RR in 0..QB
                dot4[RR] = vec4<f32>(0.0);
#endfor
#for c in 0..D4
                {
                    let kv = load_k4(kc.row, c * 4u);
#for RR in 0..QB
                    dot4[RR] += qr[RR * MAX_D4 + c] * kv;
#endfor
                }
#endfor
#for RR in 0..QB
                {
                    var sj = dot4[RR].x + dot4[RR].y + dot4[RR].z + dot4[RR].w;
#if HAS_BIAS
                    sj += bias[bias_row[RR] + j * params.bias.sc];
#endif
                    s[RR * KB + jj] = sj;
                    block_max[RR] = max(block_max[RR], sj);
                }
#endfor
                kc = cursor_next(kc, params.k);
            }
        }
#for RR in 0..QB
        {
            let correction = exp(m[RR] - block_max[RR]);
            m[RR] = block_max[RR];
            l[RR] *= correction;
#for c in 0..DV4
            {
                acc[RR * MAX_D4 + c] *= correction;
            }
#endfor
        }
#endfor
        for (var jj = 0u; jj < KB; jj++) {
            if (j0 + jj < params.nk) {
                var p: array<f32, QB>;
#for RR in 0..QB
                {
                    p[RR] = exp(s[RR * KB + jj] - m[RR]);
                    l[RR] += p[RR];
                }
#endfor
#for c in 0..DV4
                {
                    let vv = load_v4(vc.row + v_chunk, c * 4u);
#for RR in 0..QB
                    acc[RR * MAX_D4 + c] += p[RR] * vv;
#endfor
                }
#endfor
                vc = cursor_next(vc, params.v);
            }
        }
    }

#for RR in 0..QB
    if (RR < rows) {
        let inv_l = 1.0 / l[RR];
        let o_row = batch_offset(params.o, b) + h * params.o.sh + token_offset(params.o, i0 + RR) + dv0 * params.o.sc;
#if STORE_LOOP
        // Copied out of the accumulators, which a loop index would move to memory.
        var row_out: array<vec4<f32>, MAX_D4>;
#for c in 0..DV4
        row_out[c] = acc[RR * MAX_D4 + c];
#endfor
        for (var c = 0u; c < DV4; c++) {
            store_channels(o_row, dv0, c, row_out[c] * inv_l);
        }
#else
#for c in 0..DV4
        store_channels(o_row, dv0, c, acc[RR * MAX_D4 + c] * inv_l);
#endfor
#endif
    }
#endfor
}
