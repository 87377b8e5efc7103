//! conv2d on the GPU against the f64-accumulating CPU reference, and `fold_batchnorm` on the CPU.
//!
//! Tolerance: |got - want| <= 1e-4 + 1e-4 |want| (operands uniform in [-1, 1], reductions of at
//! most a few hundred terms). Spatial sizes are odd and channel counts are not multiples of the
//! 16 x 8 tile, so every clamped edge and padding path runs; each case names its geometry.

mod common;

use common::{assert_close, run, run_and_compare};
use wgvit::models::torch_layout::fold_batchnorm;
use wgvit::ops::conv2d::{conv2d, conv2d_cpu, Conv2dParams};
use wgvit::kernels::DeviceProfile;
use wgvit::ops::Activation;
use wgvit::tensor::Rng;
use wgvit::{Graph, HostTensor};

const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-4;

struct Case {
    x: [usize; 4],
    cout: usize,
    kernel: (usize, usize),
    p: Conv2dParams,
    bias: bool,
    act: Activation,
    /// The weight as a graph constant (as models load it) instead of an input.
    constant_weight: bool,
}

fn case(x: [usize; 4], cout: usize, kernel: (usize, usize), stride: usize, padding: usize, dilation: usize, groups: usize) -> Case {
    Case {
        x,
        cout,
        kernel,
        p: Conv2dParams { stride: (stride, stride), padding: (padding, padding), dilation: (dilation, dilation), groups },
        bias: true,
        act: Activation::None,
        constant_weight: false,
    }
}

/// Builds every case into one graph, runs it once and compares each output; once for each kernel
/// set, since they tile the implicit GEMM differently, and for lavapipe (its small convs of up to
/// 16 channels take a 16 × 4 tile).
fn check(cases: &[Case], seed: u64) {
    check_on(cases, seed, DeviceProfile::gpu_like());
    check_on(cases, seed, DeviceProfile::cpu_like());
    check_on(cases, seed, common::lavapipe());
}

fn check_on(cases: &[Case], seed: u64, profile: DeviceProfile) {
    let mut rng = Rng::new(seed);
    let mut g = Graph::for_profile(profile);
    let mut inputs: Vec<HostTensor> = Vec::new();
    let mut expected = Vec::new();
    for (n, c) in cases.iter().enumerate() {
        let w_shape = [c.cout, c.x[1] / c.p.groups, c.kernel.0, c.kernel.1];
        let xt = rng.tensor(&c.x, -1.0, 1.0);
        let wt = rng.tensor(&w_shape, -1.0, 1.0);
        let bt = rng.tensor(&[c.cout], -1.0, 1.0);
        let xi = g.input(&format!("x{n}"), &c.x);
        inputs.push(xt.clone());
        let wi = if c.constant_weight {
            g.constant(&format!("w{n}"), &w_shape, std::sync::Arc::new(wt.data.clone())).unwrap()
        } else {
            inputs.push(wt.clone());
            g.input(&format!("w{n}"), &w_shape)
        };
        let bi = c.bias.then(|| {
            inputs.push(bt.clone());
            g.input(&format!("b{n}"), &[c.cout])
        });
        let y = conv2d(&mut g, xi, wi, bi, &c.p, c.act).unwrap();
        let kernel = g.nodes.last().unwrap().label.clone();
        let name = format!("x{:?} cout {} k{:?} {:?} bias {} {:?} [{kernel}]", c.x, c.cout, c.kernel, c.p, c.bias, c.act);
        let (want, shape) = conv2d_cpu(&xt.data, &xt.shape, &wt.data, &w_shape, c.bias.then_some(bt.data.as_slice()), &c.p, c.act);
        assert_eq!(g.shape(y), shape.as_slice(), "{name}");
        g.output(&name, y);
        expected.push((name, want));
    }
    run_and_compare(&g, &inputs, &expected, ATOL, RTOL);
}

/// Dense and grouped convolutions (the implicit-GEMM kernel and the 1x1 matmul path).
#[test]
fn conv2d_dense_and_grouped_geometries() {
    let mut cases = vec![
        case([2, 5, 13, 11], 7, (3, 3), 1, 1, 1, 1),
        case([1, 6, 17, 15], 20, (3, 3), 2, 1, 1, 1),
        case([1, 3, 19, 21], 9, (5, 5), 1, 2, 1, 1),
        case([1, 4, 23, 17], 5, (7, 7), 2, 3, 1, 1),
        case([1, 4, 15, 15], 6, (3, 3), 1, 2, 2, 1),
        case([1, 3, 16, 13], 4, (3, 3), 1, 3, 3, 1),
        case([2, 6, 9, 11], 10, (3, 3), 1, 1, 1, 2),
        case([1, 8, 12, 10], 6, (3, 3), 2, 0, 1, 2),
        case([2, 12, 7, 9], 36, (1, 1), 1, 0, 1, 1),
        case([1, 16, 8, 8], 20, (1, 1), 1, 0, 1, 1),
        case([1, 5, 11, 9], 7, (1, 1), 2, 0, 1, 1),
        case([1, 3, 10, 12], 4, (1, 3), 1, 0, 1, 1),
    ];
    cases[1].act = Activation::Relu;
    cases[2].bias = false;
    cases[6].act = Activation::Gelu;
    cases[8].act = Activation::Silu;
    cases[11].p.padding = (2, 1);
    cases[11].p.stride = (1, 2);
    check(&cases, 21);
}

/// Constant weights whose rows are not a multiple of 4 long (RGB stems: 27 and 147 taps) are
/// padded with zeros and run on the vec4 kernel without a masked k step; the padding taps must
/// add nothing, whatever the input holds past the real channels.
#[test]
fn conv2d_constant_weights_with_odd_rows_take_the_vec4_kernel() {
    let mut cases = vec![
        case([2, 3, 17, 19], 16, (3, 3), 2, 1, 1, 1),
        case([1, 3, 23, 21], 8, (7, 7), 4, 3, 1, 1),
        case([1, 6, 11, 9], 10, (3, 3), 1, 1, 1, 2),
        case([2, 5, 9, 13], 7, (5, 5), 1, 2, 1, 1),
    ];
    for c in &mut cases {
        c.constant_weight = true;
    }
    cases[1].act = Activation::Gelu;
    for c in &cases {
        // Software devices read the (padded) constant weight through a texture; lavapipe, the
        // weight being under 64 KiB, through a uniform buffer (`check` runs all three).
        for (profile, texture, uniform) in [(DeviceProfile::gpu_like(), 0, 0), (DeviceProfile::cpu_like(), 1, 0), (common::lavapipe(), 0, 1)] {
            let mut g = Graph::for_profile(profile);
            let x = g.input("x", &c.x);
            let w_shape = [c.cout, c.x[1] / c.p.groups, c.kernel.0, c.kernel.1];
            let w = g.constant("w", &w_shape, std::sync::Arc::new(vec![0.5; w_shape.iter().product()])).unwrap();
            conv2d(&mut g, x, w, None, &c.p, c.act).unwrap();
            let key = &g.nodes.last().unwrap().key;
            assert_eq!(key.kernel, wgvit::kernels::Kernel::Conv2dVec4, "{:?}", c.x);
            assert!(key.constants().contains(&("K_TAIL", 0)) && key.constants().contains(&("W_TEXTURE", texture)), "{key:?}");
            assert!(key.constants().contains(&("W_UNIFORM", uniform)), "{key:?}");
        }
    }
    check(&cases, 23);
}

/// Grouped convolutions with a constant weight: on software devices each group reads its rows of
/// the weight texture ([Cout, K], group g's rows from g·Cout/groups).
#[test]
fn conv2d_grouped_constant_weights_through_a_texture() {
    let mut cases = vec![
        case([2, 8, 9, 11], 12, (2, 2), 1, 0, 1, 2),
        case([1, 12, 10, 7], 6, (3, 3), 2, 1, 1, 3),
        case([1, 16, 6, 6], 16, (1, 1), 1, 0, 1, 4),
    ];
    for c in &mut cases {
        c.constant_weight = true;
    }
    let mut g = Graph::for_profile(DeviceProfile::cpu_like());
    let x = g.input("x", &cases[0].x);
    let w = g.constant("w", &[12, 4, 2, 2], std::sync::Arc::new(vec![0.5; 12 * 16])).unwrap();
    conv2d(&mut g, x, w, None, &cases[0].p, Activation::None).unwrap();
    assert!(g.nodes.last().unwrap().key.constants().contains(&("W_TEXTURE", 1)));
    check(&cases, 24);
}

/// Depthwise (groups == C): its own kernel for kernel widths up to 7, odd sizes, strides 1 and 2,
/// dilations 2 and 3, paddings 0..3.
#[test]
fn conv2d_depthwise_geometries() {
    let mut cases = vec![
        case([2, 6, 13, 11], 6, (3, 3), 1, 1, 1, 6),
        case([1, 5, 15, 17], 5, (3, 3), 2, 1, 1, 5),
        case([1, 4, 14, 9], 4, (5, 5), 1, 2, 1, 4),
        case([1, 3, 19, 13], 3, (7, 7), 1, 3, 1, 3),
        case([1, 4, 11, 11], 4, (3, 3), 1, 2, 2, 4),
        case([1, 3, 17, 16], 3, (3, 3), 2, 3, 3, 3),
        case([1, 7, 5, 3], 7, (3, 3), 1, 0, 1, 7),
        // A kernel wider than the depthwise kernel's registers: the grouped implicit GEMM.
        case([1, 3, 9, 20], 3, (3, 9), 1, 1, 1, 3),
        // Maps under 4 output rows (the 4-row tile computes rows it does not store).
        case([2, 8, 2, 2], 8, (3, 3), 1, 1, 1, 8),
        case([1, 4, 1, 1], 4, (3, 3), 1, 1, 1, 4),
        case([1, 4, 3, 5], 4, (3, 3), 2, 1, 1, 4),
    ];
    cases[0].act = Activation::Gelu;
    cases[3].bias = false;
    cases[7].p.padding = (1, 4);
    check(&cases, 22);
}

/// On lavapipe a depthwise conv of at most 3 kernel rows whose 4-row tile reads at most 9 input
/// rows loads each of them once (`ALL_ROWS`: 3 × 3 at stride 1, in tiles of 8 output rows over
/// a 105-row map, and at stride 2 and dilation 2, in tiles of 4); a 5 × 5 and a
/// 3 × 3 at stride 2 and dilation 3 (13 rows) keep the kernel-row loop. Constant weights and
/// biases come from uniform buffers (`W_UNIFORM`, `BIAS_UNIFORM`; 6 channels: 54 weights, a
/// length no multiple of 4 for the bias). Values against the CPU conv.
#[test]
fn lavapipe_depthwise_convs_load_each_input_row_once_when_it_fits() {
    let mut rng = Rng::new(29);
    let c = 6;
    for (kernel, stride, dilation, all_rows) in [(3, 1, 1, 1), (3, 2, 1, 1), (3, 1, 2, 1), (5, 1, 1, 0), (3, 2, 3, 0)] {
        // The 3 × 3 stride-1 conv large enough for 8-row tiles (70,560 outputs, 105 rows: the
        // last tile partly past the map); the others small.
        let (h, w) = if (kernel, stride, dilation) == (3, 1, 1) { (105, 112) } else { (13, 16) };
        let x = rng.tensor(&[1, c, h, w], -1.0, 1.0);
        let w = rng.tensor(&[c, 1, kernel, kernel], -1.0, 1.0);
        let b = rng.tensor(&[c], -1.0, 1.0);
        let mut g = Graph::for_profile(common::lavapipe());
        let xi = g.input("x", &x.shape);
        let wi = g.constant("w", &w.shape, std::sync::Arc::new(w.data.clone())).unwrap();
        let bi = g.constant("b", &b.shape, std::sync::Arc::new(b.data.clone())).unwrap();
        let p = Conv2dParams { stride: (stride, stride), padding: (dilation * (kernel / 2), dilation * (kernel / 2)), dilation: (dilation, dilation), groups: c };
        let y = conv2d(&mut g, xi, wi, Some(bi), &p, Activation::Gelu).unwrap();
        let case = format!("{kernel}x{kernel} stride {stride} dilation {dilation}");
        let key = g.nodes.last().unwrap().key.clone();
        // Eight output rows a tile where their ten input rows fit (3 × 3, stride and dilation 1)
        // on a large conv (`tuning::depthwise_tile_rows`).
        let th = if (kernel, stride, dilation) == (3, 1, 1) { 8 } else { 4 };
        for (define, value) in [("ALL_ROWS", all_rows), ("W_UNIFORM", 1), ("BIAS_UNIFORM", 1), ("TH", th)] {
            assert!(key.constants().contains(&(define, value)), "{case}: {define} = {value} in {key:?}");
        }
        g.output("y", y);
        let (want, _) = conv2d_cpu(&x.data, &x.shape, &w.data, &w.shape, Some(&b.data), &p, Activation::Gelu);
        let out = run(&g, &[&x]);
        assert_close(&case, &out[0].data, &want, ATOL, RTOL);
    }
}

#[test]
fn conv2d_rejects_bad_shapes() {
    let mut g = Graph::new();
    let x = g.input("x", &[1, 6, 8, 8]);
    let w = g.input("w", &[4, 4, 3, 3]);
    let err = conv2d(&mut g, x, w, None, &Conv2dParams { groups: 2, ..Default::default() }, Activation::None).unwrap_err().to_string();
    assert!(err.contains("conv2d") && err.contains("groups"), "{err}");
    let w = g.input("w2", &[4, 6, 9, 9]);
    let err = conv2d(&mut g, x, w, None, &Conv2dParams::default(), Activation::None).unwrap_err().to_string();
    assert!(err.contains("larger than the padded input"), "{err}");
    let w = g.input("w3", &[4, 6, 3, 3]);
    let b = g.input("b", &[5]);
    let err = conv2d(&mut g, x, w, Some(b), &Conv2dParams::default(), Activation::None).unwrap_err().to_string();
    assert!(err.contains("bias"), "{err}");
}

/// bn(conv(x, w) + b) == conv(x, w') + b' on the CPU, exactly up to f32 rounding.
#[test]
fn fold_batchnorm_matches_conv_then_batchnorm() {
    let mut rng = Rng::new(23);
    let (cout, p) = (5, Conv2dParams { padding: (1, 1), ..Default::default() });
    let x = rng.tensor(&[1, 3, 6, 7], -1.0, 1.0);
    let w_shape = [cout, 3, 3, 3];
    let w = rng.vec(cout * 27, -1.0, 1.0);
    let b = rng.vec(cout, -1.0, 1.0);
    let gamma = rng.vec(cout, 0.5, 1.5);
    let beta = rng.vec(cout, -0.5, 0.5);
    let mean = rng.vec(cout, -0.3, 0.3);
    let var = rng.vec(cout, 0.1, 2.0);
    let eps = 1e-5;
    let (conv, shape) = conv2d_cpu(&x.data, &x.shape, &w, &w_shape, Some(&b), &p, Activation::None);
    let hw = shape[2] * shape[3];
    let bn: Vec<f32> = conv
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = i / hw % cout;
            ((v as f64 - mean[c] as f64) / (var[c] as f64 + eps as f64).sqrt() * gamma[c] as f64 + beta[c] as f64) as f32
        })
        .collect();
    let (wf, bf) = fold_batchnorm(&w, Some(&b), cout, &gamma, &beta, &mean, &var, eps);
    let (folded, _) = conv2d_cpu(&x.data, &x.shape, &wf, &w_shape, Some(&bf), &p, Activation::None);
    assert_close("folded conv vs conv + batchnorm", &folded, &bn, 2e-6, 2e-6);
    let (_, bf0) = fold_batchnorm(&w, None, cout, &gamma, &beta, &mean, &var, eps);
    for c in 0..cout {
        let want = (-mean[c] as f64 * gamma[c] as f64 / (var[c] as f64 + eps as f64).sqrt() + beta[c] as f64) as f32;
        assert!((bf0[c] - want).abs() <= 1e-6, "bias-free fold, channel {c}: {} vs {want}", bf0[c]);
    }
}

/// On lavapipe an MLP's depthwise conv between two 1x1 convs reads and writes flat textures
/// (`Graph::with_activation_textures`): its input rows (W % 4 == 0) come from texels that cover
/// each row segment, offset by the padding, and its output rows are stored as whole texels.
/// Checked: the defines, and the values against the CPU, for 3x3 stride 1 and 2 and a 5x5 with
/// padding 2 (another offset into the first texel).
#[test]
fn depthwise_conv_reads_and_writes_activation_textures_on_lavapipe() {
    use std::sync::Arc;
    let lavapipe = common::lavapipe();
    let mut rng = Rng::new(47);
    let (c, hidden, h, w) = (8, 16, 12, 16);
    for (k, stride, pad) in [(3, 1, 1), (3, 2, 1), (5, 1, 2)] {
        let x = rng.tensor(&[1, c, h, w], -1.0, 1.0);
        let w1 = rng.tensor(&[hidden, c, 1, 1], -0.5, 0.5);
        let wd = rng.tensor(&[hidden, 1, k, k], -0.5, 0.5);
        let bd = rng.tensor(&[hidden], -0.5, 0.5);
        let w2 = rng.tensor(&[c, hidden, 1, 1], -0.5, 0.5);
        let pointwise = Conv2dParams::default();
        let dw = Conv2dParams { stride: (stride, stride), padding: (pad, pad), dilation: (1, 1), groups: hidden };
        let mut g = Graph::for_profile(lavapipe.clone());
        let xi = g.input("x", &x.shape);
        let mut constant = |name: &str, t: &HostTensor| g.constant(name, &t.shape, Arc::new(t.data.clone())).unwrap();
        let (w1i, wdi, bdi, w2i) = (constant("w1", &w1), constant("wd", &wd), constant("bd", &bd), constant("w2", &w2));
        let expanded = conv2d(&mut g, xi, w1i, None, &pointwise, Activation::None).unwrap();
        let mixed = conv2d(&mut g, expanded, wdi, Some(bdi), &dw, Activation::Gelu).unwrap();
        let y = conv2d(&mut g, mixed, w2i, None, &pointwise, Activation::None).unwrap();
        g.output("y", y);

        let case = format!("{k}x{k} stride {stride} padding {pad}");
        let promoted = common::promoted_to_textures(&g, &[expanded, mixed], "conv2d_dw", &["X_TEXTURE", "OUT_TEXTURE"], &case);

        let (e, es) = conv2d_cpu(&x.data, &x.shape, &w1.data, &w1.shape, None, &pointwise, Activation::None);
        let (m, ms) = conv2d_cpu(&e, &es, &wd.data, &wd.shape, Some(&bd.data), &dw, Activation::Gelu);
        let (want, _) = conv2d_cpu(&m, &ms, &w2.data, &w2.shape, None, &pointwise, Activation::None);
        let out = run(&promoted, &[&x]);
        assert_close(&case, &out[0].data, &want, ATOL, RTOL);
    }
}

/// SwiftShader's large-conv tile (8 × 8, over 32 MFLOP) stores its blocks in a loop
/// (`STORE_LOOP`, `ops::tuning::gemm_store_loop`), padding, odd sizes and a bias included.
#[test]
fn conv2d_large_tile_stores_in_a_loop_on_swiftshader() {
    let mut cases = vec![case([1, 16, 67, 61], 36, (3, 3), 1, 1, 1, 1)];
    cases[0].act = Activation::Gelu;
    cases[0].constant_weight = true;
    let mut g = Graph::for_profile(common::swiftshader());
    let x = g.input("x", &cases[0].x);
    let w = g.input("w", &[36, 16, 3, 3]);
    conv2d(&mut g, x, w, None, &cases[0].p, Activation::None).unwrap();
    let key = &g.nodes.last().unwrap().key;
    for define in [("STORE_LOOP", 1), ("TM", 8), ("TN", 8)] {
        assert!(key.constants().contains(&define), "{define:?} in {key:?}");
    }
    check_on(&cases, 25, common::swiftshader());
}
