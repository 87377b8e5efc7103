//! `unary`: y = act(alpha·x + beta), element-wise: scale, shift and every activation
//! (shaders/unary.wgsl).

use super::{check_u32, grid, params, Activation, Graph, Kernel, Node, PipelineKey, TensorId, Uniform};
use crate::error::Result;

const WG: usize = 256;

/// y = act(alpha * x + beta).
pub fn unary(g: &mut Graph, x: TensorId, act: Activation, alpha: f32, beta: f32) -> Result<TensorId> {
    let shape = g.shape(x).to_vec();
    let n = g.numel(x);
    check_u32("unary", n)?;
    let y = g.activation(&shape);
    g.push(Node {
        label: format!("{act:?}").to_lowercase(),
        key: PipelineKey::new(Kernel::Unary).with("ACT", act as u32).with("WG", WG as u32),
        params: Uniform::of(&params::Unary { n: n as u32, alpha, beta, _pad: 0 }),
        reads: vec![x],
        writes: vec![y],
        workgroups: grid(n.div_ceil(WG)),
        flops: n as u64 * if act == Activation::None { 2 } else { 10 },
    });
    Ok(y)
}

/// y = act(x).
pub fn activation(g: &mut Graph, x: TensorId, act: Activation) -> Result<TensorId> {
    unary(g, x, act, 1.0, 0.0)
}

/// y = alpha * x.
pub fn scale(g: &mut Graph, x: TensorId, alpha: f32) -> Result<TensorId> {
    unary(g, x, Activation::None, alpha, 0.0)
}

/// CPU reference of [`unary`].
pub fn unary_cpu(x: &[f32], act: Activation, alpha: f32, beta: f32) -> Vec<f32> {
    x.iter().map(|&v| act.cpu(alpha * v + beta)).collect()
}
