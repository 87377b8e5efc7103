//! `binary`: add / sub / mul with numpy broadcasting of the second operand and an optional
//! activation (shaders/binary.wgsl; vec4 elements where the shapes allow).

use super::{check_u32, grid, params, Activation, Graph, Kernel, Node, PipelineKey, TensorId, Uniform};
use crate::error::{Error, Result};

const WG: usize = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum BinaryOp {
    Add = 0,
    Sub = 1,
    Mul = 2,
}

impl BinaryOp {
    pub fn cpu(self, a: f32, b: f32) -> f32 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
        }
    }
}

/// Right-aligns `b_shape` against `a_shape` (rank ≤ 4) and returns a's dims and b's strides as
/// rank-4 arrays (stride 0 on broadcast axes).
pub fn broadcast_strides(a_shape: &[usize], b_shape: &[usize]) -> Result<([usize; 4], [usize; 4])> {
    if a_shape.len() > 4 || b_shape.len() > a_shape.len() {
        return Err(Error::Graph(format!("cannot broadcast {b_shape:?} to {a_shape:?} (rank <= 4, b not larger than a)")));
    }
    let mut dims = [1usize; 4];
    dims[4 - a_shape.len()..].copy_from_slice(a_shape);
    let mut bdims = [1usize; 4];
    bdims[4 - b_shape.len()..].copy_from_slice(b_shape);
    let mut strides = [0usize; 4];
    let mut s = 1;
    for k in (0..4).rev() {
        if bdims[k] == dims[k] {
            strides[k] = if bdims[k] == 1 { 0 } else { s };
        } else if bdims[k] != 1 {
            return Err(Error::Graph(format!("cannot broadcast {b_shape:?} to {a_shape:?}")));
        }
        s *= bdims[k];
    }
    Ok((dims, strides))
}

/// c = act(a OP b), b broadcast to a's shape.
pub fn binary(g: &mut Graph, a: TensorId, b: TensorId, op: BinaryOp, act: Activation) -> Result<TensorId> {
    let shape = g.shape(a).to_vec();
    let (dims, bs) = broadcast_strides(&shape, g.shape(b))?;
    let n = g.numel(a);
    check_u32("binary", n)?;
    let c = g.activation(&shape);
    let p = |v: usize| v as u32;
    // Four elements per invocation where the last axis runs contiguously in both operands.
    let vec4 = dims[3].is_multiple_of(4) && bs[3] == 1 && bs[..3].iter().all(|s| s.is_multiple_of(4));
    // Counts and strides in elements of the variant's V (with vec4, b's last-axis stride is 1 either way).
    let width = if vec4 { 4 } else { 1 };
    let kernel = if vec4 { Kernel::BinaryVec4 } else { Kernel::Binary };
    let uniform = params::Binary {
        n: p(n / width),
        d1: p(dims[1]),
        d2: p(dims[2]),
        d3: p(dims[3] / width),
        bs0: p(bs[0] / width),
        bs1: p(bs[1] / width),
        bs2: p(bs[2] / width),
        bs3: p(bs[3]),
    };
    let items = n / width;
    g.push(Node {
        label: format!("{op:?}").to_lowercase(),
        key: PipelineKey::new(kernel).with("OP", op as u32).with("ACT", act as u32).with("WG", WG as u32),
        params: Uniform::of(&uniform),
        reads: vec![a, b],
        writes: vec![c],
        workgroups: grid(items.div_ceil(WG)),
        flops: n as u64,
    });
    Ok(c)
}

pub fn add(g: &mut Graph, a: TensorId, b: TensorId) -> Result<TensorId> {
    binary(g, a, b, BinaryOp::Add, Activation::None)
}

pub fn mul(g: &mut Graph, a: TensorId, b: TensorId) -> Result<TensorId> {
    binary(g, a, b, BinaryOp::Mul, Activation::None)
}


/// CPU reference of [`binary`].
pub fn binary_cpu(a: &[f32], a_shape: &[usize], b: &[f32], b_shape: &[usize], op: BinaryOp, act: Activation) -> Vec<f32> {
    let (dims, bs) = broadcast_strides(a_shape, b_shape).expect("broadcastable");
    let mut out = Vec::with_capacity(a.len());
    for (i, &av) in a.iter().enumerate() {
        let i3 = i % dims[3];
        let r = i / dims[3];
        let (i2, r) = (r % dims[2], r / dims[2]);
        let (i1, i0) = (r % dims[1], r / dims[1]);
        let bv = b[i0 * bs[0] + i1 * bs[1] + i2 * bs[2] + i3 * bs[3]];
        out.push(act.cpu(op.cpu(av, bv)));
    }
    out
}
