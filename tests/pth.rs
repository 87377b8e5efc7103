//! PyTorch checkpoints without Python (src/pth.rs), no GPU: the `toy` model's weights saved by
//! `torch.save` in the shapes real checkpoints come in (tools/make_cli_fixtures.py) must load to
//! exactly the tensors of tests/fixtures/toy/weights.safetensors; malicious and malformed files
//! must fail with an error naming the file and the reason — and never run anything.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use safetensors::Dtype;
use wgvit::io::{self, RawTensor, TensorFile};
use wgvit::{models, Weights};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(rel)
}

fn reference() -> Weights {
    Weights::from_file(fixture("toy/weights.safetensors")).unwrap()
}

/// Every float tensor of `w` equals the reference's within `tol` (relative), and no name is missing.
fn assert_same_tensors(weights: &Weights, tol: f32) {
    let want = reference();
    let w = weights.reader();
    for name in want.names() {
        let shape = want.shape_of(&name).unwrap().to_vec();
        let a = want.reader().param(&name, &shape).unwrap();
        let b = w.param(&name, &shape).unwrap_or_else(|e| panic!("{}: {e}", weights.file));
        let worst = a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs() / x.abs().max(1e-3)).fold(0f32, f32::max);
        assert!(worst <= tol, "{}: tensor '{name}' differs by {worst:e} (relative) > {tol:e}", weights.file);
    }
    w.finish().unwrap_or_else(|e| panic!("{}: {e}", weights.file));
}

#[test]
fn a_state_dict_saved_by_torch_loads_exactly() {
    let w = Weights::from_file(fixture("cli/toy.pth")).unwrap();
    assert_same_tensors(&w, 0.0);
    // BatchNorm's int64 step counter is kept (without data), not an error.
    assert!(w.contains("stem.bn.num_batches_tracked"));
    models::build_graph("toy", &w, &[1, 3, 32, 32]).unwrap();
}

#[test]
fn training_checkpoints_are_unwrapped_and_module_prefixes_removed() {
    // {'model': {'module.<name>': Parameter}, 'epoch', 'args': argparse.Namespace, 'optimizer'}
    let w = Weights::from_file(fixture("cli/toy_wrapped.pth")).unwrap();
    assert_same_tensors(&w, 0.0);
    assert!(w.names().iter().all(|n| !n.starts_with("module.")), "{:?}", w.names());
}

#[test]
fn half_precision_checkpoints_load_within_f16_rounding() {
    let w = Weights::from_file(fixture("cli/toy_f16.pth")).unwrap();
    assert_same_tensors(&w, 1.0 / 1024.0);
    let TensorFile { tensors: raw, .. } = io::read("toy_f16.pth", &std::fs::read(fixture("cli/toy_f16.pth")).unwrap()).unwrap();
    let head = raw.iter().find(|t| t.name == "head.weight").unwrap();
    assert_eq!((head.dtype, head.shape.as_slice(), head.data.len()), (Dtype::F16, &[10usize, 16][..], 320));
}

#[test]
fn strided_offset_and_shared_storages_are_gathered() {
    // a transposed view, a view at offset 37 of a larger storage, two tensors on one storage,
    // every other row of a wider tensor
    let w = Weights::from_file(fixture("cli/toy_noncontig.pth")).unwrap();
    assert_same_tensors(&w, 0.0);
}

#[test]
fn convert_round_trip_keeps_dtypes_and_writes_metadata() {
    let TensorFile { tensors: raw, .. } = io::read("toy_f16.pth", &std::fs::read(fixture("cli/toy_f16.pth")).unwrap()).unwrap();
    let meta: BTreeMap<String, String> = [("wgvit.model".to_string(), "toy".to_string())].into_iter().collect();
    let bytes = io::safetensors::write(&raw, &meta).unwrap();
    let w = Weights::from_bytes("converted", &bytes).unwrap();
    assert_eq!(w.model_id(), Some("toy"));
    assert_same_tensors(&w, 1.0 / 1024.0);
    let TensorFile { metadata: meta2, tensors: raw2 } = io::read("converted", &bytes).unwrap();
    assert_eq!(meta2.get("wgvit.model").map(String::as_str), Some("toy"));
    let dtypes = |r: &[RawTensor]| r.iter().map(|t| (t.name.clone(), t.dtype)).collect::<BTreeMap<_, _>>();
    assert_eq!(dtypes(&raw), dtypes(&raw2));
}

fn load_err(path: &str) -> String {
    match Weights::from_file(fixture(path)) {
        Ok(_) => panic!("{path} loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn malicious_pickles_are_refused_without_running_them() {
    let marker = std::path::Path::new("/tmp/wgvit-pwned-by-pickle");
    let _ = std::fs::remove_file(marker);
    // torch.save({'model': Evil()}) with Evil.__reduce__ -> os.system (pickled as posix.system)
    let err = load_err("cli/malicious.pth");
    assert!(err.contains("malicious.pth") && err.contains("refusing to load global 'posix.system'"), "{err}");
    // a protocol-4 pickle: STACK_GLOBAL builtins.eval
    let err = load_err("cli/malicious_eval.pth");
    assert!(err.contains("refusing to load global 'builtins.eval'"), "{err}");
    assert!(!marker.exists(), "a pickle ran code");
    eprintln!("{err}");
}

/// A torch-style zip holding `pickle` as data.pkl plus `storages` under data/.
fn checkpoint(pickle: &[u8], storages: &[(&str, &[u8])]) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("archive/data.pkl", opts).unwrap();
    zip.write_all(pickle).unwrap();
    zip.start_file("archive/byteorder", opts).unwrap();
    zip.write_all(b"little").unwrap();
    for (key, bytes) in storages {
        zip.start_file(format!("archive/data/{key}"), opts).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

/// Pickle of `{name: _rebuild_tensor_v2(FloatStorage '0' of `numel`, offset, size, stride)}`.
fn tensor_pickle(name: &str, numel: u8, offset: u8, size: &[u8], stride: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, 2, b'}', b'('];
    p.push(b'X');
    p.extend_from_slice(&(name.len() as u32).to_le_bytes());
    p.extend_from_slice(name.as_bytes());
    p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
    p.extend_from_slice(b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpu");
    p.extend_from_slice(&[b'K', numel, b't', b'Q', b'K', offset]);
    for dims in [size, stride] {
        p.push(b'(');
        for &d in dims {
            p.extend_from_slice(&[b'K', d]);
        }
        p.push(b't');
    }
    p.extend_from_slice(b"\x89)tRu.");
    p
}

fn floats(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn a_hand_written_checkpoint_reads_strided_views() {
    let storage = floats(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    // offset 1, size [2, 3], stride [1, 2]: element (i, j) = storage[1 + i + 2j]
    let bytes = checkpoint(&tensor_pickle("w", 7, 1, &[2, 3], &[1, 2]), &[("0", &storage)]);
    let w = Weights::from_bytes("hand.pth", &bytes).unwrap();
    assert_eq!(*w.reader().param("w", &[2, 3]).unwrap(), vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
}

#[test]
fn malformed_checkpoints_are_errors_naming_file_and_cause() {
    let storage = floats(&[0.0; 6]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("a view past the storage", checkpoint(&tensor_pickle("w", 6, 1, &[2, 3], &[3, 1]), &[("0", &storage)]), "'w'"),
        ("a storage shorter than its numel", checkpoint(&tensor_pickle("w", 9, 0, &[2, 3], &[3, 1]), &[("0", &storage)]), "holds 24 bytes"),
        ("a missing storage entry", checkpoint(&tensor_pickle("w", 6, 0, &[2, 3], &[3, 1]), &[]), "archive/data/0"),
        ("a truncated pickle", checkpoint(&tensor_pickle("w", 6, 0, &[2, 3], &[3, 1])[..40], &[("0", &storage)]), "data.pkl byte"),
        ("INST (builds an object)", checkpoint(b"\x80\x02(ios\nsystem\nX\x02\x00\x00\x00ls.", &[]), "INST"),
        ("NEWOBJ of a refused class", checkpoint(b"\x80\x02csubprocess\nPopen\n)\x81.", &[]), "subprocess.Popen"),
        ("REDUCE of a storage type", checkpoint(b"\x80\x02ctorch\nFloatStorage\n)R.", &[]), "cannot call"),
        ("a list instead of a state_dict", checkpoint(b"\x80\x02]q\x00.", &[]), "list, not a dict of tensors"),
        ("a dict without tensors", checkpoint(b"\x80\x02}(X\x05\x00\x00\x00epochK\x03u.", &[]), "'epoch'"),
        ("a truncated zip", checkpoint(&tensor_pickle("w", 6, 0, &[2, 3], &[3, 1]), &[("0", &storage)])[..100].to_vec(), "not a readable zip archive"),
        ("the pre-1.6 format", b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec(), "pre-1.6"),
    ];
    for (what, bytes, needle) in cases {
        let err = match Weights::from_bytes("bad.pth", &bytes) {
            Ok(_) => panic!("{what}: loaded"),
            Err(e) => e.to_string(),
        };
        eprintln!("{what}: {err}");
        assert!(err.starts_with("bad.pth: PyTorch checkpoint: "), "{what}: {err}");
        assert!(err.contains(needle), "{what}: {err:?} lacks {needle:?}");
    }
    // A zip that is not a checkpoint at all.
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("readme.txt", zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored)).unwrap();
    zip.write_all(b"hello").unwrap();
    let bytes = zip.finish().unwrap().into_inner();
    let err = Weights::from_bytes("other.zip", &bytes).unwrap_err().to_string();
    assert!(err.contains("without data.pkl"), "{err}");
}

#[test]
fn hostile_pickles_fail_cleanly() {
    // Deep nesting, huge lengths, a memo index that was never set, marks and pops out of order,
    // random bytes: errors, never a panic.
    let mut cases: Vec<Vec<u8>> = vec![
        [vec![0x80, 2], vec![b'('; 100_000], vec![b'.']].concat(),
        b"\x80\x02X\xff\xff\xff\xff".to_vec(),
        b"\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
        b"\x80\x02h\x05.".to_vec(),
        b"\x80\x02t.".to_vec(),
        b"\x80\x021.".to_vec(),
        b"\x80\x02(0.".to_vec(),
        b"\x80\x02]\x8a\x09AAAAAAAAA.".to_vec(),
        b"\x80\x02}K\x01s.".to_vec(),
        // a million nested tuples, and a list that contains itself
        [vec![0x80, 2, b'N'], vec![0x85; 1_000_000], vec![b'.']].concat(),
        b"\x80\x02]q\x00h\x00a.".to_vec(),
    ];
    let mut seed = 0x1234_5678_9abc_def0u64;
    for _ in 0..200 {
        let n = (seed % 64) as usize + 1;
        let bytes: Vec<u8> = (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect();
        cases.push([vec![0x80, 2], bytes].concat());
    }
    for pickle in cases {
        let r = std::panic::catch_unwind(|| Weights::from_bytes("fuzz.pth", &checkpoint(&pickle, &[])));
        match r {
            Ok(Ok(_)) => panic!("{pickle:?} loaded"),
            Ok(Err(e)) => assert!(e.to_string().starts_with("fuzz.pth: "), "{e}"),
            Err(_) => panic!("panicked on {pickle:?}"),
        }
    }
}
