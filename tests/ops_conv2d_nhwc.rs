//! Channel-last convolutions on the GPU against the f64-accumulating CPU reference: the direct
//! `conv2d_nhwc` (random geometries: kernel sizes, strides, paddings, dilations, widths the runs
//! do not divide, runs shortened to fit the span, weights as constants and as inputs), the
//! implicit GEMM writing channel-last (`conv2d_to_nhwc`), the two chained through activation
//! textures as ACC-ViT's stem runs them on lavapipe, and the build-time errors.
//!
//! Tolerance: |got - want| <= 1e-4 + 1e-4 |want| (operands uniform in [-1, 1], reductions of at
//! most a few hundred terms).

mod common;

use std::sync::Arc;

use common::{assert_close, run, run_and_compare};
use wgvit::kernels::DeviceProfile;
use wgvit::ops::conv2d::{conv2d_cpu, conv2d_to_nhwc, Conv2dParams};
use wgvit::ops::conv2d_nhwc::{conv2d_nhwc, conv2d_nhwc_cpu, MAX_RUN};
use wgvit::ops::layout::permute_cpu;
use wgvit::ops::Activation;
use wgvit::tensor::Rng;
use wgvit::{Graph, HostTensor};

const ATOL: f32 = 1e-4;
const RTOL: f32 = 1e-4;

struct Case {
    /// [B, H, W, Cin]
    x: [usize; 4],
    cout: usize,
    kernel: (usize, usize),
    p: Conv2dParams,
    bias: bool,
    act: Activation,
    constant_weight: bool,
}

fn case(x: [usize; 4], cout: usize, kernel: (usize, usize), stride: (usize, usize), padding: (usize, usize), dilation: (usize, usize)) -> Case {
    Case { x, cout, kernel, p: Conv2dParams { stride, padding, dilation, groups: 1 }, bias: true, act: Activation::None, constant_weight: true }
}

/// Every case in one graph, run once per kernel set (the kernel is the same; lavapipe's and
/// SwiftShader's sets read a constant weight from a texture).
fn check_direct(cases: &[Case], seed: u64) {
    for profile in [DeviceProfile::gpu_like(), DeviceProfile::cpu_like(), common::lavapipe()] {
        let mut rng = Rng::new(seed);
        let mut g = Graph::for_profile(profile.clone());
        let mut inputs: Vec<HostTensor> = Vec::new();
        let mut expected = Vec::new();
        for (n, c) in cases.iter().enumerate() {
            let w_shape = [c.cout, c.x[3], c.kernel.0, c.kernel.1];
            let xt = rng.tensor(&c.x, -1.0, 1.0);
            let wt = rng.tensor(&w_shape, -1.0, 1.0);
            let bt = rng.tensor(&[c.cout], -1.0, 1.0);
            let xi = g.input(&format!("x{n}"), &c.x);
            inputs.push(xt.clone());
            let wi = if c.constant_weight {
                g.constant(&format!("w{n}"), &w_shape, Arc::new(wt.data.clone())).unwrap()
            } else {
                inputs.push(wt.clone());
                g.input(&format!("w{n}"), &w_shape)
            };
            let bi = c.bias.then(|| {
                inputs.push(bt.clone());
                g.input(&format!("b{n}"), &[c.cout])
            });
            let y = conv2d_nhwc(&mut g, xi, wi, bi, &c.p, c.act).unwrap();
            let node = g.nodes.last().unwrap();
            if node.label.starts_with("conv2d_nhwc") {
                // lavapipe reads a constant weight (all of these under 64 KiB) from a uniform buffer.
                let uniform = c.constant_weight && profile.name.starts_with("llvmpipe");
                assert!(node.key.constants().contains(&("W_UNIFORM", uniform as u32)), "{:?}", node.key);
            } else {
                // lavapipe runs the convs from 4 MFLOP as the GEMM over gathered patches.
                let flops = 2 * c.x[0] * c.x[1] * c.x[2] * c.cout * c.x[3] * c.kernel.0 * c.kernel.1 / (c.p.stride.0 * c.p.stride.1);
                assert!(profile.name.starts_with("llvmpipe") && flops >= 3_000_000 && node.key.constants().contains(&("A_PATCHES", 1)), "{:?}", node.key);
            }
            let name = format!("{}: x{:?} cout {} k{:?} {:?} bias {} {:?} [{} {:?}]", profile.name, c.x, c.cout, c.kernel, c.p, c.bias, c.act, node.label, node.key.constants());
            let (want, shape) = conv2d_nhwc_cpu(&xt.data, c.x, &wt.data, &w_shape, c.bias.then_some(bt.data.as_slice()), &c.p, c.act);
            assert_eq!(g.shape(y), shape.as_slice(), "{name}");
            g.output(&name, y);
            expected.push((name, want));
        }
        run_and_compare(&g, &inputs, &expected, ATOL, RTOL);
    }
}

#[test]
fn conv2d_nhwc_geometries() {
    let mut cases = vec![
        // ACC-ViT-micro's second stem conv: two runs of 16 columns per row.
        case([1, 32, 32, 16], 16, (3, 3), (1, 1), (1, 1), (1, 1)),
        // Widths the run does not divide (a last run of 5 and of 1 columns), two images.
        case([2, 9, 37, 8], 12, (3, 3), (1, 1), (1, 1), (1, 1)),
        case([1, 5, 33, 4], 4, (3, 3), (1, 1), (1, 1), (1, 1)),
        // Stride 2.
        case([1, 11, 64, 8], 20, (3, 3), (2, 2), (1, 1), (1, 1)),
        // A wide dilated row at stride 2: the run is cut to 14 columns so that its span fits
        // (13 · 2 + 13 = 39 ≤ 40).
        case([1, 3, 70, 4], 8, (1, 7), (1, 2), (0, 6), (1, 2)),
        // Larger, dilated and non-square kernels, asymmetric padding and stride.
        case([1, 13, 15, 12], 8, (5, 5), (1, 1), (2, 2), (1, 1)),
        case([1, 12, 14, 4], 8, (3, 3), (1, 1), (2, 2), (2, 2)),
        case([1, 10, 12, 8], 4, (1, 3), (1, 2), (0, 2), (1, 1)),
        case([2, 7, 9, 4], 16, (3, 3), (2, 1), (0, 1), (1, 1)),
        // A map smaller than the kernel's reach: most taps in the padding.
        case([1, 2, 3, 4], 8, (3, 3), (1, 1), (1, 1), (1, 1)),
    ];
    cases[1].act = Activation::Gelu;
    cases[2].bias = false;
    cases[3].act = Activation::Relu;
    // A computed weight: re-laid by a permute on the device instead of on the host.
    cases[5].constant_weight = false;
    cases[7].constant_weight = false;
    cases[7].act = Activation::Silu;
    check_direct(&cases, 31);
}

/// The run is the longest that fits both the kernel's accumulators and its span registers.
#[test]
fn conv2d_nhwc_runs_fit_the_registers() {
    let mut g = Graph::for_profile(common::lavapipe());
    let run_of = |g: &mut Graph, w: usize, stride: usize, dilation: usize| {
        let x = g.input("x", &[1, 4, w, 4]);
        let wt = g.constant(&format!("w{w}.{stride}.{dilation}"), &[4, 4, 1, 7], Arc::new(vec![0.0; 112])).unwrap();
        let p = Conv2dParams { stride: (stride, stride), padding: (0, 3 * dilation), dilation: (1, dilation), ..Default::default() };
        conv2d_nhwc(g, x, wt, None, &p, Activation::None).unwrap();
        g.nodes.last().unwrap().key.constants().iter().find(|c| c.0 == "TP").unwrap().1
    };
    assert_eq!(run_of(&mut g, 7, 1, 1), 7);
    assert_eq!(run_of(&mut g, 100, 1, 1), MAX_RUN as u32);
    // A kernel row spanning 13 columns (7 taps, dilation 2) leaves 27 of the 40 for a run's steps.
    assert_eq!(run_of(&mut g, 100, 2, 2), 14);
    assert_eq!(run_of(&mut g, 100, 1, 2), MAX_RUN as u32);
}

/// The implicit GEMM storing channel-last, a pixel's 4 channels at a time: an RGB stem (27 taps,
/// padded to 28), a wide conv with a large tile, and odd map sizes whose last pixel tile is partial.
#[test]
fn conv2d_to_nhwc_matches_the_nchw_conv() {
    // ([B, Cin, H, W], Cout, kernel, stride, padding, act)
    let cases = [
        ([1, 3, 64, 64], 16, 3, 2, 1, Activation::Gelu),
        ([2, 3, 15, 13], 8, 3, 2, 1, Activation::None),
        ([1, 5, 11, 9], 12, 3, 1, 1, Activation::Relu),
        ([1, 16, 67, 61], 36, 3, 1, 1, Activation::Gelu),
    ];
    for profile in [DeviceProfile::gpu_like(), DeviceProfile::cpu_like(), common::lavapipe()] {
        let mut rng = Rng::new(37);
        for (i, &(xs, cout, k, stride, pad, act)) in cases.iter().enumerate() {
            let w_shape = [cout, xs[1], k, k];
            let x = rng.tensor(&xs, -1.0, 1.0);
            let w = rng.tensor(&w_shape, -1.0, 1.0);
            let b = rng.tensor(&[cout], -1.0, 1.0);
            let p = Conv2dParams { stride: (stride, stride), padding: (pad, pad), ..Default::default() };
            let mut g = Graph::for_profile(profile.clone());
            let xi = g.input("x", &xs);
            let wi = g.constant("w", &w_shape, Arc::new(w.data.clone())).unwrap();
            let bi = g.input("b", &[cout]);
            let y = conv2d_to_nhwc(&mut g, xi, wi, Some(bi), &p, act).unwrap();
            let key = g.nodes.last().unwrap().key.clone();
            assert!(key.constants().contains(&("OUT_NHWC", 1)), "{key:?}");
            g.output("y", y);
            let (want, ws) = conv2d_cpu(&x.data, &xs, &w.data, &w_shape, Some(&b.data), &p, act);
            assert_eq!(g.shape(y), [ws[0], ws[2], ws[3], ws[1]]);
            let want = permute_cpu(&want, &ws, &[0, 2, 3, 1]);
            let out = run(&g, &[&x, &b]);
            assert_close(&format!("{}, case {i}: x {xs:?} cout {cout} {key:?}", profile.name), &out[0].data, &want, ATOL, RTOL);
        }
    }
}

/// ACC-ViT's stem as lavapipe runs it: the implicit GEMM writes its channel-last output into a
/// flat texture (`OUT_TEXTURE`) and the second conv reads it as texels and writes its own
/// output to one, which a 1×1 conv (a GEMM over pixels) reads. The second conv is the direct
/// kernel (`X_TEXTURE`) at 8 channels (1.2 MFLOP), the GEMM over gathered patches (`A_TEXTURE`)
/// at 16 (4.7 MFLOP).
#[test]
fn stem_convs_chain_through_activation_textures_on_lavapipe() {
    for (c, second_node, second_reads) in [(8, "conv2d_nhwc", "X_TEXTURE"), (16, "matmul", "A_TEXTURE")] {
        stem_chain(c, second_node, second_reads);
    }
}

fn stem_chain(c: usize, second_node: &str, second_reads: &str) {
    let mut rng = Rng::new(41);
    let hidden = 32;
    let x = rng.tensor(&[1, 3, 64, 64], -1.0, 1.0);
    let w1 = rng.tensor(&[c, 3, 3, 3], -0.5, 0.5);
    let w2 = rng.tensor(&[c, c, 3, 3], -0.5, 0.5);
    let b2 = rng.tensor(&[c], -0.5, 0.5);
    let w3 = rng.tensor(&[hidden, c], -0.5, 0.5);
    let p = |stride: usize| Conv2dParams { stride: (stride, stride), padding: (1, 1), ..Default::default() };
    let mut g = Graph::for_profile(common::lavapipe());
    let xi = g.input("x", &x.shape);
    let mut constant = |name: &str, t: &HostTensor| g.constant(name, &t.shape, Arc::new(t.data.clone())).unwrap();
    let (w1i, w2i, b2i, w3i) = (constant("w1", &w1), constant("w2", &w2), constant("b2", &b2), constant("w3", &w3));
    let first = conv2d_to_nhwc(&mut g, xi, w1i, None, &p(2), Activation::Gelu).unwrap();
    let second = conv2d_nhwc(&mut g, first, w2i, Some(b2i), &p(1), Activation::None).unwrap();
    let tokens = g.reshape(second, &[32 * 32, c]).unwrap();
    let y = wgvit::ops::matmul::matmul(&mut g, tokens, w3i, false, true, Default::default()).unwrap();
    g.output("y", y);
    let promoted = common::promoted_to_textures(&g, &[first, second], second_node, &[second_reads, "OUT_TEXTURE"], &format!("stem of {c} channels"));
    let first_node = promoted.nodes.iter().find(|n| n.label.starts_with("conv2d3x3")).unwrap();
    assert!(first_node.key.constants().contains(&("OUT_TEXTURE", 1)), "{:?}", first_node.key);

    let (a, a_shape) = conv2d_cpu(&x.data, &x.shape, &w1.data, &w1.shape, None, &p(2), Activation::Gelu);
    let (b, b_shape) = conv2d_cpu(&a, &a_shape, &w2.data, &w2.shape, Some(&b2.data), &p(1), Activation::None);
    let b = permute_cpu(&b, &b_shape, &[0, 2, 3, 1]);
    let (want, _) = wgvit::ops::matmul::matmul_cpu(&b, &[32 * 32, c], &w3.data, &w3.shape, false, true, 1.0, None, Activation::None, None);
    let out = run(&promoted, &[&x]);
    assert_close(&format!("stem of {c} channels"), &out[0].data, &want, ATOL, RTOL);
}

/// `conv_patches_gemm`: channel-last convs as one GEMM whose rows the kernel gathers from
/// overlapping, zero-padded patches, on lavapipe's profile (16 × 16 tiles from 32 MFLOP, split
/// reductions for few tiles): VVT's 3 × 3 stride-2 patch embeds, ACC-ViT's 3 × 3 stride-1 stem
/// conv, a 7 × 7 stride-4 conv with padding 3, non-square and 1 × 1 kernels, a map smaller than
/// the kernel's reach, two images with odd sizes, activations; the 28 → 14 patch embed at 320
/// channels has 4 × 20 tiles and splits K = 2880. Values against the CPU conv.
#[test]
fn conv_patches_gemm_matches_the_conv() {
    use wgvit::ops::matmul::conv_patches_gemm;
    // ([B, H, W, C], Cout, (kh, kw), stride, pad, act)
    let cases = [
        ([1, 28, 28, 32], 64, (3, 3), 2, 1, Activation::None),
        ([1, 14, 14, 320], 64, (3, 3), 2, 1, Activation::None),
        ([1, 16, 16, 16], 16, (3, 3), 1, 1, Activation::Gelu),
        ([1, 23, 21, 8], 12, (7, 7), 4, 3, Activation::None),
        ([2, 9, 11, 4], 8, (1, 3), 1, 1, Activation::Relu),
        ([1, 2, 3, 4], 8, (3, 3), 1, 1, Activation::None),
        ([1, 6, 6, 12], 4, (1, 1), 2, 0, Activation::None),
        ([2, 7, 5, 8], 16, (3, 3), 2, 2, Activation::Silu),
    ];
    let mut rng = Rng::new(43);
    for (i, &(xs, cout, (kh, kw), stride, pad, act)) in cases.iter().enumerate() {
        let c = xs[3];
        let w_shape = [cout, c, kh, kw];
        let x = rng.tensor(&xs, -1.0, 1.0);
        let wt = rng.tensor(&w_shape, -1.0, 1.0);
        let bias = rng.tensor(&[cout], -1.0, 1.0);
        // The weight in the patches' (ky, kx, c) order.
        let rows = permute_cpu(&wt.data, &w_shape, &[0, 2, 3, 1]);
        let mut g = Graph::for_profile(common::lavapipe());
        let xi = g.input("x", &xs);
        let wi = g.constant("w", &[cout, kh * kw * c], Arc::new(rows)).unwrap();
        let bi = g.input("b", &[cout]);
        let y = conv_patches_gemm(&mut g, xi, (kh, kw), stride, pad, wi, Some(bi), act).unwrap().expect("the gather applies");
        let gemm = g.nodes.iter().find(|n| n.label == "matmul").unwrap();
        assert!(gemm.key.constants().contains(&("A_PATCH_PAD", (pad > 0) as u32)), "{:?}", gemm.key);
        let split = gemm.key.constants().contains(&("K_SPLIT", 1));
        g.output("y", y);
        let p = Conv2dParams { stride: (stride, stride), padding: (pad, pad), ..Default::default() };
        let (want, ws) = conv2d_nhwc_cpu(&x.data, xs, &wt.data, &w_shape, Some(&bias.data), &p, act);
        assert_eq!(g.shape(y), [ws[0] * ws[1] * ws[2], ws[3]]);
        let out = run(&g, &[&x, &bias]);
        assert_close(&format!("case {i}: x {xs:?} cout {cout} k {kh}x{kw} stride {stride} pad {pad} {act:?} (split {split})"), &out[0].data, &want, ATOL, RTOL);
        assert_eq!(split, i == 1, "case {i}: only the 14 × 14 → 7 × 7 conv at 320 channels splits its reduction");
    }
}

#[test]
fn conv2d_nhwc_rejects_bad_shapes() {
    let mut g = Graph::new();
    let p1 = Conv2dParams { padding: (1, 1), ..Default::default() };
    let mut err = |x: &[usize], w: &[usize], p: Conv2dParams| {
        let xi = g.input("x", x);
        let wi = g.input("w", w);
        conv2d_nhwc(&mut g, xi, wi, None, &p, Activation::None).unwrap_err().to_string()
    };
    let e = err(&[1, 8, 8, 6], &[8, 6, 3, 3], p1);
    assert!(e.contains("Cin = 6") && e.contains("multiples of 4"), "{e}");
    let e = err(&[1, 8, 8, 8], &[6, 8, 3, 3], p1);
    assert!(e.contains("Cout = 6"), "{e}");
    let e = err(&[1, 8, 8, 8], &[8, 4, 3, 3], Conv2dParams { groups: 2, ..p1 });
    assert!(e.contains("one group"), "{e}");
    let e = err(&[1, 8, 8, 8], &[8, 8, 3, 3], Conv2dParams { dilation: (1, 20), padding: (1, 20), ..Default::default() });
    assert!(e.contains("spans 41 input columns"), "{e}");
    let e = err(&[8, 8, 8], &[8, 8, 3, 3], p1);
    assert!(e.contains("rank 4"), "{e}");
    let e = err(&[1, 2, 2, 8], &[8, 8, 5, 5], Conv2dParams::default());
    assert!(e.contains("larger than the padded input"), "{e}");

    let xi = g.input("x", &[1, 3, 8, 8]);
    let wi = g.input("w", &[6, 3, 3, 3]);
    let e = conv2d_to_nhwc(&mut g, xi, wi, None, &p1, Activation::None).unwrap_err().to_string();
    assert!(e.contains("Cout a multiple of 4"), "{e}");
}
