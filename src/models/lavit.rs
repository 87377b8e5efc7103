//! LaViT (Less-Attention Vision Transformer, Zhang et al., CVPR 2024) as the project's contract
//! "LaViT-R" defines it: shared/spec/lavit.md, executable in shared/reference/contract.py
//! (`LaViTR`), whose `state_dict` names are read here unchanged. No official code or weights exist.
//!
//! A PVT-shaped network of four stages on channel-last tokens `[B, N, C]` (n = y·w + x). Stage m:
//! ```text
//! patch_embed   conv k = s = p (a patchify GEMM), LayerNorm, + pos_embed      [B, N, C]
//! layer 0 (VA)  x += proj(attn), attn = softmax(q·kᵀ/√d + γ_h·D(A_prev)) · v   stores A (post-softmax)
//! layer l ≥ 1   x += proj(attn), attn = softmax(T) · v, T = Θ(P) [Ψ(.) too]    stores T (pre-softmax)
//! (LA)          P = what the layer before stored; no q or k projection
//! every layer   x += fc2(GELU(fc1(norm2(x))));  k/v come from the tokens reduced by a
//!               conv k = s = R (+ LayerNorm) when R > 1
//! ```
//! then `norm`, the mean over tokens and `head`. `D` (stages 1–3) is the residual attention
//! downsampling of the previous stage's carried matrix (head mean, one 2×2/2 conv over the query
//! map, per-head scale γ: [`attention_downsample`]).
//!
//! The attention runs on the core GEMM and softmax, head-major and transposed where that
//! avoids every permute: `q`, `k`, `v` are projected as `W·xᵀ` → `[B, H, d, L]` (the `kv` weight
//! split into its k and v halves once on the host), the logits are `(qᵀ)ᵀ·k` with the scale and
//! the downsampled residual in the GEMM epilogue, the output is `v·softmax(.)ᵀ` → `[B, C, N]`,
//! which `proj` reads through its transposed-A load (bias and the layer's residual fused).
//! An LA layer's Θ is a GEMM over the stored rows (`P·W_θᵀ + b_θ`); with Ψ, Θ and Ψ are computed
//! transposed (`[B·H, M, N]`, so the N×N GEMM gets vec4 loads — M = 49 is not a multiple of 4)
//! and copied back once. Measured on lavapipe (lavit-tiny, 224, `wgvit profile`): a fused
//! per-query-row kernel (scores or Θ + softmax + ·V in one dispatch, storing the matrix) spent
//! 190 ms in the 8 attention cores, these GEMMs and softmaxes 35 ms — on a CPU device only the
//! register-tiled GEMM reaches a useful FLOP rate (~1 GFLOP/s per-row vs 5–15 GFLOP/s).
//!
//! The stored matrix `[B, H, N, M]` (a VA layer's probabilities, an LA layer's transformed
//! logits) is an ordinary planned activation: it stays on the GPU, live from the layer that
//! writes it to the last one that reads it (the next layer, or the next stage's first).
//!
//! Input size: the position embeddings (N rows) and Θ/Ψ (M × M, N × N) fix it; a graph for any
//! other size is a [`Error::BadInputShape`] naming the size the weights were made for.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::graph::{Graph, TensorId};
use crate::ops::attention_downsample::attention_downsample;
use crate::ops::elementwise::add;
use crate::ops::layernorm::layer_norm;
use crate::ops::layout::permute;
use crate::ops::matmul::{linear, matmul, BiasAxis, Epilogue};
use crate::ops::pool::mean_tokens;
use crate::ops::softmax::softmax;
use crate::ops::Activation;
use crate::weights::Weights;

const EPS: f32 = 1e-5;

/// The contract's hyper-parameters (`contract.py` `LAVIT_BASE` updated by a variant);
/// `wgvit.config` metadata holds them as JSON with these field names.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaVitConfig {
    pub dims: [usize; 4],
    pub heads: [usize; 4],
    pub depths: [usize; 4],
    /// MLP hidden width = mlp_ratios · C.
    pub mlp_ratios: [usize; 4],
    /// Keys/values come from an r×r patchified map (r = 1: every token).
    pub sr_ratios: [usize; 4],
    /// Patch-embedding stride of each stage.
    pub patch: [usize; 4],
    /// Vanilla-attention layers at the start of each stage (the contract has one).
    pub n_va: [usize; 4],
    /// Whether LA layers also transform along the query axis (Ψ, the literal formula).
    pub psi: bool,
    /// Input side of the builtin configuration (the micro variants are unit-test sizes); weights
    /// fix the side through `stages.0.pos_embed` whatever this says.
    #[serde(default = "default_side")]
    pub default_size: usize,
}

fn default_side() -> usize {
    224
}

impl super::Config for LaVitConfig {
    fn validate(&self) -> std::result::Result<(), String> {
        super::nonzero("dims", &self.dims)?;
        super::nonzero("heads", &self.heads)?;
        super::nonzero("depths", &self.depths)?;
        super::nonzero("mlp_ratios", &self.mlp_ratios)?;
        super::nonzero("sr_ratios", &self.sr_ratios)?;
        super::nonzero("patch", &self.patch)?;
        if let Some(m) = (0..4).find(|&m| !self.dims[m].is_multiple_of(self.heads[m])) {
            return Err(format!("dims[{m}] = {} is not a multiple of heads[{m}] = {}", self.dims[m], self.heads[m]));
        }
        // The residual attention D of stages 1–3 is a 2×2 / stride-2 conv over the previous
        // stage's queries that keeps its keys: patches of 2, and key maps of equal size.
        if let Some(m) = (1..4).find(|&m| self.patch[m] != 2 || self.sr_ratios[m - 1] != 2 * self.sr_ratios[m]) {
            return Err(format!(
                "patch[{m}] = {} and sr_ratios[{}..={m}] = {:?}: stages after the first need patch 2 and half the previous sr ratio \
                 (the stage-to-stage attention residual keeps the key map)",
                self.patch[m],
                m - 1,
                &self.sr_ratios[m - 1..=m]
            ));
        }
        if let Some(m) = (0..4).find(|&m| self.n_va[m] != 1) {
            return Err(format!("n_va[{m}] = {}: only one vanilla-attention layer per stage is supported", self.n_va[m]));
        }
        Ok(())
    }
}

impl LaVitConfig {
    /// Whether a square input side fits: whole patches in every stage and whole r×r key patches.
    pub fn accepts_side(&self, side: usize) -> bool {
        let stride = self.patch.iter().product::<usize>();
        side > 0 && side.is_multiple_of(stride) && (side / self.patch[0]).is_multiple_of(self.sr_ratios[0])
    }
}

/// The contract's variants (`contract.py` `LAVIT_VARIANTS`), by the part of the id after `lavit-`.
pub fn config(variant: &str) -> Option<LaVitConfig> {
    let full = ([64, 128, 320, 512], [1, 2, 5, 8]);
    let micro = ([16, 32, 64, 128], [1, 2, 2, 4]);
    let ((dims, heads), depths, psi, default_size) = match variant {
        "tiny" => (full, [2, 2, 2, 2], false, 224),
        "small" => (full, [3, 4, 6, 3], false, 224),
        "base" => (full, [3, 4, 18, 3], false, 224),
        "tiny-psi" => (full, [2, 2, 2, 2], true, 224),
        "micro" => (micro, [2, 2, 2, 2], false, 64),
        "micro-psi" => (micro, [2, 2, 2, 2], true, 64),
        _ => return None,
    };
    Some(LaVitConfig {
        dims,
        heads,
        depths,
        mlp_ratios: [8, 8, 4, 4],
        sr_ratios: [8, 4, 2, 1],
        patch: [4, 2, 2, 2],
        n_va: [1; 4],
        psi,
        default_size,
    })
}

/// The input side the weights were made for: stage 0 has (side / 4)² tokens (`stages.0.pos_embed`
/// [1, N, C]). Synthetic weights have no such tensor: the variant's default.
pub fn trained_side(w: &Weights, cfg: &LaVitConfig) -> usize {
    match w.shape_of("stages.0.pos_embed") {
        Some(&[_, n, _]) => cfg.patch[0] * (n as f64).sqrt().round() as usize,
        _ => cfg.default_size,
    }
}

struct Builder<'a> {
    g: &'a mut Graph,
    w: &'a Weights,
    cfg: LaVitConfig,
    batch: usize,
}

/// A stage's token map: `[B, h·w, C]`, row-major.
#[derive(Clone, Copy)]
struct Map {
    x: TensorId,
    h: usize,
    w: usize,
    c: usize,
}

impl Builder<'_> {
    fn param(&mut self, name: &str, shape: &[usize]) -> Result<TensorId> {
        self.w.constant(self.g, name, shape)
    }

    fn layer_norm(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        let c = *self.g.shape(x).last().unwrap_or(&0);
        let gamma = self.param(&format!("{name}.weight"), &[c])?;
        let beta = self.param(&format!("{name}.bias"), &[c])?;
        self.g.scope(name, |g| layer_norm(g, x, Some(gamma), Some(beta), EPS))
    }

    /// `nn.Linear` on tokens `[.., K]`, with the residual (same shape as the output) fused.
    fn linear(&mut self, name: &str, x: TensorId, out: usize, act: Activation, residual: Option<TensorId>) -> Result<TensorId> {
        let shape = self.g.shape(x).to_vec();
        let k = shape[shape.len() - 1];
        let weight = self.param(&format!("{name}.weight"), &[out, k])?;
        let bias = self.param(&format!("{name}.bias"), &[out])?;
        let Some(residual) = residual else {
            return self.g.scope(name, |g| linear(g, x, weight, Some(bias), act));
        };
        let rows = self.g.numel(x) / k;
        let x2 = self.g.reshape(x, &[rows, k])?;
        let epi = Epilogue { alpha: 1.0, bias: Some((bias, BiasAxis::Col)), act, residual: Some(residual) };
        let y = self.g.scope(name, |g| matmul(g, x2, weight, false, true, epi))?;
        let mut out_shape = shape;
        *out_shape.last_mut().unwrap() = out;
        self.g.reshape(y, &out_shape)
    }

    /// Conv2d with kernel = stride = p (no padding) as a patchify GEMM: the non-overlapping
    /// p × p patches gathered by one permute copy, times the weight. `nchw` says whether `x` is the
    /// `[B, Cin, H, W]` image (patch order (ci, ky, kx), the weight's own) or channel-last tokens
    /// `[B, H·W, Cin]` (patch order (ky, kx, ci), the weight permuted once on the host).
    /// Returns tokens `[B, (H/p)·(W/p), Cout]`.
    fn patchify_conv(&mut self, name: &str, x: TensorId, nchw: bool, (hin, win, cin): (usize, usize, usize), cout: usize, p: usize) -> Result<TensorId> {
        let (b, h, w) = (self.batch, hin / p, win / p);
        let (x6, perm) = if nchw {
            (self.g.reshape(x, &[b, cin, h, p, w, p])?, [0, 2, 4, 1, 3, 5])
        } else {
            (self.g.reshape(x, &[b, h, p, w, p, cin])?, [0, 1, 3, 2, 4, 5])
        };
        let patches = self.g.scope(name, |g| permute(g, x6, &perm))?;
        let patches = self.g.reshape(patches, &[b * h * w, cin * p * p])?;
        let wname = format!("{name}.weight");
        let weight = if nchw {
            self.param(&wname, &[cout, cin, p, p])?
        } else {
            let data = self.w.param(&wname, &[cout, cin, p, p])?;
            let mut ohwi = vec![0f32; data.len()];
            for (i, &v) in data.iter().enumerate() {
                let (kx, r) = (i % p, i / p);
                let (ky, r) = (r % p, r / p);
                let (ci, co) = (r % cin, r / cin);
                ohwi[((co * p + ky) * p + kx) * cin + ci] = v;
            }
            self.g.constant(&format!("{wname}:ohwi"), &[cout, p, p, cin], Arc::new(ohwi))?
        };
        let weight = self.g.reshape(weight, &[cout, cin * p * p])?;
        let bias = self.param(&format!("{name}.bias"), &[cout])?;
        let y = self.g.scope(name, |g| linear(g, patches, weight, Some(bias), Activation::None))?;
        self.g.reshape(y, &[b, h * w, cout])
    }

    /// `patch_embed` (+ `pos_embed`) of stage `m`.
    fn embed(&mut self, m: usize, x: TensorId, nchw: bool, (hin, win, cin): (usize, usize, usize)) -> Result<Map> {
        let (c, p) = (self.cfg.dims[m], self.cfg.patch[m]);
        let s = format!("stages.{m}");
        let y = self.patchify_conv(&format!("{s}.patch_embed.proj"), x, nchw, (hin, win, cin), c, p)?;
        let y = self.layer_norm(&format!("{s}.patch_embed.norm"), y)?;
        let (h, w) = (hin / p, win / p);
        let pos = self.param(&format!("{s}.pos_embed"), &[1, h * w, c])?;
        let x = add(self.g, y, pos)?;
        Ok(Map { x, h, w, c })
    }

    /// `attn.reduce`: the key/value source, `[B, M, C]`.
    fn reduce(&mut self, p: &str, xn: TensorId, map: Map, r: usize) -> Result<TensorId> {
        if r == 1 {
            return Ok(xn);
        }
        let y = self.patchify_conv(&format!("{p}.sr"), xn, false, (map.h, map.w, map.c), map.c, r)?;
        self.layer_norm(&format!("{p}.sr_norm"), y)
    }

    /// `nn.Linear` producing transposed, head-major output: `W · xᵀ + b` → `[B, out, L]` for
    /// tokens `x [B, L, Cin]`, i.e. `[B, heads, d, L]` (what the attention GEMMs read without a
    /// permute). `rows` picks a row block of the weight (the k or v half of `kv`): a derived
    /// constant sliced once on the host.
    fn linear_t(&mut self, name: &str, x: TensorId, out: usize, rows: Option<(usize, usize)>) -> Result<TensorId> {
        let cin = *self.g.shape(x).last().unwrap_or(&0);
        let (weight, bias) = match rows {
            None => (self.param(&format!("{name}.weight"), &[out, cin])?, self.param(&format!("{name}.bias"), &[out])?),
            Some((start, total)) => {
                let w = self.w.param(&format!("{name}.weight"), &[total, cin])?;
                let b = self.w.param(&format!("{name}.bias"), &[total])?;
                let part = |g: &mut Graph, key: String, data: &[f32], shape: &[usize]| g.constant(&key, shape, Arc::new(data.to_vec()));
                let tag = format!("rows{start}..{}", start + out);
                (
                    part(self.g, format!("{name}.weight:{tag}"), &w[start * cin..(start + out) * cin], &[out, cin])?,
                    part(self.g, format!("{name}.bias:{tag}"), &b[start..start + out], &[out])?,
                )
            }
        };
        let epi = Epilogue { alpha: 1.0, bias: Some((bias, BiasAxis::Row)), act: Activation::None, residual: None };
        self.g.scope(name, |g| matmul(g, weight, x, false, true, epi))
    }

    /// One layer: `x + proj(attention(norm1(x)))`, then `x + fc2(GELU(fc1(norm2(x))))`.
    /// `carried` is the attention the layer reads (VA: the previous stage's, none in stage 0; LA:
    /// the previous layer's). Returns the new tokens and the attention this layer stores.
    fn layer(&mut self, m: usize, l: usize, map: Map, carried: Option<TensorId>) -> Result<(TensorId, TensorId)> {
        let p = format!("stages.{m}.layers.{l}");
        let (b, c, heads) = (self.batch, map.c, self.cfg.heads[m]);
        let n = map.h * map.w;
        let xn = self.layer_norm(&format!("{p}.norm1"), map.x)?;
        let reduced = self.reduce(&format!("{p}.attn.reduce"), xn, map, self.cfg.sr_ratios[m])?;
        let keys = self.g.shape(reduced)[1];
        let a = format!("{p}.attn");
        let (stored, probs, v_t) = if l == 0 {
            self.vanilla_attention(&a, xn, reduced, map, heads, carried)?
        } else {
            let prev = carried.ok_or_else(|| Error::Graph(format!("{a}: a less-attention layer needs a stored attention")))?;
            self.less_attention(&a, reduced, map, heads, prev)?
        };
        // out = softmax(.)·v, computed transposed: v_t [B·H, d, M] · probsᵀ → [B·H, d, N] =
        // [B, C, N], which `proj` reads as tokens through its transposed-A load.
        let v_t = self.g.reshape(v_t, &[b * heads, c / heads, keys])?;
        let o_t = self.g.scope(&a, |g| matmul(g, v_t, probs, false, true, Epilogue::default()))?;
        let o_t = self.g.reshape(o_t, &[b, c, n])?;
        let proj_w = self.param(&format!("{a}.proj.weight"), &[c, c])?;
        let proj_b = self.param(&format!("{a}.proj.bias"), &[c])?;
        let epi = Epilogue { alpha: 1.0, bias: Some((proj_b, BiasAxis::Col)), act: Activation::None, residual: Some(map.x) };
        let x = self.g.scope(&format!("{a}.proj"), |g| matmul(g, o_t, proj_w, true, true, epi))?;

        let xn = self.layer_norm(&format!("{p}.norm2"), x)?;
        let hidden = self.linear(&format!("{p}.mlp.fc1"), xn, self.cfg.mlp_ratios[m] * c, Activation::Gelu, None)?;
        let x = self.linear(&format!("{p}.mlp.fc2"), hidden, c, Activation::None, Some(x))?;
        Ok((x, self.g.reshape(stored, &[b, heads, n, keys])?))
    }

    /// VA: `A = softmax(q·kᵀ/√d + γ_h·D(carried))` (D only when a previous stage exists). Returns
    /// `(stored, probabilities, v_t)`; a VA layer stores its probabilities.
    fn vanilla_attention(&mut self, a: &str, xn: TensorId, reduced: TensorId, map: Map, heads: usize, carried: Option<TensorId>) -> Result<(TensorId, TensorId, TensorId)> {
        let (bh, c, n, keys) = (self.batch * heads, map.c, map.h * map.w, self.g.shape(reduced)[1]);
        let hd = c / heads;
        let q_t = self.linear_t(&format!("{a}.q"), xn, c, None)?;
        let k_t = self.linear_t(&format!("{a}.kv"), reduced, c, Some((0, 2 * c)))?;
        let v_t = self.linear_t(&format!("{a}.kv"), reduced, c, Some((c, 2 * c)))?;
        let residual = match carried {
            Some(prev) => {
                let weight = self.param(&format!("{a}.res_down.weight"), &[1, 1, 2, 2])?;
                let bias = self.param(&format!("{a}.res_down.bias"), &[1])?;
                let gamma = self.param(&format!("{a}.res_gamma"), &[heads])?;
                let d = self.g.scope(a, |g| attention_downsample(g, prev, (map.h, map.w), weight, bias, gamma))?;
                Some(self.g.reshape(d, &[bh, n, keys])?)
            }
            None => None,
        };
        let q_t = self.g.reshape(q_t, &[bh, hd, n])?;
        let k_t = self.g.reshape(k_t, &[bh, hd, keys])?;
        let epi = Epilogue { alpha: (hd as f32).powf(-0.5), bias: None, act: Activation::None, residual };
        let logits = self.g.scope(a, |g| matmul(g, q_t, k_t, true, false, epi))?;
        let probs = self.g.scope(a, |g| softmax(g, logits, 1.0))?;
        Ok((probs, probs, v_t))
    }

    /// LA: `T = Θ(carried)` (`Ψ(Θ(carried)ᵀ)ᵀ` with Ψ), no q or k. Returns `(T, softmax(T), v_t)`;
    /// an LA layer stores T, pre-softmax.
    fn less_attention(&mut self, a: &str, reduced: TensorId, map: Map, heads: usize, prev: TensorId) -> Result<(TensorId, TensorId, TensorId)> {
        let (bh, c, n, keys) = (self.batch * heads, map.c, map.h * map.w, self.g.shape(reduced)[1]);
        let v_t = self.linear_t(&format!("{a}.v"), reduced, c, None)?;
        let theta = self.param(&format!("{a}.theta.weight"), &[keys, keys])?;
        let theta_bias = self.param(&format!("{a}.theta.bias"), &[keys])?;
        let t = if self.cfg.psi {
            // Θ then Ψ, both computed transposed ([B·H, M, N]): the N×N GEMM then has unit-stride
            // rows that are multiples of 4 (vec4 loads, ~2.3x faster on lavapipe; M = 49 is not a
            // multiple of 4); one copy back to [B·H, N, M].
            let psi = self.param(&format!("{a}.psi.weight"), &[n, n])?;
            let psi_bias = self.param(&format!("{a}.psi.bias"), &[n])?;
            let epi = Epilogue { alpha: 1.0, bias: Some((theta_bias, BiasAxis::Row)), act: Activation::None, residual: None };
            let t1 = self.g.scope(&format!("{a}.theta"), |g| matmul(g, theta, prev, false, true, epi))?;
            let t1 = self.g.reshape(t1, &[bh, keys, n])?;
            let epi = Epilogue { alpha: 1.0, bias: Some((psi_bias, BiasAxis::Col)), act: Activation::None, residual: None };
            let t = self.g.scope(&format!("{a}.psi"), |g| matmul(g, t1, psi, false, true, epi))?;
            self.g.scope(&format!("{a}.psi"), |g| permute(g, t, &[0, 2, 1]))?
        } else {
            let rows = self.g.reshape(prev, &[bh * n, keys])?;
            let epi = Epilogue { alpha: 1.0, bias: Some((theta_bias, BiasAxis::Col)), act: Activation::None, residual: None };
            let t = self.g.scope(&format!("{a}.theta"), |g| matmul(g, rows, theta, false, true, epi))?;
            self.g.reshape(t, &[bh, n, keys])?
        };
        let probs = self.g.scope(a, |g| softmax(g, t, 1.0))?;
        Ok((t, probs, v_t))
    }
}

/// Appends LaViT model `id` with configuration `cfg` to `g`; returns the logits `[B, classes]`
/// (classes from `head.weight`).
pub fn build(g: &mut Graph, w: &Weights, input: TensorId, id: &str, cfg: &LaVitConfig) -> Result<TensorId> {
    let shape = g.shape(input).to_vec();
    let side = trained_side(w, cfg);
    if !cfg.accepts_side(side) {
        return Err(Error::Invalid(format!(
            "{}: stages.0.pos_embed implies a {side}x{side} input, which {id} cannot run (the side must be a multiple of {} \
             with whole {}x{} key patches in stage 1)",
            w.file,
            cfg.patch.iter().product::<usize>(),
            cfg.sr_ratios[0],
            cfg.sr_ratios[0]
        )));
    }
    if shape[2] != side || shape[3] != side {
        return Err(Error::BadInputShape {
            model: id.into(),
            expected: format!(
                "these weights were made for {side}x{side} inputs: the position embeddings and the attention transforms \
                 (Θ over the {} keys{}) are sized for it, so LaViT runs at exactly that size (resize or crop to {side}x{side})",
                (side / cfg.patch[0] / cfg.sr_ratios[0]).pow(2),
                if cfg.psi { ", Ψ over each stage's queries" } else { "" }
            ),
            found: shape,
        });
    }
    if !cfg.psi && w.contains("stages.0.layers.1.attn.psi.weight") {
        return Err(Error::Invalid(format!(
            "{}: the weights have query-axis transforms (attn.psi.*): they are for {id}-psi, not {id}",
            w.file
        )));
    }
    let mut b = Builder { g, w, cfg: cfg.clone(), batch: shape[0] };
    let mut x = input;
    let (mut hin, mut cin, mut nchw) = (side, 3, true);
    let mut carried: Option<TensorId> = None;
    for m in 0..4 {
        let mut map = b.embed(m, x, nchw, (hin, hin, cin))?;
        for l in 0..cfg.depths[m] {
            let (y, stored) = b.layer(m, l, map, carried)?;
            map.x = y;
            carried = Some(stored);
        }
        b.g.tap(&format!("stage{m}"), map.x);
        if let Some(a) = carried {
            b.g.tap(&format!("stage{m}.attn"), a);
        }
        (x, hin, cin, nchw) = (map.x, map.h, map.c, false);
    }
    let xn = b.layer_norm("norm", x)?;
    let pooled = mean_tokens(b.g, xn)?;
    b.g.tap("pre_logits", pooled);
    let classes = w.shape_of("head.weight").map(|s| s[0]).unwrap_or(1000);
    let head = b.param("head.weight", &[classes, cin])?;
    let bias = b.param("head.bias", &[classes])?;
    linear(b.g, pooled, head, Some(bias), Activation::None)
}
