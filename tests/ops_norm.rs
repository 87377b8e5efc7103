//! layer_norm and group_norm on the GPU against f64 CPU references, on random shapes (sizes that
//! are not multiples of the workgroup or chunk sizes), with large common offsets that an
//! `E[x²] - E[x]²` variance would get badly wrong, and a whole-image GroupNorm(1, C) large enough
//! to need the multi-workgroup reduction.

mod common;

use std::sync::Arc;

use common::{assert_close, run};
use wgvit::ops::groupnorm::{group_norm, group_norm_cpu, group_norm_relayout, Layout, Sum};
use wgvit::ops::layout::permute_cpu;
use wgvit::ops::layernorm::{layer_norm, layer_norm_cpu};
use wgvit::ops::Activation;
use wgvit::tensor::Rng;
use wgvit::{Graph, HostTensor};

fn constant(g: &mut Graph, key: &str, data: &[f32]) -> wgvit::TensorId {
    g.constant(key, &[data.len()], Arc::new(data.to_vec())).unwrap()
}

/// Runs layer_norm on `x` and compares with the reference; returns the max abs error.
fn check_layer_norm(x: &HostTensor, affine: bool, eps: f32, atol: f32, rtol: f32, rng: &mut Rng) {
    let c = *x.shape.last().unwrap();
    let (gamma, beta) = if affine { (rng.vec(c, 0.5, 1.5), rng.vec(c, -0.5, 0.5)) } else { (vec![], vec![]) };
    let mut g = Graph::new();
    let xi = g.input("x", &x.shape);
    let (gi, bi) = if affine { (Some(constant(&mut g, "gamma", &gamma)), Some(constant(&mut g, "beta", &beta))) } else { (None, None) };
    let y = layer_norm(&mut g, xi, gi, bi, eps).unwrap();
    g.output("y", y);
    let out = run(&g, &[x]);
    let want = layer_norm_cpu(&x.data, c, &gamma, &beta, eps);
    assert_close(&format!("layer_norm {:?} affine={affine}", x.shape), &out[0].data, &want, atol, rtol);
}

#[test]
fn layer_norm_random_shapes_match_cpu() {
    let mut rng = Rng::new(11);
    // Short and long rows, few rows (workgroup reduction) and many (a row per invocation).
    let shapes: &[&[usize]] = &[&[1, 7], &[5, 33], &[2, 97, 64], &[300, 100], &[3, 41, 320], &[49, 512], &[17, 1024], &[130, 513]];
    for (i, shape) in shapes.iter().enumerate() {
        let x = rng.tensor(shape, -3.0, 3.0);
        check_layer_norm(&x, i % 2 == 0, 1e-5, 3e-6, 3e-6, &mut rng);
    }
}

/// `layer_norm_add`: the normalised rows plus a tensor whose rows repeat over the input's (a
/// position embedding over a batch), on the vec4 and scalar kernels and both kernel sets (on
/// lavapipe the constant affine from uniform buffers); an `add` whose rows do not divide the
/// input's is refused.
#[test]
fn layer_norm_add_adds_repeated_rows() {
    for profile in [wgvit::kernels::DeviceProfile::default(), common::lavapipe()] {
        let mut rng = Rng::new(13);
        // (input shape, add shape)
        let cases: &[(&[usize], &[usize])] = &[(&[2, 49, 64], &[1, 49, 64]), (&[3, 5, 7], &[5, 7]), (&[1, 196, 320], &[1, 196, 320]), (&[4, 6, 12], &[2, 12])];
        for &(shape, add_shape) in cases {
            let c = *shape.last().unwrap();
            let x = rng.tensor(shape, -3.0, 3.0);
            let add = rng.tensor(add_shape, -1.0, 1.0);
            let (gamma, beta) = (rng.vec(c, 0.5, 1.5), rng.vec(c, -0.5, 0.5));
            let mut g = Graph::for_profile(profile.clone());
            let xi = g.input("x", shape);
            let ai = g.input("add", add_shape);
            let (gi, bi) = (constant(&mut g, "gamma", &gamma), constant(&mut g, "beta", &beta));
            let y = wgvit::ops::layernorm::layer_norm_add(&mut g, xi, Some(gi), Some(bi), 1e-5, Some(ai)).unwrap();
            assert!(g.nodes.last().unwrap().key.constants().contains(&("ADD", 1)));
            g.output("y", y);
            let out = run(&g, &[&x, &add]);
            let normed = layer_norm_cpu(&x.data, c, &gamma, &beta, 1e-5);
            let want: Vec<f32> = normed.iter().zip(add.data.iter().cycle()).map(|(v, a)| v + a).collect();
            assert_close(&format!("layer_norm_add {shape:?} + {add_shape:?} on {}", profile.name), &out[0].data, &want, 3e-6, 3e-6);
        }
    }
    let mut g = Graph::new();
    let (x, add) = (g.input("x", &[2, 5, 8]), g.input("add", &[3, 8]));
    let e = wgvit::ops::layernorm::layer_norm_add(&mut g, x, None, None, 1e-5, Some(add)).unwrap_err().to_string();
    assert!(e.contains("add has shape [3, 8]") && e.contains("divides the input's 10"), "{e}");
}

#[test]
fn layer_norm_keeps_precision_with_large_offsets() {
    // Rows 1000 + U(-1, 1): the data's own f32 rounding is 6e-5, E[x²] - E[x]² would lose the
    // variance (1/3) entirely. The statistics (Welford's update on the row less its first
    // element, or two passes) keep y within ~1e-4 (|y| <= 1.8).
    let mut rng = Rng::new(12);
    for shape in [[64usize, 96], [40, 768]] {
        let mut x = rng.tensor(&shape, -1.0, 1.0);
        x.data.iter_mut().for_each(|v| *v += 1000.0);
        check_layer_norm(&x, true, 1e-6, 2e-4, 0.0, &mut rng);
    }
}

#[test]
fn layer_norm_rejects_bad_affine_shapes() {
    let mut g = Graph::new();
    let x = g.input("x", &[4, 8]);
    let gamma = constant(&mut g, "gamma", &[1.0; 7]);
    let err = layer_norm(&mut g, x, Some(gamma), None, 1e-5).unwrap_err().to_string();
    assert!(err.contains("layer_norm") && err.contains("[8]"), "{err}");
}

struct GroupNormCase {
    shape: Vec<usize>,
    groups: usize,
    with_add: bool,
    act: Activation,
    offset: f32,
}

/// Runs one group_norm case; returns (input, output, reference) for further checks.
fn run_group_norm(case: &GroupNormCase, rng: &mut Rng, atol: f32, rtol: f32) -> (HostTensor, Vec<f32>, Vec<f32>) {
    run_group_norm_on(case, wgvit::kernels::DeviceProfile::default(), rng, atol, rtol)
}

/// `run_group_norm` for a graph built for `profile` (its lanes per workgroup: `ops::tuning`).
fn run_group_norm_on(case: &GroupNormCase, profile: wgvit::kernels::DeviceProfile, rng: &mut Rng, atol: f32, rtol: f32) -> (HostTensor, Vec<f32>, Vec<f32>) {
    let (b, c) = (case.shape[0], case.shape[1]);
    let mut x = rng.tensor(&case.shape, -2.0, 2.0);
    x.data.iter_mut().for_each(|v| *v += case.offset);
    let add = rng.tensor(&case.shape, -1.0, 1.0);
    let gamma = rng.vec(c, 0.5, 1.5);
    let beta = rng.vec(c, -0.5, 0.5);
    let eps = 1e-6;
    let mut g = Graph::for_profile(profile);
    let xi = g.input("x", &case.shape);
    let ai = if case.with_add { Some(g.input("add", &case.shape)) } else { None };
    let gi = constant(&mut g, "gamma", &gamma);
    let bi = constant(&mut g, "beta", &beta);
    let y = group_norm(&mut g, xi, case.groups, gi, bi, eps, ai.map(Sum::Input), case.act).unwrap();
    g.output("y", y);
    let out = if case.with_add { run(&g, &[&x, &add]) } else { run(&g, &[&x]) };
    let want = group_norm_cpu(&x.data, case.with_add.then_some(&add.data[..]), b, c, case.groups, &gamma, &beta, eps, case.act);
    let what = format!("group_norm {:?} G={} add={} {:?} offset={}", case.shape, case.groups, case.with_add, case.act, case.offset);
    assert_close(&what, &out[0].data, &want, atol, rtol);
    (x, out.into_iter().next().unwrap().data, want)
}

#[test]
fn group_norm_random_shapes_match_cpu() {
    let mut rng = Rng::new(21);
    let case = |shape: &[usize], groups, with_add, act| GroupNormCase { shape: shape.to_vec(), groups, with_add, act, offset: 0.0 };
    let cases = [
        case(&[2, 12, 9, 7], 3, false, Activation::None),
        case(&[1, 6, 5, 5], 6, true, Activation::Relu), // one channel per group (instance norm)
        case(&[3, 8, 13], 2, true, Activation::None),   // [B, C, N]
        case(&[2, 16, 33, 31], 1, false, Activation::Gelu), // 16368 elements: 4 chunks
        case(&[1, 20, 25, 23], 4, true, Activation::Silu), // 2875-element groups: 1 chunk of 256 lanes
        // H·W a multiple of 4: the vec4 kernel
        case(&[2, 12, 8, 7], 3, false, Activation::None),
        case(&[1, 6, 4, 4], 6, true, Activation::Relu),
        case(&[3, 8, 12], 2, true, Activation::None),
        case(&[2, 16, 32, 33], 1, false, Activation::Gelu), // 16896 elements: 5 chunks of vec4s
    ];
    // Both kernel sets: a one-chunk group takes 8 lanes on CPU-like devices, 32 elsewhere; on
    // lavapipe gamma and beta are uniform buffers.
    for profile in [wgvit::kernels::DeviceProfile::default(), wgvit::kernels::DeviceProfile::cpu_like(), common::lavapipe()] {
        for c in &cases {
            run_group_norm_on(c, profile.clone(), &mut rng, 3e-6, 3e-6);
        }
    }
}

/// `GroupNorm(x + add)` over groups of more than one chunk on SwiftShader: an add dispatch, then
/// the plain norm (`tuning::group_norm_fuses_input_add`); the same numbers as the fused kernels.
#[test]
fn group_norm_of_a_sum_split_on_swiftshader_matches_cpu() {
    let mut rng = Rng::new(29);
    for shape in [vec![1, 4, 96, 96], vec![2, 6, 75, 75]] {
        let case = GroupNormCase { shape, groups: 1, with_add: true, act: Activation::Silu, offset: 0.0 };
        run_group_norm_on(&case, common::swiftshader(), &mut rng, 3e-6, 3e-6);
    }
    let mut g = Graph::for_profile(common::swiftshader());
    let x = g.input("x", &[1, 4, 96, 96]);
    let a = g.input("add", &[1, 4, 96, 96]);
    let gamma = constant(&mut g, "gamma", &[1.0; 4]);
    let beta = constant(&mut g, "beta", &[0.0; 4]);
    group_norm(&mut g, x, 1, gamma, beta, 1e-5, Some(Sum::Input(a)), Activation::None).unwrap();
    let labels: Vec<&str> = g.nodes.iter().map(|n| n.label.as_str()).collect();
    assert_eq!(labels.first(), Some(&"add"), "{labels:?}");
}

/// `residual + act(GroupNorm(x))` in the normalising pass (HAT-Net's inverted residual): scalar
/// and vec4 kernels, one and several chunks per group, both kernel sets, against the CPU
/// reference plus the residual.
#[test]
fn group_norm_residual_matches_cpu() {
    let mut rng = Rng::new(23);
    let cases: [(&[usize], usize, Activation); 4] = [
        (&[2, 12, 9, 7], 3, Activation::None),
        (&[1, 6, 8, 8], 1, Activation::Silu),         // vec4, one chunk
        (&[2, 16, 33, 31], 1, Activation::None),      // 4 chunks
        (&[1, 16, 32, 32], 1, Activation::Gelu),      // vec4, 4 chunks
    ];
    for profile in [wgvit::kernels::DeviceProfile::default(), wgvit::kernels::DeviceProfile::cpu_like(), common::lavapipe()] {
        for &(shape, groups, act) in &cases {
            let (b, c) = (shape[0], shape[1]);
            let x = rng.tensor(shape, -2.0, 2.0);
            let residual = rng.tensor(shape, -1.0, 1.0);
            let gamma = rng.vec(c, 0.5, 1.5);
            let beta = rng.vec(c, -0.5, 0.5);
            let mut g = Graph::for_profile(profile.clone());
            let (xi, ri) = (g.input("x", shape), g.input("residual", shape));
            let (gi, bi) = (constant(&mut g, "gamma", &gamma), constant(&mut g, "beta", &beta));
            let y = group_norm(&mut g, xi, groups, gi, bi, 1e-6, Some(Sum::Output(ri)), act).unwrap();
            g.output("y", y);
            let out = run(&g, &[&x, &residual]);
            let normed = group_norm_cpu(&x.data, None, b, c, groups, &gamma, &beta, 1e-6, act);
            let want: Vec<f32> = normed.iter().zip(&residual.data).map(|(n, r)| n + r).collect();
            assert_close(&format!("group_norm + residual {shape:?} G={groups} {act:?} on {}", profile.name), &out[0].data, &want, 3e-6, 3e-6);
        }
    }
}

/// GroupNorm(1, C) of a channel-last map `[B, H, W, C]` (HAT-Net's token-major last stage):
/// the NCHW reference on the permuted map, permuted back. C a multiple of 4 (the vec4 kernel) or
/// not, one chunk or several, with an input sum, a residual or neither; both kernel sets.
#[test]
fn group_norm_channels_last_matches_cpu() {
    let mut rng = Rng::new(31);
    let cases: [([usize; 4], Option<bool>, Activation); 5] = [
        ([1, 7, 7, 16], None, Activation::None),           // vec4, one chunk
        ([2, 7, 7, 12], Some(false), Activation::Silu),    // input sum
        ([1, 7, 7, 6], Some(true), Activation::None),      // scalar, residual
        ([1, 33, 31, 20], Some(true), Activation::None),   // vec4, several chunks, residual
        ([2, 13, 11, 9], None, Activation::Gelu),          // scalar, several chunks
    ];
    for profile in [wgvit::kernels::DeviceProfile::default(), wgvit::kernels::DeviceProfile::cpu_like(), common::lavapipe()] {
        for &(shape, residual, act) in &cases {
            let [b, h, w, c] = shape;
            let x = rng.tensor(&shape, -2.0, 2.0);
            let other = rng.tensor(&shape, -1.0, 1.0);
            let gamma = rng.vec(c, 0.5, 1.5);
            let beta = rng.vec(c, -0.5, 0.5);
            let mut g = Graph::for_profile(profile.clone());
            let (xi, oi) = (g.input("x", &shape), g.input("other", &shape));
            let (gi, bi) = (constant(&mut g, "gamma", &gamma), constant(&mut g, "beta", &beta));
            let sum = residual.map(|r| if r { Sum::Output(oi) } else { Sum::Input(oi) });
            let y = group_norm_relayout(&mut g, xi, gi, bi, 1e-6, sum, act, Layout::ChannelsLast, Layout::ChannelsLast).unwrap();
            g.output("y", y);
            let out = run(&g, &[&x, &other]);
            let nchw = |t: &[f32]| permute_cpu(t, &shape, &[0, 3, 1, 2]);
            let (x_nchw, other_nchw) = (nchw(&x.data), nchw(&other.data));
            let added = (residual == Some(false)).then_some(&other_nchw[..]);
            let mut want = group_norm_cpu(&x_nchw, added, b, c, 1, &gamma, &beta, 1e-6, act);
            if residual == Some(true) {
                want.iter_mut().zip(&other_nchw).for_each(|(y, r)| *y += r);
            }
            let want = permute_cpu(&want, &[b, c, h, w], &[0, 2, 3, 1]);
            assert_close(&format!("channel-last group_norm {shape:?} {residual:?} {act:?} on {}", profile.name), &out[0].data, &want, 3e-6, 3e-6);
        }
    }
}

/// GroupNorm(1, C) that reads one layout and writes the other (HAT-Net's norms around its
/// channel-last downsampling convs): NCHW → channel-last and back, vec4 and scalar elements, one
/// chunk and several, with a residual in the input's layout; both kernel sets.
#[test]
fn group_norm_transposes_between_layouts() {
    let mut rng = Rng::new(37);
    // (NCHW shape, input channel-last, residual)
    let cases: [([usize; 4], bool, bool); 6] = [
        ([1, 12, 8, 8], false, true),   // vec4 along pixels, one chunk
        ([2, 6, 7, 7], false, false),   // scalar
        ([1, 20, 32, 33], false, true), // vec4, several chunks
        ([1, 16, 7, 7], true, false),   // vec4 along channels
        ([2, 6, 5, 9], true, true),     // scalar
        ([1, 24, 30, 31], true, false), // vec4, several chunks
    ];
    for profile in [wgvit::kernels::DeviceProfile::default(), wgvit::kernels::DeviceProfile::cpu_like(), common::lavapipe()] {
        for &(nchw, from_channels_last, with_residual) in &cases {
            let [b, c, h, w] = nchw;
            let x_nchw = rng.tensor(&nchw, -2.0, 2.0);
            let residual_nchw = rng.tensor(&nchw, -1.0, 1.0);
            let gamma = rng.vec(c, 0.5, 1.5);
            let beta = rng.vec(c, -0.5, 0.5);
            let mut want = group_norm_cpu(&x_nchw.data, None, b, c, 1, &gamma, &beta, 1e-6, Activation::Silu);
            if with_residual {
                want.iter_mut().zip(&residual_nchw.data).for_each(|(y, r)| *y += r);
            }
            let to_channels_last = |t: &[f32]| permute_cpu(t, &nchw, &[0, 2, 3, 1]);
            let (input, output, in_shape, x, residual, want) = if from_channels_last {
                (Layout::ChannelsLast, Layout::Nchw, vec![b, h, w, c], to_channels_last(&x_nchw.data), to_channels_last(&residual_nchw.data), want)
            } else {
                (Layout::Nchw, Layout::ChannelsLast, nchw.to_vec(), x_nchw.data.clone(), residual_nchw.data.clone(), to_channels_last(&want))
            };
            let mut g = Graph::for_profile(profile.clone());
            let (xi, ri) = (g.input("x", &in_shape), g.input("residual", &in_shape));
            let (gi, bi) = (constant(&mut g, "gamma", &gamma), constant(&mut g, "beta", &beta));
            let sum = with_residual.then_some(Sum::Output(ri));
            let y = group_norm_relayout(&mut g, xi, gi, bi, 1e-6, sum, Activation::Silu, input, output).unwrap();
            g.output("y", y);
            let host = |data: Vec<f32>| HostTensor { shape: in_shape.clone(), data };
            let out = run(&g, &[&host(x), &host(residual)]);
            let out_shape = if from_channels_last { nchw.to_vec() } else { vec![b, h, w, c] };
            assert_eq!(out[0].shape, out_shape);
            assert_close(&format!("group_norm {input:?} -> {output:?} {nchw:?} residual {with_residual} on {}", profile.name), &out[0].data, &want, 3e-6, 3e-6);
        }
    }
    let mut g = Graph::new();
    let x = g.input("x", &[1, 8, 16]);
    let gamma = constant(&mut g, "gamma", &[1.0; 8]);
    let beta = constant(&mut g, "beta", &[0.0; 8]);
    let err = group_norm_relayout(&mut g, x, gamma, beta, 1e-6, None, Activation::None, Layout::Nchw, Layout::ChannelsLast).unwrap_err().to_string();
    assert!(err.contains("4-D") && err.contains("[1, 8, 16]"), "{err}");
}

#[test]
fn group_norm_keeps_precision_with_large_offsets() {
    // x + 1000: the inputs' own f32 rounding is 6e-5 while the std is ~1.3; the chunked
    // statistics (Welford's update per lane, Chan's merges) keep y within ~1e-4.
    let mut rng = Rng::new(22);
    for (shape, groups) in [(vec![1, 32, 29, 30], 1), (vec![2, 8, 17, 19], 2), (vec![1, 32, 28, 30], 1), (vec![2, 8, 16, 19], 2)] {
        let case = GroupNormCase { shape, groups, with_add: true, act: Activation::None, offset: 1000.0 };
        run_group_norm(&case, &mut rng, 1e-4, 0.0);
    }
}

/// Least-squares fit of y = a x + b in f64: with gamma = 1, beta = 0 this recovers the GPU's
/// rstd (a) and mean (-b / a) to far better than their own f32 rounding.
fn fit_line(x: &[f32], y: &[f32]) -> (f64, f64) {
    let n = x.len() as f64;
    let mx = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let my = y.iter().map(|&v| v as f64).sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (&a, &b) in x.iter().zip(y) {
        sxy += (a as f64 - mx) * (b as f64 - my);
        sxx += (a as f64 - mx) * (a as f64 - mx);
    }
    let a = sxy / sxx;
    (a, my - a * mx)
}

#[test]
fn group_norm_one_group_over_a_large_image() {
    // GroupNorm(1, 96) over [1, 96, 112, 112]: 1.2M elements, 294 chunks merged with Chan's formula.
    let mut rng = Rng::new(23);
    let shape = [1usize, 96, 112, 112];
    for offset in [0.0f32, 1000.0] {
        let c = shape[1];
        let mut x = rng.tensor(&shape, -2.0, 3.0);
        x.data.iter_mut().for_each(|v| *v += offset);
        let (gamma, beta) = (vec![1.0f32; c], vec![0.0f32; c]);
        let mut g = Graph::new();
        let xi = g.input("x", &shape);
        let gi = constant(&mut g, "gamma", &gamma);
        let bi = constant(&mut g, "beta", &beta);
        let y = group_norm(&mut g, xi, 1, gi, bi, 1e-6, None, Activation::None).unwrap();
        g.output("y", y);
        let started = std::time::Instant::now();
        let out = run(&g, &[&x]);
        eprintln!("GroupNorm(1, 96) on {shape:?}: {:.0} ms including compile and transfers", started.elapsed().as_secs_f64() * 1e3);
        let want = group_norm_cpu(&x.data, None, 1, c, 1, &gamma, &beta, 1e-6, Activation::None);
        let atol = if offset == 0.0 { 1e-5 } else { 1e-4 };
        assert_close(&format!("GroupNorm(1, 96) offset {offset}"), &out[0].data, &want, atol, 1e-5);

        // The statistics themselves, to ~1e-6 relative.
        let n = x.data.len() as f64;
        let mean = x.data.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = x.data.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let rstd = 1.0 / (var + 1e-6).sqrt();
        let (a, b) = fit_line(&x.data, &out[0].data);
        let (gpu_rstd, gpu_mean) = (a, -b / a);
        let rstd_err = (gpu_rstd - rstd).abs() / rstd;
        let mean_err = (gpu_mean - mean).abs() * rstd; // in units of the standard deviation
        eprintln!("offset {offset}: rstd rel. error {rstd_err:.2e}, mean error {mean_err:.2e} std");
        assert!(rstd_err < 1e-6, "rstd {gpu_rstd} vs {rstd}: relative error {rstd_err:.2e}");
        // The mean is an f32: its rounding alone is 3e-8 relative (3e-5 absolute at 1000).
        let mean_tol = 1e-6 + 6e-8 * mean.abs() * rstd;
        assert!(mean_err < mean_tol, "mean {gpu_mean} vs {mean}: error {mean_err:.2e} std > {mean_tol:.2e}");
    }
}

#[test]
fn group_norm_rejects_bad_shapes() {
    let mut g = Graph::new();
    let x = g.input("x", &[1, 6, 4, 4]);
    let gamma = constant(&mut g, "gamma", &[1.0; 6]);
    let beta = constant(&mut g, "beta", &[0.0; 6]);
    let err = group_norm(&mut g, x, 4, gamma, beta, 1e-5, None, Activation::None).unwrap_err().to_string();
    assert!(err.contains("group_norm") && err.contains("[1, 6, 4, 4]"), "{err}");
    let other = g.input("other", &[1, 6, 4, 5]);
    let err = group_norm(&mut g, x, 2, gamma, beta, 1e-5, Some(Sum::Input(other)), Activation::None).unwrap_err().to_string();
    assert!(err.contains("add"), "{err}");
}

/// A GroupNorm of several chunks has one producer of its output, the normalisation (the
/// statistics pass binds a scratch activation in y's place), so where texture stores are costly its
/// output moves to a texture by a copy after that node, for a GEMM that fetches it often
/// (HAT-Net's norms before qkv and conv1.1 on lavapipe). Values against the CPU reference.
#[test]
fn a_chunked_group_norms_output_is_copied_into_a_texture_for_its_gemm() {
    use wgvit::graph::StorageKind;
    use wgvit::ops::matmul::{matmul, matmul_cpu, Epilogue};
    use wgvit::ops::tuning::copied_textures;
    let mut rng = Rng::new(31);
    let (c, hw, cout) = (48, 56 * 56, 96);
    let shape = [1, c, 56, 56];
    let profile = wgvit::kernels::DeviceProfile { texture_stores_costly: true, ..common::lavapipe() };
    let rule = copied_textures(&profile).expect("costly stores copy");
    let x = rng.tensor(&shape, -2.0, 2.0);
    let w = rng.vec(cout * c, -0.5, 0.5);
    let gamma = rng.vec(c, 0.5, 1.5);
    let beta = rng.vec(c, -0.5, 0.5);
    let mut g = Graph::for_profile(profile);
    let xi = g.input("x", &shape);
    let (gi, bi) = (constant(&mut g, "gamma", &gamma), constant(&mut g, "beta", &beta));
    let wi = constant(&mut g, "w", &w);
    let wi = g.reshape(wi, &[cout, c]).unwrap();
    let y = group_norm(&mut g, xi, 1, gi, bi, 1e-6, None, Activation::None).unwrap();
    let tokens = g.reshape(y, &[c, hw]).unwrap();
    let z = matmul(&mut g, wi, tokens, false, false, Epilogue::default()).unwrap();
    g.output("z", z);
    let labels: Vec<&str> = g.nodes.iter().map(|n| n.label.as_str()).collect();
    assert_eq!(labels[..2], ["group_norm.stats", "group_norm"], "two passes: {labels:?}");
    let copied = g.with_activation_textures_copied(rule.min_fetches, rule.min_texels);
    let storage = g.tensors[y.0].storage;
    assert_eq!(copied.texture_copies.len(), 1, "{:?}", copied.texture_copies);
    let copy = copied.texture_copies[0];
    assert_eq!((copy.from, copy.after), (storage, 1), "y, after the normalisation");
    assert!(matches!(copied.storages[copy.to].kind, StorageKind::Activation { texture: true, .. }));
    let out = run(&copied, &[&x]);
    let normed = group_norm_cpu(&x.data, None, 1, c, 1, &gamma, &beta, 1e-6, Activation::None);
    let (want, _) = matmul_cpu(&w, &[cout, c], &normed, &[c, hw], false, false, 1.0, None, Activation::None, None);
    assert_close("GroupNorm → GEMM through a copied texture", &out[0].data, &want, 1e-4, 1e-4);
}
