//! LaViT against golden outputs of the shared contract (shared/reference/contract.py `LaViTR`;
//! fixtures from tools/make_lavit_fixture.py, weights stored as F16): `micro` (Θ only) and
//! `micro-psi` (Θ and the query-axis Ψ) at 64×64 — every code path of the full variants (VA with
//! spatial reduction, LA layers reading the stored matrix, the residual attention downsampling
//! between stages, the R = 1 stage) at unit-test widths — and `micro` at 96×96, whose 9 keys per
//! stage are padded to 12 key slots as the full variants' 49 keys are to 52 (at 64×64 there are 4
//! keys, already a multiple of 4). Per stage: the output tokens and the attention matrix the
//! stage carries out; then the logits (also through `wgvit run`). Then the
//! errors: another input size (naming the size the weights were made for), Θ-only and Ψ weights
//! under the wrong id, missing and misshapen tensors.

mod common;

use wgvit::models::build_graph;
use wgvit::weights::read_tensor;
use wgvit::{Error, HostTensor, Weights};

fn dir(variant: &str) -> String {
    format!("{}/tests/fixtures/lavit-{variant}", env!("CARGO_MANIFEST_DIR"))
}

fn fixture(variant: &str, name: &str) -> Vec<u8> {
    let path = format!("{}/{name}", dir(variant));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn weights(variant: &str) -> Weights {
    Weights::from_bytes(&format!("lavit-{variant}/weights.safetensors"), &fixture(variant, "weights.safetensors")).unwrap()
}

/// The fixture in `tests/fixtures/lavit-{variant}` (`micro-96`: lavit-micro at 96×96) against the
/// model `lavit-{id}`.
fn check_variant(variant: &str) {
    let id = variant.trim_end_matches("-96");
    let w = weights(variant);
    let input = read_tensor("input.safetensors", &fixture(variant, "input.safetensors"), "input").unwrap();
    let mut graph = build_graph(&format!("lavit-{id}"), &w, &input.shape).unwrap();
    graph.promote_taps();
    let names: Vec<String> = graph.outputs.iter().map(|(n, _)| n.clone()).collect();
    let outputs = common::run(&graph, &[&input]);

    let stages = fixture(variant, "intermediates.safetensors");
    let mut failures = Vec::new();
    for (name, got) in names.iter().zip(&outputs) {
        let (file, key) = if name == "logits" { (fixture(variant, "logits.safetensors"), "logits") } else { (stages.clone(), name.as_str()) };
        let want = read_tensor(name, &file, key).unwrap();
        let got = valid_keys(name, got, &want);
        assert_eq!(got.shape, want.shape, "{variant} {name}");
        let diff = got.max_abs_diff(&want);
        let scale = want.data.iter().fold(0f32, |m, v| m.max(v.abs()));
        eprintln!("lavit-{variant} {name:12} max abs diff {diff:.3e} (max |want| {scale:.2})");
        // The project's budget is 1e-4 on logits; stage tokens and attention are O(1) too.
        if diff.is_nan() || diff > 1e-4 {
            failures.push(format!("{name}: {diff:.3e}"));
        }
    }
    assert!(failures.is_empty(), "lavit-{variant}: over 1e-4: {failures:?}");
    assert_eq!(names.first().map(String::as_str), Some("logits"));
    for m in 0..4 {
        assert!(names.contains(&format!("stage{m}")) && names.contains(&format!("stage{m}.attn")), "stage taps: {names:?}");
    }
}

/// A carried attention `[B, H, N, slots]` cut to the reference's `[B, H, N, keys]`: the engine
/// pads the keys to a multiple of 4 (`models::lavit`'s key slots). Every slot past the keys must
/// hold a finite value (the next layer's Θ multiplies it by zero).
fn valid_keys(name: &str, got: &HostTensor, want: &HostTensor) -> HostTensor {
    let (Some(&slots), Some(&keys)) = (got.shape.last(), want.shape.last()) else { return got.clone() };
    if !name.ends_with(".attn") || slots == keys {
        return got.clone();
    }
    assert_eq!(slots, keys.next_multiple_of(4), "{name}: {keys} keys in {slots} slots");
    assert!(got.data.iter().all(|v| v.is_finite()), "{name}: a non-finite value in the padded slots");
    let mut shape = got.shape.clone();
    *shape.last_mut().unwrap() = keys;
    HostTensor { shape, data: got.data.chunks(slots).flat_map(|row| row[..keys].iter().copied()).collect() }
}

#[test]
fn lavit_micro_logits_and_every_stage_match_the_contract() {
    check_variant("micro");
}

/// 9 keys per stage in 12 slots, and a last stage of 9 tokens.
#[test]
fn lavit_micro_at_96_with_padded_key_slots_matches_the_contract() {
    let graph = build_graph("lavit-micro", &weights("micro-96"), &[1, 3, 96, 96]).unwrap();
    let carried = graph.taps.iter().find(|(name, _)| name == "stage0.attn").expect("the stage taps").1;
    assert_eq!(graph.shape(carried), [1, 1, 576, 12], "stage 0 carries 576 queries by 12 key slots");
    // With 9 keys and a last stage of 9 queries in slots of 12, every GEMM loads vec4s.
    let element_wise: Vec<&str> = graph.nodes.iter().filter(|n| n.key.kernel == wgvit::kernels::Kernel::Matmul).map(|n| n.label.as_str()).collect();
    assert!(element_wise.is_empty(), "element-wise GEMMs: {element_wise:?}");
    check_variant("micro-96");
}

#[test]
fn lavit_micro_psi_logits_and_every_stage_match_the_contract() {
    check_variant("micro-psi");
}

/// Two images in one batch give each image's own logits (every head-major reshape and broadcast
/// of the batch dimension, the Ψ GEMM's batched operand and the downsampling included).
#[test]
fn lavit_micro_psi_batch_of_two_matches_single_images() {
    let w = weights("micro-psi");
    let x = read_tensor("input.safetensors", &fixture("micro-psi", "input.safetensors"), "input").unwrap();
    let other = HostTensor { shape: x.shape.clone(), data: x.data.iter().rev().map(|v| 0.5 * v + 0.1).collect() };
    let batch = HostTensor { shape: vec![2, 3, 64, 64], data: [x.data.clone(), other.data.clone()].concat() };
    let logits = |input: &HostTensor| {
        let graph = build_graph("lavit-micro-psi", &w, &input.shape).unwrap();
        common::run(&graph, &[input]).remove(0)
    };
    let both = logits(&batch);
    let want = read_tensor("logits", &fixture("micro-psi", "logits.safetensors"), "logits").unwrap();
    let (first, second) = both.data.split_at(1000);
    let d0 = wgvit::tensor::max_abs_diff(first, &want.data);
    let d1 = wgvit::tensor::max_abs_diff(second, &logits(&other).data);
    eprintln!("batch of 2: image 0 vs the contract {d0:.3e}, image 1 vs its own forward {d1:.3e}");
    assert!(d0 <= 1e-4 && d1 <= 1e-5, "batch of 2: {d0:.3e}, {d1:.3e}");
}

#[test]
fn lavit_micro_psi_through_the_wgvit_binary() {
    let out = std::env::temp_dir().join(format!("wgvit-lavit-micro-psi-{}.safetensors", std::process::id()));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wgvit"))
        .args(["run", "--model", "lavit-micro-psi", "--weights"])
        .arg(format!("{}/weights.safetensors", dir("micro-psi")))
        .arg("--input")
        .arg(format!("{}/input.safetensors", dir("micro-psi")))
        .arg("--output")
        .arg(&out)
        .output()
        .expect("wgvit runs");
    assert!(output.status.success(), "wgvit run failed: {}", String::from_utf8_lossy(&output.stderr));
    let bytes = std::fs::read(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    let got = read_tensor("out", &bytes, "logits").unwrap();
    let want = read_tensor("logits", &fixture("micro-psi", "logits.safetensors"), "logits").unwrap();
    let diff = got.max_abs_diff(&want);
    assert!(diff <= 1e-4, "wgvit run: max abs diff {diff:.3e}");
}

#[test]
fn lavit_other_input_sizes_are_refused_naming_the_trained_size() {
    let w = weights("micro");
    for bad in [[1, 3, 224, 224], [1, 3, 96, 96], [1, 3, 64, 96], [1, 3, 32, 32]] {
        let err = build_graph("lavit-micro", &w, &bad).unwrap_err();
        assert!(matches!(err, Error::BadInputShape { .. }), "{bad:?}: {err}");
        assert!(err.to_string().contains("64x64"), "the message names the size the weights were made for: {err}");
    }
    build_graph("lavit-micro", &w, &[2, 3, 64, 64]).expect("any batch at the trained size");
    // Synthetic weights of a full variant are made for 224.
    let err = build_graph("lavit-tiny", &Weights::synthetic(1), &[1, 3, 256, 256]).unwrap_err();
    assert!(matches!(err, Error::BadInputShape { .. }) && err.to_string().contains("224x224"), "{err}");
}

#[test]
fn lavit_psi_and_theta_weights_are_not_interchangeable() {
    // Θ-only weights under a Ψ id: the missing Ψ tensors are named.
    let err = build_graph("lavit-micro-psi", &weights("micro"), &[1, 3, 64, 64]).unwrap_err().to_string();
    assert!(err.contains("stages.0.layers.1.attn.psi.weight") && err.contains("stages.3.layers.1.attn.psi.bias"), "{err}");
    // Ψ weights under a Θ-only id: refused, pointing at the -psi id.
    let err = build_graph("lavit-micro", &weights("micro-psi"), &[1, 3, 64, 64]).unwrap_err().to_string();
    assert!(err.contains("lavit-micro-psi"), "{err}");
}

#[test]
fn lavit_missing_and_misshapen_tensors_are_named() {
    let full = weights("micro");
    let mut tensors: Vec<(String, HostTensor)> = full
        .names()
        .into_iter()
        .filter(|n| n != "stages.1.layers.1.attn.theta.weight" && n != "stages.2.layers.0.attn.res_gamma")
        .map(|n| {
            let shape = full.shape_of(&n).unwrap().to_vec();
            let data = full.reader().param(&n, &shape).unwrap().as_ref().clone();
            (n, HostTensor { shape, data })
        })
        .collect();
    let err = build_graph("lavit-micro", &Weights::from_tensors("partial.safetensors", tensors.clone()), &[1, 3, 64, 64])
        .unwrap_err()
        .to_string();
    assert!(err.contains("stages.1.layers.1.attn.theta.weight") && err.contains("stages.2.layers.0.attn.res_gamma"), "{err}");

    let i = tensors.iter().position(|(n, _)| n == "stages.0.layers.1.attn.v.weight").unwrap();
    tensors[i].1.shape = vec![16, 8, 2];
    let err = build_graph("lavit-micro", &Weights::from_tensors("bad.safetensors", tensors), &[1, 3, 64, 64]).unwrap_err().to_string();
    assert!(err.contains("stages.0.layers.1.attn.v.weight") && err.contains("[16, 16]"), "{err}");
}

