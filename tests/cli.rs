//! The `wgvit` binary as a user meets it: `info` names the adapter, every subcommand has `--help`,
//! and every bad invocation of `run` exits non-zero with exactly one `error: ...` line on stderr
//! that names the file or the model — never a panic.

use std::path::PathBuf;

mod common;

use common::cli::{assert_one_error_line, text, wgvit, wgvit_with_env};
use wgvit::weights::write_tensors;
use wgvit::HostTensor;

/// A scratch directory in the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("wgvit-cli-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).unwrap();
        path.display().to_string()
    }
    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tensor_file(name: &str, shape: &[usize]) -> Vec<u8> {
    let t = HostTensor::zeros(shape.to_vec());
    write_tensors(&[(name, &t)]).unwrap()
}

#[test]
fn info_prints_the_adapter() {
    let out = wgvit(&["info"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "wgvit info failed:\n{}{}", stdout, text(&out.stderr));
    let adapter = stdout.lines().find(|l| l.starts_with("adapter:")).unwrap_or_else(|| panic!("no adapter line:\n{stdout}"));
    assert!(adapter.len() > "adapter:".len() + 1, "empty adapter name: {adapter:?}");
    for field in ["backend:", "max_storage_buffer_binding_size", "max_compute_workgroup_storage_size"] {
        assert!(stdout.contains(field), "info lacks {field}:\n{stdout}");
    }
    // On the CI machine (no GPU) the adapter is Mesa's software Vulkan device.
    if std::env::var("CI").is_ok() {
        assert!(adapter.contains("llvmpipe"), "CI expects lavapipe: {adapter}");
    }
    eprintln!("{stdout}");
}

#[test]
fn every_subcommand_has_help() {
    let out = wgvit(&["--help"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "wgvit --help failed");
    let subcommands: Vec<String> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    for expected in ["info", "run"] {
        assert!(subcommands.iter().any(|c| c == expected), "--help lists no '{expected}':\n{stdout}");
    }
    for sub in &subcommands {
        let out = wgvit(&[sub, "--help"]);
        let help = text(&out.stdout);
        assert!(out.status.success(), "wgvit {sub} --help failed:\n{}", text(&out.stderr));
        assert!(help.contains(&format!("Usage: wgvit {sub}")), "wgvit {sub} --help:\n{help}");
    }
    eprintln!("subcommands: {subcommands:?}");
    let out = wgvit(&["--version"]);
    assert!(out.status.success() && text(&out.stdout).starts_with("wgvit "));
}

#[test]
fn run_with_a_missing_file_names_it() {
    let dir = Scratch::new("missing");
    let input = dir.file("in.safetensors", &tensor_file("input", &[1, 3, 16, 16]));
    let weights = dir.file("w.safetensors", &tensor_file("w", &[1]));
    let absent = dir.path("absent.safetensors");
    let out = dir.path("out.safetensors");
    assert_one_error_line(&["run", "--model", "vvt-tiny", "--weights", &absent, "--input", &input, "--output", &out], &[&absent]);
    assert_one_error_line(&["run", "--model", "vvt-tiny", "--weights", &weights, "--input", &absent, "--output", &out], &[&absent]);
}

#[test]
fn run_with_a_malformed_weights_file_names_it() {
    let dir = Scratch::new("malformed");
    let input = dir.file("in.safetensors", &tensor_file("input", &[1, 3, 16, 16]));
    let garbage = dir.file("garbage.safetensors", b"definitely not safetensors");
    let good = tensor_file("w", &[4, 4]);
    let truncated = dir.file("truncated.safetensors", &good[..good.len() - 5]);
    let out = dir.path("out.safetensors");
    for weights in [&garbage, &truncated] {
        assert_one_error_line(
            &["run", "--model", "vvt-tiny", "--weights", weights, "--input", &input, "--output", &out],
            &[weights, "not a valid safetensors file"],
        );
    }
    assert_one_error_line(&["run", "--model", "vvt-tiny", "--weights", &input, "--input", &garbage, "--output", &out], &[&garbage]);
}

#[test]
fn run_with_an_unknown_model_names_it_and_the_known_ids() {
    assert_one_error_line(
        &["run", "--model", "resnet-50", "--weights", "w.safetensors", "--input", "in.safetensors", "--output", "o.safetensors"],
        &["'resnet-50'", "hatnet-tiny", "lavit-tiny-psi"],
    );
}

#[test]
fn run_without_the_input_tensor_names_file_and_tensor() {
    let dir = Scratch::new("noinput");
    let input = dir.file("pixels.safetensors", &tensor_file("pixels", &[1, 3, 16, 16]));
    let weights = dir.file("w.safetensors", &tensor_file("w", &[1]));
    let out = dir.path("out.safetensors");
    assert_one_error_line(&["run", "--model", "vvt-tiny", "--weights", &weights, "--input", &input, "--output", &out], &[&input, "input"]);
}

#[test]
fn run_with_a_bad_input_shape_names_model_and_shape() {
    let dir = Scratch::new("badshape");
    let input = dir.file("in.safetensors", &tensor_file("input", &[1, 4, 16, 16]));
    let weights = dir.file("w.safetensors", &tensor_file("w", &[1]));
    let out = dir.path("out.safetensors");
    assert_one_error_line(
        &["run", "--model", "vvt-tiny", "--weights", &weights, "--input", &input, "--output", &out],
        &["'vvt-tiny'", "[1, 4, 16, 16]"],
    );
}

#[test]
fn bench_runs_a_model_with_random_weights_and_reports_its_numbers() {
    let out = wgvit(&["bench", "--model", "hatnet-micro", "--size", "224", "--runs", "1"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "bench failed:\n{}\n{}", stdout, text(&out.stderr));
    for field in ["cold:", "warm:", "GFLOP/s", "dispatches per forward", "activations"] {
        assert!(stdout.contains(field), "bench output lacks {field:?}:\n{stdout}");
    }
    assert!(!stdout.contains("driver: LP_NUM_THREADS=0"), "a model of large dispatches keeps llvmpipe's thread pool:\n{stdout}");
    assert_one_error_line(&["bench", "--model", "hatnet-micro", "--size", "256"], &["hatnet-micro", "256"]);
    assert_one_error_line(&["bench", "--model", "hatnet-micro", "--size", "22x"], &["--size"]);
}

/// Output to a closed pipe (`wgvit classify dir/ | head -1`) ends the process quietly: no panic
/// from `println!`.
#[test]
fn a_closed_stdout_is_not_a_panic() {
    let samples = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/samples");
    for args in [["classify", samples, "--json"], ["explain", samples, "--json"]] {
        let out_dir = std::env::temp_dir().join(format!("wgvit-pipe-{}", std::process::id()));
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wgvit"));
        cmd.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        if args[0] == "explain" {
            cmd.arg("--out").arg(&out_dir);
        }
        let mut child = cmd.spawn().unwrap();
        drop(child.stdout.take()); // the reader goes away before the first line
        let out = child.wait_with_output().unwrap();
        let stderr = text(&out.stderr);
        assert!(!stderr.contains("panicked"), "wgvit {args:?} into a closed pipe:\n{stderr}");
        let _ = std::fs::remove_dir_all(&out_dir);
    }
}

/// On lavapipe a model of small dispatches runs every workgroup on the submitting thread, unless
/// the user set LP_NUM_THREADS (`wgvit::context::choose_software_driver_threads`).
#[test]
fn small_models_run_inline_on_llvmpipe_unless_the_user_chose() {
    let inline = wgvit(&["bench", "--model", "vvt-digits", "--runs", "2"]);
    let stdout = text(&inline.stdout);
    assert!(inline.status.success(), "{}", text(&inline.stderr));
    if stdout.contains("llvmpipe") {
        assert!(stdout.contains("driver: LP_NUM_THREADS=0"), "{stdout}");
    }
    let chosen = wgvit_with_env(&["bench", "--model", "vvt-digits", "--runs", "2"], &[("LP_NUM_THREADS", std::ffi::OsStr::new("2"))]);
    assert!(chosen.status.success() && !text(&chosen.stdout).contains("driver:"), "{}", text(&chosen.stdout));
}

/// The thread count the CLI gives llvmpipe: 0 (inline) for a graph of small dispatches, two per
/// core for a graph whose dispatches average 1 MFLOP or more.
#[test]
fn llvmpipe_threads_follow_the_dispatch_size() {
    use wgvit::context::software_driver_threads;
    use wgvit::ops::matmul::{matmul, Epilogue};
    for (side, cores, want) in [(16, 2, 0), (128, 2, 4), (128, 8, 16)] {
        let mut g = wgvit::Graph::new();
        let a = g.input("a", &[side, side]);
        let b = g.input("b", &[side, side]);
        let y = matmul(&mut g, a, b, false, false, Epilogue::default()).unwrap();
        g.output("y", y);
        assert_eq!(software_driver_threads(&g, cores), want, "a {side}³ GEMM on {cores} cores");
    }
}

/// The pipeline cache is written under XDG_CACHE_HOME and read by the next process; a corrupt or
/// foreign file is a miss, never an error, and is replaced by a good one.
#[test]
fn the_pipeline_cache_survives_the_process_and_a_corrupt_file_is_a_miss() {
    let home = std::env::temp_dir().join(format!("wgvit-cache-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    // Mesa keeps its own (warm) shader cache where it usually is; only wgvit's moves.
    let mesa = std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache/mesa_shader_cache")).unwrap_or_default();
    let env = [("XDG_CACHE_HOME", home.as_os_str()), ("MESA_SHADER_CACHE_DIR", mesa.as_os_str())];
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/samples/7.png");
    let first = wgvit_with_env(&["classify", sample, "--json"], &env);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(home.join("wgvit")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "one cache file per adapter and driver: {files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.contains(env!("CARGO_PKG_VERSION")) && name.ends_with(".bin"), "{name}");
    std::fs::write(&files[0], b"not a pipeline cache at all").unwrap();
    let second = wgvit_with_env(&["classify", sample, "--json"], &env);
    assert!(second.status.success(), "a corrupt cache must not fail the run: {}", text(&second.stderr));
    assert_eq!(text(&first.stdout), text(&second.stdout));
    assert_ne!(std::fs::read(&files[0]).unwrap(), b"not a pipeline cache at all", "the corrupt file is replaced");
    let _ = std::fs::remove_dir_all(&home);
}

/// A first run on a new machine (empty Mesa shader cache) with lavapipe's compile helper: every
/// bundled model reads the sample 7 exactly as it does without the helper, and the process exits
/// cleanly (the helper once compiled past the end of the process, and LLVM aborted it).
#[test]
fn a_first_run_with_the_compile_helper_gives_the_same_answer_and_exits_cleanly() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/samples/7.png");
    for model in ["hatnet-digits", "vvt-digits", "accvit-digits", "lavit-digits"] {
        let mut outputs = Vec::new();
        for warmup in ["1", "0"] {
            let home = std::env::temp_dir().join(format!("wgvit-warmup-test-{}-{model}-{warmup}", std::process::id()));
            let _ = std::fs::remove_dir_all(&home);
            std::fs::create_dir_all(&home).unwrap();
            let env = [("XDG_CACHE_HOME", home.as_os_str()), ("HOME", home.as_os_str()), ("WGVIT_WARMUP", warmup.as_ref())];
            let out = wgvit_with_env(&["classify", sample, "--model", model, "--json"], &env);
            assert!(out.status.success(), "{model}, WGVIT_WARMUP={warmup}: {:?}\n{}", out.status, text(&out.stderr));
            outputs.push(text(&out.stdout));
            let _ = std::fs::remove_dir_all(&home);
        }
        assert!(outputs[0].contains(r#""top":[{"index":7,"label":"7""#), "{model} must read a 7 first: {}", outputs[0]);
        assert_eq!(outputs[0], outputs[1], "{model}: the helper changed the answer");
    }
}
