//! softmax over the last dim on the GPU against an f64 CPU reference: short rows (7) to long ones
//! (a few thousand), few rows (workgroup reduction) and many (a row per invocation), positive and
//! negative scales, and inputs large enough that an exp without the max subtraction overflows.

mod common;

use common::{assert_close, run};
use wgvit::ops::softmax::{softmax, softmax_cpu, softmax_padded};
use wgvit::tensor::Rng;
use wgvit::Graph;

fn check(shape: &[usize], lo: f32, hi: f32, scale: f32, rng: &mut Rng) {
    let x = rng.tensor(shape, lo, hi);
    let mut g = Graph::new();
    let xi = g.input("x", shape);
    let y = softmax(&mut g, xi, scale).unwrap();
    g.output("y", y);
    let out = run(&g, &[&x]);
    let want = softmax_cpu(&x.data, *shape.last().unwrap(), scale);
    // WGSL's exp is accurate to 3 + 2|x| ULP; arguments here reach -40 or so.
    assert_close(&format!("softmax {shape:?} scale {scale}"), &out[0].data, &want, 1e-7, 2e-5);
    let len = *shape.last().unwrap();
    for (r, row) in out[0].data.chunks(len).enumerate() {
        let s: f32 = row.iter().sum();
        assert!((s - 1.0).abs() < 1e-5, "row {r} sums to {s}");
    }
}

#[test]
fn softmax_random_shapes_match_cpu() {
    let mut rng = Rng::new(31);
    let shapes: &[&[usize]] = &[&[1, 7], &[3, 4, 49], &[200, 7], &[2, 3, 196], &[130, 100], &[5, 1000], &[2, 3136], &[260, 257]];
    for (i, shape) in shapes.iter().enumerate() {
        let scale = [0.125, 1.0, -0.5][i % 3];
        check(shape, -4.0, 4.0, scale, &mut rng);
    }
}

#[test]
fn softmax_is_stable_for_large_inputs() {
    // exp(200) overflows f32: the max subtraction must keep every argument <= 0.
    let mut rng = Rng::new(32);
    check(&[9, 50], 100.0, 200.0, 1.0, &mut rng);
    check(&[3, 300], -200.0, 200.0, 0.2, &mut rng);
}

/// `softmax_padded`: the first `valid` elements of each row are a softmax, the rest 0 whatever
/// the input holds there (huge, or the row's largest value); too many or no valid elements are
/// refused.
#[test]
fn softmax_padded_ignores_and_zeroes_the_padding() {
    let mut rng = Rng::new(33);
    for (rows, valid, len, scale) in [(70, 49, 52, 1.0), (5, 9, 12, 0.5), (3, 7, 7, -1.0), (2, 1, 4, 1.0), (64, 300, 304, 0.125)] {
        let mut x = rng.tensor(&[rows, len], -4.0, 4.0);
        for (r, row) in x.data.chunks_mut(len).enumerate() {
            for v in &mut row[valid..] {
                *v = if r % 2 == 0 { 1.0e30 } else { 5.0 };
            }
        }
        let mut g = Graph::new();
        let xi = g.input("x", &[rows, len]);
        let y = softmax_padded(&mut g, xi, scale, valid).unwrap();
        g.output("y", y);
        let out = run(&g, &[&x]);
        let valid_rows: Vec<f32> = x.data.chunks(len).flat_map(|row| row[..valid].iter().copied()).collect();
        let softmaxed = softmax_cpu(&valid_rows, valid, scale);
        let want: Vec<f32> = softmaxed.chunks(valid).flat_map(|row| row.iter().copied().chain(std::iter::repeat_n(0.0, len - valid))).collect();
        assert_close(&format!("softmax_padded {rows}x{len}, {valid} valid"), &out[0].data, &want, 1e-7, 2e-5);
    }
    let mut g = Graph::new();
    let xi = g.input("x", &[4, 8]);
    for bad in [0, 9] {
        let e = softmax_padded(&mut g, xi, 1.0, bad).unwrap_err().to_string();
        assert!(e.contains(&format!("{bad} valid elements in rows of 8")), "{e}");
    }
}
