//! Batched small-window attention: `out = softmax(scale · q·kᵀ + bias) · v` over `[B, heads]`,
//! fused into one dispatch with an online softmax (FlashAttention's running max `m` and sum `l`):
//! for each block of keys, `m' = max(m, s_j)`, the accumulator and `l` are rescaled by `exp(m - m')`
//! and `exp(s_j - m')·v_j` is added. One invocation owns one query row (and one chunk of ≤ 64
//! output channels): q and the accumulator live in registers, the score row is never stored.
//!
//! Limits: the head dim `d` (q·k) is at most [`MAX_D`] = 64 — q is held in registers — and a larger
//! `d` is rejected with an error; `dv` is unbounded (split into chunks of ≤ 64 channels, each chunk
//! one invocation that recomputes the scores).
//!
//! Every operand is addressed through a [`View`] (offset + strides over a mixed-radix batch and
//! token index), so [`attention_strided`] reads q/k/v straight out of a packed projection or the
//! windows of a channel-last map, and writes the output in the layout the next op wants.
//! [`attention`] (the contract's contiguous `[B, heads, N, d]` form) is a thin wrapper.

use super::{check_u32, grid, params, tuning, Graph, Kernel, Node, PipelineKey, TensorId, Uniform};
use crate::error::{Error, Result};

/// Largest q·k head dim the kernel holds in registers.
pub const MAX_D: usize = 64;
/// Output channels one invocation accumulates (the kernel's register budget for the accumulator).
const DV_CHUNK: usize = 64;
/// Invocations per workgroup (one value: a pipeline per sequence length would cost a compile each).
const WG: usize = 64;

/// Where element `(b, h, t, c)` (batch, head, token, channel) of an attention operand lives in its
/// tensor's storage (element units):
///
/// `offset + b0·batch_strides[0] + b1·batch_strides[1] + b2·batch_strides[2] + h·head
///  + t0·token_strides[0] + t1·token_strides[1] + c·channel`
///
/// with `b = (b0·batch_split[0] + b1)·batch_split[1] + b2` and `t = t0·token_split + t1`. The
/// splits express a batch of windows `(image, window row, window column)` and a token inside a
/// window `(row, column)`; a plain strided layout uses `batch_split = [1, 1]`, `token_split = 1`.
/// For a bias operand, "token" is the query index and "channel" the key index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub offset: usize,
    pub batch_split: [usize; 2],
    pub batch_strides: [usize; 3],
    pub head: usize,
    pub token_split: usize,
    pub token_strides: [usize; 2],
    pub channel: usize,
}

impl View {
    /// Whether the kernel may read this operand as vec4: channels contiguous and every row (the
    /// offset plus any combination of batch, head and token strides) a multiple of 4 elements.
    pub fn rows_are_vec4(&self) -> bool {
        self.channel == 1
            && [self.offset, self.head, self.batch_strides[0], self.batch_strides[1], self.batch_strides[2], self.token_strides[0], self.token_strides[1]]
                .iter()
                .all(|s| s.is_multiple_of(4))
    }

    /// A layout with one stride per axis.
    pub fn strided(offset: usize, batch: usize, head: usize, token: usize, channel: usize) -> Self {
        Self {
            offset,
            batch_split: [1, 1],
            batch_strides: [batch, 0, 0],
            head,
            token_split: 1,
            token_strides: [token, 0],
            channel,
        }
    }

    /// Contiguous `[B, heads, n, c]`.
    pub fn contiguous(heads: usize, n: usize, c: usize) -> Self {
        Self::strided(0, heads * n * c, n * c, c, 1)
    }

    /// Tokens-major `[B, n, row]` where head `h` holds channels `offset + h·c .. offset + (h+1)·c`
    /// of each `row`-wide token: a packed qkv projection `[B, N, 3, heads, d]` is
    /// `tokens(3·heads·d, n, k·heads·d, d)` for `k` = 0, 1, 2, and merged heads `[B, N, heads·dv]`
    /// is `tokens(heads·dv, n, 0, dv)`.
    pub fn tokens(row: usize, n: usize, offset: usize, c: usize) -> Self {
        Self::strided(offset, n * row, c, row, 1)
    }

    /// The non-overlapping `win.0 × win.1` windows of a channel-last map `[B, H, W, row]`, batch
    /// ordered `(image, window row, window column)` and tokens row-major inside a window (Swin's
    /// `window_partition`); head `h` holds channels `offset + h·c ..` as in [`View::tokens`].
    /// `H` and `W` must be multiples of the window (pad first otherwise).
    pub fn windows(h: usize, w: usize, win: (usize, usize), row: usize, offset: usize, c: usize) -> Self {
        let (wh, ww) = win;
        Self {
            offset,
            batch_split: [h / wh.max(1), w / ww.max(1)],
            batch_strides: [h * w * row, wh * w * row, ww * row],
            head: c,
            token_split: ww,
            token_strides: [w * row, row],
            channel: 1,
        }
    }

    /// The same layout with the batch shared (all batch strides 0): a bias `[heads, nq, nk]` is
    /// `View::contiguous(heads, nq, nk).shared_batch()`.
    pub fn shared_batch(mut self) -> Self {
        self.batch_strides = [0, 0, 0];
        self
    }

    /// Flat index of element `(b, h, t, c)`.
    pub fn index(&self, b: usize, h: usize, t: usize, c: usize) -> usize {
        let [n1, n2] = self.batch_split;
        let (b2, r) = (b % n2, b / n2);
        let (b1, b0) = (r % n1, r / n1);
        let (t1, t0) = (t % self.token_split, t / self.token_split);
        self.offset
            + b0 * self.batch_strides[0]
            + b1 * self.batch_strides[1]
            + b2 * self.batch_strides[2]
            + h * self.head
            + t0 * self.token_strides[0]
            + t1 * self.token_strides[1]
            + c * self.channel
    }

    /// Largest flat index over `[batch, heads, tokens, channels]` (all extents ≥ 1). The index is a
    /// sum of per-axis terms with non-negative strides, so each term is maximised on its own.
    fn max_index(&self, batch: usize, heads: usize, tokens: usize, channels: usize) -> usize {
        let batch_max = (0..batch).map(|b| self.index(b, 0, 0, 0)).max().unwrap_or(0);
        let token_max = (0..tokens).map(|t| self.index(0, 0, t, 0)).max().unwrap_or(0);
        batch_max + (token_max - self.offset) + (heads - 1) * self.head + (channels - 1) * self.channel
    }

    /// The kernel's `View` uniform.
    fn uniform(&self) -> params::AttentionView {
        let w = |x: usize| x as u32;
        params::AttentionView {
            offset: w(self.offset),
            nb1: w(self.batch_split[0]),
            nb2: w(self.batch_split[1]),
            sb0: w(self.batch_strides[0]),
            sb1: w(self.batch_strides[1]),
            sb2: w(self.batch_strides[2]),
            sh: w(self.head),
            nt1: w(self.token_split),
            st0: w(self.token_strides[0]),
            st1: w(self.token_strides[1]),
            sc: w(self.channel),
            _pad: 0,
        }
    }
}

/// The extents of one attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionDims {
    pub batch: usize,
    pub heads: usize,
    pub nq: usize,
    pub nk: usize,
    /// q·k head dim (≤ [`MAX_D`]).
    pub d: usize,
    /// v / output head dim.
    pub dv: usize,
}

/// A tensor read through a view.
#[derive(Clone, Copy, Debug)]
pub struct Operand {
    pub tensor: TensorId,
    pub view: View,
}

impl Operand {
    pub fn new(tensor: TensorId, view: View) -> Self {
        Self { tensor, view }
    }
}

/// The output: a fresh tensor of `shape`, each `(b, h, query, channel)` written at `view`. The
/// view must cover every element of `shape` exactly once (checked at build time).
#[derive(Clone, Debug)]
pub struct OutputSpec {
    pub shape: Vec<usize>,
    pub view: View,
}

impl OutputSpec {
    /// `[B, heads, nq, dv]`.
    pub fn heads(dims: &AttentionDims) -> Self {
        Self { shape: vec![dims.batch, dims.heads, dims.nq, dims.dv], view: View::contiguous(dims.heads, dims.nq, dims.dv) }
    }

    /// Heads merged back into channels: `[B, nq, heads·dv]`, what an output projection reads.
    pub fn merged(dims: &AttentionDims) -> Self {
        let row = dims.heads * dims.dv;
        Self { shape: vec![dims.batch, dims.nq, row], view: View::tokens(row, dims.nq, 0, dims.dv) }
    }
}

/// q `[B, heads, Nq, d]`, k `[B, heads, Nk, d]`, v `[B, heads, Nk, dv]`; bias optional
/// `[heads, Nq, Nk]` (shared by all B). out `[B, heads, Nq, dv]` = softmax(scale · q·kᵀ + bias) · v.
pub fn attention(g: &mut Graph, q: TensorId, k: TensorId, v: TensorId, bias: Option<TensorId>, scale: f32) -> Result<TensorId> {
    let (qs, ks, vs) = (g.shape(q).to_vec(), g.shape(k).to_vec(), g.shape(v).to_vec());
    let bad = || Error::Graph(format!("attention: expected q [B,heads,Nq,d], k [B,heads,Nk,d], v [B,heads,Nk,dv]; got q {qs:?}, k {ks:?}, v {vs:?}"));
    if qs.len() != 4 || ks.len() != 4 || vs.len() != 4 {
        return Err(bad());
    }
    let dims = AttentionDims { batch: qs[0], heads: qs[1], nq: qs[2], nk: ks[2], d: qs[3], dv: vs[3] };
    if ks[..2] != qs[..2] || vs[..3] != ks[..3] || ks[3] != qs[3] {
        return Err(bad());
    }
    let bias = match bias {
        None => None,
        Some(t) => {
            let bshape = g.shape(t);
            if bshape != [dims.heads, dims.nq, dims.nk] {
                return Err(Error::Graph(format!(
                    "attention: bias must be [heads, Nq, Nk] = {:?}, got {bshape:?}",
                    [dims.heads, dims.nq, dims.nk]
                )));
            }
            Some(Operand::new(t, View::contiguous(dims.heads, dims.nq, dims.nk).shared_batch()))
        }
    };
    attention_strided(
        g,
        Operand::new(q, View::contiguous(dims.heads, dims.nq, dims.d)),
        Operand::new(k, View::contiguous(dims.heads, dims.nk, dims.d)),
        Operand::new(v, View::contiguous(dims.heads, dims.nk, dims.dv)),
        bias,
        &dims,
        scale,
        &OutputSpec::heads(&dims),
    )
}

/// Attention with every operand read through a [`View`] and the output written through one:
/// `out[b, h, i, :] = softmax_j(scale · q[b,h,i,:]·k[b,h,j,:] + bias[b,h,i,j]) · v[b,h,j,:]`.
#[allow(clippy::too_many_arguments)]
pub fn attention_strided(
    g: &mut Graph,
    q: Operand,
    k: Operand,
    v: Operand,
    bias: Option<Operand>,
    dims: &AttentionDims,
    scale: f32,
    out: &OutputSpec,
) -> Result<TensorId> {
    let AttentionDims { batch, heads, nq, nk, d, dv } = *dims;
    if [batch, heads, nq, nk, d, dv].contains(&0) {
        return Err(Error::Graph(format!("attention: empty extent in {dims:?}")));
    }
    if d > MAX_D {
        return Err(Error::Graph(format!(
            "attention: head dim d = {d} is over the kernel's maximum of {MAX_D} (q is held in registers); split the heads"
        )));
    }
    let check = |g: &Graph, what: &str, op: &Operand, tokens: usize, channels: usize| -> Result<()> {
        let view = &op.view;
        if view.batch_split.contains(&0) || view.token_split == 0 {
            return Err(Error::Graph(format!("attention: {what} view has a zero split: {view:?}")));
        }
        let numel = g.numel(op.tensor);
        check_u32(&format!("attention {what}"), numel)?;
        let last = view.max_index(batch, heads, tokens, channels);
        if last >= numel {
            return Err(Error::Graph(format!(
                "attention: {what} view {view:?} reaches element {last} for dims {dims:?}, but the tensor {:?} has {numel}",
                g.shape(op.tensor)
            )));
        }
        Ok(())
    };
    check(g, "q", &q, nq, d)?;
    check(g, "k", &k, nk, d)?;
    check(g, "v", &v, nk, dv)?;
    if let Some(b) = &bias {
        check(g, "bias", b, nq, nk)?;
    }
    let out_bytes = crate::graph::numel_of(&out.shape).saturating_mul(4) as u64;
    if out_bytes > g.profile.max_binding_bytes() {
        return Err(Error::TooLarge(format!(
            "attention: the output {:?} is {out_bytes} bytes, over the device's {}-byte binding limit",
            out.shape,
            g.profile.max_binding_bytes()
        )));
    }
    check_output_coverage(&out.shape, &out.view, dims)?;

    let rows = batch * heads * nq;
    let dv4 = dv.min(DV_CHUNK).div_ceil(4);
    let chunks = dv.div_ceil(dv4 * 4);
    let flops = (rows * nk * (2 * d + 2 * dv + 4)) as u64;
    let variant = tuning::attention_variant(&g.profile, d.max(dv));
    let vec4 = d.is_multiple_of(4) && dv.is_multiple_of(4) && [&q, &k, &v].iter().all(|op| op.view.rows_are_vec4());
    let kernel = if vec4 { with_vec4_loads(variant.kernel) } else { variant.kernel };
    let qb = variant.rows;
    let invocations = batch * heads * nq.div_ceil(qb) * chunks;
    check_u32("attention invocations", invocations + WG)?;
    let workgroups = invocations.div_ceil(WG);

    let o = g.activation(&out.shape);
    let u = |x: usize| x as u32;
    let bias_view = bias.map(|b| b.view).unwrap_or(View::strided(0, 0, 0, 0, 0));
    let uniform = params::Attention {
        batch: u(batch),
        heads: u(heads),
        nq: u(nq),
        nk: u(nk),
        d: u(d),
        dv: u(dv),
        chunks: u(chunks),
        scale,
        q: q.view.uniform(),
        k: k.view.uniform(),
        v: v.view.uniform(),
        bias: bias_view.uniform(),
        o: out.view.uniform(),
    };
    // An absent bias binds the placeholder, not q: q's storage may then move to a texture.
    let bias_tensor = match bias {
        Some(b) => b.tensor,
        None => g.placeholder(),
    };
    g.push(Node {
        label: "attention".into(),
        // Every attention kernel is specialised for its head size (its channel loops are
        // written out).
        key: PipelineKey::new(kernel).with("D4", d.div_ceil(4) as u32).with("DV4", dv4 as u32).with("WG", WG as u32).with("HAS_BIAS", bias.is_some() as u32)
            .with("STORE_LOOP", variant.store_loop as u32),
        params: Uniform::of(&uniform),
        reads: vec![q.tensor, k.tensor, v.tensor, bias_tensor],
        writes: vec![o],
        workgroups: grid(workgroups),
        flops,
    });
    // Always worth a texture, however few times a texel is fetched: the kernel's channel loops are
    // written out, and reading q, k and v from buffers (a loop over the SIMD lanes per load on
    // lavapipe) made hatnet-digits' attention pipelines 0.37 s slower to compile (cold start
    // 1.72 → 2.09 s, Intel Xeon) for 0.97 of hatnet-tiny's GPU time.
    if vec4 {
        g.offer_texture(0, "Q_TEXTURE");
        g.offer_texture(1, "K_TEXTURE");
        g.offer_texture(2, "V_TEXTURE");
    }
    Ok(o)
}

/// The variant of `kernel` that reads q, k and v as vec4.
fn with_vec4_loads(kernel: Kernel) -> Kernel {
    match kernel {
        Kernel::Attention => Kernel::AttentionVec4,
        Kernel::AttentionQb4 => Kernel::AttentionQb4Vec4,
        Kernel::AttentionQb2 => Kernel::AttentionQb2Vec4,
        other => other,
    }
}

/// The output view must write each element of `shape` exactly once, or later ops would read
/// stale memory. Checked element by element (once per graph build; a bitmap of the output size).
fn check_output_coverage(shape: &[usize], view: &View, dims: &AttentionDims) -> Result<()> {
    let numel = crate::graph::numel_of(shape);
    let AttentionDims { batch, heads, nq, dv, .. } = *dims;
    let fail = |why: String| Err(Error::Graph(format!("attention: output view {view:?} for shape {shape:?} and {dims:?}: {why}")));
    if numel != batch * heads * nq * dv {
        return fail(format!("the shape has {numel} elements, the attention produces {}", batch * heads * nq * dv));
    }
    if view.batch_split.contains(&0) || view.token_split == 0 {
        return fail("zero split".into());
    }
    check_u32("attention output", numel)?;
    if is_dense_mixed_radix(view, dims, numel) {
        return Ok(());
    }
    let mut seen = vec![0u64; numel.div_ceil(64)];
    for b in 0..batch {
        for h in 0..heads {
            for t in 0..nq {
                for c in 0..dv {
                    let i = view.index(b, h, t, c);
                    if i >= numel || seen[i / 64] & (1 << (i % 64)) != 0 {
                        return fail(format!("element (b {b}, head {h}, query {t}, channel {c}) maps to {i}, out of range or written twice"));
                    }
                    seen[i / 64] |= 1 << (i % 64);
                }
            }
        }
    }
    Ok(())
}

/// Whether `view` maps (b, h, t, c) onto `0 .. numel` as a mixed-radix number: its axes, sorted
/// by stride, each step exactly over the ones before. Then every element is written exactly once,
/// with no element-by-element walk (what every view the models build is); anything else falls
/// back to the walk, which names the first element at fault.
fn is_dense_mixed_radix(view: &View, dims: &AttentionDims, numel: usize) -> bool {
    let AttentionDims { batch, heads, nq, dv, .. } = *dims;
    let [n1, n2] = view.batch_split;
    if view.offset != 0 || !batch.is_multiple_of(n1 * n2) || !nq.is_multiple_of(view.token_split) {
        return false;
    }
    let mut axes: Vec<(usize, usize)> = [
        (batch / (n1 * n2), view.batch_strides[0]),
        (n1, view.batch_strides[1]),
        (n2, view.batch_strides[2]),
        (heads, view.head),
        (nq / view.token_split, view.token_strides[0]),
        (view.token_split, view.token_strides[1]),
        (dv, view.channel),
    ]
    .into_iter()
    .filter(|&(extent, _)| extent > 1)
    .collect();
    axes.sort_by_key(|&(_, stride)| stride);
    let mut expected = 1usize;
    for (extent, stride) in axes {
        if stride != expected {
            return false;
        }
        expected = expected.saturating_mul(extent);
    }
    expected == numel
}

/// CPU reference of [`attention`] (contiguous operands, f64 accumulation). `bias` is `[heads, nq, nk]`.
pub fn attention_cpu(q: &[f32], k: &[f32], v: &[f32], bias: Option<&[f32]>, dims: &AttentionDims, scale: f32) -> Vec<f32> {
    let bias_view = View::contiguous(dims.heads, dims.nq, dims.nk).shared_batch();
    attention_strided_cpu(
        (q, &View::contiguous(dims.heads, dims.nq, dims.d)),
        (k, &View::contiguous(dims.heads, dims.nk, dims.d)),
        (v, &View::contiguous(dims.heads, dims.nk, dims.dv)),
        bias.map(|b| (b, &bias_view)),
        dims,
        scale,
    )
}

/// CPU reference of [`attention_strided`]: reads through the views, returns `[B, heads, nq, dv]`
/// contiguous. Two-pass softmax in f64.
pub fn attention_strided_cpu(
    q: (&[f32], &View),
    k: (&[f32], &View),
    v: (&[f32], &View),
    bias: Option<(&[f32], &View)>,
    dims: &AttentionDims,
    scale: f32,
) -> Vec<f32> {
    let AttentionDims { batch, heads, nq, nk, d, dv } = *dims;
    let mut out = Vec::with_capacity(batch * heads * nq * dv);
    let mut scores = vec![0f64; nk];
    for b in 0..batch {
        for h in 0..heads {
            for i in 0..nq {
                for (j, s) in scores.iter_mut().enumerate() {
                    let dot: f64 = (0..d).map(|c| q.0[q.1.index(b, h, i, c)] as f64 * k.0[k.1.index(b, h, j, c)] as f64).sum();
                    *s = scale as f64 * dot + bias.map_or(0.0, |(bd, bv)| bd[bv.index(b, h, i, j)] as f64);
                }
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let weights: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let l: f64 = weights.iter().sum();
                for c in 0..dv {
                    let acc: f64 = weights.iter().enumerate().map(|(j, w)| w * v.0[v.1.index(b, h, j, c)] as f64).sum();
                    out.push((acc / l) as f32);
                }
            }
        }
    }
    out
}
