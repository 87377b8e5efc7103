// groupnorm.wgsl — y = act((v - mean_g) / sqrt(var_g + eps) * gamma[c] + beta[c]), v = x (+ add),
// or with ADD = 2 (a residual after the norm) y = act(that of v = x) + add,
// for x [B, C, S] (S = H*W or N); group g of image b is the contiguous run of (C / G) * S elements
// of channels g*C/G .. (g+1)*C/G, so GroupNorm(1, C) takes statistics over a whole image.
//
// A group (up to ~800k elements) is cut into chunks of `chunk_len` elements, one workgroup each,
// and normalised in two dispatches of this shader (PHASE override), or in one (PHASE 2) when a
// group is one chunk (small maps: the digit models' are a few thousand elements):
//   PHASE 0: per chunk, each lane takes the elements lane, lane + WG, ... and computes its count,
//     mean and centred M2 = sum (v - mean)^2 in one pass (Welford's update: each element moves
//     the running mean by (v - mean) / n and M2 by (v - mean_old) * (v - mean_new)); the lanes'
//     triples are merged with Chan's parallel formula in a workgroup tree; the chunk's (mean, M2)
//     go to `stats`. One pass, not a mean pass and then a centred pass: every storage load is a
//     per-lane loop on lavapipe, and the statistics were two thirds of the norms' loads there.
//   PHASE 1: per chunk, the lanes merge all chunk statistics of the group (Chan again), then
//     normalise the chunk's own elements.
//   PHASE 2: PHASE 0's statistics of the one chunk, then PHASE 1's normalisation, in one
//     dispatch (the same numbers: merging one chunk's moments with empty ones is exact).
// Welford's update and Chan's merges (lib/moments.wgsl) take only differences of nearby means,
// never E[v²] - E[v]², so a large common offset keeps full precision. Counts are f32, exact for
// groups < 2^24 (checked on the host).
//
// CHANNELS_LAST (one group only): x is [B, S, C], channels innermost, and group b is image b's
// whole run of S * C elements; V element j of it holds channels (j mod C/ELEMS) * ELEMS onwards.
// The statistics are the same sums; only the channel of an element differs. HAT-Net runs its
// last stage token-major where the token count is not a multiple of 4, so that its GEMMs read
// channels as vec4 (`models::hatnet`).
// OUT_TRANSPOSED (one group, x [B, C, S] or [B, S, C]): y is written in the other layout, [B, S, C]
// or [B, C, S], as an array of floats (each V's ELEMS floats stored one by one): a norm between
// an NCHW map and a channel-last conv, or back, with no permute dispatch.
//
// Element type V from lib/elem.wgsl: f32, or vec4<f32> (VEC4) when S is a multiple of 4 (a vec4 never
// straddles two channels). Every length in params and below counts V elements; counts of floats
// convert with ELEMS.
//
// Bindings (the same for both phases so that one module serves both):
//   0 params, 1 x [B, C, S] (read), 2 add [B, C, S] (read; summed into x when ADD = 1, into y
//   when ADD = 2, and x bound again when ADD = 0),
//   3 gamma [C] (read), 4 beta [C] (read; with AFFINE_UNIFORM both are constants in uniform
//   buffers of 64 KiB, `Graph::constant_uniform_elements`: lavapipe gathers a uniform load across
//   the SIMD lanes, where the normalisation's two storage loads per element were per-lane loops),
//   5 stats [B * G * chunks_per_group, 2] (read_write:
//   written by phase 0, read by phase 1), 6 y [B, C, S] (read_write; written by phase 1 only:
//   for phase 0 the host binds a 4-float scratch buffer there, so that y has one producer).
// Dispatch: B * G * chunks_per_group workgroups (both phases) folded into (x, y) by `ops::grid`.
// Workgroup memory: 3 x WG f32 (count, mean, M2) = 384 B at WG = 32 (3 KiB at the largest WG, 256).
// requires: elem, moments

struct Params {
    group_len: u32,           // (C / G) * S
    spatial: u32,             // S
    channels_per_group: u32,  // C / G (CHANNELS_LAST: C / ELEMS, the V elements of a pixel)
    groups: u32,              // G
    chunk_len: u32,
    chunks_per_group: u32,
    num_chunks: u32,          // B * G * chunks_per_group
    eps: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<V>;
@group(0) @binding(2) var<storage, read> add: array<V>;
#if AFFINE_UNIFORM
@group(0) @binding(3) var<uniform> gamma_uniform: array<vec4<f32>, 4096>;
@group(0) @binding(4) var<uniform> beta_uniform: array<vec4<f32>, 4096>;
fn gamma_at(c: u32) -> f32 { return gamma_uniform[c >> 2u][c & 3u]; }
fn beta_at(c: u32) -> f32 { return beta_uniform[c >> 2u][c & 3u]; }
#else
@group(0) @binding(3) var<storage, read> gamma: array<f32>;
@group(0) @binding(4) var<storage, read> beta: array<f32>;
fn gamma_at(c: u32) -> f32 { return gamma[c]; }
fn beta_at(c: u32) -> f32 { return beta[c]; }
#endif
@group(0) @binding(5) var<storage, read_write> stats: array<f32>;
#if OUT_TRANSPOSED
@group(0) @binding(6) var<storage, read_write> y: array<f32>;
#else
@group(0) @binding(6) var<storage, read_write> y: array<V>;
#endif

override WG: u32 = 256u;
override PHASE: u32 = 0u;
override ADD: u32 = 0u;
override ACT: u32 = 0u;
override CHANNELS_LAST: bool = false;
override OUT_TRANSPOSED: bool = false;
// gamma and beta are uniform buffers (header).
override AFFINE_UNIFORM: bool = false;

var<workgroup> counts: array<f32, WG>;
var<workgroup> means: array<f32, WG>;
var<workgroup> m2s: array<f32, WG>;

#if CHANNELS_LAST
// The gamma and beta of V element `c` of a pixel: ELEMS consecutive channels.
struct AffineV {
    gamma: V,
    beta: V,
}

fn affine_v(c: u32) -> AffineV {
#if VEC4
#if AFFINE_UNIFORM
    return AffineV(gamma_uniform[c], beta_uniform[c]);
#else
    let i = 4u * c;
    return AffineV(vec4<f32>(gamma[i], gamma[i + 1u], gamma[i + 2u], gamma[i + 3u]),
                   vec4<f32>(beta[i], beta[i + 1u], beta[i + 2u], beta[i + 3u]));
#endif
#else
    return AffineV(gamma_at(c), beta_at(c));
#endif
}
#endif

#if OUT_TRANSPOSED
// The ELEMS floats of one V at y[first], y[first + stride], ...: the transposed layout's
// neighbours along the axis that V runs along.
fn store_strided(first: u32, stride: u32, v: V) {
#if VEC4
    y[first] = v.x;
    y[first + stride] = v.y;
    y[first + 2u * stride] = v.z;
    y[first + 3u * stride] = v.w;
#else
    y[first] = v;
#endif
}
#endif

fn value(i: u32) -> V {
#if ADD == 1
    return x[i] + add[i];
#else
    return x[i];
#endif
}

// The normalised element i, then the residual when ADD = 2.
fn output(i: u32, normalised: V) -> V {
#if ADD == 2
    return activated_v(normalised) + add[i];
#else
    return activated_v(normalised);
#endif
}

// Merges every lane's moments; all lanes get the workgroup's total. Call in uniform control flow.
fn merge_workgroup(lid: u32, mine: Moments) -> Moments {
    counts[lid] = mine.n;
    means[lid] = mine.mean;
    m2s[lid] = mine.m2;
    workgroupBarrier();
    for (var half = WG / 2u; half > 0u; half /= 2u) {
        if (lid < half) {
            let merged = merge(Moments(counts[lid], means[lid], m2s[lid]),
                               Moments(counts[lid + half], means[lid + half], m2s[lid + half]));
            counts[lid] = merged.n;
            means[lid] = merged.mean;
            m2s[lid] = merged.m2;
        }
        workgroupBarrier();
    }
    return Moments(counts[0], means[0], m2s[0]);
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let chunk = wid.x + wid.y * nwg.x;
    if (chunk >= params.num_chunks) {
        return; // whole workgroups past the end: uniform, no barrier is skipped by part of a group
    }
    let group = chunk / params.chunks_per_group;
    let chunk_in_group = chunk % params.chunks_per_group;
    let start = chunk_in_group * params.chunk_len;
    let len = min(params.chunk_len, params.group_len - start);
    let base = group * params.group_len + start;

    var total: Moments;
    if (PHASE != 1u) {
        // Welford's update per component, on the values less the chunk's first element: the
        // running mean stays near 0, where its rounding at each update scales with the spread
        // (around a common offset every update would round to the offset's ulp).
        let shift = first(value(base));
        var mean = splat(0.0);
        var m2 = splat(0.0);
        var count = 0u;
        for (var k = lid; k < len; k += WG) {
            count += 1u;
            welford(&mean, &m2, value(base + k) - splat(shift), count);
        }
        let lane = component_moments(count, mean, m2);
        total = merge_workgroup(lid, Moments(lane.n, shift + lane.mean, lane.m2));
        if (PHASE == 0u) {
            if (lid == 0u) {
                stats[2u * chunk] = total.mean;
                stats[2u * chunk + 1u] = total.m2;
            }
            return;
        }
    } else {
        // PHASE 1: the group's statistics from its chunks' moments.
        let first_chunk = group * params.chunks_per_group;
        var acc = Moments(0.0, 0.0, 0.0);
        for (var j = lid; j < params.chunks_per_group; j += WG) {
            let n = f32(min(params.chunk_len, params.group_len - j * params.chunk_len)) * ELEMS;
            acc = merge(acc, Moments(n, stats[2u * (first_chunk + j)], stats[2u * (first_chunk + j) + 1u]));
        }
        total = merge_workgroup(lid, acc);
    }
    let mean = total.mean;
    let rstd = 1.0 / sqrt(total.m2 / total.n + params.eps);

#if CHANNELS_LAST
    // The first channel of V element start + k (over ELEMS), tracked incrementally as k steps by
    // WG: integer division per element is slow on CPU devices (no vector divide).
    let run = params.channels_per_group;
    let run_step = WG % run;
    var c = (start + lid) % run;
#if OUT_TRANSPOSED
    // [B, C, S] out: channel ELEMS·c of pixel p at image_base + ELEMS·c·S + p.
    let pixels = params.spatial;
    let pixel_step = WG / run;
    var p = (start + lid) / run;
    let image_base = group * params.group_len * u32(ELEMS);
#endif
    for (var k = lid; k < len; k += WG) {
        let i = base + k;
        let affine = affine_v(c);
        let v = output(i, (value(i) - splat(mean)) * (splat(rstd) * affine.gamma) + affine.beta);
#if OUT_TRANSPOSED
        store_strided(image_base + c * u32(ELEMS) * pixels + p, pixels, v);
        p += pixel_step;
#else
        y[i] = v;
#endif
        c += run_step;
        if (c >= run) {
            c -= run;
#if OUT_TRANSPOSED
            p += 1u;
#endif
        }
    }
#else
    // The channel of element start + k, tracked incrementally as k steps by WG: integer division
    // per element is slow on CPU devices (no vector divide).
    let spatial = params.spatial;
    let channel_step = WG / spatial;
    let offset_step = WG % spatial;
    var c = (group % params.groups) * params.channels_per_group + (start + lid) / spatial;
    var offset = (start + lid) % spatial;
#if OUT_TRANSPOSED
    // [B, S, C] out (one group, so c is the channel within the image): float ELEMS·offset + e of
    // channel c at image_base + (ELEMS·offset + e)·C + c.
    let channels = params.channels_per_group;
    let image_base = group * params.group_len * u32(ELEMS);
#endif
    for (var k = lid; k < len; k += WG) {
        let i = base + k;
        let v = output(i, (value(i) - splat(mean)) * splat(rstd * gamma_at(c)) + splat(beta_at(c)));
#if OUT_TRANSPOSED
        store_strided(image_base + offset * u32(ELEMS) * channels + c, channels, v);
#else
        y[i] = v;
#endif
        offset += offset_step;
        c += channel_step;
        if (offset >= spatial) {
            offset -= spatial;
            c += 1u;
        }
    }
#endif
}
