//! The fused atrous depthwise conv (ACC-ViT's MBConv: dilations 1..NB summed, bias, activation,
//! channel-last) on the GPU against its f64 CPU reference: random shapes with strides 1 and 2,
//! 1–3 branches, widths that the 4-column runs do not divide, maps smaller than the largest
//! dilation; the 2×2/2 average pool the model builds from it; the build-time errors.
//! Tolerance: 1e-5 abs + 1e-5 rel.

mod common;

use common::{assert_close, run};
use wgvit::models::torch_layout::atrous_dwconv_weights as weights_from_torch;
use wgvit::ops::family::atrous_dwconv::{atrous_dwconv, atrous_dwconv_cpu, out_side};
use wgvit::ops::Activation;
use wgvit::tensor::Rng;
use wgvit::{Graph, HostTensor};

/// On the default kernel set and on lavapipe's, which writes out each invocation's run of 4
/// output columns (`RUN_WRITTEN_OUT`, `tuning::atrous_dwconv_run_written_out`, two or three
/// branches): the widths leave runs of 1 to 3 columns at the edge. Odd cases take constant weights, which lavapipe reads
/// from uniform buffers.
#[test]
fn atrous_dwconv_matches_cpu_on_random_shapes() {
    for profile in [wgvit::kernels::DeviceProfile::default(), common::lavapipe()] {
        atrous_dwconv_matches_cpu_for(profile);
    }
}

fn atrous_dwconv_matches_cpu_for(profile: wgvit::kernels::DeviceProfile) {
    let lavapipe = profile.name.starts_with("llvmpipe");
    let mut rng = Rng::new(11);
    // ([B, H, W, C], branches, stride, bias, act)
    let cases = [
        ([1, 14, 14, 16], 3, 1, true, Activation::Gelu),
        ([2, 14, 13, 8], 3, 2, true, Activation::Gelu),
        ([1, 9, 11, 12], 2, 1, false, Activation::None),
        ([1, 2, 3, 4], 3, 1, true, Activation::Silu), // every dilated tap of branches 2 and 3 in the padding
        ([2, 7, 7, 20], 1, 2, false, Activation::None),
        ([1, 28, 28, 64], 3, 2, true, Activation::Gelu),
    ];
    for (i, &(shape, nb, stride, with_bias, act)) in cases.iter().enumerate() {
        let c = shape[3];
        let x = rng.tensor(&shape, -1.0, 1.0);
        let w = rng.tensor(&[nb, 3, 3, c], -0.5, 0.5);
        let bias = rng.tensor(&[c], -0.5, 0.5);
        let mut g = Graph::for_profile(profile.clone());
        // Every other case with constant weights (as the model loads them): lavapipe then reads
        // them, and the bias, from uniform buffers (`W_UNIFORM`).
        let constant = i % 2 == 1;
        let xi = g.input("x", &shape);
        let tensor = |g: &mut Graph, name: &str, t: &HostTensor| {
            if constant {
                g.constant(name, &t.shape, std::sync::Arc::new(t.data.clone())).unwrap()
            } else {
                g.input(name, &t.shape)
            }
        };
        let wi = tensor(&mut g, "w", &w);
        let bi = with_bias.then(|| tensor(&mut g, "b", &bias));
        let y = atrous_dwconv(&mut g, xi, wi, bi, stride, act).unwrap();
        let key = g.nodes.last().unwrap().key.clone();
        // The one-branch conv (the average pool) keeps the loop.
        assert!(key.constants().contains(&("RUN_WRITTEN_OUT", (lavapipe && nb > 1) as u32)), "{}", profile.name);
        assert!(key.constants().contains(&("W_UNIFORM", (constant && lavapipe) as u32)), "{}: {key:?}", profile.name);
        g.output("y", y);
        let (oh, ow) = (out_side(shape[1], stride), out_side(shape[2], stride));
        assert_eq!(g.shape(y), [shape[0], oh, ow, c]);
        let mut inputs = vec![&x];
        if !constant {
            inputs.push(&w);
            if with_bias {
                inputs.push(&bias);
            }
        }
        let out = run(&g, &inputs);
        let want = atrous_dwconv_cpu(&x.data, shape, &w.data, nb, with_bias.then_some(&bias.data[..]), stride, act);
        assert_close(&format!("{}, case {i}: {shape:?} nb {nb} stride {stride} bias {with_bias} {act:?}", profile.name), &out[0].data, &want, 1e-5, 1e-5);
    }
}

/// The CPU reference itself against a direct PyTorch-style formulation: one dilated conv per
/// branch from `[C, 1, 3, 3]` weights (`weights_from_torch`), padding = dilation, summed.
#[test]
fn atrous_dwconv_cpu_is_the_sum_of_dilated_depthwise_convs() {
    let mut rng = Rng::new(12);
    let (b, h, w, c, stride) = (1, 9, 10, 4, 2);
    let x = rng.tensor(&[b, h, w, c], -1.0, 1.0);
    let torch_w: Vec<Vec<f32>> = (0..3).map(|_| rng.vec(c * 9, -1.0, 1.0)).collect();
    let refs: Vec<&[f32]> = torch_w.iter().map(|v| v.as_slice()).collect();
    let scale = rng.vec(c, 0.5, 1.5);
    let packed = weights_from_torch(&refs, c, &scale);
    let got = atrous_dwconv_cpu(&x.data, [b, h, w, c], &packed, 3, None, stride, Activation::None);
    let (oh, ow) = (out_side(h, stride), out_side(w, stride));
    for i in 0..oh {
        for j in 0..ow {
            for ch in 0..c {
                let mut want = 0f64;
                for (br, wt) in torch_w.iter().enumerate() {
                    let d = br as isize + 1;
                    for ky in 0..3isize {
                        for kx in 0..3isize {
                            // PyTorch: input index = out·stride − pad + k·dilation, pad = dilation.
                            let (ih, iw) = ((i * stride) as isize - d + ky * d, (j * stride) as isize - d + kx * d);
                            if (0..h as isize).contains(&ih) && (0..w as isize).contains(&iw) {
                                let xv = x.data[((ih as usize) * w + iw as usize) * c + ch] as f64;
                                want += xv * wt[ch * 9 + (ky * 3 + kx) as usize] as f64 * scale[ch] as f64;
                            }
                        }
                    }
                }
                let g = got[(i * ow + j) * c + ch] as f64;
                assert!((g - want).abs() < 1e-5, "({i}, {j}, {ch}): {g} vs {want}");
            }
        }
    }
}

/// The model's channel-last 2×2/2 average pool: one stride-2 branch with ¼ on the lower-right taps.
#[test]
fn atrous_dwconv_box_taps_are_a_2x2_average_pool() {
    let mut rng = Rng::new(13);
    let (b, h, w, c) = (2, 8, 12, 8);
    let x = rng.tensor(&[b, h, w, c], -1.0, 1.0);
    let mut taps = vec![0f32; 9 * c];
    for t in [4, 5, 7, 8] {
        taps[t * c..(t + 1) * c].fill(0.25);
    }
    let taps = HostTensor { shape: vec![1, 3, 3, c], data: taps };
    let mut g = Graph::new();
    let (xi, wi) = (g.input("x", &x.shape), g.input("w", &taps.shape));
    let y = atrous_dwconv(&mut g, xi, wi, None, 2, Activation::None).unwrap();
    g.output("y", y);
    let out = run(&g, &[&x, &taps]);
    let mut want = Vec::new();
    for bi in 0..b {
        for i in 0..h / 2 {
            for j in 0..w / 2 {
                for ch in 0..c {
                    let at = |r: usize, s: usize| x.data[((bi * h + r) * w + s) * c + ch];
                    want.push((at(2 * i, 2 * j) + at(2 * i, 2 * j + 1) + at(2 * i + 1, 2 * j) + at(2 * i + 1, 2 * j + 1)) / 4.0);
                }
            }
        }
    }
    assert_close("avg pool 2x2/2", &out[0].data, &want, 1e-6, 1e-6);
}

#[test]
fn atrous_dwconv_rejects_bad_shapes() {
    let cases: [(&[usize], &[usize], usize, &str); 5] = [
        (&[1, 8, 8, 6], &[3, 3, 3, 6], 1, "multiple of 4"),
        (&[1, 8, 8, 8], &[4, 3, 3, 8], 1, "branches"),
        (&[1, 8, 8, 8], &[3, 3, 3, 8], 3, "stride"),
        (&[1, 8, 8, 8], &[3, 3, 3, 4], 1, "channels"),
        (&[8, 8, 8], &[3, 3, 3, 8], 1, "rank 4"),
    ];
    for (xs, ws, stride, needle) in cases {
        let mut g = Graph::new();
        let (x, w) = (g.input("x", xs), g.input("w", ws));
        let err = atrous_dwconv(&mut g, x, w, None, stride, Activation::None).unwrap_err().to_string();
        assert!(err.contains("atrous_dwconv") && err.contains(needle), "{xs:?} {ws:?} stride {stride}: {err}");
    }
}

/// On lavapipe ACC-ViT's MBConv reads the atrous conv's input from a flat texture: the expand
/// GEMM writes it (`Graph::with_activation_textures`), and a GEMM reading the conv's output lets
/// that move to a texture too. Checked: both defines, and the values against the CPU, for
/// strides 1 and 2 and 1 and 3 branches.
#[test]
fn atrous_dwconv_reads_and_writes_activation_textures_on_lavapipe() {
    use std::sync::Arc;
    use wgvit::ops::matmul::{matmul, Epilogue};
    let mut rng = Rng::new(13);
    let (h, w, cin, hidden) = (9, 10, 8, 16);
    // [tokens, k] · [n, k]ᵀ on the CPU.
    let linear = |x: &[f32], wt: &[f32], k: usize, n: usize| -> Vec<f32> { x.chunks(k).flat_map(|row| (0..n).map(move |o| (0..k).map(|i| row[i] as f64 * wt[o * k + i] as f64).sum::<f64>() as f32)).collect() };
    for (nb, stride) in [(3, 1), (3, 2), (1, 2)] {
        let x = rng.tensor(&[h * w, cin], -1.0, 1.0);
        let w1 = rng.tensor(&[hidden, cin], -0.5, 0.5);
        let wd = rng.tensor(&[nb, 3, 3, hidden], -0.5, 0.5);
        let bd = rng.tensor(&[hidden], -0.5, 0.5);
        let w2 = rng.tensor(&[cin, hidden], -0.5, 0.5);
        let mut g = Graph::for_profile(common::lavapipe());
        let xi = g.input("x", &x.shape);
        let mut constant = |name: &str, t: &HostTensor| g.constant(name, &t.shape, Arc::new(t.data.clone())).unwrap();
        let (w1i, wdi, bdi, w2i) = (constant("w1", &w1), constant("wd", &wd), constant("bd", &bd), constant("w2", &w2));
        let expanded = matmul(&mut g, xi, w1i, false, true, Epilogue::default()).unwrap();
        let map = g.reshape(expanded, &[1, h, w, hidden]).unwrap();
        let mixed = atrous_dwconv(&mut g, map, wdi, Some(bdi), stride, Activation::Gelu).unwrap();
        let (oh, ow) = (out_side(h, stride), out_side(w, stride));
        let tokens = g.reshape(mixed, &[oh * ow, hidden]).unwrap();
        let y = matmul(&mut g, tokens, w2i, false, true, Epilogue::default()).unwrap();
        g.output("y", y);

        let case = format!("{nb} branches, stride {stride}");
        let promoted = common::promoted_to_textures(&g, &[expanded, mixed], "atrous_dwconv", &["X_TEXTURE", "OUT_TEXTURE"], &case);

        let e = linear(&x.data, &w1.data, cin, hidden);
        let m = atrous_dwconv_cpu(&e, [1, h, w, hidden], &wd.data, nb, Some(&bd.data), stride, Activation::Gelu);
        let want = linear(&m, &w2.data, hidden, cin);
        let out = run(&promoted, &[&x]);
        assert_close(&case, &out[0].data, &want, 1e-5, 1e-5);
    }
}
