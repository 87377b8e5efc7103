//! permute / slice / concat on the GPU against index-by-index CPU references, on random shapes and
//! axes (rank 1 to 6), plus the host-side box simplification and the views that need no copy.

mod common;

use common::run;
use wgvit::ops::layout::{concat, concat_cpu, permute, permute_copy, permute_cpu, slice, slice_copy, slice_cpu, BoxCopy};
use wgvit::tensor::Rng;
use wgvit::{Graph, HostTensor};

fn random_shape(rng: &mut Rng, rank: usize, max_numel: usize) -> Vec<usize> {
    loop {
        let shape: Vec<usize> = (0..rank).map(|_| 1 + rng.below(9)).collect();
        if shape.iter().product::<usize>() <= max_numel {
            return shape;
        }
    }
}

fn random_perm(rng: &mut Rng, rank: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..rank).collect();
    for i in (1..rank).rev() {
        p.swap(i, rng.below(i + 1));
    }
    p
}

/// Layout ops copy bits: the GPU result must equal the reference exactly.
fn assert_same(what: &str, got: &HostTensor, want: &[f32]) {
    assert_eq!(got.data.len(), want.len(), "{what}: length");
    if let Some(i) = got.data.iter().zip(want).position(|(a, b)| a.to_bits() != b.to_bits()) {
        panic!("{what}: element {i}: got {}, want {}", got.data[i], want[i]);
    }
}

#[test]
fn permute_random_ranks_and_perms_match_cpu() {
    let mut rng = Rng::new(41);
    let mut g = Graph::new();
    let mut inputs = Vec::new();
    let mut expected = Vec::new();
    // One graph with many permutes: one compile and one submit for all of them.
    for i in 0..24 {
        let rank = 1 + i % 6;
        let shape = random_shape(&mut rng, rank, 20_000);
        let perm = random_perm(&mut rng, rank);
        let x = rng.tensor(&shape, -1.0, 1.0);
        let xi = g.input(&format!("x{i}"), &shape);
        let y = permute(&mut g, xi, &perm).unwrap();
        let want_shape: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        assert_eq!(g.shape(y), want_shape.as_slice());
        g.output(&format!("y{i}"), y);
        expected.push((format!("permute {shape:?} by {perm:?}"), permute_cpu(&x.data, &shape, &perm)));
        inputs.push(x);
    }
    // Common model permutes: NCHW <-> NHWC and head splits, with odd sizes.
    for (shape, perm) in [(vec![2, 37, 11, 13], vec![0, 2, 3, 1]), (vec![2, 143, 37], vec![0, 2, 1]), (vec![2, 50, 3, 4, 9], vec![2, 0, 3, 1, 4])] {
        let x = rng.tensor(&shape, -1.0, 1.0);
        let xi = g.input(&format!("x{}", inputs.len()), &shape);
        let y = permute(&mut g, xi, &perm).unwrap();
        g.output(&format!("y{}", inputs.len()), y);
        expected.push((format!("permute {shape:?} by {perm:?}"), permute_cpu(&x.data, &shape, &perm)));
        inputs.push(x);
    }
    let refs: Vec<&HostTensor> = inputs.iter().collect();
    let out = run(&g, &refs);
    for ((what, want), got) in expected.iter().zip(&out) {
        assert_same(what, got, want);
    }
    eprintln!("{} permutes exact ({} nodes)", expected.len(), g.nodes.len());
}

#[test]
fn slice_every_axis_matches_cpu() {
    let mut rng = Rng::new(42);
    let mut g = Graph::new();
    let mut inputs = Vec::new();
    let mut expected = Vec::new();
    for i in 0..20 {
        let rank = 1 + i % 5;
        let shape = random_shape(&mut rng, rank, 20_000);
        let axis = rng.below(rank);
        let start = rng.below(shape[axis]);
        let len = 1 + rng.below(shape[axis] - start);
        let x = rng.tensor(&shape, -1.0, 1.0);
        let xi = g.input(&format!("x{i}"), &shape);
        let y = slice(&mut g, xi, axis, start, len).unwrap();
        g.output(&format!("y{i}"), y);
        expected.push((format!("slice {shape:?} axis {axis} {start}+{len}"), slice_cpu(&x.data, &shape, axis, start, len)));
        inputs.push(x);
    }
    // Prefixes of a contiguous block are copies too (a view would need a storage offset).
    for (shape, axis, start, len) in [(vec![1usize, 6, 5], 1usize, 0usize, 4usize), (vec![37], 0, 0, 36), (vec![3, 70], 1, 0, 69)] {
        let x = rng.tensor(&shape, -1.0, 1.0);
        let xi = g.input(&format!("x{}", inputs.len()), &shape);
        let y = slice(&mut g, xi, axis, start, len).unwrap();
        g.output(&format!("y{}", inputs.len()), y);
        expected.push((format!("slice {shape:?} axis {axis} {start}+{len}"), slice_cpu(&x.data, &shape, axis, start, len)));
        inputs.push(x);
    }
    let refs: Vec<&HostTensor> = inputs.iter().collect();
    let out = run(&g, &refs);
    for ((what, want), got) in expected.iter().zip(&out) {
        assert_same(what, got, want);
    }
}

#[test]
fn concat_any_axis_and_input_count_matches_cpu() {
    let mut rng = Rng::new(43);
    let mut g = Graph::new();
    let mut inputs = Vec::new();
    let mut expected = Vec::new();
    for i in 0..12 {
        let rank = 1 + i % 4;
        let base = random_shape(&mut rng, rank, 5_000);
        let axis = rng.below(rank);
        let parts = 2 + rng.below(4);
        let mut ids = Vec::new();
        let mut datas = Vec::new();
        for _ in 0..parts {
            let mut shape = base.clone();
            shape[axis] = 1 + rng.below(7);
            let x = rng.tensor(&shape, -1.0, 1.0);
            ids.push(g.input(&format!("x{}", inputs.len()), &shape));
            datas.push(x.clone());
            inputs.push(x);
        }
        let y = concat(&mut g, &ids, axis).unwrap();
        g.output(&format!("y{i}"), y);
        let parts_ref: Vec<(&[f32], &[usize])> = datas.iter().map(|t| (&t.data[..], &t.shape[..])).collect();
        let shapes: Vec<&Vec<usize>> = datas.iter().map(|t| &t.shape).collect();
        expected.push((format!("concat {shapes:?} axis {axis}"), concat_cpu(&parts_ref, axis)));
    }
    let refs: Vec<&HostTensor> = inputs.iter().collect();
    let out = run(&g, &refs);
    for ((what, want), got) in expected.iter().zip(&out) {
        assert_same(what, got, want);
    }
}

#[test]
fn box_copies_simplify_to_the_axes_that_move() {
    // NCHW -> NHWC keeps three axes: (N), (H*W merged), (C).
    let c = permute_copy(&[2, 3, 4, 5], &[0, 2, 3, 1]).simplified();
    assert_eq!(c.dims, vec![2, 20, 3]);
    assert_eq!(c.in_strides, vec![60, 1, 20]);
    assert_eq!(c.out_strides, vec![60, 3, 1]);
    // Size-1 axes vanish; a permute moving only them is the identity (a view).
    assert!(permute_copy(&[1, 6, 1, 7], &[2, 1, 0, 3]).simplified().is_identity());
    // A slice is a 2-D copy whatever the rank.
    let s = slice_copy(&[2, 3, 8, 5, 6], 2, 3, 4).simplified();
    assert_eq!((s.dims.clone(), s.in_strides.clone(), s.out_strides.clone(), s.in_base), (vec![6, 120], vec![240, 1], vec![120, 1], 90));
    assert_eq!(
        BoxCopy { dims: vec![1], in_strides: vec![1], out_strides: vec![1], in_base: 0, out_base: 0 }.simplified().dims,
        vec![1]
    );
}

#[test]
fn identity_layouts_are_views_without_nodes() {
    let mut g = Graph::new();
    let x = g.input("x", &[1, 6, 1, 7]);
    let p = permute(&mut g, x, &[2, 1, 0, 3]).unwrap();
    let s = slice(&mut g, x, 1, 0, 6).unwrap();
    let c = concat(&mut g, &[x], 3).unwrap();
    assert!(g.nodes.is_empty(), "no copy for identity layouts");
    assert_eq!(g.shape(p), &[1, 6, 1, 7]);
    for t in [p, s, c] {
        assert_eq!(g.tensors[t.0].storage, g.tensors[x.0].storage);
    }
}

#[test]
fn layout_ops_reject_bad_arguments() {
    let mut g = Graph::new();
    let x = g.input("x", &[2, 3, 4]);
    let y = g.input("y", &[2, 5, 5]);
    assert!(permute(&mut g, x, &[0, 1]).unwrap_err().to_string().contains("permute"));
    assert!(permute(&mut g, x, &[0, 1, 1]).is_err());
    let big = g.input("big", &[2; 7]);
    assert!(permute(&mut g, big, &[0, 1, 2, 3, 4, 5, 6]).unwrap_err().to_string().contains("rank"));
    assert!(slice(&mut g, x, 2, 3, 2).unwrap_err().to_string().contains("slice"));
    assert!(slice(&mut g, x, 3, 0, 1).is_err());
    assert!(concat(&mut g, &[x, y], 1).unwrap_err().to_string().contains("concat"));
    assert!(concat(&mut g, &[], 0).is_err());
}
