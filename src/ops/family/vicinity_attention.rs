//! VVT's vicinity attention (spec shared/spec/vvt.md §3.3), linear in the number of tokens N.
//!
//! Per image and head, with `q, k ← relu(q), relu(k)` and the host's angle tables
//! `α_n = (π/2)·row/H`, `β_n = (π/2)·col/W`:
//!
//! ```text
//! φ(x)_n = [x_n cos α_n | x_n sin α_n | x_n cos β_n | x_n sin β_n]          (4d features)
//! KV     = clampmag(Σ_n φ_k(n)ᵀ v_n)        [4d, d]     ksum = Σ_n φ_k(n)   [4d] (not clamped)
//! z_n    = clampmag(1 / (φ_q(n)·ksum + 1e-4))
//! o_n    = clampmag(clampmag(φ_q(n)·KV) · z_n)
//! ```
//!
//! `φ_q(n)·φ_k(m) = (q_n·k_m)(cos(α_n − α_m) + cos(β_n − β_m))`: the 2-D Manhattan vicinity
//! weight, factored so that no `N × N` matrix ever exists. `clampmag(t) = sign(t)·clamp(|t|, 1e-4,
//! 1e4)` is part of the trained function (it changes the logits), so every clamp of the official
//! code is reproduced in its place. Three dispatches:
//!
//! 1. `vicinity_kv` — the k-side reduction over tokens as a split reduction: chunks of
//!    consecutive tokens each produce a partial `KV⁺ = [KV | ksum]` (`ksum` is the column of an
//!    appended 1 on v), so serial f32 sums stay short and the device gets many invocations.
//! 2. `vicinity_kv_reduce` — adds the chunks in a fixed order, clamps KV (not ksum), and writes
//!    KV `[B·heads, 4d, d]` and ksum `[B·heads, 4d]`.
//! 3. `vicinity_apply` — the q side per token, with the three remaining clamps.
//!
//! Steps 1 and 3 are register-tiled GEMMs in the style of gemm_tile.wgsl (mat4x4 accumulators
//! written out, φ formed per 4×4 block): on lavapipe every storage load is a loop over the SIMD
//! lanes and NIR keeps loop-indexed register arrays in scratch memory, so they ran 5–6× faster
//! than plain per-element kernels (56×56 tokens, d = 48: k side 22 → 3.9 ms, q side 32 → 6.2 ms;
//! 10–15 GFLOP/s, like the core matmul). Each has a `VEC4` variant (vec4 loads: `d`, the row
//! width and the column offsets multiples of 4, which every VVT config satisfies — d = 48, 40,
//! 32, 32; micro 16, 8, 8, 4) and a general one (any shape, scalar loads, lanes past `d` masked).
//!
//! The trig factors never multiply a stored tensor: each kernel reads the `[N] × vec4` table
//! ([`angle_table`], computed on the host in f64 — WGSL's `cos`/`sin` are only good to ~2⁻¹¹)
//! and forms `φ` on the fly. q, k and v are read straight out of one packed projection
//! `[B, N, row]` at column offsets ([`QkvColumns`]), so q/k/v need no split copies.
//!
//! [`vicinity_gate`] is the attention's tail fused with the block's residual add:
//! `out = residual + clampmag(c + c·s)`, `c = clampmag(out_proj(o))`, s the SE gate.

use super::{check_u32, grid, params, Graph, Kernel, Node, PipelineKey, TensorId, Uniform};
use crate::error::{Error, Result};
use crate::ops::tuning;

/// Magnitude floor and ceiling of VVT's `abs_clamp`, and the denominator epsilon.
pub const CLAMP_MIN: f32 = 1e-4;
pub const CLAMP_MAX: f32 = 1e4;
pub const DEN_EPS: f32 = 1e-4;

const WG: u32 = 64;
/// A chunk of the split reduction holds at least this many tokens, and there are at most
/// `KV_MAX_CHUNKS` chunks (bounding the partials buffer and the second pass).
const KV_MIN_CHUNK: usize = 128;
const KV_MAX_CHUNKS: usize = 64;
/// The register tiles: the k side covers 4 lanes × 4 or 8 columns, the q side 4 or 16 tokens ×
/// 8 lanes (`tuning::vicinity_column_quads`, `tuning::vicinity_token_quads`).
const KV_LANES: usize = 4;
const APPLY_LANES: usize = 8;
/// Elements per invocation of the gate.
const GATE_RUN: usize = 4;

/// Shape of one vicinity attention: `batch` images of `n` tokens, `heads` heads of width `d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VicinityDims {
    pub batch: usize,
    pub heads: usize,
    pub n: usize,
    pub d: usize,
}

/// Where q, k and v live in a tokens-major `[B, N, row]` tensor: head `h` of q holds columns
/// `q + h·d .. q + (h+1)·d`, likewise k and v. A packed `[q | k | v]` projection of width
/// `C'` is `QkvColumns { row: 3·C', q: 0, k: C', v: 2·C' }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QkvColumns {
    pub row: usize,
    pub q: usize,
    pub k: usize,
    pub v: usize,
}

/// The vicinity angle table of an `h × w` token grid: `[n] × (cos α, sin α, cos β, sin β)`,
/// token `n = row·w + col`. The angles are rounded exactly as the official code rounds them,
/// `α = fl32(fl32(fl32(π/2)·row) / h)`, then cos/sin are taken in f64 and rounded once.
pub fn angle_table(h: usize, w: usize) -> Vec<f32> {
    let half_pi = std::f32::consts::FRAC_PI_2;
    let mut table = Vec::with_capacity(4 * h * w);
    for n in 0..h * w {
        let alpha = (half_pi * (n / w) as f32) / h as f32;
        let beta = (half_pi * (n % w) as f32) / w as f32;
        let (a, b) = (alpha as f64, beta as f64);
        table.extend([a.cos() as f32, a.sin() as f32, b.cos() as f32, b.sin() as f32]);
    }
    table
}

/// Chunking of the split reduction over `n` tokens: (chunk length, chunks).
fn kv_chunks(n: usize) -> (usize, usize) {
    let chunks = n.div_ceil(KV_MIN_CHUNK).clamp(1, KV_MAX_CHUNKS);
    let len = n.div_ceil(chunks);
    (len, n.div_ceil(len))
}

fn check_operands(g: &Graph, op: &str, qkv: TensorId, cols: &QkvColumns, trig: TensorId, dims: &VicinityDims) -> Result<()> {
    let qs = g.shape(qkv);
    let ts = g.shape(trig);
    let bad = |why: String| Error::Graph(format!("{op}: qkv {qs:?}, {cols:?}, trig {ts:?}, {dims:?}: {why}"));
    let VicinityDims { batch, heads, n, d } = *dims;
    if batch == 0 || heads == 0 || n == 0 || d == 0 {
        return Err(bad("every dimension must be at least 1".into()));
    }
    if qs != [batch, n, cols.row] {
        return Err(bad(format!("qkv must be [batch, n, row] = [{batch}, {n}, {}]", cols.row)));
    }
    let width = heads * d;
    for (name, off) in [("q", cols.q), ("k", cols.k), ("v", cols.v)] {
        if off + width > cols.row {
            return Err(bad(format!("{name} columns {off}..{} run past the row width {}", off + width, cols.row)));
        }
    }
    if ts != [n, 4] {
        return Err(bad(format!("trig must be [n, 4] = [{n}, 4] (cos α, sin α, cos β, sin β per token)")));
    }
    check_u32(op, g.numel(qkv))
}

/// Whether the vec4 kernels can read these operands: every vec4 they touch starts at a multiple
/// of 4 floats.
pub fn vec4_compatible(cols: &QkvColumns, dims: &VicinityDims) -> bool {
    [dims.d, cols.row, cols.q, cols.k, cols.v].iter().all(|v| v % 4 == 0)
}

/// k side: `(KV, ksum)` = `(clampmag(Σ φ_kᵀ v)` `[batch·heads, 4d, d]`, `Σ φ_k` `[batch·heads, 4d])`
/// (two nodes: the chunked partial sums and their reduction).
pub fn vicinity_kv(g: &mut Graph, qkv: TensorId, cols: &QkvColumns, trig: TensorId, dims: &VicinityDims) -> Result<(TensorId, TensorId)> {
    check_operands(g, "vicinity_kv", qkv, cols, trig, dims)?;
    let VicinityDims { batch, heads, n, d } = *dims;
    let bh = batch * heads;
    let (chunk_len, chunks) = kv_chunks(n);
    let kernel = if vec4_compatible(cols, dims) { Kernel::VicinityKvVec4 } else { Kernel::VicinityKv };
    let flops = 2 * (bh * n * 4 * d * (d + 1)) as u64 + (bh * n * 4 * d) as u64;
    let column_quads = tuning::vicinity_column_quads(&g.profile, flops);
    let jblocks = d.div_ceil(4 * column_quads);
    let items = chunks * bh * d.div_ceil(KV_LANES) * jblocks;
    let total = bh * 4 * d * (d + 1);
    check_u32("vicinity_kv partials", chunks * total)?;
    check_u32("vicinity_kv items", items)?;
    let partials = g.activation(&[chunks, bh, 4 * d, d + 1]);
    let p = |v: usize| v as u32;
    let key = PipelineKey::new(kernel).with("WG", WG).with("JQ", column_quads as u32);
    g.push(Node {
        label: "vicinity_kv".into(),
        key,
        params: Uniform::of(&params::VicinityKv { items: p(items), n: p(n), heads: p(heads), bh: p(bh), d: p(d), ld: p(cols.row), k_off: p(cols.k), v_off: p(cols.v), chunk_len: p(chunk_len), jblocks: p(jblocks), _pad0: 0, _pad1: 0 }),
        reads: vec![qkv, trig],
        writes: vec![partials],
        workgroups: grid(items.div_ceil(WG as usize)),
        flops,
    });
    let kv = g.activation(&[bh, 4 * d, d]);
    let ksum = g.activation(&[bh, 4 * d]);
    g.push(Node {
        label: "vicinity_kv_reduce".into(),
        key: PipelineKey::new(Kernel::VicinityKvReduce).with("WG", WG),
        params: Uniform::of(&params::VicinityKvReduce { total: p(total), chunks: p(chunks), d: p(d), _pad: 0 }),
        reads: vec![partials],
        writes: vec![kv, ksum],
        workgroups: grid(total.div_ceil(WG as usize)),
        flops: (chunks * total) as u64,
    });
    Ok((kv, ksum))
}

/// q side: `o = clampmag(clampmag(φ_q·KV) · clampmag(1/(φ_q·ksum + 1e-4)))` per token and head,
/// heads merged: `[batch, n, heads·d]`. `kv`, `ksum` are [`vicinity_kv`]'s outputs.
pub fn vicinity_apply(
    g: &mut Graph,
    qkv: TensorId,
    cols: &QkvColumns,
    trig: TensorId,
    (kv, ksum): (TensorId, TensorId),
    dims: &VicinityDims,
) -> Result<TensorId> {
    check_operands(g, "vicinity_apply", qkv, cols, trig, dims)?;
    let VicinityDims { batch, heads, n, d } = *dims;
    let bh = batch * heads;
    if g.shape(kv) != [bh, 4 * d, d] || g.shape(ksum) != [bh, 4 * d] {
        return Err(Error::Graph(format!(
            "vicinity_apply: kv {:?} and ksum {:?} must be [batch·heads, 4d, d] and [batch·heads, 4d] = [{bh}, {}, {d}], [{bh}, {}] for {dims:?}",
            g.shape(kv),
            g.shape(ksum),
            4 * d,
            4 * d
        )));
    }
    let kernel = if vec4_compatible(cols, dims) { Kernel::VicinityApplyVec4 } else { Kernel::VicinityApply };
    let flops = 2 * (bh * n * 4 * d * (d + 1)) as u64 + (bh * n * 4 * d) as u64;
    let token_quads = tuning::vicinity_token_quads(&g.profile, flops);
    let key = PipelineKey::new(kernel).with("WG", WG).with("TQ", token_quads as u32);
    let jblocks = d.div_ceil(APPLY_LANES);
    let token_blocks = n.div_ceil(4 * token_quads);
    let items = bh * jblocks * token_blocks;
    check_u32("vicinity_apply items", items)?;
    check_u32("vicinity_apply out", batch * n * heads * d)?;
    let out = g.activation(&[batch, n, heads * d]);
    let p = |v: usize| v as u32;
    g.push(Node {
        label: "vicinity_apply".into(),
        key,
        params: Uniform::of(&params::VicinityApply { items: p(items), n: p(n), heads: p(heads), d: p(d), ld: p(cols.row), q_off: p(cols.q), out_ld: p(heads * d), token_blocks: p(token_blocks), jblocks: p(jblocks), _pad0: 0, _pad1: 0, _pad2: 0 }),
        reads: vec![qkv, trig, kv, ksum],
        writes: vec![out],
        workgroups: grid(items.div_ceil(WG as usize)),
        flops,
    });
    Ok(out)
}

/// Both sides: the merged-head attention output `[batch, n, heads·d]`.
pub fn vicinity_attention(g: &mut Graph, qkv: TensorId, cols: &QkvColumns, trig: TensorId, dims: &VicinityDims) -> Result<TensorId> {
    let kv = vicinity_kv(g, qkv, cols, trig, dims)?;
    vicinity_apply(g, qkv, cols, trig, kv, dims)
}

/// `residual + clampmag(c + c·s)` with `c = clampmag(y)`: y, residual `[B, N, C]`, s `[B, C]`.
pub fn vicinity_gate(g: &mut Graph, y: TensorId, s: TensorId, residual: TensorId) -> Result<TensorId> {
    let ys = g.shape(y).to_vec();
    let (ss, rs) = (g.shape(s).to_vec(), g.shape(residual).to_vec());
    let [b, n, c] = ys[..] else {
        return Err(Error::Graph(format!("vicinity_gate: y {ys:?} must be [B, N, C]")));
    };
    if ss != [b, c] || rs != ys || b * n * c == 0 {
        return Err(Error::Graph(format!(
            "vicinity_gate: y {ys:?}, s {ss:?}, residual {rs:?}: s must be [B, C] and residual like y (non-empty)"
        )));
    }
    let total = b * n * c;
    check_u32("vicinity_gate", total)?;
    let out = g.activation(&ys);
    g.push(Node {
        label: "vicinity_gate".into(),
        key: PipelineKey::new(Kernel::VicinityGate).with("WG", WG).with("RUN", GATE_RUN as u32),
        params: Uniform::of(&params::VicinityGate { total: total as u32, c: c as u32, nc: (n * c) as u32, _pad: 0 }),
        reads: vec![y, s, residual],
        writes: vec![out],
        workgroups: grid(total.div_ceil(WG as usize * GATE_RUN)),
        flops: 4 * total as u64,
    });
    Ok(out)
}

/// `sign(t)·clamp(|t|, 1e-4, 1e4)`, zero staying zero (f64, for the CPU references).
pub fn clampmag(t: f64) -> f64 {
    if t == 0.0 {
        return 0.0;
    }
    t.signum() * t.abs().clamp(CLAMP_MIN as f64, CLAMP_MAX as f64)
}

/// CPU reference of [`vicinity_attention`] (f64 arithmetic, the same clamps): `[batch, n, heads·d]`.
pub fn vicinity_attention_cpu(qkv: &[f32], cols: &QkvColumns, trig: &[f32], dims: &VicinityDims) -> Vec<f32> {
    let VicinityDims { batch, heads, n, d } = *dims;
    let mut out = vec![0f32; batch * n * heads * d];
    let at = |b: usize, t: usize, c: usize| qkv[(b * n + t) * cols.row + c] as f64;
    for b in 0..batch {
        for h in 0..heads {
            let mut kv = vec![0f64; 4 * d * d];
            let mut ksum = vec![0f64; 4 * d];
            for t in 0..n {
                for f in 0..4 {
                    let tr = trig[4 * t + f] as f64;
                    for i in 0..d {
                        let phi = tr * at(b, t, cols.k + h * d + i).max(0.0);
                        ksum[f * d + i] += phi;
                        for j in 0..d {
                            kv[(f * d + i) * d + j] += phi * at(b, t, cols.v + h * d + j);
                        }
                    }
                }
            }
            kv.iter_mut().for_each(|x| *x = clampmag(*x));
            for t in 0..n {
                let mut den = 0f64;
                let mut o = vec![0f64; d];
                for f in 0..4 {
                    let tr = trig[4 * t + f] as f64;
                    for i in 0..d {
                        let phi = tr * at(b, t, cols.q + h * d + i).max(0.0);
                        den += phi * ksum[f * d + i];
                        for (j, oj) in o.iter_mut().enumerate() {
                            *oj += phi * kv[(f * d + i) * d + j];
                        }
                    }
                }
                let z = clampmag(1.0 / (den + DEN_EPS as f64));
                for (j, oj) in o.iter().enumerate() {
                    out[(b * n + t) * heads * d + h * d + j] = clampmag(clampmag(*oj) * z) as f32;
                }
            }
        }
    }
    out
}

/// CPU reference of [`vicinity_gate`]: y, residual `[b, n, c]`, s `[b, c]`.
pub fn vicinity_gate_cpu(y: &[f32], s: &[f32], residual: &[f32], n: usize, c: usize) -> Vec<f32> {
    y.iter()
        .zip(residual)
        .enumerate()
        .map(|(e, (&yv, &r))| {
            let cy = clampmag(yv as f64);
            (r as f64 + clampmag(cy + cy * s[(e / (n * c)) * c + e % c] as f64)) as f32
        })
        .collect()
}
