//! Element-wise ops on the GPU against their CPU references, on random shapes.

mod common;

use common::{assert_close, run};
use wgvit::ops::binary::{binary, binary_cpu, BinaryOp};
use wgvit::ops::unary::{unary, unary_cpu};
use wgvit::ops::Activation;
use wgvit::tensor::Rng;
use wgvit::Graph;

#[test]
fn unary_every_activation_matches_cpu() {
    let mut rng = Rng::new(1);
    for act in [
        Activation::None,
        Activation::Relu,
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::Silu,
        Activation::Sigmoid,
        Activation::Tanh,
    ] {
        let n = 1 + rng.below(3000);
        let mut x = rng.tensor(&[n], -8.0, 8.0);
        x.data[0] = -100.0; // overflow guards: exp of large arguments must not produce NaN
        if n > 1 {
            x.data[1] = 100.0;
        }
        let (alpha, beta) = (1.25, -0.5);
        let mut g = Graph::new();
        let xi = g.input("x", &[n]);
        let y = unary(&mut g, xi, act, alpha, beta).unwrap();
        g.output("y", y);
        let out = run(&g, &[&x]);
        let want = unary_cpu(&x.data, act, alpha, beta);
        assert_close(&format!("{act:?} n={n}"), &out[0].data, &want, 2e-6, 2e-6);
    }
}

#[test]
fn binary_broadcasts_like_numpy() {
    let mut rng = Rng::new(2);
    // The first four take the scalar kernel; the rest the vec4 one (last axis a multiple of 4 and
    // contiguous in b): equal shapes, a per-channel gate of a channel-last map, a row vector.
    let cases: &[(&[usize], &[usize])] = &[
        (&[3, 5, 7], &[3, 5, 7]),
        (&[2, 6, 9, 5], &[6, 1, 1]),
        (&[4, 33], &[33]),
        (&[2, 3, 4], &[1]),
        (&[3, 5, 8], &[3, 5, 8]),
        (&[2, 3, 5, 12], &[2, 1, 1, 12]),
        (&[7, 20], &[20]),
        (&[2, 3, 4, 4], &[3, 1, 4]),
    ];
    for (i, (ashape, bshape)) in cases.iter().enumerate() {
        for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul] {
            let a = rng.tensor(ashape, -2.0, 2.0);
            let b = rng.tensor(bshape, -2.0, 2.0);
            let mut g = Graph::new();
            let ai = g.input("a", ashape);
            let bi = g.input("b", bshape);
            let c = binary(&mut g, ai, bi, op, Activation::Silu).unwrap();
            let vec4 = ashape.last().is_some_and(|&d| d % 4 == 0) && bshape.last() == ashape.last();
            assert_eq!(g.nodes[0].key.kernel == wgvit::ops::Kernel::BinaryVec4, vec4, "case {i}: kernel choice");
            g.output("c", c);
            let out = run(&g, &[&a, &b]);
            let want = binary_cpu(&a.data, ashape, &b.data, bshape, op, Activation::Silu);
            assert_close(&format!("case {i} {op:?}"), &out[0].data, &want, 1e-6, 1e-6);
        }
    }
}

#[test]
fn grid_folds_more_than_65535_workgroups() {
    // 65536 * 256 + 3 elements: more workgroups than one dispatch dimension allows.
    let n = 65536 * 256 + 3;
    let x = wgvit::HostTensor { shape: vec![n], data: (0..n).map(|i| (i % 1000) as f32).collect() };
    let mut g = Graph::new();
    let xi = g.input("x", &[n]);
    let y = unary(&mut g, xi, Activation::None, 2.0, 1.0).unwrap();
    g.output("y", y);
    let out = run(&g, &[&x]);
    assert!(g.nodes[0].workgroups[1] > 1);
    for i in [0, 1, n / 2, n - 1] {
        assert_eq!(out[0].data[i], 2.0 * x.data[i] + 1.0, "element {i}");
    }
}

#[test]
fn gelu_erf_is_within_1e_6_on_a_dense_grid() {
    // 0.5·x·(1 + erf(x/√2)) with the polynomial erf: |GELU error| = 0.5·|x|·|erf error| plus the
    // f32 rounding of the result; over [-4, 4] that stays below 1e-6 absolute.
    let n = 8001;
    let x = wgvit::HostTensor { shape: vec![n], data: (0..n).map(|i| -4.0 + 8.0 * i as f32 / (n - 1) as f32).collect() };
    let mut g = Graph::new();
    let xi = g.input("x", &[n]);
    let y = unary(&mut g, xi, Activation::Gelu, 1.0, 0.0).unwrap();
    g.output("y", y);
    let out = run(&g, &[&x]);
    let want = unary_cpu(&x.data, Activation::Gelu, 1.0, 0.0);
    assert_close("gelu on [-4, 4]", &out[0].data, &want, 1e-6, 0.0);
}
