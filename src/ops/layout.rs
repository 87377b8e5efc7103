//! Data movement: `permute`, `concat` and `slice` (reshape is a view: [`Graph::reshape`]).
//!
//! All three are one kernel, a strided box copy (`layout.wgsl`): every element of a box of `dims`
//! is read at `in_base + Σ i_k·in_stride_k` and written at `out_base + Σ i_k·out_stride_k`.
//! Before a node is pushed the box is simplified — size-1 axes dropped, neighbouring axes merged
//! when they are contiguous on *both* sides — so a slice or a concat part is at most a 2-D copy
//! and a permute keeps only the axes it really moves. A copy that simplifies to the identity
//! (a permute moving only size-1 axes, a full slice, a one-input concat) is returned as a view.
//! A concat is one node per input, each writing its disjoint part of the output.

use super::{check_u32, grid, params, Graph, Kernel, Node, PipelineKey, TensorId, Uniform};
use crate::error::{Error, Result};

const WG: usize = 64;
/// Elements per invocation: one index decomposition (rank divisions) is shared by RUN copies.
/// Measured on lavapipe (GB/s copied, NCHW -> NHWC of [1, 64, 56, 56] / [2, 64, 56, 56] swapping
/// N and C): RUN 1: 0.27 / 0.26, 4: 0.62 / 0.64, 8: 0.78 / 1.24, 16: 1.00 / 1.42, 32: 1.42 / 1.90,
/// 64: 1.51 / 1.75.
const RUN: usize = 32;
/// Axes the uniform has room for (2 x vec4, see `layout.wgsl`).
pub const MAX_RANK: usize = 6;

/// Row-major strides of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        strides[k] = strides[k + 1] * shape[k + 1];
    }
    strides
}

/// One box copy, axes outermost first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoxCopy {
    pub dims: Vec<usize>,
    pub in_strides: Vec<usize>,
    pub out_strides: Vec<usize>,
    pub in_base: usize,
    pub out_base: usize,
}

impl BoxCopy {
    /// The same copy with size-1 axes dropped and doubly-contiguous neighbours merged (at least
    /// one axis is kept).
    pub fn simplified(&self) -> BoxCopy {
        let mut dims: Vec<usize> = Vec::new();
        let mut ins: Vec<usize> = Vec::new();
        let mut outs: Vec<usize> = Vec::new();
        for k in 0..self.dims.len() {
            let (d, si, so) = (self.dims[k], self.in_strides[k], self.out_strides[k]);
            if d == 1 {
                continue;
            }
            match (dims.last_mut(), ins.last(), outs.last()) {
                // The previous (outer) axis steps exactly over this one on both sides: merge.
                (Some(pd), Some(&pi), Some(&po)) if pi == d * si && po == d * so => {
                    *pd *= d;
                    *ins.last_mut().unwrap() = si;
                    *outs.last_mut().unwrap() = so;
                }
                _ => {
                    dims.push(d);
                    ins.push(si);
                    outs.push(so);
                }
            }
        }
        if dims.is_empty() {
            (dims, ins, outs) = (vec![1], vec![1], vec![1]);
        }
        BoxCopy { dims, in_strides: ins, out_strides: outs, in_base: self.in_base, out_base: self.out_base }
    }

    /// True when the copy moves a contiguous block to the same place (x and out coincide).
    pub fn is_identity(&self) -> bool {
        self.dims.len() == 1 && self.in_strides[0] == 1 && self.out_strides[0] == 1 && self.in_base == 0 && self.out_base == 0
    }
}

/// Pushes one node running `copy` (already simplified) from `x` into `out`.
fn push_copy(g: &mut Graph, label: String, x: TensorId, out: TensorId, copy: &BoxCopy) -> Result<()> {
    let rank = copy.dims.len();
    if rank > MAX_RANK {
        return Err(Error::Graph(format!(
            "{label}: the copy still has {rank} independent axes after merging ({:?}); at most {MAX_RANK} are supported",
            copy.dims
        )));
    }
    let numel: usize = copy.dims.iter().product();
    check_u32(&label, g.numel(x).max(g.numel(out)))?;
    // Axis 0 of the shader is the innermost: reverse, and pad each array to 8 words.
    let pack = |v: &[usize]| -> [u32; 8] {
        let mut w = [0u32; 8];
        for (slot, &s) in w.iter_mut().zip(v.iter().rev()) {
            *slot = s as u32;
        }
        w
    };
    let items = numel.div_ceil(RUN);
    let uniform = params::Layout {
        n: items as u32,
        numel: numel as u32,
        in_base: copy.in_base as u32,
        out_base: copy.out_base as u32,
        rank: rank as u32,
        dims: pack(&copy.dims),
        in_strides: pack(&copy.in_strides),
        out_strides: pack(&copy.out_strides),
        ..Default::default()
    };
    g.push(Node {
        label,
        key: PipelineKey::new(Kernel::Layout).with("WG", WG as u32).with("RUN", RUN as u32),
        params: Uniform::of(&uniform),
        reads: vec![x],
        writes: vec![out],
        workgroups: grid(items.div_ceil(WG)),
        flops: 0,
    });
    Ok(())
}

/// The box copy of `permute(x, perm)` for an input of `shape` (out is contiguous).
pub fn permute_copy(shape: &[usize], perm: &[usize]) -> BoxCopy {
    let in_strides = contiguous_strides(shape);
    let dims: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    BoxCopy {
        out_strides: contiguous_strides(&dims),
        in_strides: perm.iter().map(|&p| in_strides[p]).collect(),
        dims,
        in_base: 0,
        out_base: 0,
    }
}

/// `out.shape[k] = x.shape[perm[k]]`, like `torch.permute`. Rank <= 6.
pub fn permute(g: &mut Graph, x: TensorId, perm: &[usize]) -> Result<TensorId> {
    let shape = g.shape(x).to_vec();
    let mut seen = vec![false; shape.len()];
    let valid = perm.len() == shape.len() && perm.iter().all(|&p| p < shape.len() && !std::mem::replace(&mut seen[p], true));
    if !valid {
        return Err(Error::Graph(format!("permute: {perm:?} is not a permutation of the axes of {shape:?}")));
    }
    if shape.len() > MAX_RANK {
        return Err(Error::Graph(format!("permute: input {shape:?} has rank {} > {MAX_RANK}", shape.len())));
    }
    let copy = permute_copy(&shape, perm);
    let out_shape = copy.dims.clone();
    let copy = copy.simplified();
    if copy.is_identity() {
        return g.reshape(x, &out_shape);
    }
    let out = g.activation(&out_shape);
    push_copy(g, "permute".into(), x, out, &copy)?;
    Ok(out)
}

/// The box copy of `slice(x, axis, start, len)` for an input of `shape`.
pub fn slice_copy(shape: &[usize], axis: usize, start: usize, len: usize) -> BoxCopy {
    let in_strides = contiguous_strides(shape);
    let mut dims = shape.to_vec();
    dims[axis] = len;
    BoxCopy {
        out_strides: contiguous_strides(&dims),
        in_base: start * in_strides[axis],
        in_strides,
        dims,
        out_base: 0,
    }
}

/// `x[.., start..start + len, ..]` along `axis`.
pub fn slice(g: &mut Graph, x: TensorId, axis: usize, start: usize, len: usize) -> Result<TensorId> {
    let shape = g.shape(x).to_vec();
    if axis >= shape.len() || len == 0 || start + len > shape[axis] {
        return Err(Error::Graph(format!(
            "slice: cannot take {start}..{} of axis {axis} of {shape:?}",
            start + len
        )));
    }
    if len == shape[axis] {
        return g.reshape(x, &shape);
    }
    let copy = slice_copy(&shape, axis, start, len);
    let out_shape = copy.dims.clone();
    let copy = copy.simplified();
    let out = g.activation(&out_shape);
    push_copy(g, "slice".into(), x, out, &copy)?;
    Ok(out)
}

/// The box copies of `concat(xs, axis)`, one per input, for inputs of `shapes`.
pub fn concat_copies(shapes: &[Vec<usize>], axis: usize) -> (Vec<usize>, Vec<BoxCopy>) {
    let mut out_shape = shapes[0].clone();
    out_shape[axis] = shapes.iter().map(|s| s[axis]).sum();
    let out_strides = contiguous_strides(&out_shape);
    let mut offset = 0;
    let copies = shapes
        .iter()
        .map(|s| {
            let copy = BoxCopy {
                dims: s.clone(),
                in_strides: contiguous_strides(s),
                out_strides: out_strides.clone(),
                in_base: 0,
                out_base: offset * out_strides[axis],
            };
            offset += s[axis];
            copy
        })
        .collect();
    (out_shape, copies)
}

/// Concatenation of `xs` along `axis`; all other dims must agree.
pub fn concat(g: &mut Graph, xs: &[TensorId], axis: usize) -> Result<TensorId> {
    let shapes: Vec<Vec<usize>> = xs.iter().map(|&t| g.shape(t).to_vec()).collect();
    let Some(first) = shapes.first() else {
        return Err(Error::Graph("concat: no inputs".into()));
    };
    let agree = |s: &Vec<usize>| s.len() == first.len() && s.iter().zip(first).enumerate().all(|(k, (a, b))| k == axis || a == b);
    if axis >= first.len() || !shapes.iter().all(agree) || shapes.iter().any(|s| s.contains(&0)) {
        return Err(Error::Graph(format!("concat: cannot join shapes {shapes:?} along axis {axis}")));
    }
    if xs.len() == 1 {
        return g.reshape(xs[0], first);
    }
    let (out_shape, copies) = concat_copies(&shapes, axis);
    let out = g.activation(&out_shape);
    for (i, (&x, copy)) in xs.iter().zip(&copies).enumerate() {
        push_copy(g, format!("concat.{i}"), x, out, &copy.simplified())?;
    }
    Ok(out)
}

/// Row-major multi-index of linear position `i` in `shape`.
fn unravel(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for k in (0..shape.len()).rev() {
        idx[k] = i % shape[k];
        i /= shape[k];
    }
    idx
}

fn ravel(idx: &[usize], shape: &[usize]) -> usize {
    idx.iter().zip(shape).fold(0, |acc, (&i, &d)| acc * d + i)
}

/// CPU reference of [`permute`] (index by index, independent of the box-copy machinery).
pub fn permute_cpu(x: &[f32], shape: &[usize], perm: &[usize]) -> Vec<f32> {
    let out_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    (0..x.len())
        .map(|o| {
            let oi = unravel(o, &out_shape);
            let mut ii = vec![0; shape.len()];
            for (k, &p) in perm.iter().enumerate() {
                ii[p] = oi[k];
            }
            x[ravel(&ii, shape)]
        })
        .collect()
}

/// CPU reference of [`slice`].
pub fn slice_cpu(x: &[f32], shape: &[usize], axis: usize, start: usize, len: usize) -> Vec<f32> {
    let mut out_shape = shape.to_vec();
    out_shape[axis] = len;
    let n: usize = out_shape.iter().product();
    (0..n)
        .map(|o| {
            let mut ii = unravel(o, &out_shape);
            ii[axis] += start;
            x[ravel(&ii, shape)]
        })
        .collect()
}

/// CPU reference of [`concat`]: inputs `(data, shape)`.
pub fn concat_cpu(xs: &[(&[f32], &[usize])], axis: usize) -> Vec<f32> {
    let mut out_shape = xs[0].1.to_vec();
    out_shape[axis] = xs.iter().map(|(_, s)| s[axis]).sum();
    let n: usize = out_shape.iter().product();
    (0..n)
        .map(|o| {
            let mut ii = unravel(o, &out_shape);
            let mut part = 0;
            while ii[axis] >= xs[part].1[axis] {
                ii[axis] -= xs[part].1[axis];
                part += 1;
            }
            xs[part].0[ravel(&ii, xs[part].1)]
        })
        .collect()
}
