//! The user-facing commands through the `wgvit` binary (GPU: lavapipe in CI): `classify` on a file,
//! a folder with a corrupt image, `--json` and batches; `.pth` weights; `convert` (+ metadata,
//! then `classify`/`run`/`bench` without `--model`); `profile`; and their one-line errors.
//! Models: `toy` (32×32 input, 10 classes; tests/fixtures/toy) and, once, `hatnet-micro` (224,
//! 1000 ImageNet classes). Images and checkpoints: tests/fixtures/cli (tools/make_cli_fixtures.py).

use std::path::{Path, PathBuf};

mod common;

use common::cli::{assert_one_error_line as one_error_line, text, wgvit};
use wgvit::weights::read_tensor;

/// Runs `args` and expects success; returns stdout.
fn ok(args: &[&str]) -> String {
    let out = wgvit(args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "wgvit {} failed:\n{stdout}\n{stderr}", args.join(" "));
    assert!(!stderr.contains("panicked"), "{stderr}");
    eprintln!("wgvit {}\n{stdout}{stderr}", args.join(" "));
    stdout
}

fn fixture(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel).display().to_string()
}

const IMAGES: &[&str] = &["alpha.webp", "gradient.png", "gray.png", "shapes.jpg"];

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("wgvit-classify-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.0.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }
    /// The fixture images, one of them in a subfolder, plus a corrupt JPEG and a text file.
    fn image_folder(&self) -> String {
        for (i, name) in IMAGES.iter().enumerate() {
            let bytes = std::fs::read(fixture(&format!("cli/images/{name}"))).unwrap();
            self.file(&if i == 0 { format!("photos/nested/{name}") } else { format!("photos/{name}") }, &bytes);
        }
        self.file("photos/corrupt.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00 and then nothing");
        self.file("photos/notes.txt", b"not an image, not looked at");
        self.path("photos")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The JSON lines of a `--json` run, by path.
fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

/// (index, prob) of each entry of a JSON line's `top`.
fn top_of(v: &serde_json::Value) -> Vec<(u64, f64)> {
    v["top"].as_array().unwrap().iter().map(|t| (t["index"].as_u64().unwrap(), t["prob"].as_f64().unwrap())).collect()
}

#[test]
fn classify_one_image_prints_the_top_classes() {
    let weights = fixture("cli/toy.pth");
    let image = fixture("cli/images/gradient.png");
    let stdout = ok(&["classify", &image, "--model", "toy", "--weights", &weights, "--size", "32", "--top", "3"]);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert_eq!(lines[0], image);
    for l in &lines[1..] {
        assert!(l.trim_start().contains("%  class "), "{l}");
    }
}

#[test]
fn classify_a_folder_skips_a_corrupt_image_and_reports_it() {
    let dir = Scratch::new("folder");
    let folder = dir.image_folder();
    let out = wgvit(&["classify", &folder, "--model", "toy", "--weights", &fixture("cli/toy.pth"), "--batch", "3"]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    eprintln!("{stdout}{stderr}");
    assert_eq!(out.status.code(), Some(1), "a corrupt image makes the exit code 1");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("corrupt.jpg") && errors[0].contains("cannot decode"), "{}", errors[0]);
    for name in IMAGES {
        assert!(stdout.lines().any(|l| l.ends_with(name)), "{name} not classified:\n{stdout}");
    }
    assert!(!stdout.contains("notes.txt") && !stderr.contains("notes.txt"), "only image files are read from folders");
    assert!(stderr.contains("classified 4 image(s), 1 unreadable"), "{stderr}");
}

#[test]
fn classify_json_gives_one_object_per_image_and_batches_agree() {
    let dir = Scratch::new("json");
    let folder = dir.image_folder();
    let weights = fixture("cli/toy_wrapped.pth");
    let run = |batch: &str| {
        let out = wgvit(&["classify", &folder, "--model", "toy", "--weights", &weights, "--json", "--batch", batch, "--top", "10"]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        assert!(!text(&out.stderr).contains("error:"), "with --json errors go to stdout:\n{}", text(&out.stderr));
        json_lines(&text(&out.stdout))
    };
    let single = run("1");
    let batched = run("3"); // a batch of 3, then 1 padded to 3
    assert_eq!(single.len(), 5);
    let bad: Vec<_> = single.iter().filter(|v| v.get("error").is_some()).collect();
    assert_eq!(bad.len(), 1);
    assert!(bad[0]["path"].as_str().unwrap().ends_with("corrupt.jpg"), "{}", bad[0]);
    for (a, b) in single.iter().zip(&batched) {
        assert_eq!(a["path"], b["path"]);
        if a.get("error").is_some() {
            continue;
        }
        let (ta, tb) = (top_of(a), top_of(b));
        assert_eq!(ta.len(), 10);
        assert!(ta.windows(2).all(|w| w[0].1 >= w[1].1), "not sorted: {ta:?}");
        let sum: f64 = ta.iter().map(|t| t.1).sum();
        assert!((sum - 1.0).abs() < 1e-4, "10 of 10 classes sum to {sum}");
        assert!(a["top"][0]["label"].is_null(), "a 10-class head has no names");
        for ((ia, pa), (ib, pb)) in ta.iter().zip(&tb) {
            assert!(ia == ib && (pa - pb).abs() < 1e-5, "{}: batch 1 {ta:?} vs batch 3 {tb:?}", a["path"]);
        }
    }
}

#[test]
fn classify_probabilities_equal_the_model_on_the_reference_preprocessing() {
    // The toy model through the API on torchvision's preprocessing of gradient.png (the fixture
    // tensor) must give the probabilities `classify` prints from our own preprocessing.
    let path = fixture("cli/expected/preprocessed_32.safetensors");
    let x = read_tensor(&path, &std::fs::read(&path).unwrap(), "gradient.png").unwrap();
    let input = wgvit::HostTensor::new(vec![1, 3, 32, 32], x.data).unwrap();
    let engine = pollster::block_on(wgvit::Engine::new()).unwrap();
    let model = engine.load_model_file("toy", fixture("cli/toy.pth")).unwrap();
    let logits = pollster::block_on(model.run(&input)).unwrap().data;
    let max = logits.iter().cloned().fold(f32::MIN, f32::max);
    let exps: Vec<f64> = logits.iter().map(|&l| ((l - max) as f64).exp()).collect();
    let sum: f64 = exps.iter().sum();

    let stdout = ok(&["classify", &fixture("cli/images/gradient.png"), "--model", "toy", "--weights", &fixture("cli/toy.pth"), "--json", "--top", "10"]);
    let top = top_of(&json_lines(&stdout)[0]);
    let worst = top.iter().map(|&(i, p)| (p - exps[i as usize] / sum).abs()).fold(0.0, f64::max);
    eprintln!("classify vs API on the reference tensor: max probability difference {worst:.2e}");
    assert!(worst < 1e-5, "{worst}");
}

#[test]
fn classify_with_an_imagenet_head_prints_class_names() {
    let stdout = ok(&[
        "classify",
        &fixture("cli/images/shapes.jpg"),
        "--model",
        "hatnet-micro",
        "--weights",
        &fixture("hatnet-micro/weights.safetensors"),
        "--json",
    ]);
    let v = &json_lines(&stdout)[0];
    let names = wgvit::labels::imagenet1k();
    for t in v["top"].as_array().unwrap() {
        let i = t["index"].as_u64().unwrap() as usize;
        assert_eq!(t["label"].as_str(), Some(names[i]), "{t}");
    }
}

#[test]
fn convert_records_the_model_then_commands_run_without_model() {
    let dir = Scratch::new("convert");
    let out = dir.path("toy.safetensors");
    let labels = dir.file("labels.txt", (0..10).map(|i| format!("thing {i}\n")).collect::<String>().as_bytes());
    let stdout = ok(&["convert", &fixture("cli/toy_wrapped.pth"), &out, "--model", "toy", "--labels", &labels]);
    assert!(stdout.starts_with(&format!("wrote {out}: 37 tensors (36 F32, 1 I64)")), "{stdout}");
    assert!(stdout.contains("model toy, input 32x32") && stdout.contains("10 classes"), "{stdout}");
    let w = wgvit::Weights::from_file(&out).unwrap();
    assert_eq!(w.model_id(), Some("toy"));
    assert_eq!(w.metadata.get("wgvit.input_size").map(String::as_str), Some("32"));
    assert_eq!(w.metadata.get("wgvit.classes").map(String::as_str), Some("10"));
    assert_eq!(w.metadata.get("wgvit.source").map(String::as_str), Some("toy_wrapped.pth"));

    // classify: no --model, no --size; labels from the metadata
    let stdout = ok(&["classify", &fixture("cli/images/gradient.png"), "--weights", &out, "--top", "2"]);
    assert!(stdout.lines().nth(1).unwrap().contains("%  thing "), "{stdout}");

    // run: no --model; the golden logits of the toy fixture
    let logits = dir.path("logits.safetensors");
    ok(&["run", "--weights", &out, "--input", &fixture("toy/input.safetensors"), "--output", &logits]);
    let got = read_tensor(&logits, &std::fs::read(&logits).unwrap(), "logits").unwrap();
    let golden = fixture("toy/logits.safetensors");
    let want = read_tensor(&golden, &std::fs::read(&golden).unwrap(), "logits").unwrap();
    let diff = got.max_abs_diff(&want);
    eprintln!("run on converted .pth weights vs PyTorch logits: max abs diff {diff:.2e}");
    assert!(diff < 1e-4, "{diff}");

    // bench: no --model, no --size
    let stdout = ok(&["bench", "--weights", &out, "--runs", "1"]);
    assert!(stdout.contains("model:  toy") && stdout.contains("[1, 3, 32, 32]"), "{stdout}");
}

#[test]
fn run_reads_pth_checkpoints_including_f16() {
    let dir = Scratch::new("runpth");
    let golden = fixture("toy/logits.safetensors");
    let want = read_tensor(&golden, &std::fs::read(&golden).unwrap(), "logits").unwrap();
    for (file, tol) in [("cli/toy_noncontig.pth", 1e-4), ("cli/toy_f16.pth", 2e-2)] {
        let out = dir.path("logits.safetensors");
        ok(&["run", "--model", "toy", "--weights", &fixture(file), "--input", &fixture("toy/input.safetensors"), "--output", &out]);
        let got = read_tensor(&out, &std::fs::read(&out).unwrap(), "logits").unwrap();
        let diff = got.max_abs_diff(&want);
        eprintln!("{file}: max abs diff vs PyTorch logits {diff:.2e}");
        assert!(diff < tol, "{file}: {diff}");
    }
}

#[test]
fn profile_reports_time_by_op_kind_and_layer() {
    let stdout = ok(&["profile", "--model", "toy", "--weights", &fixture("toy/weights.safetensors"), "--runs", "2", "--top", "3"]);
    for needle in ["method: GPU timestamps", "dispatches", "op kind", "matmul", "attention", "layer", "blocks.0", "blocks.1", "stem", "slowest 3 dispatches"] {
        assert!(stdout.contains(needle), "profile output lacks {needle:?}:\n{stdout}");
    }
    // The total is the sum of positive per-dispatch times.
    let total: f64 = stdout.lines().find_map(|l| l.strip_prefix("time:")).and_then(|l| l.split_whitespace().next()).unwrap().parse().unwrap();
    assert!(total > 0.0, "{stdout}");
    // On lavapipe (the tests' adapter in CI) it points to --repeat.
    if stdout.contains("device: llvmpipe") {
        assert!(stdout.contains("--repeat 5 times each by wall-clock"), "{stdout}");
    }
    let depth = ok(&["profile", "--model", "toy", "--weights", &fixture("toy/weights.safetensors"), "--runs", "1", "--depth", "3"]);
    assert!(depth.contains("blocks.0.attn") && depth.contains("blocks.1.mlp"), "{depth}");
    // By repetition: wall-clock differences, the same tables, the plain forward beside them.
    let repeat = ok(&["profile", "--model", "toy", "--weights", &fixture("toy/weights.safetensors"), "--runs", "2", "--repeat", "3", "--top", "3"]);
    for needle in ["method: wall-clock of forwards with each dispatch run 3 more times", "attributed to", "a plain forward:", "noise:", "op kind", "matmul", "slowest 3 dispatches"] {
        assert!(repeat.contains(needle), "profile --repeat output lacks {needle:?}:\n{repeat}");
    }
    one_error_line(&["profile", "--model", "toy", "--weights", &fixture("toy/weights.safetensors"), "--repeat", "0"], &["--repeat"]);
    // Alone: each dispatch in a submission of its own, with every step's variant listed.
    let isolate = ok(&["profile", "--model", "toy", "--weights", &fixture("toy/weights.safetensors"), "--runs", "2", "--isolate", "3", "--top", "3", "--variants"]);
    for needle in ["method: wall-clock of each dispatch alone, 3 times in one submission", "dispatches alone", "an empty submission", "op kind", "matmul", "slowest 3 dispatches", "every dispatch in forward order", "TM="] {
        assert!(isolate.contains(needle), "profile --isolate output lacks {needle:?}:\n{isolate}");
    }
    let steps = isolate.lines().skip_while(|l| !l.starts_with("every dispatch in forward order")).skip(1).count();
    let dispatches: usize = isolate.lines().find_map(|l| l.strip_prefix("time:")).and_then(|l| l.split(" in ").nth(1)).and_then(|l| l.split_whitespace().next()).unwrap().parse().unwrap();
    assert_eq!(steps, dispatches, "--variants lists every dispatch once:\n{isolate}");
    one_error_line(&["profile", "--model", "toy", "--weights", &fixture("toy/weights.safetensors"), "--isolate", "0"], &["--isolate"]);
}

#[test]
fn errors_are_one_line_naming_file_model_or_argument() {
    let dir = Scratch::new("errors");
    let image = fixture("cli/images/gradient.png");
    let toy = fixture("cli/toy.pth");
    let missing = dir.path("absent.jpg");
    one_error_line(&["classify", &missing, "--model", "toy", "--weights", &toy], &[&missing]);
    let corrupt = dir.file("corrupt.png", b"\x89PNG\r\n\x1a\n broken");
    let out = wgvit(&["classify", &corrupt, "--model", "toy", "--weights", &toy]);
    let lines: Vec<String> = text(&out.stderr).lines().filter(|l| l.starts_with("error:")).map(str::to_string).collect();
    assert!(!out.status.success() && lines.len() == 1 && lines[0].contains(&corrupt), "{lines:?}");
    let empty = dir.file("empty/readme.txt", b"no images here");
    let empty = Path::new(&empty).parent().unwrap().display().to_string();
    one_error_line(&["classify", &empty, "--model", "toy", "--weights", &toy], &[&empty, "no images"]);
    one_error_line(&["classify", &image, "--model", "resnet-50", "--weights", &toy], &["'resnet-50'", "hatnet-tiny"]);
    one_error_line(&["classify", &image, "--weights", &toy], &["--model", &toy, "wgvit.model"]);
    one_error_line(&["classify", &image, "--model", "toy", "--weights", &toy, "--size", "3x"], &["--size"]);
    let safetensors = std::fs::read(fixture("toy/weights.safetensors")).unwrap();
    let truncated = dir.file("truncated.safetensors", &safetensors[..safetensors.len() / 2]);
    one_error_line(&["classify", &image, "--model", "toy", "--weights", &truncated], &[&truncated, "not a valid safetensors file"]);
    let pth = std::fs::read(&toy).unwrap();
    let truncated_pth = dir.file("truncated.pth", &pth[..pth.len() / 2]);
    one_error_line(&["classify", &image, "--model", "toy", "--weights", &truncated_pth], &[&truncated_pth, "PyTorch checkpoint"]);
    for bad in ["cli/malicious.pth", "cli/malicious_eval.pth"] {
        let bad = fixture(bad);
        one_error_line(&["classify", &image, "--model", "toy", "--weights", &bad], &[&bad, "refusing to load global"]);
        one_error_line(&["convert", &bad, &dir.path("x.safetensors")], &[&bad, "refusing to load global"]);
    }
    one_error_line(&["convert", &toy, &dir.path("x.safetensors"), "--model", "hatnet-micro"], &[&toy, "missing tensor"]);
    let labels = dir.file("labels.txt", b"one\ntwo\n");
    one_error_line(&["convert", &toy, &dir.path("x.safetensors"), "--model", "toy", "--labels", &labels], &[&labels, "2 labels", "10 classes"]);
    one_error_line(&["convert", &toy, &toy], &["overwrite its input"]);
    assert!(!Path::new(&dir.path("x.safetensors")).exists(), "a failed convert left a file behind");
    one_error_line(&["profile", "--model", "toy", "--weights", &missing], &[&missing]);
    one_error_line(&["profile", "--weights", &toy], &["--model", "wgvit.model"]);
}

fn asset(rel: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets").join(rel).display().to_string()
}

#[test]
fn classify_with_no_model_or_weights_reads_the_sample_seven_with_the_bundled_model() {
    let out = ok(&["classify", &asset("samples/7.png")]);
    let top = out.lines().nth(1).unwrap_or("");
    assert!(top.trim_end().ends_with("  7 (7)"), "the first class should be 7:\n{out}");
}

#[test]
fn every_bundled_model_reads_every_sample_digit() {
    for id in ["hatnet-digits", "vvt-digits", "accvit-digits", "lavit-digits"] {
        let out = ok(&["classify", &asset("samples"), "--model", id, "--json", "--top", "1"]);
        let lines = json_lines(&out);
        assert_eq!(lines.len(), 10, "{id}: {out}");
        for v in lines {
            let path = v["path"].as_str().unwrap();
            let digit = Path::new(path).file_stem().unwrap().to_str().unwrap();
            assert_eq!(v["top"][0]["label"].as_str(), Some(digit), "{id} on {path}: {v}");
        }
    }
}

#[test]
fn bundled_models_need_no_weights_and_others_say_which_are_bundled() {
    let image = asset("samples/3.png");
    one_error_line(&["classify", &image, "--model", "hatnet-tiny"], &["--weights is required", "'hatnet-tiny'", "vvt-digits"]);
    one_error_line(&["classify", &image, "--model", "hatnet-digits", "--size", "48"], &["'hatnet-digits'", "[4, 4, 2, 1]", "61"]);
    let out = ok(&["bench", "--model", "lavit-digits", "--runs", "1"]);
    assert!(out.contains("model:  lavit-digits, weights assets/models/lavit-digits.safetensors (bundled), input [1, 3, 64, 64]"), "bench uses the bundled weights and their input size:\n{out}");
}
