//! matmul / linear on the GPU against the f64-accumulating CPU reference.
//!
//! Tolerance: |got - want| <= 1e-4 + 1e-4 |want| with operands uniform in [-1, 1] and K <= 1000
//! (f32 accumulation error grows ~sqrt(K) * 6e-8 * |partial sums|, i.e. ~1e-5 at K = 1000).
//! Shapes are deliberately not multiples of the 16x8 register tile or of 4, so the clamped edges,
//! the element-load kernel and the masked k step are exercised next to the vec4 kernel.

mod common;

use wgvit::ops::matmul::{linear, matmul, matmul_cpu, matmul_tiled, BiasAxis, Epilogue, MatmulLoads, MatmulTiling};
use wgvit::kernels::{DeviceProfile, PipelineKey};
use wgvit::ops::Activation;
use wgvit::tensor::Rng;
use wgvit::{Graph, HostTensor};

const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-4;

fn stored_shape(batch: &[usize], rows: usize, cols: usize, trans: bool) -> Vec<usize> {
    let mut s = batch.to_vec();
    s.extend(if trans { [cols, rows] } else { [rows, cols] });
    s
}

/// One graph holding every case, so the device is submitted to once per test.
struct Cases {
    g: Graph,
    inputs: Vec<HostTensor>,
    expected: Vec<(String, Vec<f32>)>,
}

impl Cases {
    fn new() -> Self {
        Self::for_profile(DeviceProfile::default())
    }

    fn for_profile(profile: DeviceProfile) -> Self {
        Self { g: Graph::for_profile(profile), inputs: Vec::new(), expected: Vec::new() }
    }

    fn input(&mut self, rng: &mut Rng, shape: &[usize]) -> (wgvit::TensorId, HostTensor) {
        let t = rng.tensor(shape, -1.0, 1.0);
        let id = self.g.input(&format!("in{}", self.inputs.len()), shape);
        self.inputs.push(t.clone());
        (id, t)
    }

    /// `gelu(op(a)·op(b) + bias) + residual` for an `m` × `k` by `k` × `n` GEMM, its operands
    /// stored transposed as asked and its bias along `bias_axis`, with the CPU reference; the
    /// pipeline key the graph chose for it.
    fn fused_gemm(&mut self, rng: &mut Rng, (m, k, n): (usize, usize, usize), trans_a: bool, trans_b: bool, bias_axis: BiasAxis) -> PipelineKey {
        let (a, at) = self.input(rng, &stored_shape(&[], m, k, trans_a));
        let (b, bt) = self.input(rng, &stored_shape(&[], k, n, trans_b));
        let (bias, bias_t) = self.input(rng, &[if matches!(bias_axis, BiasAxis::Row) { m } else { n }]);
        let (residual, residual_t) = self.input(rng, &[m, n]);
        let epi = Epilogue { bias: Some((bias, bias_axis)), act: Activation::Gelu, residual: Some(residual), ..Default::default() };
        let y = matmul(&mut self.g, a, b, trans_a, trans_b, epi).unwrap();
        let name = format!("{m}x{k}x{n} ta={trans_a} tb={trans_b}");
        self.g.output(&name, y);
        let (want, _) = matmul_cpu(&at.data, &at.shape, &bt.data, &bt.shape, trans_a, trans_b, 1.0, Some((&bias_t.data, bias_axis)), Activation::Gelu, Some(&residual_t.data));
        self.expected.push((name, want));
        self.g.nodes.last().unwrap().key.clone()
    }

    fn check(self) {
        common::run_and_compare(&self.g, &self.inputs, &self.expected, ATOL, RTOL);
    }
}

/// Plain matmuls: every transpose pair, on shapes that hit the vec4 kernel and shapes that don't,
/// for both kernel sets: the CPU-like one fits its workgroups to narrow outputs (`gemm_launch`),
/// hence the shapes with 4 or fewer rows or columns.
#[test]
fn matmul_every_transpose_on_odd_and_aligned_shapes() {
    for profile in [DeviceProfile::gpu_like(), DeviceProfile::cpu_like()] {
        matmul_every_transpose_for(profile);
    }
}

fn matmul_every_transpose_for(profile: DeviceProfile) {
    let mut rng = Rng::new(11);
    let mut cases = Cases::for_profile(profile);
    let shapes = [(37, 29, 53), (64, 48, 72), (5, 3, 2), (1, 1, 1), (131, 100, 40), (20, 7, 9), (4, 128, 516), (132, 64, 4), (260, 16, 12), (3, 24, 7)];
    for &(m, k, n) in &shapes {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let (a, at) = cases.input(&mut rng, &stored_shape(&[], m, k, ta));
            let (b, bt) = cases.input(&mut rng, &stored_shape(&[], k, n, tb));
            let y = matmul(&mut cases.g, a, b, ta, tb, Epilogue::default()).unwrap();
            let name = format!("{m}x{k}x{n} ta={ta} tb={tb}");
            cases.g.output(&name, y);
            let (want, shape) = matmul_cpu(&at.data, &at.shape, &bt.data, &bt.shape, ta, tb, 1.0, None, Activation::None, None);
            assert_eq!(cases.g.shape(y), shape.as_slice());
            cases.expected.push((name, want));
        }
    }
    cases.check();
}

/// SwiftShader's 8 × 8-tiled GEMMs at hatnet-tiny-like shapes, whose workgroups are laid out to
/// launch the fewest invocations (`gemm_launch`): 6, 12 and 5 row tiles get 2, 4 and 1
/// invocations along M (32, 16 and 64 along N), with a bias, an activation and a residual, each
/// tile stored in a loop over its blocks (`STORE_LOOP`).
#[test]
fn swiftshader_large_gemms_with_least_waste_workgroups() {
    let mut rng = Rng::new(13);
    let mut cases = Cases::for_profile(common::swiftshader());
    for (m, k, n) in [(48, 200, 256), (96, 40, 1100), (40, 128, 404)] {
        let key = cases.fused_gemm(&mut rng, (m, k, n), false, false, BiasAxis::Row);
        let tm = key.constants().iter().find(|(name, _)| *name == "TM").map(|c| c.1);
        assert_eq!(tm, Some(8), "{m}x{k}x{n}: the large tile");
        // The vec4 kernel's blocks are stored in a loop there too (`tuning::gemm_store_loop`).
        assert!(key.constants().contains(&("STORE_LOOP", 1)), "{m}x{k}x{n}: {key:?}");
    }
    cases.check();
}

/// lavapipe's 16-row tiles with workgroups of 32 invocations laid out to launch the fewest
/// (`tuning::gemm_launch`), at the tiny models' shapes: hatnet-tiny's 48 channels by 3136 pixels
/// (16 × 16 tiles, one invocation along M), vvt-tiny's qkv (3136 tokens, A transposed as from a
/// channel-first map, to 144: 9 column tiles, one invocation along N), and a GEMM of 8 MFLOP (16 ×
/// 16 from 4 MFLOP: `tuning::LAVAPIPE_LARGE_GEMM_FLOPS`), 96 rows by 1000 columns (63 column
/// tiles, 16 invocations along N); with a bias, GELU and a residual.
#[test]
fn lavapipe_large_gemms_with_least_waste_workgroups() {
    let mut rng = Rng::new(17);
    let mut cases = Cases::for_profile(common::lavapipe());
    for (m, k, n, trans_a, bias_axis, tiles) in [(48, 192, 3136, false, BiasAxis::Row, (16, 16, 5)), (3136, 96, 144, true, BiasAxis::Col, (16, 16, 0)), (96, 40, 1000, false, BiasAxis::Row, (16, 16, 4))] {
        let key = cases.fused_gemm(&mut rng, (m, k, n), trans_a, false, bias_axis);
        let lanes_n_log2 = cases.g.nodes.last().unwrap().params.words[9];
        let (tm, tn, lanes) = tiles;
        assert!(key.constants().contains(&("TM", tm)) && key.constants().contains(&("TN", tn)), "{m}x{k}x{n}: {key:?}");
        assert_eq!(lanes_n_log2, lanes, "{m}x{k}x{n}: invocations along N");
    }
    cases.check();
}

/// lavapipe's GEMMs of 0.25–4 MFLOP take the 8 × 8 tile (`tuning::LAVAPIPE_MID_GEMM_FLOPS`) with
/// workgroups fitted to narrow outputs (`gemm_launch`), at accvit-digits-like shapes: 256 tokens
/// × 16 channels in (qkv, expand; A transposed as from a channel-first map), 16 tokens × 64 → 512
/// (4 row tiles: invocations along N), 4 tokens × 128 → 512 (one row tile), with a bias, GELU
/// and a residual; and a GEMM just under the threshold keeps the 4 × 4 tile.
#[test]
fn lavapipe_mid_size_gemms_take_the_8x8_tile() {
    let mut rng = Rng::new(14);
    let mut cases = Cases::for_profile(common::lavapipe());
    for (m, k, n, trans_a, tm) in [(256, 16, 192, false, 8), (256, 16, 130, true, 8), (16, 64, 512, false, 8), (4, 128, 516, false, 8), (60, 64, 32, false, 4)] {
        let key = cases.fused_gemm(&mut rng, (m, k, n), trans_a, true, BiasAxis::Col);
        assert!(key.constants().contains(&("TM", tm)), "{m}x{k}x{n}: {key:?}");
        // The 8 × 8 tile stores its blocks in a loop there (`tuning::gemm_store_loop`), the 4 × 4 written out.
        assert!(key.constants().contains(&("STORE_LOOP", (tm == 8) as u32)), "{m}x{k}x{n}: {key:?}");
    }
    cases.check();
}

/// Each register tile and load width the host can pick, on a shape that is a multiple of 4 but
/// of no tile, plus the element kernel on a shape with K % 4 != 0 and M, N odd.
/// On both kernel sets and lavapipe's: the software devices store some tiles in a loop
/// (`STORE_LOOP`: SwiftShader's of 4 blocks or more, lavapipe's of 4 exactly).
#[test]
fn matmul_every_tiling_and_load_width() {
    for profile in [DeviceProfile::gpu_like(), common::swiftshader(), common::lavapipe()] {
        matmul_every_tiling_and_load_width_for(profile);
    }
}

fn matmul_every_tiling_and_load_width_for(profile: DeviceProfile) {
    let cpu_like = profile.is_cpu_like();
    let mut rng = Rng::new(12);
    let mut cases = Cases::for_profile(profile);
    let (m, k, n) = (68, 44, 36);
    let configs = [
        (4, 4, MatmulLoads::Vec4, (false, false)),
        (4, 8, MatmulLoads::Vec4, (false, true)),
        (8, 4, MatmulLoads::Scalar, (true, true)),
        // SwiftShader's large-GEMM tile.
        (8, 8, MatmulLoads::Vec4, (false, true)),
        (12, 8, MatmulLoads::Vec4FromScalars, (false, true)),
        (16, 4, MatmulLoads::Vec4, (true, false)),
        (16, 8, MatmulLoads::Scalar, (false, true)),
        // lavapipe's tile from 32 MFLOP, and its other loads and transposes (N = 36: a partial
        // last column tile).
        (16, 16, MatmulLoads::Vec4, (false, true)),
        (16, 16, MatmulLoads::Scalar, (true, false)),
        (12, 16, MatmulLoads::Vec4FromScalars, (true, true)),
    ];
    for (tm, tn, loads, (ta, tb)) in configs {
        let (a, at) = cases.input(&mut rng, &stored_shape(&[], m, k, ta));
        let (b, bt) = cases.input(&mut rng, &stored_shape(&[], k, n, tb));
        let tiling = MatmulTiling { tm, tn, wg_m: 4, wg_n: 8, loads };
        let y = matmul_tiled(&mut cases.g, a, b, ta, tb, Epilogue::default(), tiling).unwrap();
        let name = format!("{tm}x{tn} {loads:?} ta={ta} tb={tb}");
        cases.g.output(&name, y);
        let (want, _) = matmul_cpu(&at.data, &at.shape, &bt.data, &bt.shape, ta, tb, 1.0, None, Activation::None, None);
        cases.expected.push((name, want));
    }
    // K % 4 == 3 with trans_a and !trans_b: the vec4 kernel's masked last step.
    let (a, at) = cases.input(&mut rng, &[39, 16]);
    let (b, bt) = cases.input(&mut rng, &[39, 20]);
    let y = matmul(&mut cases.g, a, b, true, false, Epilogue::default()).unwrap();
    cases.g.output("vec4 masked k step", y);
    cases.expected.push(("vec4 masked k step".into(), matmul_cpu(&at.data, &at.shape, &bt.data, &bt.shape, true, false, 1.0, None, Activation::None, None).0));
    let bad = matmul_tiled(&mut cases.g, a, b, false, true, Epilogue::default(), MatmulTiling { loads: MatmulLoads::Vec4, ..Default::default() });
    assert!(bad.is_err(), "vec4 loads on a K x M = 39 x 16 transposed operand must be refused");
    let looped: Vec<u32> = cases.g.nodes.iter().filter(|n| n.key.constants().contains(&("STORE_LOOP", 1))).map(|n| n.key.constants().iter().find(|c| c.0 == "TM").unwrap().1).collect();
    assert_eq!(!looped.is_empty(), cpu_like, "kernels with a store loop (their TM): {looped:?}");
    cases.check();
}

#[test]
fn matmul_broadcasts_batch_dims() {
    let mut rng = Rng::new(13);
    let mut cases = Cases::new();
    let (m, k, n) = (19, 24, 28);
    let combos: &[(&[usize], &[usize])] = &[(&[2, 3], &[]), (&[], &[2, 3]), (&[2, 3], &[3]), (&[3], &[2, 3]), (&[4], &[4]), (&[1, 2], &[2])];
    for (i, (ab, bb)) in combos.iter().enumerate() {
        let (ta, tb) = (i % 2 == 1, i % 3 == 0);
        let (a, at) = cases.input(&mut rng, &stored_shape(ab, m, k, ta));
        let (b, bt) = cases.input(&mut rng, &stored_shape(bb, k, n, tb));
        let y = matmul(&mut cases.g, a, b, ta, tb, Epilogue::default()).unwrap();
        let (want, shape) = matmul_cpu(&at.data, &at.shape, &bt.data, &bt.shape, ta, tb, 1.0, None, Activation::None, None);
        assert_eq!(cases.g.shape(y), shape.as_slice(), "case {i}");
        let name = format!("batch a{ab:?} b{bb:?} -> {shape:?}");
        cases.g.output(&name, y);
        cases.expected.push((name, want));
    }
    let mut g = Graph::new();
    let a = g.input("a", &[2, m, k]);
    let b = g.input("b", &[3, k, n]);
    let err = matmul(&mut g, a, b, false, false, Epilogue::default()).unwrap_err().to_string();
    assert!(err.contains("matmul") && err.contains("[2, 19, 24]"), "{err}");
    cases.check();
}

#[test]
fn matmul_epilogue_alpha_bias_activation_residual() {
    for profile in [DeviceProfile::gpu_like(), common::swiftshader()] {
        matmul_epilogue_for(profile);
    }
}

fn matmul_epilogue_for(profile: DeviceProfile) {
    let swiftshader = profile.name.contains("SwiftShader");
    let mut rng = Rng::new(14);
    let mut cases = Cases::for_profile(profile);
    // (activation, shape, bias axis, residual): each piece on both kernels. Shapes: 0 fits the
    // vec4 kernel, 1 does not, 2 does not and is large enough (over 4 MFLOP) for SwiftShader's
    // 8 x 8 tile, whose element kernel stores in a loop (`STORE_LOOP`).
    let combos = [
        (Activation::None, 0, BiasAxis::Col, true),
        (Activation::Relu, 1, BiasAxis::Row, true),
        (Activation::Gelu, 0, BiasAxis::Row, false),
        (Activation::Tanh, 1, BiasAxis::Col, true),
        (Activation::Silu, 2, BiasAxis::Row, true),
        (Activation::Gelu, 2, BiasAxis::Col, false),
    ];
    for (i, (act, shape, axis, with_residual)) in combos.into_iter().enumerate() {
        let (m, k, n) = [(36, 40, 44), (33, 21, 17), (129, 67, 255)][shape];
        let (a, at) = cases.input(&mut rng, &[2, m, k]);
        let (b, bt) = cases.input(&mut rng, &[k, n]);
        let (bias, biast) = cases.input(&mut rng, &[if axis == BiasAxis::Row { m } else { n }]);
        let residual = with_residual.then(|| cases.input(&mut rng, &[2, m, n]));
        let alpha = 0.75 + i as f32 * 0.1;
        let epi = Epilogue { alpha, bias: Some((bias, axis)), act, residual: residual.as_ref().map(|r| r.0) };
        let y = matmul(&mut cases.g, a, b, false, false, epi).unwrap();
        let looped = cases.g.nodes.last().unwrap().key.constants().contains(&("STORE_LOOP", 1));
        assert_eq!(looped, swiftshader && shape == 2, "store loop for shape {shape} on {}", cases.g.profile.name);
        let name = format!("{act:?} bias {axis:?} residual {with_residual} shape {shape}");
        cases.g.output(&name, y);
        let (want, _) = matmul_cpu(
            &at.data,
            &at.shape,
            &bt.data,
            &bt.shape,
            false,
            false,
            alpha,
            Some((&biast.data, axis)),
            act,
            residual.as_ref().map(|r| r.1.data.as_slice()),
        );
        cases.expected.push((name, want));
    }
    cases.check();
}

#[test]
fn matmul_long_k() {
    let mut rng = Rng::new(15);
    let mut cases = Cases::new();
    for &(m, k, n, tb) in &[(24, 1000, 40, true), (17, 999, 13, false)] {
        let (a, at) = cases.input(&mut rng, &[m, k]);
        let (b, bt) = cases.input(&mut rng, &stored_shape(&[], k, n, tb));
        let y = matmul(&mut cases.g, a, b, false, tb, Epilogue::default()).unwrap();
        let name = format!("K={k}");
        cases.g.output(&name, y);
        cases.expected.push((name, matmul_cpu(&at.data, &at.shape, &bt.data, &bt.shape, false, tb, 1.0, None, Activation::None, None).0));
    }
    cases.check();
}

#[test]
fn linear_matches_pytorch_layout() {
    let mut rng = Rng::new(16);
    let mut cases = Cases::new();
    for &(lead, k, n, act) in &[(&[2usize, 49][..], 64usize, 96usize, Activation::Gelu), (&[7][..], 30, 10, Activation::None)] {
        let mut xs = lead.to_vec();
        xs.push(k);
        let (x, xt) = cases.input(&mut rng, &xs);
        let (w, wt) = cases.input(&mut rng, &[n, k]);
        let (bias, biast) = cases.input(&mut rng, &[n]);
        let y = linear(&mut cases.g, x, w, Some(bias), act).unwrap();
        let mut ys = lead.to_vec();
        ys.push(n);
        assert_eq!(cases.g.shape(y), ys.as_slice());
        let name = format!("linear {xs:?} -> {ys:?}");
        cases.g.output(&name, y);
        let rows: usize = lead.iter().product();
        let (want, _) = matmul_cpu(&xt.data, &[rows, k], &wt.data, &[n, k], false, true, 1.0, Some((&biast.data, BiasAxis::Col)), act, None);
        cases.expected.push((name, want));
    }
    let mut g = Graph::new();
    let x = g.input("x", &[3, 8]);
    let w = g.input("w", &[4, 9]);
    let err = linear(&mut g, x, w, None, Activation::None).unwrap_err().to_string();
    assert!(err.contains("linear") && err.contains("[4, 9]"), "{err}");
    let b = g.input("b", &[5]);
    let w = g.input("w2", &[4, 8]);
    let err = matmul(&mut g, x, w, false, true, Epilogue { bias: Some((b, BiasAxis::Col)), ..Default::default() }).unwrap_err().to_string();
    assert!(err.contains("bias"), "{err}");
    cases.check();
}

/// On software devices a constant operand of a vec4-block GEMM (a weight) and a constant bias are
/// read from flat textures (one per constant); activations stay in buffers. Shapes the vec4 kernel does not
/// take, a weight over the texture limit and GPU-like devices keep storage buffers. Both paths
/// against the CPU reference.
#[test]
fn matmul_reads_constant_operands_through_textures_on_cpu_like_devices() {
    use std::sync::Arc;
    use wgvit::kernels::DeviceProfile;
    let mut rng = Rng::new(17);
    let mut small_textures = DeviceProfile::cpu_like();
    small_textures.limits.max_texture_dimension_2d = 2;
    // (profile, rows, k, n, weight texture, bias texture): the big and the small tile, a GEMV-like
    // M; N % 4 != 0 (the element kernel, whose weight blocks still come from the texture; a bias
    // of 10 is not whole texels); K % 4 != 0 (no vec4 blocks, so a buffer weight; the bias is
    // whole texels); operands over the texture limit; a GPU.
    let linears = [
        (DeviceProfile::cpu_like(), 98, 64, 96, true, true),
        (DeviceProfile::cpu_like(), 16, 16, 128, true, true),
        (DeviceProfile::cpu_like(), 4, 128, 36, true, true),
        (DeviceProfile::cpu_like(), 7, 32, 10, true, false),
        (DeviceProfile::cpu_like(), 9, 30, 12, false, true),
        (small_textures, 37, 64, 72, false, false),
        (DeviceProfile::gpu_like(), 16, 16, 128, false, false),
    ];
    for (profile, rows, k, n, texture, bias_texture) in linears {
        let mut cases = Cases { g: Graph::for_profile(profile), inputs: Vec::new(), expected: Vec::new() };
        let (x, xt) = cases.input(&mut rng, &[rows, k]);
        let wt = rng.tensor(&[n, k], -1.0, 1.0);
        let biast = rng.tensor(&[n], -1.0, 1.0);
        let w = cases.g.constant("w", &[n, k], Arc::new(wt.data.clone())).unwrap();
        let bias = cases.g.constant("b", &[n], Arc::new(biast.data.clone())).unwrap();
        // The same weight twice: one texture serves both.
        let y1 = linear(&mut cases.g, x, w, Some(bias), Activation::None).unwrap();
        let y2 = linear(&mut cases.g, x, w, None, Activation::Gelu).unwrap();
        for node in &cases.g.nodes {
            let c = node.key.constants();
            assert!(c.contains(&("A_TEXTURE", 0)) && c.contains(&("B_TEXTURE", texture as u32)), "rows {rows}, k {k}, n {n}: {c:?}");
        }
        assert!(cases.g.nodes[0].key.constants().contains(&("BIAS_TEXTURE", bias_texture as u32)), "rows {rows}, k {k}, n {n}: the column bias");
        assert_eq!(cases.g.nodes[0].reads[1], cases.g.nodes[1].reads[1], "one texture (or buffer) per constant");
        assert_eq!(cases.g.is_texture(cases.g.nodes[0].reads[1]), texture);
        for (name, y, bias, act) in [("bias", y1, Some((&biast.data[..], BiasAxis::Col)), Activation::None), ("gelu", y2, None, Activation::Gelu)] {
            let name = format!("linear {rows}x{k} -> {n} ({name}, textures {texture})");
            cases.g.output(&name, y);
            let (want, _) = matmul_cpu(&xt.data, &[rows, k], &wt.data, &[n, k], false, true, 1.0, bias, act, None);
            cases.expected.push((name, want));
        }
        cases.check();
    }
    // Activations on both sides (batched, transposed, the same tensor twice: buffers), then a
    // constant weight (several texture rows and a partial one) · a batched activation.
    for (profile, texture) in [(DeviceProfile::cpu_like(), 1), (DeviceProfile::gpu_like(), 0)] {
        let mut cases = Cases { g: Graph::for_profile(profile), inputs: Vec::new(), expected: Vec::new() };
        let (q, qt) = cases.input(&mut rng, &[3, 40, 24]);
        let (kk, kt) = cases.input(&mut rng, &[3, 36, 24]);
        let logits = matmul(&mut cases.g, q, kk, false, true, Epilogue { alpha: 0.5, ..Default::default() }).unwrap();
        let (want_logits, _) = matmul_cpu(&qt.data, &[3, 40, 24], &kt.data, &[3, 36, 24], false, true, 0.5, None, Activation::None, None);
        let gram = matmul(&mut cases.g, logits, logits, true, false, Epilogue::default()).unwrap();
        let (want_gram, _) = matmul_cpu(&want_logits, &[3, 40, 36], &want_logits, &[3, 40, 36], true, false, 1.0, None, Activation::None, None);
        let (m, k) = (300, 36);
        let wt = rng.tensor(&[m, k], -1.0, 1.0);
        let biast = rng.tensor(&[m], -1.0, 1.0);
        let w = cases.g.constant("w", &[m, k], Arc::new(wt.data.clone())).unwrap();
        let bias = cases.g.constant("b", &[m], Arc::new(biast.data.clone())).unwrap();
        let mixed = matmul(&mut cases.g, w, gram, false, false, Epilogue { bias: Some((bias, BiasAxis::Row)), ..Default::default() }).unwrap();
        let (want_mixed, _) = matmul_cpu(&wt.data, &[m, k], &want_gram, &[3, k, 36], false, false, 1.0, Some((&biast.data, BiasAxis::Row)), Activation::None, None);
        // N = 49 (HAT-Net's last stage at 224): the element kernel, the weight still in vec4 blocks
        // from its texture; x stored [K, N] (element loads) or [N, K] (vec4 blocks of four element
        // loads); a partial last row segment with a residual.
        let (x, xt) = cases.input(&mut rng, &[k, 49]);
        let (x_t, x_tt) = cases.input(&mut rng, &[49, k]);
        let (r, rt) = cases.input(&mut rng, &[m, 49]);
        let epi = Epilogue { bias: Some((bias, BiasAxis::Row)), act: Activation::Gelu, residual: Some(r), ..Default::default() };
        let odd = matmul(&mut cases.g, w, x, false, false, epi).unwrap();
        let odd_t = matmul(&mut cases.g, w, x_t, false, true, epi).unwrap();
        let row_bias = Some((&biast.data[..], BiasAxis::Row));
        let (want_odd, _) = matmul_cpu(&wt.data, &[m, k], &xt.data, &[k, 49], false, false, 1.0, row_bias, Activation::Gelu, Some(&rt.data));
        let (want_odd_t, _) = matmul_cpu(&wt.data, &[m, k], &x_tt.data, &[49, k], false, true, 1.0, row_bias, Activation::Gelu, Some(&rt.data));
        for (node, a_texture, b_vec4) in cases.g.nodes.iter().zip([0, 0, texture, texture, texture]).zip([1, 1, 1, 0, 1]).map(|((n, a), b)| (n, a, b)) {
            let c = node.key.constants();
            assert!(c.contains(&("A_TEXTURE", a_texture)) && c.contains(&("B_TEXTURE", 0)) && c.contains(&("BIAS_TEXTURE", a_texture)), "{c:?}");
            assert!(c.contains(&("A_VEC4", 1)) && c.contains(&("B_VEC4", b_vec4)), "{c:?}");
        }
        let odd_kernels: Vec<_> = cases.g.nodes[3..].iter().map(|n| n.key.kernel).collect();
        assert_eq!(odd_kernels, [wgvit::kernels::Kernel::Matmul; 2], "N = 49 takes the element kernel");
        for (name, y, want) in [("q·kᵀ", logits, want_logits), ("logitsᵀ·logits", gram, want_gram), ("w · gram", mixed, want_mixed), ("w · x, N = 49", odd, want_odd), ("w · x_tᵀ, N = 49", odd_t, want_odd_t)] {
            cases.g.output(name, y);
            cases.expected.push((format!("{name}, textures {texture}"), want));
        }
        cases.check();
    }
}

/// The transformer MLP `x + fc2(gelu(fc1(LayerNorm(x))))` on `rows` tokens of `c` channels with
/// constant weights, built into `cases` with its CPU reference pushed as the expected output:
/// (x, the norm's output, the hidden, the hidden reshaped, the output).
fn mlp_case(cases: &mut Cases, rng: &mut Rng, (rows, c, hidden): (usize, usize, usize), name: &str) -> [wgvit::TensorId; 5] {
    use std::sync::Arc;
    use wgvit::ops::layernorm::{layer_norm, layer_norm_cpu};
    let (x, xt) = cases.input(rng, &[rows, c]);
    let w1t = rng.tensor(&[hidden, c], -1.0, 1.0);
    let b1t = rng.tensor(&[hidden], -1.0, 1.0);
    let w2t = rng.tensor(&[c, hidden], -0.5, 0.5);
    let g = &mut cases.g;
    let w1 = g.constant("fc1.weight", &[hidden, c], Arc::new(w1t.data.clone())).unwrap();
    let b1 = g.constant("fc1.bias", &[hidden], Arc::new(b1t.data.clone())).unwrap();
    let w2 = g.constant("fc2.weight", &[c, hidden], Arc::new(w2t.data.clone())).unwrap();
    let xn = layer_norm(g, x, None, None, 1e-5).unwrap();
    let h = linear(g, xn, w1, Some(b1), Activation::Gelu).unwrap();
    let h2 = g.reshape(h, &[rows, hidden]).unwrap();
    let y = matmul(g, h2, w2, false, true, Epilogue { residual: Some(x), ..Default::default() }).unwrap();
    g.output(name, y);
    let xn_want = layer_norm_cpu(&xt.data, c, &[], &[], 1e-5);
    let (h_want, _) = matmul_cpu(&xn_want, &[rows, c], &w1t.data, &[hidden, c], false, true, 1.0, Some((&b1t.data, BiasAxis::Col)), Activation::Gelu, None);
    let (want, _) = matmul_cpu(&h_want, &[rows, hidden], &w2t.data, &[c, hidden], false, true, 1.0, None, Activation::None, Some(&xt.data));
    cases.expected.push((name.into(), want));
    [x, xn, h, h2, y]
}

/// An activation that only texture-capable bindings touch moves to a flat texture
/// (`Graph::with_activation_textures`, which the executor applies on lavapipe): LayerNorm → fc1
/// (GELU) → fc2 (+ x), the transformer MLP. The norm's output and the hidden move to textures (the
/// norm and fc1 write storage textures, fc1 and fc2 fetch texels); x (also a residual) and the
/// graph output stay in buffers; the promoted graph, run as it is, matches the CPU reference.
#[test]
fn activations_between_matmuls_and_norms_move_to_textures() {
    use wgvit::graph::StorageKind;
    let mut rng = Rng::new(23);
    let mut cases = Cases { g: Graph::for_profile(DeviceProfile::cpu_like()), inputs: Vec::new(), expected: Vec::new() };
    let [x, xn, h, h2, y] = mlp_case(&mut cases, &mut rng, (37, 24, 96), "LayerNorm → fc1 → fc2 through textures");

    let promoted = cases.g.with_activation_textures(0);
    let in_texture = |t: wgvit::TensorId| matches!(promoted.storages[promoted.tensors[t.0].storage].kind, StorageKind::Activation { texture: true, .. });
    assert!(in_texture(xn) && in_texture(h) && in_texture(h2), "the norm's output and the hidden");
    assert!(!in_texture(y) && !promoted.is_texture(x), "the output and the input stay buffers");
    let defines: Vec<Vec<(&str, u32)>> = promoted.nodes.iter().map(|n| n.key.constants().iter().copied().filter(|(k, _)| k.ends_with("_TEXTURE")).collect()).collect();
    assert!(defines[0].contains(&("Y_TEXTURE", 1)), "{:?}", defines[0]);
    assert!(defines[1].contains(&("A_TEXTURE", 1)) && defines[1].contains(&("OUT_TEXTURE", 1)), "{:?}", defines[1]);
    assert!(defines[2].contains(&("A_TEXTURE", 1)) && !defines[2].contains(&("OUT_TEXTURE", 1)), "{:?}", defines[2]);
    let b = promoted.bindings(&promoted.nodes[1]);
    assert!(b.is_texture(0) && b.is_texture(4) && !b.is_texture(3), "fc1: a and out textures (the weight and bias too), the placeholder for its residual a buffer: {b:?}");
    cases.g = promoted;
    cases.check();
}

/// On lavapipe kernels read their flat textures as read-only storage textures
/// (`Graph::with_flat_texture_images`, `FLAT_IMAGE`): the MLP above with its weights in constant
/// textures and its hidden activations in activation textures. The GEMMs, which read textures,
/// take `FLAT_IMAGE` and storage-texture bindings; the LayerNorm, which reads none, keeps its
/// key; a kernel binding more textures than the device's limit keeps sampled ones. The promoted
/// graph matches the CPU reference on the device.
#[test]
fn flat_textures_are_read_as_read_only_storage_textures_on_lavapipe() {
    use wgvit::graph::FLAT_IMAGE;
    use wgvit::ops::tuning;
    let profile = DeviceProfile { limits: wgpu::Limits { max_storage_textures_per_shader_stage: 8, ..Default::default() }, ..common::lavapipe() };
    assert!(tuning::flat_texture_images(&profile) && !tuning::flat_texture_images(&common::swiftshader()) && !tuning::flat_texture_images(&DeviceProfile::gpu_like()));
    let mut rng = Rng::new(29);
    let mut cases = Cases::for_profile(profile);
    mlp_case(&mut cases, &mut rng, (41, 20, 84), "LayerNorm → fc1 → fc2 through read-only storage textures");

    let textured = cases.g.with_activation_textures(0);
    let images = textured.with_flat_texture_images(8);
    let flat_image = |g: &Graph, i: usize| g.nodes[i].key.constants().contains(&(FLAT_IMAGE, 1));
    assert_eq!(images.nodes.len(), 3);
    assert!(!flat_image(&images, 0) && !images.bindings(&images.nodes[0]).images, "the LayerNorm reads no texture: {:?}", images.nodes[0].key);
    for i in [1, 2] {
        let b = images.bindings(&images.nodes[i]);
        assert!(flat_image(&images, i) && b.images && b.is_texture(0), "{}: {:?} {b:?}", images.nodes[i].label, images.nodes[i].key);
    }
    // fc1 binds its input and its output as textures (its small weight is a uniform buffer):
    // under a limit of one storage texture it keeps a sampled one.
    assert_eq!(images.bindings(&images.nodes[1]).textures.count_ones(), 2);
    let limited = textured.with_flat_texture_images(1);
    assert!(!flat_image(&limited, 1) && !limited.bindings(&limited.nodes[1]).images, "{:?}", limited.nodes[1].key);
    cases.g = images;
    cases.check();
}

/// A conv with kernel = stride = p as one GEMM over gathered patches (`patch_linear`): images
/// (NCHW, patch order (c, ky, kx)) and token maps (channel-last, (ky, kx, c)), patch counts that
/// leave partial register tiles, odd N (the element-store kernel), both kernel sets. Layouts whose
/// runs are not a multiple of 4 take the permute copy instead; both paths against the CPU.
#[test]
fn patch_linear_gathers_patches_of_images_and_token_maps() {
    use wgvit::ops::layout::permute_cpu;
    use wgvit::ops::matmul::{patch_linear, Patches};
    let mut rng = Rng::new(41);
    for profile in [DeviceProfile::default(), common::lavapipe()] {
        let mut cases = Cases::for_profile(profile.clone());
        // (patches, N, gathered in the kernel)
        let shapes = [
            (Patches { batch: 2, h: 12, w: 12, c: 3, p: 4, channels_last: false }, 16, true),
            (Patches { batch: 1, h: 16, w: 8, c: 5, p: 4, channels_last: false }, 10, true),
            (Patches { batch: 2, h: 6, w: 10, c: 8, p: 2, channels_last: true }, 12, true),
            (Patches { batch: 1, h: 16, w: 16, c: 4, p: 8, channels_last: true }, 7, true),
            (Patches { batch: 1, h: 6, w: 6, c: 3, p: 2, channels_last: false }, 8, false),
            (Patches { batch: 2, h: 4, w: 4, c: 6, p: 2, channels_last: true }, 8, false),
        ];
        for (patches, n, gathered) in shapes {
            let (x, xt) = cases.input(&mut rng, &patches.source_shape());
            let k = patches.patch_len();
            let (w, wt) = cases.input(&mut rng, &[n, k]);
            let (bias, biast) = cases.input(&mut rng, &[n]);
            let nodes = cases.g.nodes.len();
            let y = patch_linear(&mut cases.g, x, patches, w, Some(bias)).unwrap();
            assert_eq!(cases.g.shape(y), &[patches.rows(), n]);
            let gathers = cases.g.nodes[nodes..].iter().any(|node| node.key.constants().contains(&("A_PATCHES", 1)));
            let permutes = cases.g.nodes[nodes..].iter().any(|node| node.label == "permute");
            assert_eq!((gathers, permutes), (gathered, !gathered), "{patches:?}: which path");
            let name = format!("{patches:?} · [{n}, {k}]ᵀ");
            cases.g.output(&name, y);
            let (view, perm) = patches.view_and_perm();
            let a = permute_cpu(&xt.data, &view, &perm);
            let (want, _) = matmul_cpu(&a, &[patches.rows(), k], &wt.data, &[n, k], false, true, 1.0, Some((&biast.data, BiasAxis::Col)), Activation::None, None);
            cases.expected.push((name, want));
        }
        cases.check();
    }
    let mut g = Graph::new();
    let x = g.input("x", &[1, 3, 8, 8]);
    let w = g.input("w", &[4, 48]);
    let wrong = Patches { batch: 1, h: 8, w: 8, c: 4, p: 4, channels_last: false };
    let err = patch_linear(&mut g, x, wrong, w, None).unwrap_err().to_string();
    assert!(err.contains("patch_linear") && err.contains("[1, 3, 8, 8]") && err.contains("[1, 4, 8, 8]"), "{err}");
    let ragged = Patches { batch: 1, h: 8, w: 8, c: 3, p: 3, channels_last: false };
    let err = patch_linear(&mut g, x, ragged, w, None).unwrap_err().to_string();
    assert!(err.contains("whole"), "{err}");
    let empty = Patches { batch: 1, h: 8, w: 8, c: 3, p: 0, channels_last: false };
    let err = patch_linear(&mut g, x, empty, w, None).unwrap_err().to_string();
    assert!(err.contains("whole"), "{err}");
}

/// On lavapipe a LayerNorm's output that only a patch gather reads moves to a texture, and the
/// gather reads its vec4 runs as texels (LaViT's spatial-reduction conv after norm1).
#[test]
fn patch_linear_gathers_from_an_activation_texture() {
    use wgvit::ops::layernorm::{layer_norm, layer_norm_cpu};
    use wgvit::ops::layout::permute_cpu;
    use wgvit::ops::matmul::{patch_linear, Patches};
    let mut rng = Rng::new(43);
    let patches = Patches { batch: 2, h: 8, w: 12, c: 8, p: 4, channels_last: true };
    let n = 12;
    let mut cases = Cases::for_profile(common::lavapipe());
    let (x, xt) = cases.input(&mut rng, &[2, 8 * 12, 8]);
    let (w, wt) = cases.input(&mut rng, &[n, patches.patch_len()]);
    let g = &mut cases.g;
    let xn = layer_norm(g, x, None, None, 1e-5).unwrap();
    let xn4 = g.reshape(xn, &patches.source_shape()).unwrap();
    let y = patch_linear(g, xn4, patches, w, None).unwrap();
    g.output("patches of a LayerNorm", y);
    let promoted = g.with_activation_textures(0);
    assert!(promoted.is_texture(xn), "the norm's output");
    let gather = promoted.nodes.last().unwrap().key.constants();
    assert!(gather.contains(&("A_PATCHES", 1)) && gather.contains(&("A_TEXTURE", 1)), "{gather:?}");
    let xn_want = layer_norm_cpu(&xt.data, 8, &[], &[], 1e-5);
    let (view, perm) = patches.view_and_perm();
    let a = permute_cpu(&xn_want, &view, &perm);
    let (want, _) = matmul_cpu(&a, &[patches.rows(), patches.patch_len()], &wt.data, &[n, patches.patch_len()], false, true, 1.0, None, Activation::None, None);
    cases.expected.push(("patches of a LayerNorm".into(), want));
    cases.g = promoted;
    cases.check();
}

/// `matmul_k_scaled`: op(a)'s columns scaled per batch entry (ACC-ViT's squeeze-excitation scale
/// folded into `project`), against the CPU reference on the scaled a. Every kernel set; sizes
/// that take the 4 × 4, lavapipe's 8 × 8 and the large tiles; a transposed a; bias, activation and
/// residual; a batch of 3 whose entries have different scales; on lavapipe the output also moves
/// to a texture (the scale's binding shifts `out` to binding 6).
#[test]
fn matmul_k_scaled_scales_each_batch_entrys_reduction() {
    for profile in [DeviceProfile::gpu_like(), common::swiftshader(), common::lavapipe()] {
        let lavapipe = profile.name.starts_with("llvmpipe");
        let mut rng = Rng::new(53);
        let mut cases = Cases::for_profile(profile);
        // (batches, m, k, n, trans_a, act)
        let combos = [(1, 16, 8, 12, false, Activation::None), (3, 64, 64, 16, false, Activation::Gelu), (2, 36, 32, 20, true, Activation::None), (1, 257, 132, 64, false, Activation::Relu)];
        for (batches, m, k, n, trans_a, act) in combos {
            let (a, at) = cases.input(&mut rng, &stored_shape(&[batches], m, k, trans_a));
            let (w, wt) = cases.input(&mut rng, &[n, k]);
            let (bias, bias_t) = cases.input(&mut rng, &[n]);
            let (residual, residual_t) = cases.input(&mut rng, &[batches, m, n]);
            let (scale, scale_t) = cases.input(&mut rng, &[batches, k]);
            let epi = Epilogue { bias: Some((bias, BiasAxis::Col)), act, residual: Some(residual), ..Default::default() };
            let y = wgvit::ops::matmul::matmul_k_scaled(&mut cases.g, a, w, trans_a, true, scale, epi).unwrap();
            assert!(cases.g.nodes.last().unwrap().key.constants().contains(&("K_SCALE", 1)));
            // On lavapipe, read through an identity GEMM (exact) that takes a texture, so that
            // the scaled GEMM's output is no graph output and moves to a texture.
            let y = if lavapipe {
                let eye: Vec<f32> = (0..n * n).map(|i| (i / n == i % n) as u32 as f32).collect();
                let eye = cases.g.constant(&format!("eye{n}"), &[n, n], std::sync::Arc::new(eye)).unwrap();
                matmul(&mut cases.g, y, eye, false, false, Epilogue::default()).unwrap()
            } else {
                y
            };
            let name = format!("{} {batches}x{m}x{k}x{n} trans_a {trans_a} {act:?}", cases.g.profile.name);
            cases.g.output(&name, y);
            // The reference: every batch entry's a with column kk (row kk when stored transposed) times scale[t, kk].
            let mut scaled = at.data.clone();
            for (t, entry) in scaled.chunks_exact_mut(m * k).enumerate() {
                for (i, v) in entry.iter_mut().enumerate() {
                    let kk = if trans_a { i / m } else { i % k };
                    *v *= scale_t.data[t * k + kk];
                }
            }
            let (want, _) = matmul_cpu(&scaled, &at.shape, &wt.data, &wt.shape, trans_a, true, 1.0, Some((&bias_t.data, BiasAxis::Col)), act, Some(&residual_t.data));
            cases.expected.push((name, want));
        }
        if lavapipe {
            cases.g = cases.g.with_activation_textures(0);
            let scaled_to_texture = cases.g.nodes.iter().any(|n| n.key.constants().contains(&("K_SCALE", 1)) && n.key.constants().contains(&("OUT_TEXTURE", 1)));
            assert!(scaled_to_texture, "a K_SCALE GEMM writes a texture on lavapipe");
        }
        cases.check();
    }
}

#[test]
fn matmul_k_scaled_rejects_bad_shapes() {
    let mut g = Graph::new();
    let a = g.input("a", &[2, 8, 16]);
    let w = g.input("w", &[12, 16]);
    let bad_scale = g.input("s", &[2, 12]);
    let e = wgvit::ops::matmul::matmul_k_scaled(&mut g, a, w, false, true, bad_scale, Epilogue::default()).unwrap_err().to_string();
    assert!(e.contains("needs batches × K = 2 × 16 = 32 elements"), "{e}");
    let a = g.input("a2", &[2, 8, 6]);
    let w = g.input("w2", &[12, 6]);
    let scale = g.input("s2", &[2, 6]);
    let e = wgvit::ops::matmul::matmul_k_scaled(&mut g, a, w, false, true, scale, Epilogue::default()).unwrap_err().to_string();
    assert!(e.contains("multiples of 4"), "{e}");
}

/// On lavapipe a constant operand of at most 64 KiB is read from a uniform buffer
/// (`Graph::constant_uniform`, `A_UNIFORM` / `B_UNIFORM`, `BIAS_UNIFORM`) instead of a texture:
/// weights as B (linears) and as A (row-bias GEMMs, stored plain and transposed, and with N = 49
/// on the element kernel), and their bias; larger ones keep their texture, K % 4 != 0 its buffer. Values against the
/// CPU reference, and the bindings' kinds.
#[test]
fn small_constant_operands_come_from_uniform_buffers_on_lavapipe() {
    use std::sync::Arc;
    let mut rng = Rng::new(61);
    let mut cases = Cases::for_profile(common::lavapipe());
    // (rows, k, n, uniform, texture): 24 KiB; 80 KiB (over the window: a texture); K = 30.
    for (rows, k, n, uniform, texture) in [(98, 64, 96, true, false), (37, 128, 160, false, true), (9, 30, 12, false, false)] {
        let (x, xt) = cases.input(&mut rng, &[rows, k]);
        let wt = rng.tensor(&[n, k], -1.0, 1.0);
        let w = cases.g.constant(&format!("w{n}"), &[n, k], Arc::new(wt.data.clone())).unwrap();
        let y = linear(&mut cases.g, x, w, None, Activation::Gelu).unwrap();
        let node = cases.g.nodes.last().unwrap();
        let c = node.key.constants();
        assert!(c.contains(&("B_UNIFORM", uniform as u32)) && c.contains(&("B_TEXTURE", texture as u32)), "{rows}x{k}x{n}: {c:?}");
        assert_eq!(cases.g.is_uniform(node.reads[1]), uniform);
        let name = format!("linear {rows}x{k} -> {n}");
        cases.g.output(&name, y);
        let (want, _) = matmul_cpu(&xt.data, &[rows, k], &wt.data, &[n, k], false, true, 1.0, None, Activation::Gelu, None);
        cases.expected.push((name, want));
    }
    // A constant A: [M, K] plain (vec4 kernel, and the element kernel at N = 49) and [K, M] transposed.
    let (m, k) = (300, 36);
    let wt = rng.tensor(&[m, k], -1.0, 1.0);
    let w = cases.g.constant("wa", &[m, k], Arc::new(wt.data.clone())).unwrap();
    let w_tt = rng.tensor(&[k, m], -1.0, 1.0);
    let w_t = cases.g.constant("wa_t", &[k, m], Arc::new(w_tt.data.clone())).unwrap();
    let biast = rng.tensor(&[m], -1.0, 1.0);
    let bias = cases.g.constant("ba", &[m], Arc::new(biast.data.clone())).unwrap();
    let row_bias = Some((&biast.data[..], BiasAxis::Row));
    for (name, n, trans_a) in [("w · x", 40, false), ("w · x, N = 49", 49, false), ("w_tᵀ · x", 40, true)] {
        let (x, xt) = cases.input(&mut rng, &[k, n]);
        let a = if trans_a { w_t } else { w };
        let y = matmul(&mut cases.g, a, x, trans_a, false, Epilogue { bias: Some((bias, BiasAxis::Row)), ..Default::default() }).unwrap();
        let c = cases.g.nodes.last().unwrap().key.constants();
        assert!(c.contains(&("A_UNIFORM", 1)) && c.contains(&("BIAS_UNIFORM", 1)) && c.contains(&("BIAS_TEXTURE", 0)), "{name}: {c:?}");
        cases.g.output(name, y);
        let (a_data, a_shape) = if trans_a { (&w_tt.data, [k, m]) } else { (&wt.data, [m, k]) };
        let (want, _) = matmul_cpu(a_data, &a_shape, &xt.data, &[k, n], trans_a, false, 1.0, row_bias, Activation::None, None);
        cases.expected.push((name.into(), want));
    }
    cases.check();
}

/// An activation of at most 64 KiB that only uniform-capable bindings read is read as a uniform
/// buffer (`Graph::with_activation_uniforms`, which the executor applies on lavapipe before the
/// textures): q·kᵀ's two operands (one of them B), its output as the next GEMM's A, and a hidden
/// read by a transposed A. One over 64 KiB and one also read by a kernel without the offer (an
/// element-wise add) stay as they were; the producers still write storage buffers. The promoted
/// graph, run as it is, matches the CPU reference.
#[test]
fn small_activations_read_by_matmuls_become_uniform_buffers() {
    use wgvit::graph::StorageKind;
    let mut rng = Rng::new(67);
    let mut cases = Cases::for_profile(common::lavapipe());
    let (x, xt) = cases.input(&mut rng, &[40, 24]);
    let (w, wt) = cases.input(&mut rng, &[36, 24]);
    // Small values: its products are chained two GEMMs deep.
    let big_t = rng.tensor(&[160, 128], -0.1, 0.1);
    let big_in = cases.g.input("big", &big_t.shape);
    cases.inputs.push(big_t.clone());
    let g = &mut cases.g;
    let q = matmul(g, x, w, false, true, Epilogue::default()).unwrap(); // [40, 36]: 5.6 KiB
    let logits = matmul(g, q, q, false, true, Epilogue { alpha: 0.5, ..Default::default() }).unwrap(); // [40, 40]
    let gram = matmul(g, logits, logits, true, false, Epilogue::default()).unwrap(); // A transposed
    let big = matmul(g, big_in, big_in, true, false, Epilogue::default()).unwrap(); // [128, 128]: 64 KiB
    let big2 = matmul(g, big, big, false, false, Epilogue::default()).unwrap(); // exactly the window
    let huge = matmul(g, big_in, big_in, false, true, Epilogue::default()).unwrap(); // [160, 160]: 100 KiB
    let huge_out = matmul(g, huge, huge, false, false, Epilogue::default()).unwrap();
    let shared = matmul(g, x, w, false, true, Epilogue::default()).unwrap();
    let added = wgvit::ops::binary::add(g, shared, q).unwrap(); // `shared` and `q` also read by an add
    for (name, t) in [("gram", gram), ("big2", big2), ("huge_out", huge_out), ("added", added)] {
        g.output(name, t);
    }
    let promoted = g.with_activation_uniforms();
    let uniform = |t: wgvit::TensorId| matches!(promoted.storages[promoted.tensors[t.0].storage].kind, StorageKind::Activation { uniform_reads: true, .. });
    assert!(uniform(logits) && uniform(big), "the small operands");
    assert!(!uniform(q) && !uniform(shared), "read by the add too");
    assert!(!uniform(huge), "over 64 KiB");
    assert!(!uniform(gram) && !uniform(big2), "graph outputs");
    for (i, node) in promoted.nodes.iter().enumerate() {
        let b = promoted.bindings(node);
        assert!(!b.is_uniform(node.reads.len()) && b.writes == 1, "node {i}: writes stay storage: {b:?}");
    }
    let logits_node = &promoted.nodes[2];
    assert!(logits_node.key.constants().contains(&("A_UNIFORM", 1)) && promoted.bindings(logits_node).is_uniform(0) && promoted.bindings(logits_node).is_uniform(1));

    let (q_want, _) = matmul_cpu(&xt.data, &[40, 24], &wt.data, &[36, 24], false, true, 1.0, None, Activation::None, None);
    let (l_want, _) = matmul_cpu(&q_want, &[40, 36], &q_want, &[40, 36], false, true, 0.5, None, Activation::None, None);
    let (gram_want, _) = matmul_cpu(&l_want, &[40, 40], &l_want, &[40, 40], true, false, 1.0, None, Activation::None, None);
    let (big_want, _) = matmul_cpu(&big_t.data, &[160, 128], &big_t.data, &[160, 128], true, false, 1.0, None, Activation::None, None);
    let (big2_want, _) = matmul_cpu(&big_want, &[128, 128], &big_want, &[128, 128], false, false, 1.0, None, Activation::None, None);
    let (huge_want, _) = matmul_cpu(&big_t.data, &[160, 128], &big_t.data, &[160, 128], false, true, 1.0, None, Activation::None, None);
    let (huge_out_want, _) = matmul_cpu(&huge_want, &[160, 160], &huge_want, &[160, 160], false, false, 1.0, None, Activation::None, None);
    let added_want: Vec<f32> = q_want.iter().map(|v| 2.0 * v).collect();
    for (name, want) in [("gram", gram_want), ("big2", big2_want), ("huge_out", huge_out_want), ("added", added_want)] {
        cases.expected.push((name.into(), want));
    }
    cases.g = promoted;
    cases.check();
}

/// The other uniform reads on lavapipe: a LayerNorm's input (`X_UNIFORM`) and its constant gamma
/// and beta (`AFFINE_UNIFORM`), a GEMM's residual (`RESIDUAL_UNIFORM`) and a token mean's input
/// (`X_UNIFORM`): x → LayerNorm → linear (+ x) → mean over tokens, against the CPU.
#[test]
fn norms_residuals_and_means_read_small_activations_as_uniform_buffers() {
    use std::sync::Arc;
    use wgvit::graph::StorageKind;
    use wgvit::ops::layernorm::{layer_norm, layer_norm_cpu};
    use wgvit::ops::pool::{mean_tokens, mean_tokens_cpu};
    let mut rng = Rng::new(71);
    let mut cases = Cases::for_profile(common::lavapipe());
    let (rows, c) = (24, 32);
    let (x0, x0t) = cases.input(&mut rng, &[rows, c]);
    let gt = rng.tensor(&[c], 0.5, 1.5);
    let bt = rng.tensor(&[c], -0.5, 0.5);
    let wt = rng.tensor(&[c, c], -1.0, 1.0);
    let g = &mut cases.g;
    let (gamma, beta, w) = (g.constant("gamma", &[c], Arc::new(gt.data.clone())).unwrap(), g.constant("beta", &[c], Arc::new(bt.data.clone())).unwrap(), g.constant("w", &[c, c], Arc::new(wt.data.clone())).unwrap());
    // x = 2 · x0, through a GEMM so that x is an activation.
    let two: Vec<f32> = (0..c * c).map(|i| if i / c == i % c { 2.0 } else { 0.0 }).collect();
    let two = g.constant("two", &[c, c], Arc::new(two)).unwrap();
    let x = matmul(g, x0, two, false, false, Epilogue::default()).unwrap();
    let xn = layer_norm(g, x, Some(gamma), Some(beta), 1e-5).unwrap();
    let y = matmul(g, xn, w, false, true, Epilogue { residual: Some(x), ..Default::default() }).unwrap();
    let y3 = g.reshape(y, &[1, rows, c]).unwrap();
    let mean = mean_tokens(g, y3).unwrap();
    g.output("mean", mean);
    let promoted = g.with_activation_uniforms();
    let uniform = |t: wgvit::TensorId| matches!(promoted.storages[promoted.tensors[t.0].storage].kind, StorageKind::Activation { uniform_reads: true, .. });
    assert!(uniform(x) && uniform(xn) && uniform(y), "x (norm and residual), the norm's output, the GEMM's output");
    let defines = |i: usize| promoted.nodes[i].key.constants().to_vec();
    assert!(defines(1).contains(&("X_UNIFORM", 1)) && defines(1).contains(&("AFFINE_UNIFORM", 1)), "{:?}", defines(1));
    assert!(defines(2).contains(&("A_UNIFORM", 1)) && defines(2).contains(&("RESIDUAL_UNIFORM", 1)), "{:?}", defines(2));
    assert!(defines(3).contains(&("X_UNIFORM", 1)), "{:?}", defines(3));

    let xt: Vec<f32> = x0t.data.iter().map(|v| 2.0 * v).collect();
    let xn_want = layer_norm_cpu(&xt, c, &gt.data, &bt.data, 1e-5);
    let (y_want, _) = matmul_cpu(&xn_want, &[rows, c], &wt.data, &[c, c], false, true, 1.0, None, Activation::None, Some(&xt));
    cases.expected.push(("mean".into(), mean_tokens_cpu(&y_want, 1, rows, c)));
    cases.g = promoted;
    cases.check();
}

/// `Graph::without_split_uniform_constants` (applied by the executor on lavapipe): two linears of
/// one kind, one weight under 64 KiB (a uniform buffer) and one over (a texture), both end up
/// reading textures under one pipeline key; a kind with only small weights keeps its uniform
/// buffers. The rewritten graph matches the CPU.
#[test]
fn gemms_of_one_kind_do_not_split_their_pipeline_over_uniform_weights() {
    use std::sync::Arc;
    let mut rng = Rng::new(73);
    let mut cases = Cases::for_profile(common::lavapipe());
    let mut expect = |cases: &mut Cases, rows: usize, k: usize, n: usize, act: Activation| {
        let (x, xt) = cases.input(&mut rng, &[rows, k]);
        let wt = rng.tensor(&[n, k], -1.0, 1.0);
        let w = cases.g.constant(&format!("w{n}x{k}{act:?}"), &[n, k], Arc::new(wt.data.clone())).unwrap();
        let y = linear(&mut cases.g, x, w, None, act).unwrap();
        let name = format!("{rows}x{k} -> {n} {act:?}");
        cases.g.output(&name, y);
        let (want, _) = matmul_cpu(&xt.data, &[rows, k], &wt.data, &[n, k], false, true, 1.0, None, act, None);
        cases.expected.push((name, want));
    };
    // One kind (GELU, the same tile): 24 KiB and 80 KiB weights. Another (no activation): 24 KiB only.
    expect(&mut cases, 98, 64, 96, Activation::Gelu);
    expect(&mut cases, 97, 128, 160, Activation::Gelu);
    expect(&mut cases, 98, 64, 96, Activation::None);
    let b = |g: &Graph, i: usize| (g.nodes[i].key.constants().contains(&("B_UNIFORM", 1)), g.nodes[i].key.constants().contains(&("B_TEXTURE", 1)));
    assert_eq!([b(&cases.g, 0), b(&cases.g, 1), b(&cases.g, 2)], [(true, false), (false, true), (true, false)], "as built");
    let unified = cases.g.without_split_uniform_constants();
    assert_eq!([b(&unified, 0), b(&unified, 1), b(&unified, 2)], [(false, true), (false, true), (true, false)], "unified");
    assert_eq!(unified.nodes[0].key, unified.nodes[1].key, "one pipeline");
    assert!(unified.is_texture(unified.nodes[0].reads[1]) && unified.is_uniform(unified.nodes[2].reads[1]));
    cases.g = unified;
    cases.check();
}

/// The producers' texture stores (`Graph::with_activation_textures`) with session 18's rule for
/// costly stores: an activation moves to a texture only when its readers fetch each texel at
/// least `tuning::texture_min_fetches` times (the executor now copies instead there: the next
/// test). An MLP shaped like LaViT's, LayerNorm →
/// fc1 (64 → 512, GELU) → fc2 (512 → 64). fc1 fetches each texel of the norm's output once per
/// 8-column tile of its 512 columns (64 times), so the norm writes a texture; fc2 fetches the
/// hidden once per tile of 64 columns (8 times), so fc1 stores it in a buffer. With cheap stores
/// both move. Values against the CPU reference either way.
#[test]
fn costly_texture_stores_keep_rarely_fetched_activations_in_buffers() {
    use wgvit::ops::layernorm::{layer_norm, layer_norm_cpu};
    use wgvit::ops::tuning::texture_min_fetches;
    let (rows, c, hidden) = (48, 64, 512);
    for costly in [true, false] {
        let mut rng = Rng::new(if costly { 71 } else { 72 });
        let profile = DeviceProfile { texture_stores_costly: costly, ..common::lavapipe() };
        let mut cases = Cases::for_profile(profile);
        let (x, xt) = cases.input(&mut rng, &[rows, c]);
        let (w1, w1t) = cases.input(&mut rng, &[hidden, c]);
        let (w2, w2t) = cases.input(&mut rng, &[c, hidden]);
        let g = &mut cases.g;
        let xn = layer_norm(g, x, None, None, 1e-5).unwrap();
        let h = linear(g, xn, w1, None, Activation::Gelu).unwrap();
        let y = linear(g, h, w2, None, Activation::None).unwrap();
        let case = format!("MLP, texture stores costly: {costly}");
        g.output(&case, y);
        let promoted = g.with_activation_textures(texture_min_fetches(&g.profile));
        assert!(promoted.is_texture(xn), "{case}: the norm's output, fetched 64 times a texel, is a texture");
        assert_eq!(promoted.is_texture(h), !costly, "{case}: the hidden, fetched 8 times a texel");
        let xn_want = layer_norm_cpu(&xt.data, c, &[], &[], 1e-5);
        let (h_want, _) = matmul_cpu(&xn_want, &[rows, c], &w1t.data, &[hidden, c], false, true, 1.0, None, Activation::Gelu, None);
        let (want, _) = matmul_cpu(&h_want, &[rows, hidden], &w2t.data, &[c, hidden], false, true, 1.0, None, Activation::None, None);
        cases.expected.push((case, want));
        cases.g = promoted;
        cases.check();
    }
}

/// The one texture copy of `copied` (built from `g`): the norm's output `xn`, right after the
/// norm (node 0), into a texture that fc1 (node 1) reads as its A. Returns fc1.
fn fc1_reads_the_norms_copy<'a>(g: &Graph, copied: &'a Graph, xn: wgvit::TensorId) -> &'a wgvit::graph::Node {
    use wgvit::graph::StorageKind;
    assert_eq!(copied.texture_copies.len(), 1, "{:?}", copied.texture_copies);
    let copy = copied.texture_copies[0];
    assert_eq!((copy.from, copy.after), (g.tensors[xn.0].storage, 0), "the norm's output, after the norm");
    assert!(matches!(copied.storages[copy.to].kind, StorageKind::Activation { texture: true, .. }));
    let fc1 = &copied.nodes[1];
    assert!(copied.is_texture(fc1.reads[0]) && fc1.key.constants().contains(&("A_TEXTURE", 1)), "fc1 reads the copy: {:?}", fc1.key);
    fc1
}

/// Where texture stores are costly, activations are written to buffers and copied into textures
/// after their producer (`Graph::with_activation_textures_copied`, `tuning::copied_textures`):
/// LayerNorm (500 × 64) → fc1 (64 → 512, GELU) → fc2 (512 → 16) → fc3 (16 → 64). fc1 fetches each
/// texel of the norm's output (8000 texels: 31 rows of the flat texture and 64 texels of a last
/// one, copied in two parts) 32 or 64 times: copied. fc2 fetches the hidden once per tile of its
/// 16 columns: too few, it stays a buffer; fc2's output (2000 texels) is under the least size.
/// The executor splits its compute pass at the copy. Values against the CPU reference, compiled
/// for lavapipe's profile with costly stores.
#[test]
fn costly_texture_stores_copy_often_fetched_activations_into_textures() {
    use wgvit::ops::layernorm::{layer_norm, layer_norm_cpu};
    use wgvit::ops::tuning::copied_textures;
    let (rows, c, hidden, narrow) = (500, 64, 512, 16);
    let mut rng = Rng::new(73);
    let profile = DeviceProfile { texture_stores_costly: true, ..common::lavapipe() };
    let rule = copied_textures(&profile).expect("costly stores copy");
    let mut cases = Cases::for_profile(profile);
    let (x, xt) = cases.input(&mut rng, &[rows, c]);
    let (w1, w1t) = cases.input(&mut rng, &[hidden, c]);
    let (w2, w2t) = cases.input(&mut rng, &[narrow, hidden]);
    let (w3, w3t) = cases.input(&mut rng, &[c, narrow]);
    let g = &mut cases.g;
    let xn = layer_norm(g, x, None, None, 1e-5).unwrap();
    let h = linear(g, xn, w1, None, Activation::Gelu).unwrap();
    let z = linear(g, h, w2, None, Activation::None).unwrap();
    let y = linear(g, z, w3, None, Activation::None).unwrap();
    g.output("MLP with copied textures", y);
    let copied = g.with_activation_textures_copied(rule.min_fetches, rule.min_texels);
    let fc1 = fc1_reads_the_norms_copy(g, &copied, xn);
    assert!(!fc1.key.constants().contains(&("OUT_TEXTURE", 1)) && !copied.is_texture(copied.nodes[0].writes[0]), "no producer stores a texture");
    assert!(!copied.is_texture(copied.nodes[2].reads[0]), "fc2's A, fetched twice a texel, stays a buffer");
    let xn_want = layer_norm_cpu(&xt.data, c, &[], &[], 1e-5);
    let (h_want, _) = matmul_cpu(&xn_want, &[rows, c], &w1t.data, &[hidden, c], false, true, 1.0, None, Activation::Gelu, None);
    let (z_want, _) = matmul_cpu(&h_want, &[rows, hidden], &w2t.data, &[narrow, hidden], false, true, 1.0, None, Activation::None, None);
    let (want, _) = matmul_cpu(&z_want, &[rows, narrow], &w3t.data, &[c, narrow], false, true, 1.0, None, Activation::None, None);
    cases.expected.push(("MLP with copied textures".into(), want));
    cases.check();
}

/// A copied activation that a reader without a texture offer also reads (the token mean of a
/// squeeze-excitation, next to the GEMM that reads the same map): the GEMM reads the copy, the
/// mean the producer's buffer, which the copy leaves as it is. LayerNorm (500 × 64) → fc1 (64 →
/// 512) and the norm's token mean. Values against the CPU reference, compiled for lavapipe's
/// profile with costly stores.
#[test]
fn a_copied_activation_keeps_its_buffer_for_readers_without_an_offer() {
    use wgvit::ops::layernorm::{layer_norm, layer_norm_cpu};
    use wgvit::ops::pool::{mean_tokens, mean_tokens_cpu};
    use wgvit::ops::tuning::copied_textures;
    let (rows, c, hidden) = (500, 64, 512);
    let mut rng = Rng::new(79);
    let profile = DeviceProfile { texture_stores_costly: true, ..common::lavapipe() };
    let rule = copied_textures(&profile).expect("costly stores copy");
    let mut cases = Cases::for_profile(profile);
    let (x, xt) = cases.input(&mut rng, &[1, rows, c]);
    let (w1, w1t) = cases.input(&mut rng, &[hidden, c]);
    let g = &mut cases.g;
    let xn = layer_norm(g, x, None, None, 1e-5).unwrap();
    let h = linear(g, xn, w1, None, Activation::None).unwrap();
    let mean = mean_tokens(g, xn).unwrap();
    g.output("fc1 of the copy", h);
    g.output("token mean of the buffer", mean);
    let copied = g.with_activation_textures_copied(rule.min_fetches, rule.min_texels);
    fc1_reads_the_norms_copy(g, &copied, xn);
    let mean_node = &copied.nodes[2];
    assert!(!copied.is_texture(mean_node.reads[0]) && copied.tensors[mean_node.reads[0].0].storage == g.tensors[xn.0].storage, "the mean reads the norm's buffer");
    let xn_want = layer_norm_cpu(&xt.data, c, &[], &[], 1e-5);
    let (h_want, _) = matmul_cpu(&xn_want, &[rows, c], &w1t.data, &[hidden, c], false, true, 1.0, None, Activation::None, None);
    cases.expected.push(("fc1 of the copy".into(), h_want));
    cases.expected.push(("token mean of the buffer".into(), mean_tokens_cpu(&xn_want, 1, rows, c)));
    cases.check();
}

/// On lavapipe a GEMM from 4 MFLOP whose tiles fill fewer than two workgroups splits its
/// reduction (`K_SPLIT`): the shares' batch entries, scaled and with the bias, then their mean.
/// LaViT's spatial-reduction conv (8 × 8 patches of a channel-last map: M = 16, K = 4096, N = 64,
/// 16 shares), a plain GEMM with a row bias and a transposed b (K = 2000 in 7 shares, the last
/// one shorter), and one with an activation, which must not split. Values against the CPU
/// reference.
#[test]
fn few_tile_gemms_split_their_reduction_on_lavapipe() {
    use wgvit::ops::layout::permute_cpu;
    use wgvit::ops::matmul::{patch_linear, Patches};
    let mut rng = Rng::new(77);
    let mut cases = Cases::for_profile(common::lavapipe());
    let patches = Patches { batch: 1, h: 32, w: 32, c: 64, p: 8, channels_last: true };
    let (x, xt) = cases.input(&mut rng, &patches.source_shape());
    let (w, wt) = cases.input(&mut rng, &[64, patches.patch_len()]);
    let (bias, biast) = cases.input(&mut rng, &[64]);
    let y = patch_linear(&mut cases.g, x, patches, w, Some(bias)).unwrap();
    cases.g.output("patches", y);
    let (view, perm) = patches.view_and_perm();
    let a = permute_cpu(&xt.data, &view, &perm);
    let (want, _) = matmul_cpu(&a, &[patches.rows(), patches.patch_len()], &wt.data, &[64, patches.patch_len()], false, true, 1.0, Some((&biast.data, BiasAxis::Col)), Activation::None, None);
    cases.expected.push(("patches".into(), want));

    let (m, k, n) = (24, 2000, 48);
    for (act, name) in [(Activation::None, "row bias"), (Activation::Gelu, "row bias, GELU")] {
        let (a, at) = cases.input(&mut rng, &[m, k]);
        let (b, bt) = cases.input(&mut rng, &[n, k]);
        let (bias, biast) = cases.input(&mut rng, &[m]);
        let epi = Epilogue { alpha: 0.5, bias: Some((bias, BiasAxis::Row)), act, ..Default::default() };
        let y = matmul(&mut cases.g, a, b, false, true, epi).unwrap();
        cases.g.output(name, y);
        let (want, _) = matmul_cpu(&at.data, &at.shape, &bt.data, &bt.shape, false, true, 0.5, Some((&biast.data, BiasAxis::Row)), act, None);
        cases.expected.push((name.into(), want));
    }
    // The params' fourth word is the launch's batch count: the shares where K_SPLIT is set.
    let split: Vec<(bool, u32)> = cases.g.nodes.iter().filter(|n| n.label == "matmul").map(|n| (n.key.constants().contains(&("K_SPLIT", 1)), n.params.words[3])).collect();
    assert_eq!(split, [(true, 16), (true, 7), (false, 1)], "which GEMMs split, in how many shares");
    assert_eq!(cases.g.nodes.iter().filter(|n| n.label == "mean_tokens").count(), 2, "one mean per split GEMM");
    cases.check();
}

/// `matmul_padded_columns`: b stored as rows `[.., N, K]`, the output's rows padded to a multiple
/// of 4 columns past N, each padding column a copy of column N − 1. Batched b (LaViT's keys and
/// values: weight · tokensᵀ with a row bias), a transposed a, K % 4 != 0 (the element kernel's
/// masked step), with the padding making the vec4 kernel possible and without it; every kernel set,
/// constant weights through textures and uniforms on lavapipe.
#[test]
fn matmul_padded_columns_repeats_the_last_column() {
    for profile in [DeviceProfile::gpu_like(), common::swiftshader(), common::lavapipe()] {
        let mut rng = Rng::new(61);
        let mut cases = Cases::for_profile(profile);
        // (a batches, b batches, m, k, n, columns, trans_a, row bias)
        let combos = [(1, 2, 64, 64, 49, 52, false, true), (1, 1, 40, 36, 9, 12, false, true), (3, 3, 20, 24, 9, 12, true, false), (1, 1, 12, 30, 13, 16, false, false), (1, 1, 8, 16, 7, 7, false, true)];
        for (a_batches, b_batches, m, k, n, columns, trans_a, row_bias) in combos {
            let a_batch_dims = if a_batches > 1 { vec![a_batches] } else { vec![] };
            let (a, at) = cases.input(&mut rng, &stored_shape(&a_batch_dims, m, k, trans_a));
            let (b, bt) = cases.input(&mut rng, &[b_batches, n, k]);
            let bias = row_bias.then(|| cases.input(&mut rng, &[m]));
            let epi = Epilogue { bias: bias.as_ref().map(|(t, _)| (*t, BiasAxis::Row)), ..Default::default() };
            let y = wgvit::ops::matmul::matmul_padded_columns(&mut cases.g, a, b, trans_a, epi, columns).unwrap();
            let batches = a_batches.max(b_batches);
            assert_eq!(cases.g.shape(y), [batches, m, columns]);
            let vec4 = cases.g.nodes.last().unwrap().key.kernel == wgvit::kernels::Kernel::MatmulVec4;
            assert_eq!(vec4, columns % 4 == 0 && k % 4 == 0 && (!trans_a || m % 4 == 0), "{m}x{k}x{n} padded to {columns}: the vec4 kernel where the padding allows it");
            let name = format!("{} {batches}x{m}x{k}x{n} to {columns} trans_a {trans_a}", cases.g.profile.name);
            cases.g.output(&name, y);
            let (product, _) = matmul_cpu(&at.data, &at.shape, &bt.data, &bt.shape, trans_a, true, 1.0, bias.as_ref().map(|(_, t)| (t.data.as_slice(), BiasAxis::Row)), Activation::None, None);
            let want: Vec<f32> = product.chunks(n).flat_map(|row| (0..columns).map(move |j| row[j.min(n - 1)])).collect();
            cases.expected.push((name, want));
        }
        if cases.g.profile.name.starts_with("llvmpipe") {
            cases.g = cases.g.with_activation_textures(0);
        }
        cases.check();
    }
    let mut g = Graph::new();
    let (a, b) = (g.input("a", &[8, 16]), g.input("b", &[9, 16]));
    let e = wgvit::ops::matmul::matmul_padded_columns(&mut g, a, b, false, Epilogue::default(), 8).unwrap_err().to_string();
    assert!(e.contains("8 columns cannot hold the product's 9"), "{e}");
}

/// `matmul_first_rows`: op(a) = aᵀ stored `[.., K, M']`, only its first `rows` rows multiplied
/// and stored, with a row bias and a residual of the output's shape; on the vec4 kernel where M'
/// allows it (LaViT's 49 queries stored in 52 slots) and on the element kernel; every kernel set.
#[test]
fn matmul_first_rows_reads_past_the_padding() {
    for profile in [DeviceProfile::gpu_like(), common::swiftshader(), common::lavapipe()] {
        let mut rng = Rng::new(62);
        let mut cases = Cases::for_profile(profile);
        // (batches, stored rows M', rows, k, n, trans_b)
        let combos = [(2, 52, 49, 64, 48, true), (1, 12, 9, 20, 16, false), (3, 16, 13, 8, 24, true), (1, 11, 7, 12, 8, true), (1, 8, 8, 16, 12, false)];
        for (batches, stored, rows, k, n, trans_b) in combos {
            let (a, at) = cases.input(&mut rng, &[batches, k, stored]);
            let (b, bt) = cases.input(&mut rng, &stored_shape(&[], k, n, trans_b));
            let (bias, bias_t) = cases.input(&mut rng, &[rows]);
            let (residual, residual_t) = cases.input(&mut rng, &[batches, rows, n]);
            let epi = Epilogue { bias: Some((bias, BiasAxis::Row)), residual: Some(residual), ..Default::default() };
            let y = wgvit::ops::matmul::matmul_first_rows(&mut cases.g, a, b, trans_b, epi, rows).unwrap();
            assert_eq!(cases.g.shape(y), [batches, rows, n]);
            let vec4 = cases.g.nodes.last().unwrap().key.kernel == wgvit::kernels::Kernel::MatmulVec4;
            assert_eq!(vec4, stored % 4 == 0 && n % 4 == 0 && (!trans_b || k % 4 == 0), "{rows} of {stored} rows: the vec4 kernel where the stored rows allow it");
            let name = format!("{} {batches}x{rows}/{stored}x{k}x{n} trans_b {trans_b}", cases.g.profile.name);
            cases.g.output(&name, y);
            let first: Vec<f32> = at.data.chunks(stored).flat_map(|row| row[..rows].iter().copied()).collect();
            let (want, _) = matmul_cpu(&first, &[batches, k, rows], &bt.data, &bt.shape, true, trans_b, 1.0, Some((&bias_t.data, BiasAxis::Row)), Activation::None, Some(&residual_t.data));
            cases.expected.push((name, want));
        }
        cases.check();
    }
    let mut g = Graph::new();
    let (a, b) = (g.input("a", &[8, 12]), g.input("b", &[8, 4]));
    let e = wgvit::ops::matmul::matmul_first_rows(&mut g, a, b, false, Epilogue::default(), 13).unwrap_err().to_string();
    assert!(e.contains("13 of op(a)'s 12 rows"), "{e}");
}
