//! avg_pool2d, mean_spatial and mean_tokens on the GPU against f64 CPU references: PyTorch's
//! padding and `count_include_pad` rules on odd sizes, and both the per-invocation and the
//! lane-split reductions of the means.

mod common;

use common::{assert_close, run};
use wgvit::ops::pool::{avg_pool2d, avg_pool2d_cpu, mean_spatial, mean_spatial_cpu, mean_tokens, mean_tokens_cpu};
use wgvit::tensor::Rng;
use wgvit::Graph;

/// (input shape, kernel, stride, padding)
type PoolCase = ([usize; 4], (usize, usize), (usize, usize), (usize, usize));

#[test]
fn avg_pool2d_matches_pytorch_rules() {
    let mut rng = Rng::new(51);
    // (shape, kernel, stride, padding): PoolFormer's 3x3/1/1, 2x2/2 downsampling, asymmetric
    // kernels and strides, windows cut by the border on odd sizes.
    let cases: &[PoolCase] = &[
        ([2, 5, 13, 11], (3, 3), (1, 1), (1, 1)),
        ([1, 7, 14, 14], (2, 2), (2, 2), (0, 0)),
        ([2, 3, 15, 9], (3, 2), (2, 1), (1, 0)),
        ([1, 4, 17, 17], (5, 5), (3, 3), (2, 2)),
        ([3, 2, 7, 10], (7, 4), (1, 3), (0, 2)),
    ];
    for &(shape, kernel, stride, padding) in cases {
        for count_include_pad in [true, false] {
            let x = rng.tensor(&shape, -1.0, 1.0);
            let mut g = Graph::new();
            let xi = g.input("x", &shape);
            let y = avg_pool2d(&mut g, xi, kernel, stride, padding, count_include_pad).unwrap();
            g.output("y", y);
            let out = run(&g, &[&x]);
            let want = avg_pool2d_cpu(&x.data, shape[0] * shape[1], shape[2], shape[3], kernel, stride, padding, count_include_pad);
            assert_eq!(out[0].data.len(), want.len());
            let what = format!("avg_pool2d {shape:?} k{kernel:?} s{stride:?} p{padding:?} include_pad={count_include_pad}");
            assert_close(&what, &out[0].data, &want, 1e-6, 1e-6);
        }
    }
}

#[test]
fn means_match_cpu() {
    let mut rng = Rng::new(52);
    // Many short reductions (a reduction per invocation) and few long ones (16 lanes each).
    for shape in [[2usize, 37, 7, 7], [1, 64, 56, 56], [3, 5, 1, 1], [2, 300, 3, 5]] {
        let x = rng.tensor(&shape, -1.0, 2.0);
        let mut g = Graph::new();
        let xi = g.input("x", &shape);
        let y = mean_spatial(&mut g, xi).unwrap();
        g.output("y", y);
        let out = run(&g, &[&x]);
        assert_eq!(out[0].shape, vec![shape[0], shape[1]]);
        let want = mean_spatial_cpu(&x.data, shape[2] * shape[3]);
        assert_close(&format!("mean_spatial {shape:?}"), &out[0].data, &want, 1e-6, 1e-6);
    }
    for shape in [[2usize, 49, 37], [1, 3136, 64], [4, 1, 10], [2, 197, 768]] {
        let x = rng.tensor(&shape, -1.0, 2.0);
        let mut g = Graph::new();
        let xi = g.input("x", &shape);
        let y = mean_tokens(&mut g, xi).unwrap();
        g.output("y", y);
        let out = run(&g, &[&x]);
        assert_eq!(out[0].shape, vec![shape[0], shape[2]]);
        let want = mean_tokens_cpu(&x.data, shape[0], shape[1], shape[2]);
        assert_close(&format!("mean_tokens {shape:?}"), &out[0].data, &want, 1e-6, 1e-6);
    }
}

#[test]
fn pools_reject_bad_shapes() {
    let mut g = Graph::new();
    let x = g.input("x", &[1, 2, 4, 4]);
    let t = g.input("t", &[2, 3]);
    assert!(avg_pool2d(&mut g, x, (3, 3), (1, 1), (2, 2), true).unwrap_err().to_string().contains("padding"));
    assert!(avg_pool2d(&mut g, x, (7, 7), (1, 1), (1, 1), true).is_err());
    assert!(avg_pool2d(&mut g, t, (1, 1), (1, 1), (0, 0), true).is_err());
    assert!(mean_spatial(&mut g, t).unwrap_err().to_string().contains("mean_spatial"));
    assert!(mean_tokens(&mut g, x).unwrap_err().to_string().contains("mean_tokens"));
}
