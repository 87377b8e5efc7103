//! Atrous attention (ACC-ViT): multi-head window attention over the *dilated* partitions of a
//! channel-last map, all dilation branches in one dispatch, each branch's result scaled by a
//! per-pixel softmax gate (`shaders/family/atrous_attention.wgsl`).
//!
//! Branch `i` has dilation `d = 2^i`: its windows take every `d`-th pixel, window `(g, a, g', a')`
//! holding rows `(g·win + u)·d + a` and columns `(g'·win + v)·d + a'` for tokens `(u, v)`. The
//! kernel addresses those pixels directly, so neither the partition nor its inverse is ever
//! materialised, and the relative-position bias is gathered from its `(2·win − 1)²` table inside
//! the key loop.
//!
//! Why not [`crate::ops::attention::attention_strided`]: its [`crate::ops::attention::View`] splits the batch
//! index into three strided parts, but a dilated window's origin needs four per image (window row
//! and offset `(g, a)`, window column and offset `(g', a')`) — it expresses only the undilated
//! (`d = 1`) and the grid (`d = H / win`) branches — and its bias operand cannot express the
//! relative-position gather; nor could it fuse the gate.
//!
//! Layouts (per pixel of `[B, H, W, ·]`):
//! - input `qkv`, [`AtrousAttentionDims::qkv_row`] channels: branch `i`'s q, k, v at
//!   `i·3C + {0, C, 2C}` (head `h` at `+ h·hd`) — the concatenation of the branches' `qkv`
//!   Linear outputs — then, with more than one branch, the gate logits (padded to 4 channels).
//! - output, [`AtrousAttentionDims::out_row`] channels: `g_i · attn_i` at `i·C`, then (gated) the
//!   gate values `g_0 .. g_{nb−1}` and zeros up to 4 channels. A Linear with weight
//!   `[P_0 .. P_{nb−1} | p_0 .. p_{nb−1} | 0]` on it is exactly `Σ_i g_i · (P_i·attn_i + p_i)`, the
//!   gated sum of the projected branches, in one GEMM.
//! - `table` `[nb, heads, (2·win − 1)²]` (a PyTorch `[(2·win − 1)², heads]` table transposed).

use super::{check_u32, grid, params, tuning, Graph, Kernel, Node, PipelineKey, TensorId, Uniform};
use crate::error::{Error, Result};

/// Most branches (dilations 1, 2, 4, 8): the gate logits are one vec4.
pub const MAX_BRANCHES: usize = 4;
/// Largest head dim (q and the accumulator are held in registers).
pub const MAX_HEAD_DIM: usize = 64;
/// Largest window side (a key row's scores are a register array).
pub const MAX_WINDOW: usize = 8;
/// Channels the gate occupies in the qkv and output rows when there is more than one branch.
pub const GATE_CHANNELS: usize = 4;

/// The extents of one atrous attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AtrousAttentionDims {
    pub batch: usize,
    pub h: usize,
    pub w: usize,
    /// Channels of one branch (C = heads · hd).
    pub channels: usize,
    pub heads: usize,
    /// Branches with dilations 1, 2, .., 2^(branches − 1).
    pub branches: usize,
    pub window: usize,
}

impl AtrousAttentionDims {
    pub fn head_dim(&self) -> usize {
        self.channels / self.heads.max(1)
    }
    pub fn dilation(&self, branch: usize) -> usize {
        1 << branch
    }
    /// Gate channels in the qkv and output rows: none for a single branch.
    pub fn gate_channels(&self) -> usize {
        if self.branches > 1 {
            GATE_CHANNELS
        } else {
            0
        }
    }
    pub fn qkv_row(&self) -> usize {
        3 * self.branches * self.channels + self.gate_channels()
    }
    pub fn out_row(&self) -> usize {
        self.branches * self.channels + self.gate_channels()
    }
    pub fn table_len(&self) -> usize {
        (2 * self.window - 1).pow(2)
    }

    fn check(&self) -> Result<()> {
        let bad = |why: String| Err(Error::Graph(format!("atrous_attention: {self:?}: {why}")));
        let AtrousAttentionDims { batch, h, w, channels, heads, branches, window } = *self;
        if [batch, h, w, channels, heads, branches, window].contains(&0) {
            return bad("empty extent".into());
        }
        if branches > MAX_BRANCHES {
            return bad(format!("at most {MAX_BRANCHES} branches (dilations 1, 2, 4, 8)"));
        }
        if window > MAX_WINDOW {
            return bad(format!("window side at most {MAX_WINDOW}"));
        }
        let span = window * self.dilation(branches - 1);
        if !h.is_multiple_of(span) || !w.is_multiple_of(span) {
            return bad(format!("H and W must be multiples of window · largest dilation = {span}"));
        }
        if !channels.is_multiple_of(heads) {
            return bad("channels must split evenly into heads".into());
        }
        let hd = self.head_dim();
        if !hd.is_multiple_of(4) || hd > MAX_HEAD_DIM {
            return bad(format!("head dim {hd} must be a multiple of 4 and at most {MAX_HEAD_DIM}"));
        }
        Ok(())
    }
}

/// `qkv [B, H, W, qkv_row]`, `table [nb, heads, (2·win − 1)²]` → `[B, H, W, out_row]` (see the
/// module docs for the layouts). `scale` multiplies q·k (usually hd^−½).
pub fn atrous_attention(g: &mut Graph, qkv: TensorId, table: TensorId, dims: &AtrousAttentionDims, scale: f32) -> Result<TensorId> {
    dims.check()?;
    let AtrousAttentionDims { batch, h, w, channels: c, heads, branches: nb, window: win } = *dims;
    let want_qkv = [batch, h, w, dims.qkv_row()];
    if g.shape(qkv) != want_qkv {
        return Err(Error::Graph(format!("atrous_attention: qkv must be {want_qkv:?} for {dims:?}, got {:?}", g.shape(qkv))));
    }
    let want_table = [nb, heads, dims.table_len()];
    if g.shape(table) != want_table {
        return Err(Error::Graph(format!("atrous_attention: table must be {want_table:?} for {dims:?}, got {:?}", g.shape(table))));
    }
    check_u32("atrous_attention qkv", g.numel(qkv))?;
    check_u32("atrous_attention out", batch * h * w * dims.out_row())?;
    let wins = (h / win) * (w / win);
    let workgroups = batch * nb * wins * heads;
    let flops = (batch * nb * h * w * heads * win * win * (4 * dims.head_dim() + 4)) as u64;
    let queries = tuning::atrous_attention_queries(&g.profile, flops);
    let hd = dims.head_dim();
    let out = g.activation(&[batch, h, w, dims.out_row()]);
    // The bias table from a uniform buffer where the device prefers it (lavapipe; header).
    let uniform_table = super::constant_uniform_scalars(g, table);
    let u = |v: usize| v as u32;
    g.push(Node {
        label: format!("atrous_attention{nb}"),
        key: PipelineKey::new(Kernel::AtrousAttention)
            .with("WG", u((win * win).div_ceil(queries).next_multiple_of(8)))
            .with("QB", u(queries))
            .with("WIN", u(win))
            .with("D4", u(hd / 4))
            .with("QKV_TEXTURE", 0)
            .with("TABLE_UNIFORM", uniform_table.is_some() as u32),
        params: Uniform::of(&params::AtrousAttention { batch: u(batch), h: u(h), w: u(w), c: u(c), heads: u(heads), hd: u(hd), nb: u(nb), wins_w: u(w / win), wins: u(wins), row_in4: u(dims.qkv_row() / 4), row_out4: u(dims.out_row() / 4), gate4: u(nb * 3 * c / 4), scale, _p0: 0, _p1: 0, _p2: 0 }),
        reads: vec![qkv, uniform_table.unwrap_or(table)],
        writes: vec![out],
        workgroups: grid(workgroups),
        flops,
    });
    // A k or v texel is fetched once by each invocation of its window: ceil(WIN² / QB) times.
    g.offer_texture_fetched(0, "QKV_TEXTURE", u((win * win).div_ceil(queries)));
    Ok(out)
}

/// CPU reference of [`atrous_attention`], written the way the spec states it: per branch, gather
/// each dilated window's tokens (window order and token order as in the contract's
/// `dilated_partition`), attend with the bias `table[idx(p, p')]` in f64, scatter back, and scale
/// by the per-pixel softmax gate.
pub fn atrous_attention_cpu(qkv: &[f32], table: &[f32], dims: &AtrousAttentionDims, scale: f32) -> Vec<f32> {
    let AtrousAttentionDims { batch, h, w, channels: c, heads, branches: nb, window: win } = *dims;
    let (row_in, row_out, hd, side) = (dims.qkv_row(), dims.out_row(), dims.head_dim(), 2 * win - 1);
    let mut out = vec![0f32; batch * h * w * row_out];
    let gate = |pix: usize| -> Vec<f64> {
        if nb == 1 {
            return vec![1.0];
        }
        let logits = &qkv[pix * row_in + nb * 3 * c..][..nb];
        let m = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
        let e: Vec<f64> = logits.iter().map(|&l| (l as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|v| v / s).collect()
    };
    for b in 0..batch {
        for br in 0..nb {
            let d = dims.dilation(br);
            let (gh, gw) = (h / (win * d), w / (win * d));
            for (g0, a0, g1, a1) in (0..gh).flat_map(|g0| (0..d).flat_map(move |a0| (0..gw).flat_map(move |g1| (0..d).map(move |a1| (g0, a0, g1, a1))))) {
                // Pixels of this window, token order (u, v) row-major.
                let pixels: Vec<(usize, usize, usize)> = (0..win * win)
                    .map(|t| {
                        let (u, v) = (t / win, t % win);
                        let (row, col) = ((g0 * win + u) * d + a0, (g1 * win + v) * d + a1);
                        ((b * h + row) * w + col, u, v)
                    })
                    .collect();
                for hh in 0..heads {
                    let ch = |pix: usize, part: usize, j: usize| qkv[pix * row_in + br * 3 * c + part * c + hh * hd + j] as f64;
                    for &(qp, u, v) in &pixels {
                        let scores: Vec<f64> = pixels
                            .iter()
                            .map(|&(kp, uk, vk)| {
                                let dot: f64 = (0..hd).map(|j| ch(qp, 0, j) * ch(kp, 1, j)).sum();
                                let idx = (u + win - 1 - uk) * side + (v + win - 1 - vk);
                                scale as f64 * dot + table[(br * heads + hh) * side * side + idx] as f64
                            })
                            .collect();
                        let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                        let p: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                        let l: f64 = p.iter().sum();
                        let gq = gate(qp)[br];
                        for j in 0..hd {
                            let o: f64 = pixels.iter().zip(&p).map(|(&(kp, _, _), pk)| pk * ch(kp, 2, j)).sum();
                            out[qp * row_out + br * c + hh * hd + j] = (gq * o / l) as f32;
                        }
                    }
                }
            }
        }
    }
    if nb > 1 {
        for pix in 0..batch * h * w {
            for (i, gi) in gate(pix).into_iter().enumerate() {
                out[pix * row_out + nb * c + i] = gi as f32;
            }
        }
    }
    out
}
