//! Bad weight files, without a GPU: every failure is an `Error` whose one-line message names the
//! file, the tensor, and the expected and found values — never a panic. Also the good paths a
//! checkpoint takes: f16/bf16 converted to f32, unused tensors reported, non-float tensors kept.

use std::collections::HashMap;
use std::path::PathBuf;

use safetensors::tensor::TensorView;
use safetensors::Dtype;
use wgvit::weights::{read_tensor, write_tensors};
use wgvit::{Error, HostTensor, Weights};

const FILE: &str = "model.safetensors";

/// A safetensors file from raw tensors: (name, dtype, shape, little-endian bytes).
fn safetensors_bytes(tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)], metadata: Option<HashMap<String, String>>) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| (name.to_string(), TensorView::new(*dtype, shape.clone(), bytes).expect("valid view")))
        .collect();
    safetensors::serialize(views, metadata).expect("serialise")
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Two small f32 tensors: `w` [2, 3] and `b` [3].
fn good_file() -> Vec<u8> {
    safetensors_bytes(
        &[
            ("w", Dtype::F32, vec![2, 3], f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])),
            ("b", Dtype::F32, vec![3], f32_bytes(&[0.5, -0.5, 0.25])),
        ],
        None,
    )
}

fn load_err(bytes: &[u8]) -> Error {
    match Weights::from_bytes(FILE, bytes) {
        Ok(w) => panic!("expected an error, loaded {:?}", w.names()),
        Err(e) => e,
    }
}

fn assert_one_line_naming(e: &Error, parts: &[&str]) {
    let msg = e.to_string();
    assert!(!msg.contains('\n'), "message spans lines: {msg:?}");
    for part in parts {
        assert!(msg.contains(part), "message {msg:?} does not contain {part:?}");
    }
    eprintln!("{msg}");
}

fn assert_malformed(e: Error) {
    assert!(matches!(&e, Error::MalformedWeights { file, .. } if file == FILE), "expected MalformedWeights, got {e:?}");
    assert_one_line_naming(&e, &[FILE, "not a valid safetensors file"]);
}

#[test]
fn good_file_loads_with_names_and_shapes() {
    let weights = Weights::from_bytes(FILE, &good_file()).unwrap();
    let w = weights.reader();
    assert_eq!(weights.names(), vec!["b".to_string(), "w".to_string()]);
    assert_eq!(w.shape_of("w"), Some(&[2usize, 3][..]));
    assert_eq!(*w.param("b", &[3]).unwrap(), vec![0.5, -0.5, 0.25]);
    assert_eq!(*w.param("w", &[2, 3]).unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(w.finish().unwrap(), Vec::<String>::new());
}

#[test]
fn truncated_file_is_malformed() {
    let bytes = good_file();
    for keep in [0, 3, 8, 20, bytes.len() - 1, bytes.len() - 7] {
        assert_malformed(load_err(&bytes[..keep]));
    }
}

#[test]
fn garbage_bytes_are_malformed() {
    assert_malformed(load_err(b"this is certainly not a safetensors file, just some text"));
    // A plausible header length followed by bytes that are not JSON.
    let mut bytes = 16u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0xff; 16]);
    assert_malformed(load_err(&bytes));
    // A header length far beyond the buffer (and beyond any sane allocation).
    let mut bytes = u64::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"{}");
    assert_malformed(load_err(&bytes));
}

#[test]
fn header_claiming_more_data_than_present_is_malformed() {
    let header = br#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&f32_bytes(&[1.0, 2.0])); // 8 of the 16 bytes promised
    assert_malformed(load_err(&bytes));

    // Offsets consistent with the buffer but not with the shape: 4 values promised, 2 stored.
    let header = br#"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,8]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header);
    bytes.extend_from_slice(&f32_bytes(&[1.0, 2.0]));
    assert_malformed(load_err(&bytes));
}

#[test]
fn non_float_tensor_is_a_dtype_mismatch_naming_file_and_tensor() {
    let bytes = safetensors_bytes(
        &[
            ("bn.num_batches_tracked", Dtype::I64, vec![], 7i64.to_le_bytes().to_vec()),
            ("mask", Dtype::U8, vec![2, 2], vec![1, 0, 0, 1]),
            ("bn.weight", Dtype::F32, vec![2], f32_bytes(&[1.0, 2.0])),
        ],
        None,
    );
    // The file loads (checkpoints carry int64 BatchNorm counters the engine never reads) ...
    let weights = Weights::from_bytes(FILE, &bytes).unwrap();
    let w = weights.reader();
    assert_eq!(*w.param("bn.weight", &[2]).unwrap(), vec![1.0, 2.0]);
    // ... and asking for a non-float tensor is the error.
    for (name, dtype, shape) in [("bn.num_batches_tracked", "I64", vec![]), ("mask", "U8", vec![2, 2])] {
        let e = w.param(name, &shape).unwrap_err();
        match &e {
            Error::DtypeMismatch { file, tensor, found, expected } => {
                assert_eq!((file.as_str(), tensor.as_str(), found.as_str()), (FILE, name, dtype));
                assert!(expected.contains("F32"), "{expected}");
            }
            other => panic!("expected DtypeMismatch, got {other:?}"),
        }
        assert_one_line_naming(&e, &[FILE, name, dtype, "F32", "F16", "BF16"]);
    }
    let e = read_tensor(FILE, &bytes, "mask").unwrap_err();
    assert!(matches!(e, Error::DtypeMismatch { .. }), "{e:?}");
    // Never asked for, the counters are reported as unused, not as an error.
    w.ignore("mask");
    assert_eq!(w.finish().unwrap(), vec!["bn.num_batches_tracked".to_string()]);
}

#[test]
fn wrong_shape_names_file_tensor_expected_and_found() {
    let weights = Weights::from_bytes(FILE, &good_file()).unwrap();
    let w = weights.reader();
    let e = w.param("w", &[3, 2]).unwrap_err();
    match &e {
        Error::ShapeMismatch { file, tensor, expected, found } => {
            assert_eq!((file.as_str(), tensor.as_str()), (FILE, "w"));
            assert_eq!((expected.as_slice(), found.as_slice()), (&[3usize, 2][..], &[2usize, 3][..]));
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    assert_one_line_naming(&e, &[FILE, "'w'", "[3, 2]", "[2, 3]"]);
    // Same element count, different rank: still a mismatch.
    assert!(matches!(w.param("b", &[1, 3]), Err(Error::ShapeMismatch { .. })));
}

#[test]
fn missing_tensors_are_listed_together_by_finish() {
    let weights = Weights::from_bytes(FILE, &good_file()).unwrap();
    let w = weights.reader();
    // A missing parameter does not stop the build: zeros of the expected size come back ...
    assert_eq!(*w.param("head.weight", &[4, 3]).unwrap(), vec![0.0; 12]);
    assert_eq!(w.param("head.bias", &[4]).unwrap().len(), 4);
    w.param("blocks.0.norm.weight", &[3]).unwrap();
    w.param("head.bias", &[4]).unwrap(); // asked twice, listed once
    w.param("w", &[2, 3]).unwrap();
    // ... and finish lists every one of them.
    let e = w.finish().unwrap_err();
    match &e {
        Error::MissingTensors { file, tensors } => {
            assert_eq!(file, FILE);
            assert_eq!(tensors, &["blocks.0.norm.weight", "head.bias", "head.weight"]);
        }
        other => panic!("expected MissingTensors, got {other:?}"),
    }
    assert_one_line_naming(&e, &[FILE, "3 missing tensor(s)", "blocks.0.norm.weight", "head.bias", "head.weight"]);
}

#[test]
fn many_missing_tensors_stay_one_readable_line() {
    let weights = Weights::from_bytes(FILE, &good_file()).unwrap();
    let w = weights.reader();
    for i in 0..45 {
        w.param(&format!("blocks.{i:02}.weight"), &[1]).unwrap();
    }
    let e = w.finish().unwrap_err();
    assert_one_line_naming(&e, &[FILE, "45 missing tensor(s)", "blocks.00.weight", "blocks.19.weight", "and 25 more"]);
    assert!(!e.to_string().contains("blocks.20.weight"), "{e}");
}

#[test]
fn unused_tensors_are_returned_by_finish() {
    let bytes = safetensors_bytes(
        &[
            ("used", Dtype::F32, vec![1], f32_bytes(&[1.0])),
            ("z.unused", Dtype::F32, vec![1], f32_bytes(&[2.0])),
            ("a.unused", Dtype::F32, vec![1], f32_bytes(&[3.0])),
            ("known.but.ignored", Dtype::F32, vec![1], f32_bytes(&[4.0])),
        ],
        None,
    );
    let weights = Weights::from_bytes(FILE, &bytes).unwrap();
    let w = weights.reader();
    w.param("used", &[1]).unwrap();
    w.ignore("known.but.ignored");
    w.ignore("not.in.the.file"); // ignoring an absent name is harmless
    assert_eq!(w.finish().unwrap(), vec!["a.unused".to_string(), "z.unused".to_string()]);
}

#[test]
fn f16_and_bf16_load_as_f32() {
    // Values exactly representable in each format, including extremes and the smallest subnormal.
    use half::{bf16, f16};
    let f16_values =
        [0.0f32, -0.0, 1.0, -2.5, 0.333_251_95, f16::MAX.to_f32(), f16::MIN.to_f32(), f16::from_bits(1).to_f32()];
    let bf16_values = [0.0f32, 1.0, -2.5, 3.140625, 2f32.powi(100), bf16::MIN.to_f32(), bf16::from_bits(1).to_f32()];
    let f16_bytes: Vec<u8> = f16_values.iter().flat_map(|&v| f16::from_f32(v).to_le_bytes()).collect();
    let bf16_bytes: Vec<u8> = bf16_values.iter().flat_map(|&v| bf16::from_f32(v).to_le_bytes()).collect();
    for &v in &f16_values {
        assert_eq!(f16::from_f32(v).to_f32(), v, "test value {v} is not exact in f16");
    }
    for &v in &bf16_values {
        assert_eq!(bf16::from_f32(v).to_f32(), v, "test value {v} is not exact in bf16");
    }
    let bytes = safetensors_bytes(
        &[
            ("half", Dtype::F16, vec![2, 4], f16_bytes),
            ("brain", Dtype::BF16, vec![7], bf16_bytes),
        ],
        Some(HashMap::from([("format".to_string(), "pt".to_string())])),
    );
    let weights = Weights::from_bytes(FILE, &bytes).unwrap();
    let w = weights.reader();
    assert_eq!(*w.param("half", &[2, 4]).unwrap(), f16_values);
    assert_eq!(*w.param("brain", &[7]).unwrap(), bf16_values);
    assert_eq!(weights.metadata.get("format").map(String::as_str), Some("pt"));
    assert!(w.finish().unwrap().is_empty());
}

#[test]
fn non_finite_values_load() {
    // A warning, not an error: the caller decides what a NaN in a checkpoint means.
    let bytes = safetensors_bytes(&[("x", Dtype::F32, vec![3], f32_bytes(&[1.0, f32::NAN, f32::INFINITY]))], None);
    let weights = Weights::from_bytes(FILE, &bytes).unwrap();
    let w = weights.reader();
    let x = w.param("x", &[3]).unwrap();
    assert!(x[1].is_nan() && x[2] == f32::INFINITY);
}

#[test]
fn tensor_over_the_binding_limit_is_named() {
    let weights = Weights::from_bytes(FILE, &good_file()).unwrap();
    weights.check_binding_limit(24).unwrap();
    let e = weights.check_binding_limit(16).unwrap_err();
    assert!(matches!(&e, Error::TensorTooLarge { tensor, bytes: 24, limit: 16, .. } if tensor == "w"), "{e:?}");
    assert_one_line_naming(&e, &[FILE, "'w'", "24 bytes", "16 bytes"]);
}

/// A unique path in the system temp dir, removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(std::env::temp_dir().join(format!("wgvit-weights-{}-{n}-{tag}.safetensors", std::process::id())))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn files_on_disk_are_named_in_errors() {
    let missing = TempFile::new("missing");
    let e = Weights::from_file(&missing.0).unwrap_err();
    let path = missing.0.display().to_string();
    assert!(matches!(&e, Error::Io { path: p, .. } if *p == path), "{e:?}");
    assert_one_line_naming(&e, &[&path]);

    let bad = TempFile::new("bad");
    std::fs::write(&bad.0, &good_file()[..30]).unwrap();
    let e = Weights::from_file(&bad.0).unwrap_err();
    let path = bad.0.display().to_string();
    assert!(matches!(&e, Error::MalformedWeights { file, .. } if *file == path), "{e:?}");
    assert_one_line_naming(&e, &[&path]);

    let good = TempFile::new("good");
    std::fs::write(&good.0, good_file()).unwrap();
    let weights = Weights::from_file(&good.0).unwrap();
    let w = weights.reader();
    let e = w.param("b", &[4]).unwrap_err();
    assert_one_line_naming(&e, &[&good.0.display().to_string(), "'b'"]);
}

#[test]
fn input_tensors_round_trip_and_missing_input_is_named() {
    let x = HostTensor::new(vec![1, 3, 2, 2], (0..12).map(|i| i as f32 * 0.5).collect()).unwrap();
    let bytes = write_tensors(&[("input", &x)]).unwrap();
    assert_eq!(read_tensor("in.safetensors", &bytes, "input").unwrap(), x);
    let e = read_tensor("in.safetensors", &bytes, "pixels").unwrap_err();
    assert!(matches!(&e, Error::MissingTensors { tensors, .. } if tensors == &["pixels"]), "{e:?}");
    assert_one_line_naming(&e, &["in.safetensors", "pixels"]);
}
