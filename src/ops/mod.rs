//! The op library. An op is `src/ops/<op>.rs` driving the kernel(s) `shaders/<op>*.wgsl` of the
//! same name: shape checks, the kernel variant and tiling (chosen for the graph's device in
//! [`tuning`]), the typed uniform ([`params`]), the dispatch geometry, the FLOP count, and a
//! plain CPU reference the tests compare against. Ops only append [`Node`]s to a [`Graph`];
//! nothing here touches the GPU.
//!
//! Generic ops sit here; the kernels one family needs (VVT's vicinity attention, ACC-ViT's
//! atrous attention and convolution, LaViT's attention downsampling) sit in [`family`], next to
//! `shaders/family/`. Host-side conversions of PyTorch tensor layouts live with the models
//! (`models::torch_layout`), not here.
//!
//! A 1-D launch of `n` workgroups is folded into `(x, y)` with `x <= 65535` ([`grid`]); the
//! shader recovers its linear workgroup index as `wid.x + wid.y * nwg.x` and returns early past
//! the end, so any shape stays within `maxComputeWorkgroupsPerDimension`.

pub use crate::graph::{ConstantBinding, Graph, Node, TensorId};
pub use crate::kernels::{params, Kernel, PipelineKey, Uniform};

pub mod tuning;

pub mod unary;
pub mod binary;
pub mod matmul;
pub mod conv2d;
pub mod conv2d_nhwc;
pub mod layernorm;
pub mod groupnorm;
pub mod softmax;
pub mod pool;
pub mod layout;
pub mod attention;
pub mod family;

/// Activation applied in an op's epilogue. The discriminant is the WGSL `ACT` override value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(u32)]
pub enum Activation {
    #[default]
    None = 0,
    Relu = 1,
    /// Exact GELU, `x * Φ(x)`, via a polynomial erf (|error| ≤ 1e-6).
    Gelu = 2,
    GeluTanh = 3,
    Silu = 4,
    Sigmoid = 5,
    Tanh = 6,
}

impl Activation {
    /// f64 reference used by the CPU checks.
    pub fn cpu(self, x: f32) -> f32 {
        let x = x as f64;
        let y = match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
            Activation::GeluTanh => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
            }
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
        };
        y as f32
    }
}

pub const MAX_WORKGROUPS_PER_DIM: u32 = 65535;

/// Folds a 1-D launch of `workgroups` workgroups into `[x, y, 1]` with `x, y <= 65535`.
pub fn grid(workgroups: usize) -> [u32; 3] {
    let n = workgroups.max(1) as u64;
    let max = MAX_WORKGROUPS_PER_DIM as u64;
    if n <= max {
        return [n as u32, 1, 1];
    }
    let y = n.div_ceil(max);
    let x = n.div_ceil(y);
    [x as u32, y as u32, 1]
}

/// A constant operand `t` that a kernel reads element by element, as a uniform buffer where the
/// device prefers one (`tuning::constant_uniforms`: lavapipe) and it fits
/// (`Graph::constant_uniform_elements`, any length); `None` to keep the storage buffer.
pub fn constant_uniform_scalars(g: &mut Graph, t: TensorId) -> Option<TensorId> {
    if tuning::constant_uniforms(&g.profile) {
        g.constant_uniform_elements(t)
    } else {
        None
    }
}

/// Where a kernel reads operand `t` from: the tensor to bind and how it is bound. A constant
/// moves, when the kernel has the path (`vec4_path`: it reads the operand in whole vec4s), to a
/// uniform buffer on lavapipe if it fits one (`tuning::constant_uniforms`), else to a flat
/// texture on software devices (`tuning::constant_textures`); anything else stays the storage
/// buffer it is. The kernel's `*_UNIFORM` / `*_TEXTURE` defines follow the binding.
pub fn constant_operand(g: &mut Graph, t: TensorId, vec4_path: bool) -> (TensorId, ConstantBinding) {
    if !vec4_path {
        return (t, ConstantBinding::Buffer);
    }
    if tuning::constant_uniforms(&g.profile) {
        if let Some(u) = g.constant_uniform(t) {
            return (u, ConstantBinding::Uniform);
        }
    }
    if tuning::constant_textures(&g.profile) {
        if let Some(tex) = g.constant_texture(t) {
            return (tex, ConstantBinding::Texture);
        }
    }
    (t, ConstantBinding::Buffer)
}

/// Checks that the product of shapes fits the u32 indices every kernel uses.
pub fn check_u32(what: &str, numel: usize) -> crate::Result<()> {
    if numel > u32::MAX as usize / 4 {
        return Err(crate::Error::TooLarge(format!("{what}: {numel} elements do not fit 32-bit indexing")));
    }
    Ok(())
}
