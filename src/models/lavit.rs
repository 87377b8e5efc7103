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
//!
//! A row of keys is padded to a multiple of 4 key slots (49 → 52 at 224: [`vec4_slots`]), and so
//! are the head-major queries (the last stage's 49), so that every GEMM over them loads vec4s;
//! the stored matrix and the `stage{m}.attn` taps are `[B, H, N, S]` for S slots. An LA layer's
//! Θ is a GEMM over the stored rows (`P·W_θᵀ + b_θ`), Ψ one more per head (`W_ψ·T + b_ψ`, over
//! rows of key slots). Measured on lavapipe (lavit-tiny, 224, `wgvit profile`): a fused
//! per-query-row kernel (scores or Θ + softmax + ·V in one dispatch, storing the matrix) spent
//! 190 ms in the 8 attention cores, these GEMMs and softmaxes 35 ms — on a CPU device only the
//! register-tiled GEMM reaches a useful FLOP rate (~1 GFLOP/s per-row vs 5–15 GFLOP/s).
//!
//! The stored matrix `[B, H, N, S]` (a VA layer's probabilities, an LA layer's transformed
//! logits) is an ordinary planned activation: it stays on the GPU, live from the layer that
//! writes it to the last one that reads it (the next layer, or the next stage's first).
//!
//! Input size: the position embeddings (N rows) and Θ/Ψ (M × M, N × N) fix it; a graph for any
//! other size is a [`Error::BadInputShape`] naming the size the weights were made for.

use crate::error::{Error, Result};
use crate::explain::{probability_map, Probe};
use crate::graph::{Graph, TensorId};
use crate::ops::family::attention_downsample::attention_downsample;
use crate::ops::matmul::{matmul, matmul_first_rows, matmul_padded_columns, patch_linear, BiasAxis, Epilogue, Patches};
use crate::ops::pool::mean_tokens;
use crate::ops::softmax::softmax_padded;
use crate::ops::Activation;
use crate::weights::Weights;

use super::nn::{self, Scope};
use super::torch_layout::conv_weight_ohwi;

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
/// `[1, N, C]`, whose stored shape is `pos_embed`). Synthetic weights have no such tensor: the
/// variant's default.
pub fn trained_side(pos_embed: Option<&[usize]>, cfg: &LaVitConfig) -> usize {
    match pos_embed {
        Some(&[_, n, _]) => cfg.patch[0] * (n as f64).sqrt().round() as usize,
        _ => cfg.default_size,
    }
}

/// The LaViT family in the registry.
pub struct LaVit;

impl super::Family for LaVit {
    type Config = LaVitConfig;
    const PREFIX: &'static str = "lavit";
    const VARIANTS: &'static [&'static str] = &["tiny", "small", "base", "tiny-psi", "micro", "micro-psi"];

    fn variant(name: &str) -> Option<LaVitConfig> {
        config(name)
    }

    /// The side the weights were made for ([`trained_side`]).
    fn default_input(cfg: &LaVitConfig, weights: &Weights) -> (usize, usize) {
        let side = trained_side(weights.shape_of("stages.0.pos_embed"), cfg);
        (side, side)
    }

    fn build(cfg: &LaVitConfig, g: &mut Graph, root: &Scope, input: TensorId, id: &str) -> Result<TensorId> {
        build(g, root, input, id, cfg)
    }
}

struct Builder<'a> {
    cfg: &'a LaVitConfig,
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
    fn layer_norm(&self, g: &mut Graph, vb: &Scope, x: TensorId) -> Result<TensorId> {
        nn::layer_norm(g, vb, x, EPS)
    }

    /// Conv2d `vb` with kernel = stride = p (no padding) as a patchify GEMM whose A rows are the
    /// non-overlapping p × p patches, gathered by the kernel itself (`ops::matmul::patch_linear`).
    /// `nchw` says whether `x` is the `[B, Cin, H, W]` image (patch order (ci, ky, kx), the
    /// weight's own) or channel-last tokens `[B, H·W, Cin]` (patch order (ky, kx, ci), the weight
    /// permuted once on the host). Returns tokens `[B, (H/p)·(W/p), Cout]`.
    #[allow(clippy::too_many_arguments)]
    fn patchify_conv(&self, g: &mut Graph, vb: &Scope, x: TensorId, nchw: bool, (hin, win, cin): (usize, usize, usize), cout: usize, p: usize) -> Result<TensorId> {
        let b = self.batch;
        let patches = Patches { batch: b, h: hin, w: win, c: cin, p, channels_last: !nchw };
        let x = g.reshape(x, &patches.source_shape())?;
        let weight = if nchw {
            vb.param(g, "weight", &[cout, cin, p, p])?
        } else {
            let data = vb.tensor("weight", &[cout, cin, p, p])?;
            vb.derived(g, "weight:ohwi", &[cout, p, p, cin], conv_weight_ohwi(&data, cout, cin, (p, p)))?
        };
        let weight = g.reshape(weight, &[cout, cin * p * p])?;
        let bias = vb.param(g, "bias", &[cout])?;
        let y = vb.op(g, |g| patch_linear(g, x, patches, weight, Some(bias)))?;
        g.reshape(y, &[b, (hin / p) * (win / p), cout])
    }

    /// `patch_embed` (+ `pos_embed`) of stage `vb` = `stages.m`.
    fn embed(&self, g: &mut Graph, vb: &Scope, m: usize, x: TensorId, nchw: bool, (hin, win, cin): (usize, usize, usize)) -> Result<Map> {
        let (c, p) = (self.cfg.dims[m], self.cfg.patch[m]);
        let y = self.patchify_conv(g, &vb.pp("patch_embed.proj"), x, nchw, (hin, win, cin), c, p)?;
        let (h, w) = (hin / p, win / p);
        let pos = vb.param(g, "pos_embed", &[1, h * w, c])?;
        // The norm adds the position embedding as it writes (no add dispatch).
        let x = nn::layer_norm_add(g, &vb.pp("patch_embed.norm"), y, EPS, Some(pos))?;
        Ok(Map { x, h, w, c })
    }

    /// `attn.reduce`: the key/value source, `[B, M, C]`.
    fn reduce(&self, g: &mut Graph, vb: &Scope, xn: TensorId, map: Map, r: usize) -> Result<TensorId> {
        if r == 1 {
            return Ok(xn);
        }
        let y = self.patchify_conv(g, &vb.pp("sr"), xn, false, (map.h, map.w, map.c), map.c, r)?;
        self.layer_norm(g, &vb.pp("sr_norm"), y)
    }

    /// `nn.Linear` `vb` producing transposed, head-major output: `W · xᵀ + b` → `[B, out, L]` for
    /// tokens `x [B, L, Cin]`, i.e. `[B, heads, d, L]` (what the attention GEMMs read without a
    /// permute), its rows padded to `columns` ≥ L (the key slots: padding repeats token L − 1).
    /// `rows` picks a row block of the weight (the k or v half of `kv`): a derived constant sliced
    /// once on the host.
    fn linear_t(&self, g: &mut Graph, vb: &Scope, x: TensorId, out: usize, rows: Option<(usize, usize)>, columns: usize) -> Result<TensorId> {
        let cin = *g.shape(x).last().unwrap_or(&0);
        let (weight, bias) = match rows {
            None => (vb.param(g, "weight", &[out, cin])?, vb.param(g, "bias", &[out])?),
            Some((start, total)) => {
                let w = vb.tensor("weight", &[total, cin])?;
                let b = vb.tensor("bias", &[total])?;
                let tag = format!("rows{start}..{}", start + out);
                (
                    vb.derived(g, &format!("weight:{tag}"), &[out, cin], w[start * cin..(start + out) * cin].to_vec())?,
                    vb.derived(g, &format!("bias:{tag}"), &[out], b[start..start + out].to_vec())?,
                )
            }
        };
        let epi = Epilogue { alpha: 1.0, bias: Some((bias, BiasAxis::Row)), act: Activation::None, residual: None };
        vb.op(g, |g| matmul_padded_columns(g, weight, x, false, epi, columns))
    }

    /// One layer `vb` = `stages.m.layers.l`: `x + proj(attention(norm1(x)))`, then
    /// `x + fc2(GELU(fc1(norm2(x))))`. `carried` is the attention the layer reads (VA: the
    /// previous stage's, none in stage 0; LA: the previous layer's). Returns the new tokens and
    /// the attention this layer stores.
    fn layer(&self, g: &mut Graph, vb: &Scope, m: usize, l: usize, map: Map, carried: Option<TensorId>) -> Result<(TensorId, TensorId)> {
        let (b, c, heads) = (self.batch, map.c, self.cfg.heads[m]);
        let n = map.h * map.w;
        let xn = self.layer_norm(g, &vb.pp("norm1"), map.x)?;
        let a = vb.pp("attn");
        let reduced = self.reduce(g, &a.pp("reduce"), xn, map, self.cfg.sr_ratios[m])?;
        let keys = g.shape(reduced)[1];
        let slots = vec4_slots(keys);
        let (stored, probs, v_t) = if l == 0 {
            self.vanilla_attention(g, &a, xn, reduced, map, heads, carried)?
        } else {
            let prev = carried.ok_or_else(|| Error::Graph(format!("{}: a less-attention layer needs a stored attention", a.prefix())))?;
            self.less_attention(g, &a, reduced, map, heads, prev)?
        };
        let sr = self.cfg.sr_ratios[m];
        let key_grid = if sr > 1 { (map.h / sr, map.w / sr) } else { (map.h, map.w) };
        if key_grid.0 * key_grid.1 != keys {
            return Err(Error::Graph(format!("{}: {keys} keys do not form the {key_grid:?} reduced grid", a.prefix())));
        }
        // The map of the attention this layer applies: a VA layer's probabilities (what it
        // stores), an LA layer's softmax of its transformed T.
        g.probe(Probe::new(a.prefix(), (map.h, map.w), key_grid, true, vec![probs], move |t, query| probability_map(t[0], (n, keys, heads), slots, query)));
        // out = softmax(.)·v, computed transposed: v_t [B·H, d, S] · probsᵀ → [B·H, d, Nq] =
        // [B, C, Nq] (the padded key slots' zero probabilities meet finite values; the queries
        // padded to Nq slots as `q` was), which `proj` reads as tokens through its transposed-A
        // load, its first N rows.
        let v_t = g.reshape(v_t, &[b * heads, c / heads, slots])?;
        let query_slots = vec4_slots(n);
        let o_t = a.op(g, |g| matmul_padded_columns(g, v_t, probs, false, Epilogue::default(), query_slots))?;
        let o_t = g.reshape(o_t, &[b, c, query_slots])?;
        let proj = a.pp("proj");
        let proj_w = proj.param(g, "weight", &[c, c])?;
        let proj_b = proj.param(g, "bias", &[c])?;
        let epi = Epilogue { alpha: 1.0, bias: Some((proj_b, BiasAxis::Col)), act: Activation::None, residual: Some(map.x) };
        let x = proj.op(g, |g| matmul_first_rows(g, o_t, proj_w, true, epi, n))?;

        let xn = self.layer_norm(g, &vb.pp("norm2"), x)?;
        let hidden = nn::linear(g, &vb.pp("mlp.fc1"), xn, self.cfg.mlp_ratios[m] * c, true, Activation::Gelu, None)?;
        let x = nn::linear(g, &vb.pp("mlp.fc2"), hidden, c, true, Activation::None, Some(x))?;
        Ok((x, g.reshape(stored, &[b, heads, n, slots])?))
    }

    /// VA: `A = softmax(q·kᵀ/√d + γ_h·D(carried))` (D only when a previous stage exists). Returns
    /// `(stored, probabilities, v_t)`; a VA layer stores its probabilities.
    #[allow(clippy::too_many_arguments)]
    fn vanilla_attention(&self, g: &mut Graph, a: &Scope, xn: TensorId, reduced: TensorId, map: Map, heads: usize, carried: Option<TensorId>) -> Result<(TensorId, TensorId, TensorId)> {
        let (bh, c, n, keys) = (self.batch * heads, map.c, map.h * map.w, g.shape(reduced)[1]);
        let (hd, slots, query_slots) = (c / heads, vec4_slots(keys), vec4_slots(n));
        let q_t = self.linear_t(g, &a.pp("q"), xn, c, None, query_slots)?;
        let k_t = self.linear_t(g, &a.pp("kv"), reduced, c, Some((0, 2 * c)), slots)?;
        let v_t = self.linear_t(g, &a.pp("kv"), reduced, c, Some((c, 2 * c)), slots)?;
        let residual = match carried {
            Some(prev) => {
                let weight = a.param(g, "res_down.weight", &[1, 1, 2, 2])?;
                let bias = a.param(g, "res_down.bias", &[1])?;
                let gamma = a.param(g, "res_gamma", &[heads])?;
                let d = a.op(g, |g| attention_downsample(g, prev, (map.h, map.w), weight, bias, gamma))?;
                Some(g.reshape(d, &[bh, n, slots])?)
            }
            None => None,
        };
        let q_t = g.reshape(q_t, &[bh, hd, query_slots])?;
        let k_t = g.reshape(k_t, &[bh, hd, slots])?;
        let epi = Epilogue { alpha: (hd as f32).powf(-0.5), bias: None, act: Activation::None, residual };
        let logits = a.op(g, |g| matmul_first_rows(g, q_t, k_t, false, epi, n))?;
        let probs = a.op(g, |g| softmax_padded(g, logits, 1.0, keys))?;
        Ok((probs, probs, v_t))
    }

    /// LA: `T = Θ(carried)` (`Ψ(Θ(carried)ᵀ)ᵀ` with Ψ), no q or k. Returns `(T, softmax(T), v_t)`;
    /// an LA layer stores T, pre-softmax.
    fn less_attention(&self, g: &mut Graph, a: &Scope, reduced: TensorId, map: Map, heads: usize, prev: TensorId) -> Result<(TensorId, TensorId, TensorId)> {
        let (bh, c, n, keys) = (self.batch * heads, map.c, map.h * map.w, g.shape(reduced)[1]);
        let slots = vec4_slots(keys);
        let v_t = self.linear_t(g, &a.pp("v"), reduced, c, None, slots)?;
        let theta = a.pp("theta");
        let (theta_w, theta_bias) = padded_transform(g, &theta, keys, slots)?;
        let rows = g.reshape(prev, &[bh * n, slots])?;
        let epi = Epilogue { alpha: 1.0, bias: Some((theta_bias, BiasAxis::Col)), act: Activation::None, residual: None };
        let t = theta.op(g, |g| matmul(g, rows, theta_w, false, true, epi))?;
        let t = g.reshape(t, &[bh, n, slots])?;
        let t = if self.cfg.psi {
            // Ψ along the queries: Ψ · T per head, whose rows of key slots load as vec4s.
            let psi = a.pp("psi");
            let psi_w = psi.param(g, "weight", &[n, n])?;
            let psi_bias = psi.param(g, "bias", &[n])?;
            let epi = Epilogue { alpha: 1.0, bias: Some((psi_bias, BiasAxis::Row)), act: Activation::None, residual: None };
            psi.op(g, |g| matmul(g, psi_w, t, false, false, epi))?
        } else {
            t
        };
        let probs = a.op(g, |g| softmax_padded(g, t, 1.0, keys))?;
        Ok((t, probs, v_t))
    }
}

/// Slots for `len` keys or queries: `len` padded to a multiple of 4, so that every GEMM over a
/// row of keys (the logits' columns, Θ, ·v) or over the head-major queries (`q`, the logits'
/// rows, `proj`'s input) loads whole vec4s. At 224 every stage has 49 keys and the last 49
/// queries, which took those GEMMs to the element-wise kernel; 52 slots take the vec4 kernel.
/// A padded key's k and v repeat the last key's (finite: `matmul_padded_columns`), the softmax
/// gives it probability 0 (`softmax_padded`), and Θ's padded rows and columns are zeros
/// ([`padded_transform`]), so what a slot past the keys holds never reaches a real one. A padded
/// query's q and output repeat the last query's, and the GEMMs that read them stop at the real
/// queries (`matmul_first_rows`).
fn vec4_slots(len: usize) -> usize {
    len.next_multiple_of(4)
}

/// `vb`'s `weight [keys, keys]` and `bias [keys]` (Θ) zero-padded to `slots`: constants derived
/// once on the host; the checkpoint's own tensors where no padding is needed.
fn padded_transform(g: &mut Graph, vb: &Scope, keys: usize, slots: usize) -> Result<(TensorId, TensorId)> {
    if slots == keys {
        return Ok((vb.param(g, "weight", &[keys, keys])?, vb.param(g, "bias", &[keys])?));
    }
    let (w, bias) = (vb.tensor("weight", &[keys, keys])?, vb.tensor("bias", &[keys])?);
    let mut wp = vec![0f32; slots * slots];
    for (row, src) in wp.chunks_mut(slots).zip(w.chunks(keys)) {
        row[..keys].copy_from_slice(src);
    }
    let mut bp = bias.to_vec();
    bp.resize(slots, 0.0);
    Ok((vb.derived(g, &format!("weight:slots{slots}"), &[slots, slots], wp)?, vb.derived(g, &format!("bias:slots{slots}"), &[slots], bp)?))
}

/// Appends LaViT model `id` with configuration `cfg` to `g`, its parameters read through `root`;
/// returns the logits `[B, classes]` (classes from `head.weight`).
pub fn build(g: &mut Graph, root: &Scope, input: TensorId, id: &str, cfg: &LaVitConfig) -> Result<TensorId> {
    let shape = g.shape(input).to_vec();
    let file = root.reader().file();
    let side = trained_side(root.shape_of("stages.0.pos_embed"), cfg);
    if !cfg.accepts_side(side) {
        return Err(Error::Invalid(format!(
            "{file}: stages.0.pos_embed implies a {side}x{side} input, which {id} cannot run (the side must be a multiple of {} \
             with whole {}x{} key patches in stage 1)",
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
    if !cfg.psi && root.contains("stages.0.layers.1.attn.psi.weight") {
        return Err(Error::Invalid(format!("{file}: the weights have query-axis transforms (attn.psi.*): they are for {id}-psi, not {id}")));
    }
    let b = Builder { cfg, batch: shape[0] };
    let mut x = input;
    let (mut hin, mut cin, mut nchw) = (side, 3, true);
    let mut carried: Option<TensorId> = None;
    for m in 0..4 {
        let stage = root.pp("stages").pp(m);
        let mut map = b.embed(g, &stage, m, x, nchw, (hin, hin, cin))?;
        for l in 0..cfg.depths[m] {
            let (y, stored) = b.layer(g, &stage.pp("layers").pp(l), m, l, map, carried)?;
            map.x = y;
            carried = Some(stored);
        }
        g.tap(&format!("stage{m}"), map.x);
        if let Some(a) = carried {
            g.tap(&format!("stage{m}.attn"), a);
        }
        (x, hin, cin, nchw) = (map.x, map.h, map.c, false);
    }
    let xn = b.layer_norm(g, &root.pp("norm"), x)?;
    let pooled = root.op(g, |g| mean_tokens(g, xn))?;
    g.tap("pre_logits", pooled);
    let head = root.pp("head");
    let classes = nn::head_classes(&head);
    nn::linear(g, &head, pooled, classes, true, Activation::None, None)
}
