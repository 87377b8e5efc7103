//! The `toy` network end to end against its PyTorch golden logits (tools/make_toy_fixture.py):
//! through the library API, through the `wgvit` binary, and the graph's dispatch and memory
//! numbers. Tolerance: 1e-4 max abs on logits of magnitude ~1.

mod common;

use std::path::PathBuf;
use std::process::Command;

use wgvit::weights::read_tensor;
use wgvit::{HostTensor, Weights};

const TOLERANCE: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/toy").join(name)
}

fn read(name: &str, tensor: &str) -> HostTensor {
    let path = fixture(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    read_tensor(&path.display().to_string(), &bytes, tensor).unwrap()
}

fn max_abs_diff(got: &HostTensor, want: &HostTensor) -> f32 {
    assert_eq!(got.shape, want.shape);
    got.max_abs_diff(want)
}

#[test]
fn toy_api_matches_pytorch_logits() {
    let engine = common::engine();
    let weights = Weights::from_file(fixture("weights.safetensors")).unwrap();
    let model = engine.load_model("toy", weights).unwrap();
    let input = read("input.safetensors", "input");
    let want = read("logits.safetensors", "logits");

    let t = std::time::Instant::now();
    let exe = pollster::block_on(model.prepare(&input.shape)).unwrap();
    let prepare = t.elapsed();
    let t = std::time::Instant::now();
    let got = pollster::block_on(model.run(&input)).unwrap();
    let forward = t.elapsed();

    let diff = max_abs_diff(&got, &want);
    let s = &exe.stats;
    eprintln!("toy (API): logits {:?}, max abs diff vs PyTorch {diff:.3e}", got.shape);
    eprintln!(
        "toy: {} dispatches per forward, {} pipelines, {:.2} MFLOP; activations planned {} B vs unshared {} B ({:.1}x), constants {} B; prepare {prepare:.2?}, forward {forward:.2?}",
        s.dispatches,
        s.pipelines,
        s.flops as f64 / 1e6,
        s.planned_bytes,
        s.unshared_bytes,
        s.unshared_bytes as f64 / s.planned_bytes.max(1) as f64,
        s.constant_bytes,
    );
    eprintln!("toy steps: {}", exe.step_labels().collect::<Vec<_>>().join(", "));
    assert!(diff <= TOLERANCE, "toy logits differ from PyTorch by {diff:e} (> {TOLERANCE:e})");
    assert!(s.planned_bytes <= s.unshared_bytes);

    // a second forward reuses the compiled graph and gives the same numbers
    let t = std::time::Instant::now();
    let again = pollster::block_on(model.run(&input)).unwrap();
    eprintln!("toy: second forward {:.2?}", t.elapsed());
    assert_eq!(again.data, got.data);
}

#[test]
fn toy_cli_matches_pytorch_logits() {
    let out = std::env::temp_dir().join(format!("wgvit-toy-logits-{}.safetensors", std::process::id()));
    let status = Command::new(env!("CARGO_BIN_EXE_wgvit"))
        .args(["run", "--model", "toy", "--weights"])
        .arg(fixture("weights.safetensors"))
        .arg("--input")
        .arg(fixture("input.safetensors"))
        .arg("--output")
        .arg(&out)
        .status()
        .expect("the wgvit binary runs");
    assert!(status.success(), "wgvit run failed: {status}");
    let bytes = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).ok();
    let got = read_tensor(&out.display().to_string(), &bytes, "logits").unwrap();
    let diff = max_abs_diff(&got, &read("logits.safetensors", "logits"));
    eprintln!("toy (CLI): max abs diff vs PyTorch {diff:.3e}");
    assert!(diff <= TOLERANCE, "CLI logits differ from PyTorch by {diff:e} (> {TOLERANCE:e})");
}

#[test]
fn toy_reports_missing_tensors_and_bad_input_sizes() {
    // Graph building only: no GPU work happens before these errors.
    let path = fixture("weights.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let full = Weights::from_bytes("toy.safetensors", &bytes).unwrap();
    let kept = full
        .names()
        .into_iter()
        .filter(|n| n != "blocks.1.mlp.fc2.bias" && n != "stem.bn.running_var")
        .map(|n| {
            let t = read_tensor("toy.safetensors", &bytes, &n).unwrap();
            (n, t)
        });
    let partial = Weights::from_tensors("partial.safetensors", kept);
    let err = wgvit::models::build_graph("toy", &partial, &[1, 3, 32, 32]).unwrap_err().to_string();
    assert!(err.contains("blocks.1.mlp.fc2.bias") && err.contains("stem.bn.running_var"), "{err}");

    let err = wgvit::models::build_graph("toy", &full, &[1, 3, 36, 36]).unwrap_err().to_string();
    assert!(err.contains("multiples of 8"), "{err}");
    // any multiple of 8 works: the graph is built per input size
    let g = wgvit::models::build_graph("toy", &full, &[3, 3, 16, 24]).unwrap();
    assert_eq!(g.shape(g.outputs[0].1), [3, 10]);
}
