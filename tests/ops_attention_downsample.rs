//! LaViT's residual attention downsampling on the GPU against its f64 CPU reference: the previous
//! stage's attention `[B, Hp, 4N, M]`, head mean, single-channel 2×2/2 conv over the query map
//! of every key slice, per-head scale → `[B, H, N, M]`. Random shapes: the three stage
//! transitions of the full variants (Hp 1→2, 2→5, 5→8 heads, 49 keys), two images, a non-square
//! map with few keys; and the build-time error. Tolerance: 1e-5 abs + 1e-5 rel.

mod common;

use common::{assert_close, run};
use wgvit::ops::family::attention_downsample::{attention_downsample, attention_downsample_cpu};
use wgvit::tensor::Rng;
use wgvit::{Error, Graph};

#[test]
fn attention_downsample_matches_cpu_on_random_shapes() {
    let mut rng = Rng::new(13);
    for (batch, hp, heads, (h, w), m) in [(1, 1, 2, (28, 28), 49), (2, 2, 5, (14, 14), 49), (1, 5, 8, (7, 7), 49), (2, 3, 2, (3, 5), 7)] {
        let prev = rng.tensor(&[batch, hp, 4 * h * w, m], -1.0, 1.0);
        let weight = rng.tensor(&[1, 1, 2, 2], -1.0, 1.0);
        let bias = rng.tensor(&[1], -0.5, 0.5);
        let gamma = rng.tensor(&[heads], 0.5, 1.5);
        let mut g = Graph::new();
        let (pi, wi, bi, gi) = (g.input("prev", &prev.shape), g.input("w", &weight.shape), g.input("b", &bias.shape), g.input("g", &gamma.shape));
        let o = attention_downsample(&mut g, pi, (h, w), wi, bi, gi).unwrap();
        assert_eq!(g.shape(o), [batch, heads, h * w, m]);
        g.output("o", o);
        let got = run(&g, &[&prev, &weight, &bias, &gamma]);
        let want = attention_downsample_cpu(&prev.data, [batch, hp, 4 * h * w, m], (h, w), &weight.data, bias.data[0], &gamma.data);
        assert_close(&format!("B{batch} Hp{hp} -> H{heads} {h}x{w} M{m}"), &got[0].data, &want, 1e-5, 1e-5);
    }
}

#[test]
fn attention_downsample_shape_errors_are_named() {
    let mut g = Graph::new();
    let (pi, wi, bi, gi) = (g.input("prev", &[1, 1, 50, 4]), g.input("w", &[1, 1, 2, 2]), g.input("b", &[1]), g.input("g", &[2]));
    let err = attention_downsample(&mut g, pi, (3, 4), wi, bi, gi).unwrap_err();
    assert!(matches!(err, Error::Graph(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("attention_downsample") && msg.contains("48") && msg.contains("[1, 1, 50, 4]"), "{msg}");
    let (pi, wi) = (g.input("prev3", &[1, 48, 4]), g.input("w3", &[1, 1, 3, 3]));
    assert!(attention_downsample(&mut g, pi, (3, 4), wi, bi, gi).is_err());
}
