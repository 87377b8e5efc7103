//! Attention maps (`Model::explain`) of the four bundled digit models against the PyTorch
//! reference (tools/reference/explain.py, fixtures from tools/make_explain_fixtures.py): the same
//! map names in the same order, every map (head mean and each head) and the summary within 1e-5
//! (the issue asks 1e-4; received and query mode),
//! the summaries distributions, and the logits the explain graph returns equal to the plain
//! forward's.

mod common;

use std::path::PathBuf;

use safetensors::SafeTensors;
use wgvit::explain::AttentionMap;
use wgvit::{HostTensor, Weights};

/// The issue asks 1e-4; measured: 3.3e-7 at worst (lavapipe, AMD EPYC).
const ATOL: f32 = 1e-5;

fn path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

struct Fixture {
    input: HostTensor,
    query: (usize, usize),
    names: Vec<String>,
    bytes: Vec<u8>,
}

impl Fixture {
    fn load(model: &str) -> Self {
        let bytes = std::fs::read(path(&format!("tests/fixtures/explain/{model}.safetensors"))).unwrap();
        let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = meta.metadata().clone().unwrap();
        let names: Vec<String> = serde_json::from_str(&meta["maps"]).unwrap();
        let (x, y) = meta["query"].split_once(',').unwrap();
        let query = (x.parse().unwrap(), y.parse().unwrap());
        let mut f = Self { input: HostTensor::zeros(vec![]), query, names, bytes };
        f.input = f.tensor("input");
        f
    }

    fn tensor(&self, name: &str) -> HostTensor {
        self.try_tensor(name).unwrap_or_else(|| panic!("fixture tensor {name} is missing"))
    }

    fn try_tensor(&self, name: &str) -> Option<HostTensor> {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(name).ok()?;
        Some(HostTensor::new(t.shape().to_vec(), bytemuck::pod_collect_to_vec(t.data())).unwrap())
    }
}

fn check_map(what: &str, got: &AttentionMap, want: &HostTensor) {
    assert_eq!([got.height, got.width], want.shape[..], "{what}: grid");
    assert!(got.values.iter().all(|v| v.is_finite() && *v >= 0.0), "{what}: negative or non-finite values");
    common::assert_close(what, &got.values, &want.data, ATOL, 0.0);
}

/// Each head's map (`[heads, hk, wk]` in the fixture; a gate has none). A one-head layer's map
/// is its head's, so the engine lists heads only when there are several.
fn check_heads(what: &str, got: &AttentionMap, want: Option<HostTensor>) {
    let Some(want) = want else {
        assert!(got.heads.is_empty(), "{what}: heads where the reference has none");
        return;
    };
    let heads = want.shape[0];
    let plane = want.numel() / heads;
    if heads == 1 {
        assert!(got.heads.is_empty(), "{what}: one head listed");
        return common::assert_close(&format!("{what} head 0"), &got.values, &want.data, ATOL, 0.0);
    }
    assert_eq!(got.heads.len(), heads, "{what}: heads");
    for (h, values) in got.heads.iter().enumerate() {
        common::assert_close(&format!("{what} head {h}"), values, &want.data[h * plane..(h + 1) * plane], ATOL, 0.0);
    }
}

fn check_family(model: &str) {
    let f = Fixture::load(model);
    let weights = Weights::from_file(path(&format!("assets/models/{model}.safetensors"))).unwrap();
    let m = common::engine().load_model(model, weights).unwrap();
    let plain = pollster::block_on(m.run(&f.input)).unwrap();
    for (mode, query) in [("received", None), ("query", Some(f.query))] {
        let (logits, maps) = pollster::block_on(m.explain(&f.input, query)).unwrap();
        assert_eq!(logits, plain, "{model}: the explain graph's logits differ from the forward's");
        common::assert_close(&format!("{model} logits"), &logits.data, &f.tensor("logits").data, 1e-4, 0.0);
        let names: Vec<&str> = maps.maps.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, f.names, "{model}: map names and order");
        for map in &maps.maps {
            check_map(&format!("{model} {mode}/{}", map.name), map, &f.tensor(&format!("{mode}/{}", map.name)));
            check_heads(&format!("{model} {mode}/{}", map.name), map, f.try_tensor(&format!("{mode}/{}/heads", map.name)));
        }
        let total: f64 = maps.summary.values.iter().map(|&v| v as f64).sum();
        assert!((total - 1.0).abs() < 1e-4, "{model} {mode}: the summary sums to {total}");
        check_map(&format!("{model} {mode}/summary"), &maps.summary, &f.tensor(&format!("summary/{mode}")));
    }
}

#[test]
fn hatnet_maps_match_the_reference() {
    check_family("hatnet-digits");
}

#[test]
fn vvt_maps_match_the_reference() {
    check_family("vvt-digits");
}

#[test]
fn accvit_maps_match_the_reference() {
    check_family("accvit-digits");
}

#[test]
fn lavit_maps_match_the_reference() {
    check_family("lavit-digits");
}

#[test]
fn explain_takes_one_image_and_a_query_inside_it() {
    let f = Fixture::load("hatnet-digits");
    let weights = Weights::from_file(path("assets/models/hatnet-digits.safetensors")).unwrap();
    let m = common::engine().load_model("hatnet-digits", weights).unwrap();
    let two = HostTensor::zeros(vec![2, 3, 64, 64]);
    let e = pollster::block_on(m.explain(&two, None)).unwrap_err().to_string();
    assert!(e.contains("one image") && e.contains("[2, 3, 64, 64]"), "{e}");
    let e = pollster::block_on(m.explain(&f.input, Some((64, 3)))).unwrap_err().to_string();
    assert!(e.contains("64,3") && e.contains("64x64"), "{e}");
}

/// Every model id builds an explain graph (no GPU): each attention family names its maps once,
/// with grids that fit the input, and only the toy network (no attention) has none.
#[test]
fn every_model_id_has_its_maps() {
    for id in wgvit::models::model_ids() {
        let weights = if id == "toy" { Weights::from_file(path("tests/fixtures/toy/weights.safetensors")).unwrap() } else { Weights::synthetic(0) };
        let (h, w) = wgvit::models::resolve(&id, &weights).unwrap().default_input(&weights);
        let mut g = wgvit::models::build_graph(&id, &weights, &[1, 3, h, w]).unwrap_or_else(|e| panic!("{id}: {e}"));
        let names: Vec<&str> = g.probes.iter().map(|p| p.name.as_str()).collect();
        let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "{id}: map names repeat: {names:?}");
        assert_eq!(names.is_empty(), id == "toy", "{id}: {} maps", names.len());
        for p in &g.probes {
            let ((qh, qw), (kh, kw)) = (p.query_grid, p.key_grid);
            assert!(qh <= h && qw <= w && kh <= qh && kw <= qw && kh * kw > 0, "{id} {}: query {qh}x{qw}, key {kh}x{kw}", p.name);
        }
        let outputs = g.outputs.len();
        g.promote_probes();
        assert!(g.outputs.len() > outputs || id == "toy", "{id}: no probe tensors");
    }
}
