//! The kernel library. Each op is a pair: `shaders/<op>.wgsl` (the kernel) and `src/ops/<op>.rs`
//! (shape checks, the uniform words, the dispatch geometry, the FLOP count, and a plain CPU
//! reference the tests compare against). Ops only append [`Node`]s to a [`Graph`]; nothing here
//! touches the GPU.
//!
//! Conventions shared by every shader:
//! - `@group(0) @binding(0) var<uniform> params: Params;` holds the shapes (a node's `params`);
//!   then the read-only storage tensors, then the written ones, in the node's order.
//! - Tile and workgroup sizes are `override` constants, set through the [`PipelineKey`].
//! - A 1-D launch of `n` workgroups is folded into `(x, y)` with `x <= 65535` ([`grid`]); the
//!   shader recovers its linear workgroup index as `wid.x + wid.y * nwg.x` and returns early
//!   past the end, so any shape stays within `maxComputeWorkgroupsPerDimension`.

use std::borrow::Cow;

pub use crate::graph::{Graph, Node, PipelineKey, TensorId};

pub mod elementwise;
pub mod matmul;
pub mod conv2d;
pub mod layernorm;
pub mod groupnorm;
pub mod softmax;
pub mod pool;
pub mod layout;
pub mod attention;
pub mod vicinity_attention;
pub mod attention_downsample;
pub mod atrous_attention;
pub mod atrous_dwconv;

/// Shared WGSL helpers (activation functions) prepended to shaders that apply an activation.
pub const ACTIVATIONS_WGSL: &str = include_str!("../../shaders/activations.wgsl");

/// Every shader of the crate. `source()` is what the device compiles and what the naga tests
/// validate, so adding a shader here is enough for it to be checked on every backend language.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Shader {
    Unary,
    Binary,
    /// binary.wgsl with vec4 loads (last axis a multiple of 4, contiguous in both operands).
    BinaryVec4,
    FmaPeak,
    Matmul,
    /// matmul.wgsl over the vec4 I/O prelude (shapes whose contiguous dims are multiples of 4).
    MatmulVec4,
    /// conv2d.wgsl: dense and grouped convolution as an implicit GEMM on gemm_tile.wgsl.
    Conv2d,
    /// conv2d.wgsl with vec4 weight loads (Cin/groups * kh * kw % 4 == 0).
    Conv2dVec4,
    /// Depthwise convolution (groups == channels).
    Conv2dDepthwise,
    LayerNorm,
    /// layernorm.wgsl over the vec4 I/O prelude (rows a multiple of 4 long).
    LayerNormVec4,
    GroupNorm,
    /// groupnorm.wgsl over the vec4 I/O prelude (H·W a multiple of 4).
    GroupNormVec4,
    Softmax,
    Pool,
    Layout,
    /// attention.wgsl with one query row per invocation.
    Attention,
    /// attention.wgsl with two query rows per invocation (CPU devices: half the k/v loads).
    AttentionRows2,
    /// VVT: k-side split reduction of the vicinity attention (partial KV⁺ per token chunk).
    VicinityKv,
    /// VVT: vicinity_kv with vec4 loads (d, row and offsets multiples of 4).
    VicinityKvVec4,
    /// VVT: sums the KV⁺ chunks and clamps KV.
    VicinityKvReduce,
    /// VVT: q side of the vicinity attention with its clamps.
    VicinityApply,
    /// VVT: vicinity_apply with vec4 loads and a 16-token tile.
    VicinityApplyVec4,
    /// VVT: clampmag(y + y·s) SE gating plus the residual add.
    VicinityGate,
    /// LaViT: residual attention downsampling between stages.
    AttentionDownsample,
    /// ACC-ViT: gated multi-branch dilated window attention (atrous_attention.wgsl).
    AtrousAttention,
    /// ACC-ViT: summed dilated depthwise 3x3 convs + bias + activation, channel-last.
    AtrousDwconv,
}

impl Shader {
    pub fn all() -> Vec<Shader> {
        vec![
            Shader::Unary,
            Shader::Binary,
            Shader::BinaryVec4,
            Shader::FmaPeak,
            Shader::Matmul,
            Shader::MatmulVec4,
            Shader::Conv2d,
            Shader::Conv2dVec4,
            Shader::Conv2dDepthwise,
            Shader::LayerNorm,
            Shader::LayerNormVec4,
            Shader::GroupNorm,
            Shader::GroupNormVec4,
            Shader::Softmax,
            Shader::Pool,
            Shader::Layout,
            Shader::Attention,
            Shader::AttentionRows2,
            Shader::VicinityKv,
            Shader::VicinityKvVec4,
            Shader::VicinityKvReduce,
            Shader::VicinityApply,
            Shader::VicinityApplyVec4,
            Shader::VicinityGate,
            Shader::AttentionDownsample,
            Shader::AtrousAttention,
            Shader::AtrousDwconv,
        ]
    }

    pub fn name(&self) -> &'static str {
        match self {
            Shader::Unary => "unary",
            Shader::Binary => "binary",
            Shader::BinaryVec4 => "binary_vec4",
            Shader::FmaPeak => "fma_peak",
            Shader::Matmul => "matmul",
            Shader::MatmulVec4 => "matmul_vec4",
            Shader::Conv2d => "conv2d",
            Shader::Conv2dVec4 => "conv2d_vec4",
            Shader::Conv2dDepthwise => "conv2d_depthwise",
            Shader::LayerNorm => "layernorm",
            Shader::LayerNormVec4 => "layernorm_vec4",
            Shader::GroupNorm => "groupnorm",
            Shader::GroupNormVec4 => "groupnorm_vec4",
            Shader::Softmax => "softmax",
            Shader::Pool => "pool",
            Shader::Layout => "layout",
            Shader::Attention => "attention",
            Shader::AttentionRows2 => "attention_rows2",
            Shader::VicinityKv => "vicinity_kv",
            Shader::VicinityKvVec4 => "vicinity_kv_vec4",
            Shader::VicinityKvReduce => "vicinity_kv_reduce",
            Shader::VicinityApply => "vicinity_apply",
            Shader::VicinityApplyVec4 => "vicinity_apply_vec4",
            Shader::VicinityGate => "vicinity_gate",
            Shader::AttentionDownsample => "attention_downsample",
            Shader::AtrousAttention => "atrous_attention",
            Shader::AtrousDwconv => "atrous_dwconv",
        }
    }

    pub fn source(&self) -> Cow<'static, str> {
        match self {
            Shader::Unary => with_activations(include_str!("../../shaders/unary.wgsl")),
            Shader::Binary => with_elem(ELEM_F32, &[include_str!("../../shaders/binary.wgsl")]),
            Shader::BinaryVec4 => with_elem(ELEM_VEC4, &[include_str!("../../shaders/binary.wgsl")]),
            Shader::FmaPeak => Cow::Borrowed(include_str!("../../shaders/fma_peak.wgsl")),
            Shader::Matmul => gemm_source(include_str!("../../shaders/matmul_io_scalar.wgsl"), include_str!("../../shaders/matmul.wgsl")),
            Shader::MatmulVec4 => gemm_source(include_str!("../../shaders/matmul_io_vec4.wgsl"), include_str!("../../shaders/matmul.wgsl")),
            Shader::Conv2d => gemm_source(include_str!("../../shaders/conv2d_io_scalar.wgsl"), include_str!("../../shaders/conv2d.wgsl")),
            Shader::Conv2dVec4 => gemm_source(include_str!("../../shaders/conv2d_io_vec4.wgsl"), include_str!("../../shaders/conv2d.wgsl")),
            Shader::Conv2dDepthwise => with_activations(include_str!("../../shaders/conv2d_depthwise.wgsl")),
            Shader::LayerNorm => with_elem(ELEM_F32, &[ROW_LANES, include_str!("../../shaders/layernorm.wgsl")]),
            Shader::LayerNormVec4 => with_elem(ELEM_VEC4, &[ROW_LANES, include_str!("../../shaders/layernorm.wgsl")]),
            Shader::GroupNorm => with_elem(ELEM_F32, &[include_str!("../../shaders/groupnorm.wgsl")]),
            Shader::GroupNormVec4 => with_elem(ELEM_VEC4, &[include_str!("../../shaders/groupnorm.wgsl")]),
            Shader::Softmax => Cow::Owned(format!("{ROW_LANES}\n{}", include_str!("../../shaders/softmax.wgsl"))),
            Shader::Pool => with_activations(include_str!("../../shaders/pool.wgsl")),
            Shader::Layout => with_activations(include_str!("../../shaders/layout.wgsl")),
            Shader::Attention => attention_source(1),
            Shader::AttentionRows2 => attention_source(2),
            Shader::VicinityKv => Cow::Borrowed(include_str!("../../shaders/vicinity_kv.wgsl")),
            Shader::VicinityKvVec4 => Cow::Borrowed(include_str!("../../shaders/vicinity_kv_vec4.wgsl")),
            Shader::VicinityKvReduce => Cow::Borrowed(include_str!("../../shaders/vicinity_kv_reduce.wgsl")),
            Shader::VicinityApply => Cow::Borrowed(include_str!("../../shaders/vicinity_apply.wgsl")),
            Shader::VicinityApplyVec4 => Cow::Borrowed(include_str!("../../shaders/vicinity_apply_vec4.wgsl")),
            Shader::VicinityGate => Cow::Borrowed(include_str!("../../shaders/vicinity_gate.wgsl")),
            Shader::AttentionDownsample => Cow::Borrowed(include_str!("../../shaders/attention_downsample.wgsl")),
            Shader::AtrousAttention => Cow::Borrowed(include_str!("../../shaders/atrous_attention.wgsl")),
            Shader::AtrousDwconv => with_activations(include_str!("../../shaders/atrous_dwconv.wgsl")),
        }
    }
}

fn with_activations(body: &'static str) -> Cow<'static, str> {
    Cow::Owned(format!("{ACTIVATIONS_WGSL}\n{body}"))
}

/// The lanes-per-row reduction of the row kernels (layernorm, softmax).
const ROW_LANES: &str = include_str!("../../shaders/row_lanes.wgsl");
const ELEM_F32: &str = include_str!("../../shaders/elem_f32.wgsl");
const ELEM_VEC4: &str = include_str!("../../shaders/elem_vec4.wgsl");

/// A kernel written over the element type `V`, after the activations and the prelude declaring
/// `V` (`ELEM_F32` or `ELEM_VEC4`).
fn with_elem(elem: &'static str, body: &[&'static str]) -> Cow<'static, str> {
    Cow::Owned(format!("{ACTIVATIONS_WGSL}\n{elem}\n{}", body.join("\n")))
}

/// attention.wgsl with its rows-per-invocation const `QB` prepended.
fn attention_source(rows: u32) -> Cow<'static, str> {
    Cow::Owned(format!("const QB: u32 = {rows}u;\n{}", include_str!("../../shaders/attention.wgsl")))
}

/// A kernel on the shared register-tiled GEMM core: activations, an I/O prelude (storage
/// bindings and load helpers, scalar or vec4), gemm_tile.wgsl, then the kernel's own file.
fn gemm_source(io_prelude: &'static str, body: &'static str) -> Cow<'static, str> {
    let tile = include_str!("../../shaders/gemm_tile.wgsl");
    Cow::Owned(format!("{ACTIVATIONS_WGSL}\n{io_prelude}\n{tile}\n{body}"))
}

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

/// Packs an f32 into a uniform word.
pub fn f32w(x: f32) -> u32 {
    x.to_bits()
}

/// Checks that the product of shapes fits the u32 indices every kernel uses.
pub fn check_u32(what: &str, numel: usize) -> crate::Result<()> {
    if numel > u32::MAX as usize / 4 {
        return Err(crate::Error::Graph(format!("{what}: {numel} elements do not fit 32-bit indexing")));
    }
    Ok(())
}
