//! The kernel layer: every WGSL kernel the engine runs, its variants, its uniform struct, and the
//! device profile kernels are chosen for. Below the graph; touches no GPU.
//!
//! One declarative table ([`Kernel`]) has one line per kernel variant: the file under `shaders/`
//! it is compiled from, the preprocessor defines that make the variant (`[VEC4]`: vec4 element
//! type), and its uniform struct from [`params`]. [`Kernel::name`] is the file's stem plus the
//! defines (`binary` + `VEC4` = `binary_vec4`), [`Kernel::source`] the file with the library
//! files its `// requires:` line names, preprocessed ([`wgsl`]), and [`Kernel::ALL`] the list the
//! naga tests validate. Adding a kernel is one line here and one `.wgsl` file.
//!
//! Conventions shared by every kernel:
//! - `@group(0) @binding(0) var<uniform> params: Params;` holds the shapes (the node's
//!   [`params::Uniform`]); then the read-only storage tensors, then the written ones, in the
//!   node's order. Entry point `@compute fn main`.
//! - Tile and workgroup sizes are `override` constants, set through the [`PipelineKey`].
//! - A 1-D launch of `n` workgroups is folded into `(x, y)` with `x <= 65535` (`ops::grid`); the
//!   shader recovers its linear workgroup index as `wid.x + wid.y * nwg.x`.

pub mod device;
pub mod params;
pub mod wgsl;

pub use device::{DeviceProfile, KernelSet};
pub use params::{KernelParams, ParamField, Uniform};

/// The kernel table: `Variant = "file" [DEFINES], params::Type;`, one line per variant.
macro_rules! kernels {
    ($( $(#[$doc:meta])* $variant:ident = $file:literal [$($define:ident),*], $params:ty; )*) => {
        /// Every kernel variant of the crate (see the module docs).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kernel { $( $(#[$doc])* $variant, )* }

        impl Kernel {
            /// Every variant, in table order.
            pub const ALL: &'static [Kernel] = &[$(Kernel::$variant),*];

            /// The file under `shaders/` the variant is compiled from.
            pub fn file(self) -> &'static str {
                match self { $(Kernel::$variant => $file,)* }
            }

            /// The preprocessor defines that make this variant.
            pub fn defines(self) -> &'static [&'static str] {
                match self { $(Kernel::$variant => &[$(stringify!($define)),*],)* }
            }

            fn text(self) -> &'static str {
                match self { $(Kernel::$variant => include_str!(concat!("../../shaders/", $file)),)* }
            }

            /// The name of the uniform struct the kernel's `Params` mirrors.
            pub fn params_name(self) -> &'static str {
                match self { $(Kernel::$variant => <$params as KernelParams>::NAME,)* }
            }

            /// The flattened members of that struct (for the layout test).
            pub fn params_fields(self) -> Vec<ParamField> {
                match self { $(Kernel::$variant => <$params as KernelParams>::fields(),)* }
            }
        }
    };
}

kernels! {
    /// y = act(alpha·x + beta).
    Unary = "unary.wgsl" [], params::Unary;
    /// c = act(a op b), b broadcast.
    Binary = "binary.wgsl" [], params::Binary;
    /// binary.wgsl with vec4 elements (last axis a multiple of 4, contiguous in both operands).
    BinaryVec4 = "binary.wgsl" [VEC4], params::Binary;
    /// The FMA peak of `wgvit bench-ops`.
    FmaPeak = "fma_peak.wgsl" [], params::FmaPeak;
    /// Texel stores into a buffer or a storage texture (`context::store_probe`).
    StoreProbe = "store_probe.wgsl" [], params::StoreProbe;
    /// Batched GEMM with a fused epilogue, element loads (any shape).
    Matmul = "matmul.wgsl" [], params::Matmul;
    /// matmul.wgsl with vec4 storage (contiguous dims and N multiples of 4).
    MatmulVec4 = "matmul.wgsl" [VEC4], params::Matmul;
    /// Dense and grouped convolution as an implicit GEMM, scalar weight loads.
    Conv2d = "conv2d.wgsl" [], params::Conv2d;
    /// conv2d.wgsl with vec4 weight loads (Cin/groups·kh·kw a multiple of 4).
    Conv2dVec4 = "conv2d.wgsl" [VEC4], params::Conv2d;
    /// Depthwise convolution (groups == channels).
    Conv2dDepthwise = "conv2d_depthwise.wgsl" [], params::Conv2dDepthwise;
    /// Dense convolution on channel-last maps, direct: runs of output columns share their input
    /// fetches across the taps of a kernel row.
    Conv2dNhwc = "conv2d_nhwc.wgsl" [], params::Conv2dNhwc;
    LayerNorm = "layernorm.wgsl" [], params::LayerNorm;
    /// layernorm.wgsl with vec4 elements (rows a multiple of 4 long).
    LayerNormVec4 = "layernorm.wgsl" [VEC4], params::LayerNorm;
    GroupNorm = "groupnorm.wgsl" [], params::GroupNorm;
    /// groupnorm.wgsl with vec4 elements (H·W a multiple of 4).
    GroupNormVec4 = "groupnorm.wgsl" [VEC4], params::GroupNorm;
    Softmax = "softmax.wgsl" [], params::Softmax;
    /// Window average pooling and means over an axis.
    Pool = "pool.wgsl" [], params::Pool;
    /// Strided box copies: permute, slice, concat.
    Layout = "layout.wgsl" [], params::Layout;
    /// Fused attention, one query row per invocation, channel loops written out for the
    /// pipeline's head size (GPU-like devices; SwiftShader, heads over 48 channels).
    Attention = "attention.wgsl" [], params::Attention;
    /// attention.wgsl reading q, k and v as vec4 (channel-contiguous operands whose rows start on
    /// a vec4, d and dv multiples of 4): one load per 4 channels instead of four.
    AttentionVec4 = "attention.wgsl" [VEC4], params::Attention;
    /// attention with two query rows per invocation (SwiftShader, heads up to 48 channels).
    AttentionQb2 = "attention.wgsl" [QB2], params::Attention;
    /// attention_qb2 with vec4 q, k and v.
    AttentionQb2Vec4 = "attention.wgsl" [QB2, VEC4], params::Attention;
    /// attention with four query rows per invocation (lavapipe).
    AttentionQb4 = "attention.wgsl" [QB4], params::Attention;
    /// attention_qb4 with vec4 q, k and v.
    AttentionQb4Vec4 = "attention.wgsl" [QB4, VEC4], params::Attention;
    /// VVT: k side of the vicinity attention, partial KV⁺ per token chunk (any d).
    VicinityKv = "family/vicinity_kv.wgsl" [], params::VicinityKv;
    /// family/vicinity_kv.wgsl with vec4 loads (d, row and offsets multiples of 4).
    VicinityKvVec4 = "family/vicinity_kv.wgsl" [VEC4], params::VicinityKv;
    /// VVT: sums the KV⁺ chunks and clamps KV.
    VicinityKvReduce = "family/vicinity_kv_reduce.wgsl" [], params::VicinityKvReduce;
    /// VVT: q side of the vicinity attention with its clamps (any d).
    VicinityApply = "family/vicinity_apply.wgsl" [], params::VicinityApply;
    /// family/vicinity_apply.wgsl with vec4 loads and stores.
    VicinityApplyVec4 = "family/vicinity_apply.wgsl" [VEC4], params::VicinityApply;
    /// VVT: clampmag(y + y·s) SE gating plus the residual add.
    VicinityGate = "family/vicinity_gate.wgsl" [], params::VicinityGate;
    /// LaViT: residual attention downsampling between stages.
    AttentionDownsample = "family/attention_downsample.wgsl" [], params::AttentionDownsample;
    /// ACC-ViT: gated multi-branch dilated window attention.
    AtrousAttention = "family/atrous_attention.wgsl" [], params::AtrousAttention;
    /// ACC-ViT: summed dilated depthwise 3x3 convs + bias + activation, channel-last.
    AtrousDwconv = "family/atrous_dwconv.wgsl" [], params::AtrousDwconv;
}

impl Kernel {
    /// The variant's name: the file's stem, then its defines in lower case (`binary_vec4`).
    pub fn name(self) -> String {
        let stem = self.file().rsplit('/').next().unwrap_or("").trim_end_matches(".wgsl");
        std::iter::once(stem.to_string()).chain(self.defines().iter().map(|d| d.to_ascii_lowercase())).collect::<Vec<_>>().join("_")
    }

    /// The source with every override at its declared default ([`Kernel::source_for`]).
    pub fn source(self) -> String {
        self.source_for(&[])
    }

    /// What the device compiles for a pipeline whose overrides are `constants`: the library files
    /// the kernel file requires, then the file, all preprocessed with the variant's defines and
    /// these values (so the branches they rule out are not in the text at all). The sources are
    /// part of the binary and `tests/shaders.rs` assembles every variant and every pipeline the
    /// ops and models create, so a failure here is a bug in a `.wgsl` file.
    pub fn source_for(self, constants: &[(&'static str, u32)]) -> String {
        wgsl::assemble(self.file(), self.text(), wgsl::Defines { flags: self.defines(), values: constants })
            .unwrap_or_else(|e| panic!("kernel {}: {e}", self.name()))
    }

    /// The kernel file as written (before preprocessing).
    pub fn file_text(self) -> &'static str {
        self.text()
    }
}

/// A compute pipeline's identity: which kernel and which `override` constants. The constants
/// are kept sorted by name, so two nodes asking for the same pipeline have equal keys whatever
/// order they set them in, and share one `wgpu::ComputePipeline`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub kernel: Kernel,
    constants: Vec<(&'static str, u32)>,
}

impl PipelineKey {
    pub fn new(kernel: Kernel) -> Self {
        Self { kernel, constants: Vec::new() }
    }

    /// Sets override constant `name` (replacing an earlier value).
    pub fn with(mut self, name: &'static str, value: u32) -> Self {
        match self.constants.binary_search_by(|(n, _)| n.cmp(&name)) {
            Ok(i) => self.constants[i].1 = value,
            Err(i) => self.constants.insert(i, (name, value)),
        }
        self
    }

    /// The override constants, sorted by name.
    pub fn constants(&self) -> &[(&'static str, u32)] {
        &self.constants
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_file_and_defines() {
        assert_eq!(Kernel::Binary.name(), "binary");
        assert_eq!(Kernel::BinaryVec4.name(), "binary_vec4");
        assert_eq!(Kernel::VicinityKvVec4.name(), "vicinity_kv_vec4");
        assert_eq!(Kernel::AttentionQb2Vec4.name(), "attention_qb2_vec4");
        let names: std::collections::HashSet<String> = Kernel::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), Kernel::ALL.len(), "two variants share a name");
    }

    #[test]
    fn constants_are_sorted_so_one_pipeline_has_one_key() {
        let a = PipelineKey::new(Kernel::Unary).with("WG", 64).with("ACT", 2);
        let b = PipelineKey::new(Kernel::Unary).with("ACT", 2).with("WG", 64);
        assert_eq!(a, b);
        assert_eq!(a.constants(), &[("ACT", 2), ("WG", 64)]);
        assert_eq!(a.with("ACT", 3).constants(), &[("ACT", 3), ("WG", 64)]);
    }
}
