//! Fused atrous attention (ACC-ViT: gated window attention over dilated partitions, all branches
//! in one dispatch) on the GPU against its f64 CPU reference, which gathers each dilated window
//! explicitly as the contract's `dilated_partition` does: 1–4 branches (dilations up to 8),
//! batch 2, non-square maps, head dims 8–64, windows 4–8, random gate logits (their padding lanes
//! hold garbage that must not leak into the softmax); the CPU reference's partition against the
//! spec's formula; build-time errors. Tolerance: 1e-5 abs + 1e-5 rel.

mod common;

use common::{assert_close, run};
use wgvit::models::torch_layout::atrous_attention_table as table_from_torch;
use wgvit::ops::family::atrous_attention::{atrous_attention, atrous_attention_cpu, AtrousAttentionDims};
use wgvit::tensor::Rng;
use wgvit::kernels::DeviceProfile;
use wgvit::Graph;

fn dims(batch: usize, h: usize, w: usize, channels: usize, heads: usize, branches: usize, window: usize) -> AtrousAttentionDims {
    AtrousAttentionDims { batch, h, w, channels, heads, branches, window }
}

#[test]
fn atrous_attention_matches_cpu_on_random_shapes() {
    let mut rng = Rng::new(21);
    let cases = [
        dims(1, 28, 28, 32, 1, 3, 7),  // dilations 1, 2, 4 (the last one the grid)
        dims(2, 14, 28, 64, 2, 2, 7),  // batch 2, non-square
        dims(1, 7, 7, 16, 1, 1, 7),    // one branch: no gate (ACC-ViT's stage 4), head dim 16
        dims(1, 16, 8, 24, 2, 2, 4),   // head dim 12, window 4
        dims(1, 16, 16, 64, 1, 2, 8),  // largest window and head dim
        dims(1, 56, 56, 8, 1, 4, 7),   // four branches, dilation 8
    ];
    // The GPU set (one query per invocation) and lavapipe's (four from 4 MFLOP: cases 0, 1, 4, 5,
    // the last invocation of a 7 × 7 window owning one real query and three past the window).
    for ((i, dm), profile) in cases.iter().enumerate().flat_map(|c| [(c, DeviceProfile::default()), (c, common::lavapipe())]) {
        let qkv = rng.tensor(&[dm.batch, dm.h, dm.w, dm.qkv_row()], -1.0, 1.0);
        let mut qkv = qkv;
        // Gate logits over a wider range (a peaked softmax), padding lanes left random.
        for px in 0..dm.batch * dm.h * dm.w {
            for g in 0..dm.gate_channels().min(dm.branches) {
                qkv.data[px * dm.qkv_row() + 3 * dm.branches * dm.channels + g] *= 4.0;
            }
        }
        let table = rng.tensor(&[dm.branches, dm.heads, dm.table_len()], -2.0, 2.0);
        let scale = (dm.head_dim() as f32).powf(-0.5);
        let mut g = Graph::for_profile(profile);
        let (qi, ti) = (g.input("qkv", &qkv.shape), g.input("table", &table.shape));
        let o = atrous_attention(&mut g, qi, ti, dm, scale).unwrap();
        g.output("o", o);
        assert_eq!(g.shape(o), [dm.batch, dm.h, dm.w, dm.out_row()]);
        let queries = g.nodes[0].key.constants().iter().find(|(name, _)| *name == "QB").map(|&(_, v)| v);
        let t = std::time::Instant::now();
        let out = run(&g, &[&qkv, &table]);
        let elapsed = t.elapsed();
        let want = atrous_attention_cpu(&qkv.data, &table.data, dm, scale);
        assert_close(&format!("case {i} {dm:?}, {} with {queries:?} queries per invocation ({elapsed:.2?})", g.profile.name), &out[0].data, &want, 1e-5, 1e-5);
    }
}

/// The CPU reference on a map whose pixels are their own coordinates: with q = 0 and a zero bias
/// the attention averages v over the window, so each output is the mean of its dilated window's
/// coordinates — the window of (row, col) at dilation d is {((g·7 + u)·d + a, ...)} per the spec.
#[test]
fn atrous_attention_cpu_windows_follow_the_spec_partition() {
    let dm = dims(1, 28, 28, 4, 1, 3, 7);
    let (row_in, c) = (dm.qkv_row(), dm.channels);
    let mut qkv = vec![0f32; dm.h * dm.w * row_in];
    for r in 0..dm.h {
        for s in 0..dm.w {
            let px = r * dm.w + s;
            for br in 0..3 {
                qkv[px * row_in + br * 3 * c + 2 * c] = r as f32; // v channel 0 = row
                qkv[px * row_in + br * 3 * c + 2 * c + 1] = s as f32; // v channel 1 = column
            }
        }
    }
    let table = vec![0f32; 3 * dm.table_len()];
    let out = atrous_attention_cpu(&qkv, &table, &dm, 1.0);
    let row_out = dm.out_row();
    for r in 0..dm.h {
        for s in 0..dm.w {
            let px = r * dm.w + s;
            for br in 0..3 {
                let d = 1 << br;
                // Rows of the window: same g = r / (7d) and offset a = r % d.
                let mean = |x: usize| ((x / (7 * d)) * 7 * d + x % d) as f32 + 3.0 * d as f32;
                let g = out[px * row_out + 3 * c + br];
                assert!((g - 1.0 / 3.0).abs() < 1e-6, "equal gate logits give 1/3, got {g}");
                let (mr, ms) = (out[px * row_out + br * c] / g, out[px * row_out + br * c + 1] / g);
                assert!((mr - mean(r)).abs() < 1e-4 && (ms - mean(s)).abs() < 1e-4, "({r}, {s}) branch {br}: {mr}, {ms}");
            }
        }
    }
}

/// On lavapipe qkv, the output of the GEMM before the attention, moves to a texture (each texel
/// fetched by the 49 queries of its window) and the constant bias table to a uniform buffer:
/// three branches at 28 × 28 (four queries per invocation) and two at 14 × 14 (one), each with
/// its qkv GEMM from a random token map, against the CPU GEMM and attention.
#[test]
fn atrous_attention_reads_its_qkv_from_a_texture_and_its_table_from_a_uniform_on_lavapipe() {
    use wgvit::ops::matmul::{linear, matmul_cpu};
    use wgvit::ops::Activation;
    let mut rng = Rng::new(23);
    for (dm, want_queries) in [(dims(1, 28, 28, 32, 1, 3, 7), 4), (dims(1, 14, 14, 16, 2, 2, 7), 1)] {
        let case = format!("{dm:?}");
        let (rows, c, row_in) = (dm.batch * dm.h * dm.w, dm.channels, dm.qkv_row());
        let x = rng.tensor(&[dm.batch, dm.h, dm.w, c], -1.0, 1.0);
        let w_in = rng.tensor(&[row_in, c], -0.5, 0.5);
        let table = rng.tensor(&[dm.branches, dm.heads, dm.table_len()], -2.0, 2.0);
        let scale = (dm.head_dim() as f32).powf(-0.5);
        let mut g = Graph::for_profile(common::lavapipe());
        let xi = g.input("x", &x.shape);
        let wi = g.constant("w_in", &w_in.shape, std::sync::Arc::new(w_in.data.clone())).unwrap();
        let ti = g.constant("table", &table.shape, std::sync::Arc::new(table.data.clone())).unwrap();
        let qkv = linear(&mut g, xi, wi, None, Activation::None).unwrap();
        let o = atrous_attention(&mut g, qkv, ti, &dm, scale).unwrap();
        g.output("o", o);
        let promoted = common::promoted_to_textures(&g, &[qkv], "atrous_attention", &["QKV_TEXTURE", "TABLE_UNIFORM"], &case);
        let node = promoted.nodes.iter().find(|n| n.label.starts_with("atrous_attention")).unwrap();
        assert!(promoted.is_uniform(node.reads[1]), "{case}: the table is read from a uniform buffer");
        assert!(node.key.constants().contains(&("QB", want_queries)), "{case}: {want_queries} queries per invocation in {:?}", node.key.constants());
        let out = run(&g, &[&x]);
        let (qkv_want, _) = matmul_cpu(&x.data, &[rows, c], &w_in.data, &[row_in, c], false, true, 1.0, None, Activation::None, None);
        let want = atrous_attention_cpu(&qkv_want, &table.data, &dm, scale);
        assert_close(&case, &out[0].data, &want, 1e-5, 1e-5);
    }
}

#[test]
fn atrous_attention_table_from_torch_transposes() {
    let t0: Vec<f32> = (0..6).map(|v| v as f32).collect(); // [3 positions, 2 heads]
    let t1: Vec<f32> = (10..16).map(|v| v as f32).collect();
    assert_eq!(table_from_torch(&[&t0, &t1], 2), vec![0., 2., 4., 1., 3., 5., 10., 12., 14., 11., 13., 15.]);
}

#[test]
fn atrous_attention_rejects_bad_shapes() {
    let cases = [
        (dims(1, 28, 21, 32, 1, 3, 7), "multiples of window"),
        (dims(1, 14, 14, 30, 3, 1, 7), "head dim 10"),
        (dims(1, 14, 14, 128, 1, 1, 7), "head dim 128"),
        (dims(1, 112, 112, 32, 1, 5, 7), "at most 4 branches"),
        (dims(1, 18, 18, 32, 1, 1, 9), "window side"),
    ];
    for (dm, needle) in cases {
        let mut g = Graph::new();
        let qkv = g.input("qkv", &[dm.batch, dm.h, dm.w, dm.qkv_row()]);
        let table = g.input("t", &[dm.branches, dm.heads, dm.table_len()]);
        let err = atrous_attention(&mut g, qkv, table, &dm, 1.0).unwrap_err().to_string();
        assert!(err.contains("atrous_attention") && err.contains(needle), "{dm:?}: {err}");
    }
    let dm = dims(1, 14, 14, 32, 1, 2, 7);
    let mut g = Graph::new();
    let qkv = g.input("qkv", &[1, 14, 14, 3 * 2 * 32]); // gate channels missing
    let table = g.input("t", &[2, 1, 169]);
    let err = atrous_attention(&mut g, qkv, table, &dm, 1.0).unwrap_err().to_string();
    assert!(err.contains("qkv must be [1, 14, 14, 196]"), "{err}");
}
