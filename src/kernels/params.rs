//! The uniform of every kernel as a `#[repr(C)]` Pod struct: the Rust twin of the WGSL `Params`
//! struct the kernel declares at `@binding(0)`. An op fills one field by field and the graph
//! stores its bytes ([`Uniform`]); `tests/shaders.rs` reflects each WGSL `Params` with naga and
//! checks member names, order, offsets and scalar types against [`KernelParams::fields`], so the
//! two layouts cannot drift apart. Names match the WGSL members, padding included.

use bytemuck::{Pod, Zeroable};

/// The scalar type of a uniform member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scalar {
    U32,
    F32,
}

/// One scalar of a uniform, flattened: nested structs as `outer.inner`, array elements as
/// `name[i]` (a `vec4` element of an array counts as four scalars).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamField {
    pub name: String,
    pub offset: usize,
    pub scalar: Scalar,
}

/// A kernel's uniform struct.
pub trait KernelParams: Pod {
    /// The Rust type's name, e.g. `params::Matmul` (the kernel table and error messages use it).
    const NAME: &'static str;
    /// Every scalar member, flattened, in declaration order.
    fn fields() -> Vec<ParamField>;
}

/// A member type of a uniform struct: a scalar, an array of them, or a nested uniform struct.
pub trait ParamMember {
    fn flatten(name: &str, offset: usize, out: &mut Vec<ParamField>);
}

impl ParamMember for u32 {
    fn flatten(name: &str, offset: usize, out: &mut Vec<ParamField>) {
        out.push(ParamField { name: name.to_string(), offset, scalar: Scalar::U32 });
    }
}

impl ParamMember for f32 {
    fn flatten(name: &str, offset: usize, out: &mut Vec<ParamField>) {
        out.push(ParamField { name: name.to_string(), offset, scalar: Scalar::F32 });
    }
}

impl<const N: usize> ParamMember for [u32; N] {
    fn flatten(name: &str, offset: usize, out: &mut Vec<ParamField>) {
        for i in 0..N {
            u32::flatten(&format!("{name}[{i}]"), offset + 4 * i, out);
        }
    }
}

impl<T: KernelParams> ParamMember for T {
    fn flatten(name: &str, offset: usize, out: &mut Vec<ParamField>) {
        for f in T::fields() {
            out.push(ParamField { name: format!("{name}.{}", f.name), offset: offset + f.offset, scalar: f.scalar });
        }
    }
}

/// A node's uniform: the bytes of its params struct (as words) and the struct's name, so the
/// graph can check that a node hands its kernel the struct the kernel declares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uniform {
    pub type_name: &'static str,
    pub words: Vec<u32>,
}

impl Uniform {
    pub fn of<P: KernelParams>(params: &P) -> Self {
        Self { type_name: P::NAME, words: bytemuck::cast_slice(bytemuck::bytes_of(params)).to_vec() }
    }
}

/// Declares uniform structs: `#[repr(C)]`, Pod, and their [`KernelParams::fields`] from the
/// field list itself.
macro_rules! uniforms {
    ($( $(#[$meta:meta])* pub struct $name:ident { $( $field:ident : $ty:ty ),* $(,)? } )*) => { $(
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
        pub struct $name { $( pub $field: $ty ),* }

        impl KernelParams for $name {
            const NAME: &'static str = concat!("params::", stringify!($name));
            fn fields() -> Vec<ParamField> {
                let mut out = Vec::new();
                $( <$ty as ParamMember>::flatten(stringify!($field), std::mem::offset_of!($name, $field), &mut out); )*
                out
            }
        }
    )* };
}

uniforms! {
    /// `unary.wgsl`
    pub struct Unary { n: u32, alpha: f32, beta: f32, _pad: u32 }

    /// `binary.wgsl`: extents and b's broadcast strides, in elements of the variant's `V`.
    pub struct Binary { n: u32, d1: u32, d2: u32, d3: u32, bs0: u32, bs1: u32, bs2: u32, bs3: u32 }

    /// `fma_peak.wgsl`
    pub struct FmaPeak { iters: u32, _p0: u32, _p1: u32, _p2: u32 }

    /// `store_probe.wgsl`
    pub struct StoreProbe { texels: u32, _p0: u32, _p1: u32, _p2: u32 }

    /// `matmul.wgsl`
    pub struct Matmul {
        m: u32, n: u32, k: u32, batches: u32, tiles_m: u32, tiles_n: u32, a_batches: u32, b_batches: u32,
        alpha: f32, lanes_n_log2: u32,
        // A_PATCHES: A's rows gathered from non-overlapping patches (`ops::matmul::Patches`).
        patch_cols: u32, patch_area: u32, patch_stride_img: u32, patch_stride_row: u32, patch_stride_col: u32,
        patch_k_stride0: u32, patch_k_stride1: u32, patch_k_len1: u32, patch_k_len2: u32,
        // K_SPLIT: each batch entry's share of the reduction.
        k_chunk: u32,
        // A_PATCH_PAD: padded, overlapping patches of a channel-last map (`ops::matmul::conv_patches_gemm`).
        patch_pad: u32, patch_h: u32, patch_w: u32, patch_pad_offset: u32,
        // op(b)'s stored columns: n, or fewer under padded output columns (`ops::matmul::matmul_padded_columns`);
        // op(a)'s stored rows: m, or more when only the first are wanted (`ops::matmul::matmul_first_rows`).
        b_n: u32, a_m: u32, _p1: u32, _p2: u32,
    }

    /// `conv2d.wgsl`: the implicit GEMM's extents and launch, then the convolution's geometry.
    pub struct Conv2d {
        m: u32, n: u32, k: u32, batches: u32, tiles_m: u32, tiles_n: u32, groups: u32, in_c: u32,
        in_h: u32, in_w: u32, out_w: u32, kernel_h: u32, kernel_w: u32, stride_h: u32, stride_w: u32,
        pad_h: u32, pad_w: u32, dil_h: u32, dil_w: u32, taps: u32, lanes_n_log2: u32, _p0: u32, _p1: u32,
        _p2: u32,
    }

    /// `conv2d_depthwise.wgsl`
    pub struct Conv2dDepthwise {
        tiles: u32, channels: u32, in_h: u32, in_w: u32, out_h: u32, out_w: u32, col_blocks: u32,
        row_blocks: u32, pad_h: u32, pad_w: u32, _p0: u32, _p1: u32,
    }

    /// `conv2d_nhwc.wgsl`
    pub struct Conv2dNhwc {
        total: u32, cin4: u32, cout4: u32, in_h: u32, in_w: u32, out_h: u32, out_w: u32, col_blocks: u32,
        pad_h: u32, pad_w: u32, _p0: u32, _p1: u32,
    }

    /// `layernorm.wgsl`: `c` counts elements of the variant's `V`.
    pub struct LayerNorm { rows: u32, c: u32, eps: f32, add_rows: u32 }

    /// `groupnorm.wgsl`: lengths count elements of the variant's `V`.
    pub struct GroupNorm {
        group_len: u32, spatial: u32, channels_per_group: u32, groups: u32, chunk_len: u32,
        chunks_per_group: u32, num_chunks: u32, eps: f32,
    }

    /// `softmax.wgsl`
    pub struct Softmax { rows: u32, len: u32, scale: f32, valid: u32 }

    /// `pool.wgsl` (MODE 0 reads the window geometry, MODE 1 `inner` and `len`).
    pub struct Pool {
        n: u32, inner: u32, len: u32, in_h: u32, in_w: u32, out_h: u32, out_w: u32, kernel_h: u32,
        kernel_w: u32, stride_h: u32, stride_w: u32, pad_h: u32, pad_w: u32, count_include_pad: u32,
        _pad0: u32, _pad1: u32,
    }

    /// `layout.wgsl`: a strided box copy of up to 8 dimensions (WGSL `array<vec4<u32>, 2>`).
    pub struct Layout {
        n: u32, numel: u32, in_base: u32, out_base: u32, rank: u32, _pad0: u32, _pad1: u32, _pad2: u32,
        dims: [u32; 8], in_strides: [u32; 8], out_strides: [u32; 8],
    }

    /// The WGSL `View` of `attention.wgsl`: where element (b, h, t, c) of an operand lives
    /// (see `ops::attention::View`).
    pub struct AttentionView {
        offset: u32, nb1: u32, nb2: u32, sb0: u32, sb1: u32, sb2: u32, sh: u32, nt1: u32, st0: u32,
        st1: u32, sc: u32, _pad: u32,
    }

    /// `attention.wgsl`
    pub struct Attention {
        batch: u32, heads: u32, nq: u32, nk: u32, d: u32, dv: u32, chunks: u32, scale: f32,
        q: AttentionView, k: AttentionView, v: AttentionView, bias: AttentionView, o: AttentionView,
    }

    /// `family/vicinity_kv.wgsl`
    pub struct VicinityKv {
        items: u32, n: u32, heads: u32, bh: u32, d: u32, ld: u32, k_off: u32, v_off: u32, chunk_len: u32,
        jblocks: u32, _pad0: u32, _pad1: u32,
    }

    /// `family/vicinity_kv_reduce.wgsl`
    pub struct VicinityKvReduce { total: u32, chunks: u32, d: u32, _pad: u32 }

    /// `family/vicinity_apply.wgsl`
    pub struct VicinityApply {
        items: u32, n: u32, heads: u32, d: u32, ld: u32, q_off: u32, out_ld: u32, token_blocks: u32,
        jblocks: u32, _pad0: u32, _pad1: u32, _pad2: u32,
    }

    /// `family/vicinity_gate.wgsl`
    pub struct VicinityGate { total: u32, c: u32, nc: u32, _pad: u32 }

    /// `family/attention_downsample.wgsl`
    pub struct AttentionDownsample { batch: u32, heads_prev: u32, heads: u32, h: u32, w: u32, m: u32, _p0: u32, _p1: u32 }

    /// `family/atrous_attention.wgsl`
    pub struct AtrousAttention {
        batch: u32, h: u32, w: u32, c: u32, heads: u32, hd: u32, nb: u32, wins_w: u32, wins: u32,
        row_in4: u32, row_out4: u32, gate4: u32, scale: f32, _p0: u32, _p1: u32, _p2: u32,
    }

    /// `family/atrous_dwconv.wgsl`
    pub struct AtrousDwconv { total: u32, c4: u32, in_h: u32, in_w: u32, out_h: u32, out_w: u32, col_blocks: u32, _pad: u32 }
}
