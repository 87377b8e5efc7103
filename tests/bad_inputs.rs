//! A table of hostile and broken inputs, no GPU: each is refused with the error class it belongs
//! to and a one-line message that names the file, tensor, field or flag at fault — never a
//! panic, a hang or an unbounded allocation. The CLI's flags are covered in `tests/cli.rs` and
//! `tests/classify.rs`; the device-level failures (lost device, limits) in `tests/soak.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::Dtype;
use wgvit::io::{self, RawTensor};
use wgvit::models::{build_graph, resolve, ModelCard};
use wgvit::preprocess::{decode, parse_size, Preprocess, RgbImage};
use wgvit::weights::meta;
use wgvit::{Error, Weights};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

fn bundled(id: &str) -> Weights {
    let rel = format!("assets/models/{id}.safetensors");
    Weights::from_bytes(&rel, &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(&rel)).unwrap()).unwrap()
}

fn f32_tensor(name: &str, shape: &[usize], values: &[f32]) -> RawTensor {
    io::safetensors::f32_tensor(name, shape, values)
}

fn file(tensors: &[RawTensor], metadata: &[(&str, &str)]) -> Vec<u8> {
    let md: BTreeMap<String, String> = metadata.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    io::safetensors::write(tensors, &md).unwrap()
}

/// A safetensors file whose header is `json` (and `data` after it).
fn raw_header(json: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(data);
    out
}

/// `weights` with `key` = `value` in the metadata.
fn with_meta(mut weights: Weights, key: &str, value: &str) -> Weights {
    weights.metadata.insert(key.to_string(), value.to_string());
    weights
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 7]));
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png).unwrap();
    bytes.into_inner()
}

/// The error class a case must end in.
#[derive(Debug)]
enum Class {
    MalformedWeights,
    MalformedCheckpoint,
    ShapeMismatch,
    DtypeMismatch,
    MissingTensors,
    NonFiniteWeight,
    TensorTooLarge,
    UnknownModel,
    BadConfig,
    BadInputShape,
    TooLarge,
    Io,
    Invalid,
}

fn class_of(e: &Error) -> &'static str {
    match e {
        Error::MalformedWeights { .. } => "MalformedWeights",
        Error::MalformedCheckpoint { .. } => "MalformedCheckpoint",
        Error::ShapeMismatch { .. } => "ShapeMismatch",
        Error::DtypeMismatch { .. } => "DtypeMismatch",
        Error::MissingTensors { .. } => "MissingTensors",
        Error::NonFiniteWeight { .. } => "NonFiniteWeight",
        Error::TensorTooLarge { .. } => "TensorTooLarge",
        Error::UnknownModel { .. } => "UnknownModel",
        Error::BadConfig { .. } => "BadConfig",
        Error::BadInputShape { .. } => "BadInputShape",
        Error::TooLarge(_) => "TooLarge",
        Error::Io { .. } => "Io",
        Error::Invalid(_) => "Invalid",
        _ => "other",
    }
}

type Case = (&'static str, Class, &'static [&'static str], Box<dyn Fn() -> wgvit::Result<()>>);

fn load(name: &'static str, bytes: Vec<u8>) -> impl Fn() -> wgvit::Result<()> {
    move || Weights::from_bytes(name, &bytes).map(drop)
}

fn build(id: &'static str, weights: impl Fn() -> Weights + 'static, shape: [usize; 4]) -> impl Fn() -> wgvit::Result<()> {
    move || build_graph(id, &weights(), &shape).map(drop)
}

fn config(id: &'static str, json: &'static str) -> impl Fn() -> wgvit::Result<()> {
    move || resolve(id, &with_meta(bundled(id), meta::CONFIG, json)).map(drop)
}

fn card(id: &'static str, key: &'static str, value: &'static str) -> impl Fn() -> wgvit::Result<()> {
    move || ModelCard::new(id, &with_meta(bundled(id), key, value)).map(drop)
}

fn cases() -> Vec<Case> {
    let hatnet_json = r#"{"dims":[16,32,48,64],"head_dim":16,"depths":[1,1,2,1],"kernels":[5,3,3,3],"expansions":[2,2,2,2],"grid_sizes":[4,4,2,1],"pool_ratios":[4,2,2,1]"#;
    let _ = hatnet_json;
    let toy = || Weights::from_file(fixture("toy/weights.safetensors")).unwrap();
    vec![
        // ---- weight files
        ("empty file", Class::MalformedWeights, &["w.st"], Box::new(load("w.st", vec![]))),
        ("4 bytes", Class::MalformedWeights, &["w.st"], Box::new(load("w.st", vec![1, 0, 0, 0]))),
        ("header length u64::MAX", Class::MalformedWeights, &["w.st"], Box::new(load("w.st", u64::MAX.to_le_bytes().to_vec()))),
        ("header length past the end", Class::MalformedWeights, &["w.st"], Box::new(load("w.st", raw_header("{}", &[])[..6].to_vec()))),
        ("header not JSON", Class::MalformedWeights, &["w.st"], Box::new(load("w.st", raw_header("{not json", &[])))),
        (
            "offsets past the data",
            Class::MalformedWeights,
            &["w.st"],
            Box::new(load("w.st", raw_header(r#"{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, &[0; 8]))),
        ),
        (
            "shape of 2^62 elements",
            Class::MalformedWeights,
            &["w.st"],
            Box::new(load("w.st", raw_header(r#"{"x":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,4]}}"#, &[0; 4]))),
        ),
        ("legacy torch.save", Class::MalformedCheckpoint, &["old.pth", "1.6"], Box::new(load("old.pth", vec![0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e]))),
        ("zip that is no checkpoint", Class::MalformedCheckpoint, &["z.pth"], Box::new(load("z.pth", b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec()))),
        (
            "pickle calling os.system",
            Class::MalformedCheckpoint,
            &["malicious.pth", "system"],
            Box::new(|| Weights::from_file(fixture("cli/malicious.pth")).map(drop)),
        ),
        (
            "NaN weight",
            Class::NonFiniteWeight,
            &["nan.st", "'x'", "NaN", "index 1"],
            Box::new(|| Weights::from_bytes("nan.st", &file(&[f32_tensor("x", &[3], &[1.0, f32::NAN, 2.0])], &[]))?.check_finite()),
        ),
        (
            "infinite weight",
            Class::NonFiniteWeight,
            &["inf.st", "'y'", "inf"],
            Box::new(|| Weights::from_bytes("inf.st", &file(&[f32_tensor("y", &[2], &[f32::INFINITY, 2.0])], &[]))?.check_finite()),
        ),
        (
            "tensor over the binding limit",
            Class::TensorTooLarge,
            &["big.st", "'x'", "16 bytes"],
            Box::new(|| Weights::from_bytes("big.st", &file(&[f32_tensor("x", &[8], &[0.0; 8])], &[]))?.check_binding_limit(16)),
        ),
        (
            "integer tensor asked for as a parameter",
            Class::DtypeMismatch,
            &["ints.st", "'x'", "I64"],
            Box::new(|| {
                let t = RawTensor { name: "x".into(), dtype: Dtype::I64, shape: vec![1], data: vec![0; 8] };
                let w = Weights::from_bytes("ints.st", &file(&[t], &[]))?;
                w.reader().param("x", &[1]).map(drop)
            }),
        ),
        // ---- model heads and tensors
        (
            "rank-0 head weight",
            Class::ShapeMismatch,
            &["'classifier.1.weight'", "[]"],
            Box::new(build("hatnet-micro", || with_tensor(Weights::synthetic(0), "classifier.1.weight", &[], &[1.0]), [1, 3, 224, 224])),
        ),
        (
            "head weight missing, bias present",
            Class::MissingTensors,
            &["classifier.1.weight"],
            Box::new(build("hatnet-micro", || without("hatnet-micro", "classifier.1.weight"), [1, 3, 224, 224])),
        ),
        ("toy with its stem missing", Class::MissingTensors, &["stem.conv.weight"], Box::new(build("toy", || without_toy("stem.conv.weight"), [1, 3, 32, 32]))),
        // ---- configurations in the metadata
        ("depths of 10000", Class::BadConfig, &["hatnet-digits", "depths[0] = 10000"], Box::new(config("hatnet-digits", r#"{"dims":[16,32,48,64],"head_dim":16,"depths":[10000,1,2,1],"kernels":[5,3,3,3],"expansions":[2,2,2,2],"grid_sizes":[4,4,2,1],"pool_ratios":[4,2,2,1]}"#))),
        ("dims near 2^62", Class::BadConfig, &["vvt-digits", "dims[0]"], Box::new(config("vvt-digits", r#"{"dims":[4611686018427387904,32,48,64],"heads":[1,2,3,4],"mlp_ratios":[2,2,2,2],"depths":[1,1,2,1],"fr":[1,2,2,4]}"#))),
        ("negative width", Class::BadConfig, &["vvt-digits", "dims[1] = -32"], Box::new(config("vvt-digits", r#"{"dims":[16,-32,48,64],"heads":[1,2,3,4],"mlp_ratios":[2,2,2,2],"depths":[1,1,2,1],"fr":[1,2,2,4]}"#))),
        ("fractional head count", Class::BadConfig, &["vvt-digits", "heads[0]"], Box::new(config("vvt-digits", r#"{"dims":[16,32,48,64],"heads":[1.5,2,3,4],"mlp_ratios":[2,2,2,2],"depths":[1,1,2,1],"fr":[1,2,2,4]}"#))),
        ("config not JSON", Class::BadConfig, &["lavit-digits", "wgvit.config"], Box::new(config("lavit-digits", "dims: 16"))),
        ("config unknown field", Class::BadConfig, &["accvit-digits", "unknown field"], Box::new(config("accvit-digits", r#"{"stem":16,"dims":[16,32,64,128],"depths":[1,1,1,1],"levels":[3,2,1,0],"window":2,"head_dim":32,"conv_dilations":3,"expansion":4,"se_div":4,"mlp_ratio":4,"bogus":1}"#))),
        ("config zero head_dim", Class::BadConfig, &["hatnet-digits", "head_dim[0] is 0"], Box::new(config("hatnet-digits", r#"{"dims":[16,32,48,64],"head_dim":0,"depths":[1,1,2,1],"kernels":[5,3,3,3],"expansions":[2,2,2,2],"grid_sizes":[4,4,2,1],"pool_ratios":[4,2,2,1]}"#))),
        ("grids no size satisfies", Class::BadInputShape, &["hatnet-digits", "no side up to"], Box::new(build("hatnet-digits", || with_meta(bundled("hatnet-digits"), meta::CONFIG, r#"{"dims":[16,32,48,64],"head_dim":16,"depths":[1,1,2,1],"kernels":[5,3,3,3],"expansions":[2,2,2,2],"grid_sizes":[64,64,64,64],"pool_ratios":[65536,2,2,1]}"#), [1, 3, 64, 64]))),
        // ---- model ids
        ("unknown model id", Class::UnknownModel, &["'resnet-50'", "hatnet-tiny"], Box::new(|| resolve("resnet-50", &Weights::synthetic(0)).map(drop))),
        ("family prefix only", Class::UnknownModel, &["'hatnet-'"], Box::new(|| resolve("hatnet-", &Weights::synthetic(0)).map(drop))),
        // ---- preprocessing metadata
        ("mean NaN", Class::Invalid, &["hatnet-digits", "wgvit.mean", "NaN"], Box::new(card("hatnet-digits", meta::MEAN, "NaN,0,0"))),
        ("std infinite", Class::Invalid, &["hatnet-digits", "wgvit.std", "inf"], Box::new(card("hatnet-digits", meta::STD, "inf,1,1"))),
        ("std zero", Class::Invalid, &["vvt-digits", "wgvit.std"], Box::new(card("vvt-digits", meta::STD, "0.5,0,0.5"))),
        ("std negative", Class::Invalid, &["vvt-digits", "wgvit.std", "positive"], Box::new(card("vvt-digits", meta::STD, "-1,1,1"))),
        ("mean of two values", Class::Invalid, &["lavit-digits", "wgvit.mean"], Box::new(card("lavit-digits", meta::MEAN, "0.5,0.5"))),
        ("crop fraction 1e-30", Class::Invalid, &["accvit-digits", "wgvit.crop_pct"], Box::new(card("accvit-digits", meta::CROP_PCT, "1e-30"))),
        ("crop fraction 2", Class::Invalid, &["accvit-digits", "wgvit.crop_pct"], Box::new(card("accvit-digits", meta::CROP_PCT, "2"))),
        ("input size 2^32", Class::Invalid, &["hatnet-digits", "wgvit.input_size", "4294967296"], Box::new(card("hatnet-digits", meta::INPUT_SIZE, "4294967296"))),
        ("input size text", Class::Invalid, &["hatnet-digits", "wgvit.input_size"], Box::new(card("hatnet-digits", meta::INPUT_SIZE, "large"))),
        // ---- input shapes
        ("rank-3 input", Class::BadInputShape, &["toy"], Box::new(move || build_graph("toy", &toy(), &[3, 32, 32]).map(drop))),
        ("empty batch", Class::BadInputShape, &["hatnet-tiny"], Box::new(build("hatnet-tiny", || Weights::synthetic(0), [0, 3, 224, 224]))),
        ("hatnet side 225", Class::BadInputShape, &["hatnet-tiny", "224"], Box::new(build("hatnet-tiny", || Weights::synthetic(0), [1, 3, 225, 225]))),
        ("accvit side 100", Class::BadInputShape, &["accvit-micro", "multiples of 224"], Box::new(build("accvit-micro", || Weights::synthetic(0), [1, 3, 100, 100]))),
        ("lavit at another size", Class::BadInputShape, &["lavit-micro", "64x64"], Box::new(build("lavit-micro", || Weights::synthetic(0), [1, 3, 96, 96]))),
        ("vvt activations over a binding", Class::BadInputShape, &["vvt-tiny", "binding limit"], Box::new(build("vvt-tiny", || Weights::synthetic(0), [1, 3, 16384, 16384]))),
        ("hatnet group over 2^24", Class::TooLarge, &["group_norm", "2^24"], Box::new(build("hatnet-tiny", || Weights::synthetic(0), [1, 3, 4480, 4480]))),
        // ---- images and files
        ("image of no bytes", Class::Io, &["empty.png", "decode"], Box::new(|| decode("empty.png", &[]).map(drop))),
        ("truncated PNG", Class::Io, &["cut.png", "decode"], Box::new(|| decode("cut.png", &png(8, 8)[..40]).map(drop))),
        ("random bytes as an image", Class::Io, &["noise.jpg"], Box::new(|| decode("noise.jpg", &[0x13; 1000]).map(drop))),
        (
            // Found by the image fuzz target: 34 bytes of lossless WebP that decode to ~0.5 GiB.
            "a 34-byte WebP bomb",
            Class::Io,
            &["bomb.webp", "decode limits", "256 MiB"],
            Box::new(|| {
                let bomb = [
                    0x52, 0x49, 0x46, 0x46, 0x78, 0x00, 0xff, 0xff, 0x57, 0x45, 0x42, 0x50, 0x56, 0x50, 0x38, 0x4c, 0x6b, 0x21, 0x26, 0x00,
                    0x2f, 0x33, 0x1d, 0x01, 0x0f, 0x9a, 0x8c, 0xe8, 0x7f, 0x9a, 0xfe, 0x3c, 0xb5, 0x00,
                ];
                decode("bomb.webp", &bomb).map(drop)
            }),
        ),
        ("a directory as a file", Class::Io, &["fixtures", "directory"], Box::new(|| io::read_file(&fixture(""), 1 << 20, "image").map(drop))),
        ("/dev/zero as a file", Class::Io, &["/dev/zero", "device"], Box::new(|| io::read_file(Path::new("/dev/zero"), 1 << 20, "weights").map(drop))),
        ("a file over its limit", Class::Io, &["weights.safetensors", "limit"], Box::new(|| io::read_file(&fixture("toy/weights.safetensors"), 100, "weights").map(drop))),
        ("a file that does not exist", Class::Io, &["nothing.png"], Box::new(|| io::read_file(Path::new("/nonexistent/nothing.png"), 100, "image").map(drop))),
        ("RGBA of the wrong length", Class::Invalid, &["2x2"], Box::new(|| RgbImage::from_rgba(2, 2, &[0; 15]).map(drop))),
        // ---- sizes
        ("size 0", Class::Invalid, &["'0'"], Box::new(|| parse_size("0").map(drop))),
        ("size 99999", Class::Invalid, &["'99999'", "16384"], Box::new(|| parse_size("99999").map(drop))),
        ("size 4294967296", Class::Invalid, &["'4294967296'"], Box::new(|| parse_size("4294967296").map(drop))),
        ("size 3x", Class::Invalid, &["'3x'"], Box::new(|| parse_size("3x").map(drop))),
    ]
}

/// `weights` plus one f32 tensor.
fn with_tensor(weights: Weights, name: &str, shape: &[usize], values: &[f32]) -> Weights {
    let mut tensors: Vec<(String, wgvit::HostTensor)> = Vec::new();
    for n in weights.names() {
        let shape = weights.shape_of(&n).unwrap().to_vec();
        tensors.push((n.clone(), wgvit::HostTensor { data: weights.reader().param(&n, &shape).unwrap().to_vec(), shape }));
    }
    tensors.push((name.to_string(), wgvit::HostTensor { shape: shape.to_vec(), data: values.to_vec() }));
    Weights::from_tensors("with-tensor", tensors)
}

/// The hatnet-micro fixture without tensor `name`.
fn without(id: &str, name: &str) -> Weights {
    let full = Weights::from_file(fixture(&format!("{id}/weights.safetensors"))).unwrap();
    strip(&full, name)
}

fn without_toy(name: &str) -> Weights {
    strip(&Weights::from_file(fixture("toy/weights.safetensors")).unwrap(), name)
}

fn strip(full: &Weights, name: &str) -> Weights {
    let tensors = full.names().into_iter().filter(|n| n != name).map(|n| {
        let shape = full.shape_of(&n).unwrap().to_vec();
        let data = full.reader().param(&n, &shape).unwrap().to_vec();
        (n, wgvit::HostTensor { shape, data })
    });
    Weights::from_tensors("stripped.safetensors", tensors.collect::<Vec<_>>())
}

#[test]
fn every_bad_input_is_one_named_error_of_its_class() {
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (what, class, names, run) in &cases {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
        let err = match outcome {
            Err(_) => {
                failures.push(format!("{what}: panicked"));
                continue;
            }
            Ok(Ok(())) => {
                failures.push(format!("{what}: accepted"));
                continue;
            }
            Ok(Err(e)) => e,
        };
        let msg = err.to_string();
        let want = format!("{class:?}");
        if class_of(&err) != want {
            failures.push(format!("{what}: expected {want}, got {} ({msg})", class_of(&err)));
        }
        if msg.contains('\n') {
            failures.push(format!("{what}: the message spans lines: {msg:?}"));
        }
        for name in *names {
            if !msg.contains(name) {
                failures.push(format!("{what}: {msg:?} does not name {name:?}"));
            }
        }
        eprintln!("{what:<40} {want:<20} {msg}");
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
}

/// A 1 × 1,000,000 image: the resize it asks for is 256 × 256,000,000, but only the 224 × 224
/// the crop keeps is computed.
#[test]
fn a_very_wide_image_costs_only_its_crop() {
    let bytes = png(1_000_000, 1);
    let start = std::time::Instant::now();
    let x = Preprocess::imagenet((224, 224)).load("wide.png", &bytes).unwrap();
    assert_eq!(x.len(), 3 * 224 * 224);
    assert!(x.iter().all(|v| v.is_finite()));
    assert!(start.elapsed().as_secs_f64() < 10.0, "{:?}", start.elapsed());
}
