//! Group normalisation of `x [B, C, H, W]` or `[B, C, N]` with G groups, as `torch.nn.GroupNorm`:
//! statistics (biased variance) over each image's `C / G` consecutive channels, then the
//! per-channel affine; optionally a second tensor summed into x first and an activation
//! applied last, or a residual added after it all ([`Sum`]).
//!
//! `GroupNorm(1, C)` reduces over a whole image — up to ~800k elements — so one workgroup per
//! group would leave the device idle. Each group is cut into equal chunks of at most
//! [`CHUNK`] elements and normalised in two dispatches of `groupnorm.wgsl`:
//! 1. per chunk: (count, mean, M2) per lane in one pass (Welford's update on the values less the
//!    chunk's first element), merged across lanes with Chan's parallel formula; each chunk's
//!    (mean, M2) goes to a small `stats` tensor;
//! 2. per chunk again: merge the group's chunk moments (Chan), normalise the chunk's elements.
//!
//! A group of one chunk (every group of a small map) takes one dispatch doing both.
//!
//! Where `H·W` is a multiple of 4 the elements are vec4s (the `VEC4` variant): a quarter of
//! the loads. Lavapipe, hatnet-tiny's 63 GroupNorms (both dispatches): 42 → 21 ms.
//!
//! Invariant for accuracy: nowhere is a variance formed as `E[v²] - E[v]²`; every M2 is a sum of
//! squared deviations from a nearby mean, so statistics keep ~1e-6 relative accuracy even with a
//! large common offset.

use super::{check_u32, grid, params, tuning, Activation, Graph, Kernel, Node, PipelineKey, TensorId, Uniform};
use crate::error::{Error, Result};

/// Largest chunk (elements) one workgroup reduces. A 448x448 HAT-Net stem ([1, 48, 112, 112],
/// ~600k elements) becomes ~150 chunks — enough workgroups to fill a GPU, while the chunk merge
/// that every workgroup of the second dispatch repeats stays cheap.
pub const CHUNK: usize = 4096;


/// How a group of `group_len` elements (floats or vec4s) is chunked into chunks of at most `max`:
/// (chunk_len, chunks_per_group). Every chunk but the last has `chunk_len` elements and the last
/// is not empty (`group_len < max²`).
fn chunking(group_len: usize, max: usize) -> (usize, usize) {
    let chunks = group_len.div_ceil(max);
    (group_len.div_ceil(chunks), chunks)
}

/// Where a GroupNorm's second operand is added: to its input, or to its output.
#[derive(Clone, Copy, Debug)]
pub enum Sum {
    /// `GroupNorm(x + add)`: summed in the norm's loads (the `ADD = 1` kernels), or for
    /// SwiftShader's large groups an add dispatch and then the plain norm
    /// ([`tuning::group_norm_fuses_input_add`]).
    Input(TensorId),
    /// `residual + act(GroupNorm(x))`, added in the normalising pass (the `ADD = 2` kernels): a
    /// residual block ending in a norm (HAT-Net's inverted residual) needs no add dispatch.
    Output(TensorId),
}

/// GroupNorm(groups, C) of `x`, then `act`, with `sum` added to its input or output (shaped
/// like `x`). gamma, beta: `[C]`.
#[allow(clippy::too_many_arguments)]
pub fn group_norm(
    g: &mut Graph,
    x: TensorId,
    groups: usize,
    gamma: TensorId,
    beta: TensorId,
    eps: f32,
    sum: Option<Sum>,
    act: Activation,
) -> Result<TensorId> {
    group_norm_layout(g, x, groups, gamma, beta, eps, sum, act, Layout::Nchw, Layout::Nchw)
}

/// A map's memory layout: channels outermost after the batch, or innermost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `[B, C, H, W]` or `[B, C, N]`.
    Nchw,
    /// `[B, H, W, C]` or `[B, N, C]`.
    ChannelsLast,
}

/// GroupNorm(1, C) of a map `x` in layout `input` (`[B, C, H, W]` or `[B, C, N]`, or channel-last
/// `[B, H, W, C]` or `[B, N, C]`: statistics over each image, gamma and beta along the channel
/// axis), written in layout `output`: where they differ (4-D maps only) the norm also transposes
/// (`OUT_TRANSPOSED`). A summand (`sum`) has x's shape and layout.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_relayout(g: &mut Graph, x: TensorId, gamma: TensorId, beta: TensorId, eps: f32, sum: Option<Sum>, act: Activation, input: Layout, output: Layout) -> Result<TensorId> {
    if input != output && g.shape(x).len() != 4 {
        return Err(Error::Graph(format!("group_norm: a transposing norm needs a 4-D map, got {:?}", g.shape(x))));
    }
    group_norm_layout(g, x, 1, gamma, beta, eps, sum, act, input, output)
}

#[allow(clippy::too_many_arguments)]
fn group_norm_layout(
    g: &mut Graph,
    x: TensorId,
    groups: usize,
    gamma: TensorId,
    beta: TensorId,
    eps: f32,
    sum: Option<Sum>,
    act: Activation,
    input: Layout,
    output: Layout,
) -> Result<TensorId> {
    let channels_last = input == Layout::ChannelsLast;
    let transposed = input != output;
    let (add, add_mode) = match sum {
        None => (None, 0u32),
        Some(Sum::Input(t)) => (Some(t), 1),
        Some(Sum::Output(t)) => (Some(t), 2),
    };
    let shape = g.shape(x).to_vec();
    if shape.len() != 3 && shape.len() != 4 {
        let expected = if channels_last { "[B, H, W, C] or [B, N, C]" } else { "[B, C, H, W] or [B, C, N]" };
        return Err(Error::Graph(format!("group_norm: input must be {expected}, got {shape:?}")));
    }
    let b = shape[0];
    let (c, spatial) = if channels_last {
        (shape[shape.len() - 1], shape[1..shape.len() - 1].iter().product())
    } else {
        (shape[1], shape[2..].iter().product::<usize>())
    };
    if groups == 0 || c % groups != 0 || b * c * spatial == 0 {
        return Err(Error::Graph(format!("group_norm: {groups} groups cannot split input {shape:?} (C must be a multiple of G, no empty dims)")));
    }
    for (name, t) in [("gamma", gamma), ("beta", beta)] {
        if g.numel(t) != c {
            return Err(Error::Graph(format!("group_norm: {name} has shape {:?}, expected [{c}] for input {shape:?}", g.shape(t))));
        }
    }
    if let Some(a) = add {
        if g.shape(a) != shape.as_slice() {
            let what = if add_mode == 2 { "residual" } else { "add" };
            return Err(Error::Graph(format!("group_norm: {what} has shape {:?}, expected the input's {shape:?}", g.shape(a))));
        }
    }
    let n = g.numel(x);
    check_u32("group_norm", n)?;
    let group_len = c / groups * spatial;
    if group_len >= 1 << 24 {
        return Err(Error::TooLarge(format!("group_norm: groups of {group_len} elements (input {shape:?}) exceed the 2^24 the f32 counts hold exactly")));
    }
    // GroupNorm(x + add) where the device prefers it unfused: an add dispatch, then the plain norm.
    let (x, add, add_mode) = match add {
        Some(t) if add_mode == 1 && !tuning::group_norm_fuses_input_add(&g.profile, group_len) => (super::binary::add(g, x, t)?, None, 0),
        _ => (x, add, add_mode),
    };
    // vec4 elements where a channel's run is a multiple of 4: a vec4 never straddles channels.
    // Channel-last, where C is: a vec4 never straddles pixels.
    let width = if (if channels_last { c } else { spatial }).is_multiple_of(4) { 4 } else { 1 };
    let kernel = if width == 4 { Kernel::GroupNormVec4 } else { Kernel::GroupNorm };
    let (chunk_len, chunks_per_group) = chunking(group_len / width, tuning::group_norm_chunk(&g.profile, group_len) / width);
    let num_chunks = b * groups * chunks_per_group;
    // On lavapipe gamma and beta from uniform buffers, when both are constants that fit.
    let affine_uniform = tuning::constant_uniforms(&g.profile)
        .then(|| g.constant_uniform_elements(gamma).zip(g.constant_uniform_elements(beta)))
        .flatten();
    let (gamma, beta) = affine_uniform.unwrap_or((gamma, beta));
    let lanes = tuning::group_norm_lanes(&g.profile, chunks_per_group);
    let stats = g.activation(&[num_chunks, 2]);
    let y = if !transposed {
        g.activation(&shape)
    } else if channels_last {
        g.activation(&[b, c, shape[1], shape[2]])
    } else {
        g.activation(&[b, shape[2], shape[3], c])
    };
    let uniform = Uniform::of(&params::GroupNorm {
        group_len: (group_len / width) as u32,
        spatial: if channels_last { spatial as u32 } else { (spatial / width) as u32 },
        channels_per_group: if channels_last { (c / width) as u32 } else { (c / groups) as u32 },
        groups: groups as u32,
        chunk_len: chunk_len as u32,
        chunks_per_group: chunks_per_group as u32,
        num_chunks: num_chunks as u32,
        eps,
    });
    let key = |phase: u32| {
        PipelineKey::new(kernel)
            .with("WG", lanes as u32)
            .with("PHASE", phase)
            // The statistics of a post-norm residual's norm are x's alone: its phase 0 is the
            // plain one, and shares that pipeline.
            .with("ADD", if phase == 0 && add_mode == 2 { 0 } else { add_mode })
            .with("ACT", if phase == 0 { 0 } else { act as u32 })
            // The statistics never look at the channel: phase 0 shares the NCHW pipeline.
            .with("CHANNELS_LAST", (phase != 0 && channels_last) as u32)
            .with("OUT_TRANSPOSED", (phase != 0 && transposed) as u32)
            // Every phase binds gamma and beta (one binding layout), so the statistics declare
            // them as the normalisation does.
            .with("AFFINE_UNIFORM", affine_uniform.is_some() as u32)
    };
    // Both phases bind the same tensors (one module, one binding layout); phase 0 writes only
    // `stats`, phase 1 reads `stats` and writes `y`. A group of one chunk takes one dispatch
    // (phase 2: its statistics, then the normalisation; `stats` stays bound, unused).
    let reads = vec![x, add.unwrap_or(x), gamma, beta];
    if chunks_per_group == 1 {
        g.push(Node {
            label: "group_norm".into(),
            key: key(2),
            params: uniform,
            reads,
            writes: vec![stats, y],
            workgroups: grid(num_chunks),
            flops: 9 * n as u64,
        });
        return Ok(y);
    }
    let scratch = g.activation(&[4]);
    g.push(Node {
        label: "group_norm.stats".into(),
        key: key(0),
        params: uniform.clone(),
        reads: reads.clone(),
        // The statistics pass never touches y: its binding takes a 4-float scratch activation
        // (not the statistics again: WebGPU rejects two writable bindings of one buffer range),
        // so y has one producer, the normalisation, and can be copied into a texture after it
        // (`Graph::with_activation_textures_copied`).
        writes: vec![stats, scratch],
        workgroups: grid(num_chunks),
        flops: 4 * n as u64,
    });
    g.push(Node {
        label: "group_norm".into(),
        key: key(1),
        params: uniform,
        reads,
        writes: vec![stats, y],
        workgroups: grid(num_chunks),
        flops: 5 * n as u64,
    });
    Ok(y)
}

/// CPU reference (f64 statistics) of [`group_norm`]; `x`, `add` are `[B, C, S]` flattened.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_cpu(
    x: &[f32],
    add: Option<&[f32]>,
    b: usize,
    c: usize,
    groups: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    act: Activation,
) -> Vec<f32> {
    let spatial = x.len() / (b * c);
    let group_len = c / groups * spatial;
    let v: Vec<f64> = match add {
        Some(a) => x.iter().zip(a).map(|(&p, &q)| (p + q) as f64).collect(),
        None => x.iter().map(|&p| p as f64).collect(),
    };
    let mut y = vec![0f32; x.len()];
    for (gi, group) in v.chunks(group_len).enumerate() {
        let mean = group.iter().sum::<f64>() / group_len as f64;
        let var = group.iter().map(|&t| (t - mean).powi(2)).sum::<f64>() / group_len as f64;
        let rstd = 1.0 / (var + eps as f64).sqrt();
        let channel0 = (gi % groups) * (c / groups);
        for (k, &t) in group.iter().enumerate() {
            let ch = channel0 + k / spatial;
            let out = (t - mean) * rstd * gamma[ch] as f64 + beta[ch] as f64;
            y[gi * group_len + k] = act.cpu(out as f32);
        }
    }
    y
}
