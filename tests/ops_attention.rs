//! Fused attention on the GPU against the f64 CPU reference: contiguous operands on random shapes
//! (Nq ≠ Nk, windows of 49 and 64 tokens, d 16/32/48/64 and odd sizes, with and without bias),
//! q/k/v read through strides out of a packed `[B, N, 3, heads, d]` projection and out of the
//! windows of a channel-last map, and the build-time errors. Tolerance: 1e-5 abs + 1e-5 rel.

mod common;

use common::{assert_close, lavapipe, run};
use wgvit::ops::attention::{
    attention, attention_cpu, attention_strided, AttentionDims, Operand, OutputSpec, View, MAX_D,
};
use wgvit::tensor::Rng;
use wgvit::kernels::DeviceProfile;
use wgvit::{Graph, HostTensor};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-5;

fn dims(batch: usize, heads: usize, nq: usize, nk: usize, d: usize, dv: usize) -> AttentionDims {
    AttentionDims { batch, heads, nq, nk, d, dv }
}

#[test]
fn attention_matches_cpu_on_random_shapes() {
    let mut rng = Rng::new(7);
    // (dims, with bias)
    let cases = [
        (dims(2, 3, 49, 49, 32, 32), true),  // 7x7 windows
        (dims(3, 2, 64, 64, 16, 16), false), // 8x8 windows
        (dims(2, 2, 49, 64, 48, 48), true),  // Nq != Nk
        (dims(2, 2, 64, 49, 64, 64), false), // largest d
        (dims(1, 3, 17, 5, 13, 7), true),    // d, dv not multiples of 4, Nk not a multiple of the key block
        (dims(2, 2, 10, 30, 16, 80), true),  // dv > 64: two output chunks
        (dims(4, 4, 64, 64, 32, 32), true),  // two query rows per invocation (CPU-like, heads up to 48)
        (dims(3, 4, 49, 49, 64, 80), false), // one row past 48 channels, two output chunks
        (dims(4, 4, 64, 64, 30, 30), true),  // two query rows, d not a multiple of 4 (scalar loads)
        (dims(4, 4, 63, 64, 34, 34), true),  // the same, an odd last row
        (dims(2, 3, 63, 49, 48, 48), true),  // two rows at the largest two-row head, odd last row
        (dims(4, 4, 63, 64, 50, 50), true),  // one row past 48 channels, scalar loads
        (dims(1, 2, 17, 9, 50, 50), false),  // the same, small
    ];
    // Every kernel variant, each with its channel loops written out for the head size: one query
    // row (GPU-like set; CPU-like set, heads over 48 channels), two (CPU-like set, heads up to 48)
    // and four (lavapipe, odd last rows included), each with element loads (d or dv not a
    // multiple of 4) and with vec4 loads (the contiguous operands otherwise).
    let profiles = [DeviceProfile::gpu_like(), DeviceProfile::cpu_like(), lavapipe()];
    let mut variants = std::collections::BTreeSet::new();
    // SwiftShader's variants store their output in a loop over the channel groups.
    let mut looped_variants = std::collections::BTreeSet::new();
    for (i, ((dm, with_bias), profile)) in cases.iter().flat_map(|c| profiles.clone().map(|p| (c, p))).enumerate() {
        let q = rng.tensor(&[dm.batch, dm.heads, dm.nq, dm.d], -1.0, 1.0);
        let k = rng.tensor(&[dm.batch, dm.heads, dm.nk, dm.d], -1.0, 1.0);
        let v = rng.tensor(&[dm.batch, dm.heads, dm.nk, dm.dv], -1.0, 1.0);
        let bias = rng.tensor(&[dm.heads, dm.nq, dm.nk], -2.0, 2.0);
        let scale = 1.0 / (dm.d as f32).sqrt() * 1.5;
        let kernels = profile.kernels;
        let mut g = Graph::for_profile(profile);
        let (qi, ki, vi) = (g.input("q", &q.shape), g.input("k", &k.shape), g.input("v", &v.shape));
        let bi = with_bias.then(|| g.input("bias", &bias.shape));
        let o = attention(&mut g, qi, ki, vi, bi, scale).unwrap();
        g.output("o", o);
        assert_eq!(g.shape(o), [dm.batch, dm.heads, dm.nq, dm.dv]);
        variants.extend(g.nodes.iter().map(|n| n.key.kernel.name()));
        looped_variants.extend(g.nodes.iter().filter(|n| n.key.constants().contains(&("STORE_LOOP", 1))).map(|n| n.key.kernel.name()));
        let mut inputs = vec![&q, &k, &v];
        if *with_bias {
            inputs.push(&bias);
        }
        let t = std::time::Instant::now();
        let out = run(&g, &inputs);
        let elapsed = t.elapsed();
        let want = attention_cpu(&q.data, &k.data, &v.data, with_bias.then_some(&bias.data[..]), dm, scale);
        assert_close(&format!("case {i} {dm:?} bias={with_bias} {kernels:?} ({elapsed:.2?})"), &out[0].data, &want, ATOL, RTOL);
    }
    assert_eq!(
        variants.into_iter().collect::<Vec<_>>(),
        ["attention", "attention_qb2", "attention_qb2_vec4", "attention_qb4", "attention_qb4_vec4", "attention_vec4"]
    );
    assert_eq!(looped_variants.into_iter().collect::<Vec<_>>(), ["attention", "attention_qb2", "attention_qb2_vec4", "attention_vec4"]);
}

/// On lavapipe a packed qkv projection that only matmuls and attentions touch moves to a texture
/// (`Graph::with_activation_textures`): the matmul writes it as a storage texture and the
/// attention fetches q, k and v as texels. Checked: the defines, and the values against the CPU.
#[test]
fn attention_reads_q_k_v_from_activation_textures() {
    use std::sync::Arc;
    use wgvit::graph::StorageKind;
    use wgvit::ops::matmul::{matmul, matmul_cpu, Epilogue};
    use wgvit::ops::Activation;
    let mut rng = Rng::new(31);
    let (n, c, heads, d) = (64, 24, 2, 16);
    let row = 3 * heads * d;
    let x = rng.tensor(&[1, n, c], -1.0, 1.0);
    let w = rng.tensor(&[row, c], -0.5, 0.5);
    let dm = dims(1, heads, n, n, d, d);
    let scale = (d as f32).powf(-0.5);
    let mut g = Graph::for_profile(lavapipe());
    let xi = g.input("x", &x.shape);
    let wi = g.constant("qkv.weight", &w.shape, Arc::new(w.data.clone())).unwrap();
    let qkv = matmul(&mut g, xi, wi, false, true, Epilogue::default()).unwrap();
    let operand = |which: usize| Operand::new(qkv, View::tokens(row, n, which * heads * d, d));
    let o = attention_strided(&mut g, operand(0), operand(1), operand(2), None, &dm, scale, &OutputSpec::merged(&dm)).unwrap();
    g.output("o", o);

    let promoted = g.with_activation_textures(0);
    let storage = &promoted.storages[promoted.tensors[qkv.0].storage];
    assert!(matches!(storage.kind, StorageKind::Activation { texture: true, .. }), "the projection moves to a texture");
    let attention_node = promoted.nodes.iter().find(|n| n.label == "attention").unwrap();
    let defines: Vec<(&str, u32)> = attention_node.key.constants().iter().copied().filter(|(k, _)| k.ends_with("_TEXTURE")).collect();
    for define in ["Q_TEXTURE", "K_TEXTURE", "V_TEXTURE"] {
        assert!(defines.contains(&(define, 1)), "{define} in {defines:?}");
    }
    assert_eq!(attention_node.key.kernel.name(), "attention_qb4_vec4");

    let (packed, _) = matmul_cpu(&x.data, &x.shape, &w.data, &w.shape, false, true, 1.0, None, Activation::None, None);
    let packed = HostTensor::new(vec![1, n, 3, heads, d], packed).unwrap();
    let heads_out = attention_cpu(&unpack(&packed, 0), &unpack(&packed, 1), &unpack(&packed, 2), None, &dm, scale);
    let want = merge_heads(&heads_out, &dm);
    let out = run(&promoted, &[&x]);
    assert_close("qkv projection → attention through textures", &out[0].data, &want, ATOL, RTOL);
}

/// The vec4 kernel is taken only when every row of q, k and v starts on a vec4 and channels are
/// contiguous; an operand packed at an odd offset falls back to element loads and stays exact.
#[test]
fn attention_takes_vec4_loads_only_on_aligned_rows() {
    assert!(View::contiguous(2, 8, 16).rows_are_vec4());
    assert!(!View { offset: 2, ..View::contiguous(2, 8, 16) }.rows_are_vec4());
    assert!(!View { channel: 2, ..View::contiguous(2, 8, 16) }.rows_are_vec4());
    assert!(!View::tokens(18, 8, 0, 16).rows_are_vec4(), "token stride 18");

    let mut rng = Rng::new(9);
    let dm = dims(2, 2, 8, 8, 16, 16);
    // q, k, v packed per token (rows of 100 channels), from channel `offset` on.
    let row = 100;
    let x = rng.tensor(&[2, 8, row], -1.0, 1.0);
    for (offset, vec4) in [(2usize, false), (0, true)] {
        let mut g = Graph::for_profile(DeviceProfile::cpu_like());
        let xi = g.input("x", &x.shape);
        let operand = |which: usize| Operand::new(xi, View::tokens(row, 8, offset + which * 32, 16));
        let o = attention_strided(&mut g, operand(0), operand(1), operand(2), None, &dm, 0.25, &OutputSpec::heads(&dm)).unwrap();
        g.output("o", o);
        let kernel = g.nodes.last().unwrap().key.kernel.name();
        assert_eq!(kernel.ends_with("_vec4"), vec4, "offset {offset}: {kernel}");
        let out = run(&g, &[&x]);
        let take = |which: usize| {
            let mut t = Vec::new();
            for b in 0..2 {
                for h in 0..2 {
                    for n in 0..8 {
                        let at = (b * 8 + n) * row + offset + which * 32 + h * 16;
                        t.extend_from_slice(&x.data[at..at + 16]);
                    }
                }
            }
            t
        };
        let want = attention_cpu(&take(0), &take(1), &take(2), None, &dm, 0.25);
        assert_close(&format!("packed at offset {offset} ({kernel})"), &out[0].data, &want, ATOL, RTOL);
    }
}

#[test]
fn attention_masked_keys_get_zero_weight() {
    // Swin-style masks: -100 and -inf entries (never a whole row) must vanish from the softmax.
    let mut rng = Rng::new(8);
    let dm = dims(2, 2, 16, 16, 8, 8);
    let q = rng.tensor(&[2, 2, 16, 8], -1.0, 1.0);
    let k = rng.tensor(&[2, 2, 16, 8], -1.0, 1.0);
    let v = rng.tensor(&[2, 2, 16, 8], -1.0, 1.0);
    let mut bias = rng.tensor(&[2, 16, 16], -1.0, 1.0);
    for (i, b) in bias.data.iter_mut().enumerate() {
        match i % 5 {
            1 => *b = -100.0,
            3 => *b = f32::NEG_INFINITY,
            _ => {}
        }
    }
    let mut g = Graph::new();
    let (qi, ki, vi, bi) = (g.input("q", &q.shape), g.input("k", &k.shape), g.input("v", &v.shape), g.input("b", &bias.shape));
    let o = attention(&mut g, qi, ki, vi, Some(bi), 0.35).unwrap();
    g.output("o", o);
    let out = run(&g, &[&q, &k, &v, &bias]);
    let want = attention_cpu(&q.data, &k.data, &v.data, Some(&bias.data), &dm, 0.35);
    assert_close("masked", &out[0].data, &want, ATOL, RTOL);
}

/// Gathers `[B, heads, N, c]` contiguous out of a packed `[B, N, 3, heads, d]` tensor, by hand.
fn unpack(packed: &HostTensor, which: usize) -> Vec<f32> {
    let [b, n, three, heads, d] = packed.shape[..] else { panic!("rank 5") };
    assert_eq!(three, 3);
    let mut out = Vec::with_capacity(b * heads * n * d);
    for bi in 0..b {
        for h in 0..heads {
            for t in 0..n {
                for c in 0..d {
                    out.push(packed.data[(((bi * n + t) * 3 + which) * heads + h) * d + c]);
                }
            }
        }
    }
    out
}

/// Contiguous heads `[B, heads, nq, dv]` merged back into channels: `[B, nq, heads·dv]`.
fn merge_heads(heads_out: &[f32], dm: &AttentionDims) -> Vec<f32> {
    let (b, heads, n, dv) = (dm.batch, dm.heads, dm.nq, dm.dv);
    let mut out = vec![0f32; b * n * heads * dv];
    for bi in 0..b {
        for h in 0..heads {
            for t in 0..n {
                for c in 0..dv {
                    out[(bi * n + t) * heads * dv + h * dv + c] = heads_out[((bi * heads + h) * n + t) * dv + c];
                }
            }
        }
    }
    out
}

#[test]
fn attention_reads_a_packed_qkv_projection_through_strides() {
    let mut rng = Rng::new(9);
    for (b, n, heads, d) in [(2, 49, 3, 32), (3, 64, 2, 16), (1, 23, 4, 12)] {
        let packed = rng.tensor(&[b, n, 3, heads, d], -1.0, 1.0);
        let bias = rng.tensor(&[heads, n, n], -1.0, 1.0);
        let dm = dims(b, heads, n, n, d, d);
        let row = 3 * heads * d;
        let scale = (d as f32).powf(-0.5);
        let mut g = Graph::new();
        let x = g.input("qkv", &packed.shape);
        let bi = g.input("bias", &bias.shape);
        let operand = |which: usize| Operand::new(x, View::tokens(row, n, which * heads * d, d));
        let o = attention_strided(
            &mut g,
            operand(0),
            operand(1),
            operand(2),
            Some(Operand::new(bi, View::contiguous(heads, n, n).shared_batch())),
            &dm,
            scale,
            &OutputSpec::merged(&dm),
        )
        .unwrap();
        g.output("o", o);
        assert_eq!(g.nodes.len(), 1, "no copies besides the attention itself");
        let out = run(&g, &[&packed, &bias]);
        // reference: contiguous heads, then merged back to [B, N, heads*d]
        let heads_out = attention_cpu(&unpack(&packed, 0), &unpack(&packed, 1), &unpack(&packed, 2), Some(&bias.data), &dm, scale);
        let want = merge_heads(&heads_out, &dm);
        assert_close(&format!("packed b={b} n={n} heads={heads} d={d}"), &out[0].data, &want, ATOL, RTOL);
    }
}

#[test]
fn attention_reads_windows_of_a_channel_last_map() {
    // qkv of a [B, H, W, 3C] map, 4x4 windows (2 x 3 of them), written back into [B, H, W, C]:
    // compared with an explicit window partition on the host.
    let mut rng = Rng::new(10);
    let (b, h, w, heads, d, win) = (2, 8, 12, 2, 8, 4);
    let c = heads * d;
    let map = rng.tensor(&[b, h, w, 3 * c], -1.0, 1.0);
    let bias = rng.tensor(&[heads, win * win, win * win], -1.0, 1.0);
    let (nwh, nww) = (h / win, w / win);
    let dm = dims(b * nwh * nww, heads, win * win, win * win, d, d);
    let scale = 0.3;
    let mut g = Graph::new();
    let x = g.input("qkv", &map.shape);
    let bi = g.input("bias", &bias.shape);
    let operand = |which: usize| Operand::new(x, View::windows(h, w, (win, win), 3 * c, which * c, d));
    let out_spec = OutputSpec { shape: vec![b, h, w, c], view: View::windows(h, w, (win, win), c, 0, d) };
    let o = attention_strided(
        &mut g,
        operand(0),
        operand(1),
        operand(2),
        Some(Operand::new(bi, View::contiguous(heads, win * win, win * win).shared_batch())),
        &dm,
        scale,
        &out_spec,
    )
    .unwrap();
    g.output("o", o);
    let out = run(&g, &[&map, &bias]);

    // host window partition: window (bi, wy, wx), token (iy, ix) -> pixel (wy*win+iy, wx*win+ix)
    let pixel = |n: usize, t: usize| {
        let (bi, wy, wx) = (n / (nwh * nww), (n / nww) % nwh, n % nww);
        (bi, wy * win + t / win, wx * win + t % win)
    };
    let gather = |which: usize| {
        let mut v = Vec::new();
        for n in 0..dm.batch {
            for hd in 0..heads {
                for t in 0..win * win {
                    let (bi, y, xx) = pixel(n, t);
                    for ch in 0..d {
                        v.push(map.data[((bi * h + y) * w + xx) * 3 * c + which * c + hd * d + ch]);
                    }
                }
            }
        }
        v
    };
    let heads_out = attention_cpu(&gather(0), &gather(1), &gather(2), Some(&bias.data), &dm, scale);
    let mut want = vec![f32::NAN; b * h * w * c];
    for n in 0..dm.batch {
        for hd in 0..heads {
            for t in 0..win * win {
                let (bi, y, xx) = pixel(n, t);
                for ch in 0..d {
                    want[((bi * h + y) * w + xx) * c + hd * d + ch] = heads_out[((n * heads + hd) * win * win + t) * d + ch];
                }
            }
        }
    }
    assert_close("windows", &out[0].data, &want, ATOL, RTOL);
}

#[test]
fn attention_rejects_bad_shapes_and_views() {
    let mut g = Graph::new();
    let q = g.input("q", &[1, 2, 8, MAX_D + 4]);
    let err = attention(&mut g, q, q, q, None, 1.0).unwrap_err().to_string();
    assert!(err.contains("head dim d = 68"), "{err}");

    let q = g.input("q2", &[1, 2, 8, 16]);
    let k = g.input("k2", &[1, 2, 9, 8]);
    let err = attention(&mut g, q, k, k, None, 1.0).unwrap_err().to_string();
    assert!(err.contains("[1, 2, 9, 8]"), "{err}");

    let bias = g.input("b", &[2, 8, 7]);
    let err = attention(&mut g, q, q, q, Some(bias), 1.0).unwrap_err().to_string();
    assert!(err.contains("bias must be [heads, Nq, Nk] = [2, 8, 8]"), "{err}");

    // a view running past its tensor
    let dm = dims(1, 2, 8, 8, 16, 16);
    let op = Operand::new(q, View::contiguous(2, 8, 16));
    let far = Operand::new(q, View { offset: 1, ..View::contiguous(2, 8, 16) });
    let err = attention_strided(&mut g, op, far, op, None, &dm, 1.0, &OutputSpec::heads(&dm)).unwrap_err().to_string();
    assert!(err.contains("k view"), "{err}");

    // an output view that writes some elements twice (token stride 0)
    let spec = OutputSpec { shape: vec![1, 2, 8, 16], view: View::strided(0, 0, 128, 0, 1) };
    let err = attention_strided(&mut g, op, op, op, None, &dm, 1.0, &spec).unwrap_err().to_string();
    assert!(err.contains("written twice"), "{err}");
    assert!(g.nodes.is_empty());
}

#[test]
fn attention_dispatch_folds_past_65535_workgroups() {
    // Graph only (no GPU): 64 query rows per workgroup, 64 rows per (batch, head) here, so
    // 2·65535 + 5 workgroups.
    let mut g = Graph::new();
    let batch = 2 * 65535 + 5;
    let q = g.input("q", &[batch, 1, 64, 1]);
    let o = attention(&mut g, q, q, q, None, 1.0).unwrap();
    g.output("o", o);
    let [x, y, z] = g.nodes[0].workgroups;
    assert!(y > 1 && x <= 65535 && z == 1, "{:?}", g.nodes[0].workgroups);
    assert!(x as usize * y as usize >= batch);
}
