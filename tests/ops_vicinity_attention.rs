//! VVT's vicinity attention kernels on the GPU against the f64 CPU reference: random shapes
//! (one head of 48 lanes over 56×56 tokens — several reduction chunks —, several heads, batch 2,
//! d = 40 / 8 / 5 / 4, token counts that are not multiples of the tiles, a single token), q/k/v at
//! permuted column offsets of a wider packed tensor, inputs scaled so that every clamp fires
//! (KV and φ_q·KV at the 1e4 ceiling, z and o at the 1e-4 floor), the SE gate kernel, the host
//! angle table, and the build-time errors.

mod common;

use common::run;
use wgvit::ops::family::vicinity_attention::{
    angle_table, vicinity_attention, vicinity_attention_cpu, vicinity_gate, vicinity_gate_cpu, vicinity_kv, QkvColumns, VicinityDims,
    CLAMP_MAX, CLAMP_MIN,
};
use wgvit::kernels::{DeviceProfile, PipelineKey};
use wgvit::tensor::Rng;
use wgvit::{Error, Graph, HostTensor};

/// Element-wise `|got - want| <= atol + rtol·|want|`, except that two values both sitting on the
/// 1e-4 floor may differ in sign: `clampmag` jumps from -1e-4 to +1e-4 at zero, so a true value
/// within rounding of 0 may land on either side (spec §4). Returns the worst relative excess.
fn assert_close_clamped(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let on_floor = |x: f32| (x.abs() - CLAMP_MIN).abs() <= 1e-3 * CLAMP_MIN;
    let (mut worst, mut flips, mut floors, mut ceilings) = (0f32, 0, 0, 0);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        floors += on_floor(w) as usize;
        ceilings += (w.abs() == CLAMP_MAX) as usize;
        let err = (g - w).abs();
        if on_floor(g) && on_floor(w) && g != w {
            flips += 1;
            continue;
        }
        assert!(err <= atol + rtol * w.abs(), "{what}: element {i}: got {g}, want {w} (|diff| {err:e})");
        worst = worst.max(err / (atol + rtol * w.abs()));
    }
    eprintln!("{what}: worst error {worst:.3} of the tolerance; {floors} outputs on the 1e-4 floor ({flips} sign flips), {ceilings} at 1e4");
    assert!(flips * 100 <= got.len().max(100), "{what}: {flips} sign flips at the floor is more than rounding explains");
}

struct Case {
    batch: usize,
    heads: usize,
    grid: (usize, usize),
    d: usize,
    /// Scales of q, k, v (large values drive the clamps).
    scale: [f32; 3],
    /// Non-negative v: every sum is then free of cancellation, so huge values stay well
    /// conditioned in f32 (with signed v, KV at 1e4 would be a difference of far larger terms).
    v_abs: bool,
    /// Spare columns at the end of each qkv row; a row width that is not a multiple of 4 sends
    /// the op to its scalar kernels.
    spare: usize,
}

fn run_case(rng: &mut Rng, c: &Case, cols_of: impl Fn(usize) -> QkvColumns) -> (Vec<f32>, Vec<f32>) {
    let (got, want, _) = run_case_on(rng, c, cols_of, DeviceProfile::default());
    (got, want)
}

/// [`run_case`] for a graph built for `profile`, with the pipeline keys it took.
fn run_case_on(rng: &mut Rng, c: &Case, cols_of: impl Fn(usize) -> QkvColumns, profile: DeviceProfile) -> (Vec<f32>, Vec<f32>, Vec<PipelineKey>) {
    let n = c.grid.0 * c.grid.1;
    let width = c.heads * c.d;
    let cols = cols_of(width);
    let mut qkv = rng.tensor(&[c.batch, n, cols.row], -1.0, 1.0);
    for t in 0..c.batch * n {
        for (off, s) in [(cols.q, c.scale[0]), (cols.k, c.scale[1]), (cols.v, c.scale[2])] {
            for x in &mut qkv.data[t * cols.row + off..t * cols.row + off + width] {
                *x *= s;
                if off == cols.v && c.v_abs {
                    *x = x.abs();
                }
            }
        }
    }
    let trig = HostTensor::new(vec![n, 4], angle_table(c.grid.0, c.grid.1)).unwrap();
    let dims = VicinityDims { batch: c.batch, heads: c.heads, n, d: c.d };
    let mut g = Graph::for_profile(profile);
    let (qi, ti) = (g.input("qkv", &qkv.shape), g.input("trig", &trig.shape));
    let o = vicinity_attention(&mut g, qi, &cols, ti, &dims).unwrap();
    g.output("o", o);
    assert_eq!(g.shape(o), [c.batch, n, width]);
    let got = run(&g, &[&qkv, &trig]).remove(0).data;
    (got, vicinity_attention_cpu(&qkv.data, &cols, &trig.data, &dims), g.nodes.iter().map(|n| n.key.clone()).collect())
}

#[test]
fn vicinity_attention_matches_cpu_on_random_shapes() {
    let mut rng = Rng::new(11);
    let cases = [
        Case { batch: 1, heads: 1, grid: (56, 56), d: 48, scale: [1.0, 1.0, 1.0], v_abs: false, spare: 0 }, // vvt stage 1: 25 chunks
        Case { batch: 2, heads: 2, grid: (13, 11), d: 40, scale: [1.0, 1.0, 1.0], v_abs: false, spare: 0 }, // batch, heads, n % 8 != 0
        Case { batch: 1, heads: 3, grid: (7, 9), d: 8, scale: [1.0, 1.0, 1.0], v_abs: false, spare: 0 },
        Case { batch: 2, heads: 4, grid: (3, 5), d: 4, scale: [1.0, 1.0, 1.0], v_abs: false, spare: 0 }, // 4-lane blocks
        Case { batch: 1, heads: 2, grid: (5, 3), d: 5, scale: [1.0, 1.0, 1.0], v_abs: false, spare: 0 }, // d not a multiple of the blocks
        Case { batch: 1, heads: 2, grid: (1, 1), d: 16, scale: [1.0, 1.0, 1.0], v_abs: false, spare: 0 }, // a single token
        // The scalar kernels on the stage-1 and stage-2 shapes (rows of 3·width + 1 floats).
        Case { batch: 1, heads: 1, grid: (56, 56), d: 48, scale: [1.0, 1.0, 1.0], v_abs: false, spare: 1 },
        Case { batch: 2, heads: 2, grid: (13, 11), d: 40, scale: [1.0, 1.0, 1.0], v_abs: false, spare: 3 },
    ];
    // Both kernel sets: the CPU-like one takes the small register tiles below 4 MFLOP.
    let mut tiles = std::collections::BTreeSet::new();
    for profile in [DeviceProfile::gpu_like(), DeviceProfile::cpu_like()] {
        for (i, c) in cases.iter().enumerate() {
            let cols_of = |w| QkvColumns { row: 3 * w + c.spare, q: 0, k: w, v: 2 * w };
            let (got, want, keys) = run_case_on(&mut rng, c, cols_of, profile.clone());
            let kernels = if c.d % 4 == 0 && c.spare % 4 == 0 { "vec4" } else { "scalar" };
            let what = format!("case {i} {:?} d {} heads {} batch {} ({kernels}, {:?})", c.grid, c.d, c.heads, c.batch, profile.kernels);
            assert_close_clamped(&what, &got, &want, 1e-6, 2e-5);
            tiles.extend(keys.iter().flat_map(|k| k.constants().iter().filter(|(name, _)| ["JQ", "TQ"].contains(name)).copied()));
        }
    }
    assert_eq!(tiles.into_iter().collect::<Vec<_>>(), [("JQ", 1), ("JQ", 2), ("TQ", 1), ("TQ", 4)]);
}

#[test]
fn vicinity_attention_reads_permuted_columns_of_a_wider_tensor() {
    let mut rng = Rng::new(12);
    // row = 3 widths + 7 spare columns; k first, then v, then q.
    let c = Case { batch: 2, heads: 3, grid: (9, 6), d: 8, scale: [1.0, 1.0, 1.0], v_abs: false, spare: 0 };
    let (got, want) = run_case(&mut rng, &c, |w| QkvColumns { row: 3 * w + 7, q: 2 * w + 5, k: 0, v: w + 2 });
    assert_close_clamped("permuted columns", &got, &want, 1e-6, 2e-5);
}

#[test]
fn vicinity_attention_clamps_fire_and_match() {
    let mut rng = Rng::new(13);
    // (q, k, v scales, whether outputs must sit on a clamp limit). Tiny k and huge v: KV and
    // φ_q·KV pass 1e4 while z > 1, so outputs reach the 1e4 ceiling. Large k: Σ φ_k over 480
    // tokens takes the denominators past 1e4 (z on its 1e-4 floor); with tiny v the outputs sit
    // on the 1e-4 floor. Moderate k and v: part of KV and of z at their limits.
    for (i, (scale, on_limits)) in [([1.0, 1e-4, 1e7], true), ([1.0, 30.0, 1e-5], true), ([1.0, 3.0, 30.0], false)].into_iter().enumerate() {
        let c = Case { batch: 1, heads: 2, grid: (24, 20), d: 16, scale, v_abs: true, spare: 0 };
        let (got, want) = run_case(&mut rng, &c, |w| QkvColumns { row: 3 * w, q: 0, k: w, v: 2 * w });
        let at_limits = want.iter().filter(|x| x.abs() == CLAMP_MAX || (x.abs() - CLAMP_MIN).abs() < 1e-9).count();
        assert!(!on_limits || at_limits > 0, "scale {scale:?}: no output on a clamp limit");
        assert_close_clamped(&format!("clamps {i} scale {scale:?}"), &got, &want, 1e-6, 2e-5);
    }
}

#[test]
fn vicinity_gate_matches_cpu() {
    let mut rng = Rng::new(14);
    let (b, n, c) = (2, 37, 24);
    let mut y = rng.tensor(&[b, n, c], -2.0, 2.0);
    // Exact zeros stay zero, tiny values go to the floor, huge ones to the ceiling.
    for (k, v) in [(0, 0.0), (1, 3e-6), (2, -5e-5), (3, 2e4), (4, -7e4), (5, 9999.0)] {
        y.data[k * 7] = v;
    }
    let s = rng.tensor(&[b, c], 0.0, 1.0);
    let r = rng.tensor(&[b, n, c], -1.0, 1.0);
    let mut g = Graph::new();
    let (yi, si, ri) = (g.input("y", &y.shape), g.input("s", &s.shape), g.input("r", &r.shape));
    let out = vicinity_gate(&mut g, yi, si, ri).unwrap();
    g.output("out", out);
    let got = run(&g, &[&y, &s, &r]).remove(0).data;
    let want = vicinity_gate_cpu(&y.data, &s.data, &r.data, n, c);
    common::assert_close("vicinity_gate", &got, &want, 1e-6, 1e-6);
    assert_eq!(got[0], r.data[0], "clampmag(0) = 0: the residual passes unchanged");
    assert!((got[21] - r.data[21] - 1e4).abs() < 1e-2, "ceiling: {}", got[21] - r.data[21]);
}

#[test]
fn angle_table_is_the_f32_angle_evaluated_in_f64() {
    let (h, w) = (13, 7);
    let t = angle_table(h, w);
    assert_eq!(t.len(), 4 * h * w);
    for n in 0..h * w {
        let (row, col) = (n / w, n % w);
        let alpha = std::f64::consts::FRAC_PI_2 * row as f64 / h as f64;
        let beta = std::f64::consts::FRAC_PI_2 * col as f64 / w as f64;
        for (k, want) in [alpha.cos(), alpha.sin(), beta.cos(), beta.sin()].into_iter().enumerate() {
            assert!((t[4 * n + k] as f64 - want).abs() <= 2.5e-7, "token {n} factor {k}: {} vs {want}", t[4 * n + k]);
        }
    }
    assert_eq!(&t[..4], &[1.0, 0.0, 1.0, 0.0], "token 0 has both angles 0");
}

#[test]
fn vvt_shapes_take_the_vec4_kernels() {
    use wgvit::ops::Kernel;
    // vvt-tiny stage 2 (C' = 80, 2 heads of 40) and vvt-micro stage 4 (C' = 16, 4 heads of 4).
    for (heads, d) in [(2, 40), (4, 4)] {
        let mut g = Graph::new();
        let w = heads * d;
        let qkv = g.input("qkv", &[1, 30, 3 * w]);
        let trig = g.input("trig", &[30, 4]);
        let dims = VicinityDims { batch: 1, heads, n: 30, d };
        vicinity_attention(&mut g, qkv, &QkvColumns { row: 3 * w, q: 0, k: w, v: 2 * w }, trig, &dims).unwrap();
        let kernels: Vec<Kernel> = g.nodes.iter().map(|n| n.key.kernel).collect();
        assert_eq!(kernels, [Kernel::VicinityKvVec4, Kernel::VicinityKvReduce, Kernel::VicinityApplyVec4], "heads {heads}, d {d}");
    }
}

#[test]
fn vicinity_ops_reject_bad_shapes() {
    let mut g = Graph::new();
    let qkv = g.input("qkv", &[1, 20, 24]);
    let trig = g.input("trig", &[20, 4]);
    let bad_trig = g.input("bad_trig", &[21, 4]);
    let dims = VicinityDims { batch: 1, heads: 2, n: 20, d: 4 };
    let cols = QkvColumns { row: 24, q: 0, k: 8, v: 16 };
    for (what, res) in [
        ("trig", vicinity_kv(&mut g, qkv, &cols, bad_trig, &dims)),
        ("columns", vicinity_kv(&mut g, qkv, &QkvColumns { v: 17, ..cols }, trig, &dims)),
        ("tokens", vicinity_kv(&mut g, qkv, &cols, trig, &VicinityDims { n: 19, ..dims })),
        ("empty", vicinity_kv(&mut g, qkv, &cols, trig, &VicinityDims { d: 0, ..dims })),
    ] {
        let err = res.unwrap_err();
        assert!(matches!(err, Error::Graph(ref m) if m.contains("vicinity_kv")), "{what}: {err}");
    }
    let y = g.input("y", &[1, 20, 8]);
    let s = g.input("s", &[1, 9]);
    let err = vicinity_gate(&mut g, y, s, y).unwrap_err().to_string();
    assert!(err.contains("vicinity_gate") && err.contains("[1, 9]"), "{err}");
}
