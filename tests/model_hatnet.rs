//! HAT-Net against golden outputs of the project's PyTorch reference (tools/reference/hatnet.py,
//! checked against the official code): the `micro` config, which has every code path of the real
//! variants (grid blocks, pooled global attention, the plain-MHSA stage, the 5×5 depthwise path,
//! the unused `proj_norm` tensors). Fixture: tools/make_hatnet_fixture.py.

mod common;

use wgvit::executor::ConstantCache;
use wgvit::kernels::DeviceProfile;
use wgvit::models::{build_graph, build_spec_graph, resolve};
use wgvit::weights::read_tensor;
use wgvit::{Error, Weights};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hatnet-micro");

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}/{name}")).unwrap_or_else(|e| panic!("{DIR}/{name}: {e}"))
}

#[test]
fn hatnet_micro_logits_and_every_stage_match_the_reference() {
    let weights = Weights::from_bytes("hatnet-micro/weights.safetensors", &fixture("weights.safetensors")).unwrap();
    let input = read_tensor("input.safetensors", &fixture("input.safetensors"), "input").unwrap();
    // The default graph, and lavapipe's: channel-last downsampling convs between the stages, with
    // activations stored into their textures by their producers or (costly texture stores, the
    // probe's choice on every host measured since session 18) copied there from their buffers.
    let costly_stores = DeviceProfile { texture_stores_costly: true, ..common::lavapipe() };
    for profile in [DeviceProfile::default(), common::lavapipe(), costly_stores] {
        eprintln!("graph for {} (texture stores costly: {})", profile.name, profile.texture_stores_costly);
        check_micro_against_the_reference(&weights, &input, profile);
    }
}

fn check_micro_against_the_reference(weights: &Weights, input: &wgvit::HostTensor, profile: DeviceProfile) {
    let spec = resolve("hatnet-micro", weights).unwrap();
    let mut graph = build_spec_graph(&spec, weights, &input.shape, profile).unwrap();
    graph.promote_taps();
    let names: Vec<String> = graph.outputs.iter().map(|(n, _)| n.clone()).collect();
    let outputs = common::run(&graph, &[input]);

    let stages = fixture("intermediates.safetensors");
    for (name, got) in names.iter().zip(&outputs) {
        let (file, key) = if name == "logits" { (fixture("logits.safetensors"), "logits") } else { (stages.clone(), name.as_str()) };
        let want = read_tensor(name, &file, key).unwrap();
        // A stage that runs token-major, or whose output feeds a channel-last downsampling conv
        // (lavapipe), taps its map channel-last: [B, H, W, C] against the reference's NCHW.
        let ws = &want.shape;
        let channel_last = got.shape.len() == 4 && got.shape != *ws && got.shape == [ws[0], ws[2], ws[3], ws[1]];
        let got = if channel_last { common::nhwc_to_nchw(got) } else { got.clone() };
        assert_eq!(got.shape, want.shape, "{name}");
        let diff = got.max_abs_diff(&want);
        eprintln!("{name:12} max abs diff {diff:.3e}");
        // Stage maps are GroupNorm outputs of O(1); the logits budget is the project's 1e-4.
        assert!(diff <= 1e-4, "{name}: max abs diff {diff:.3e} > 1e-4");
    }
    assert_eq!(names.first().map(String::as_str), Some("logits"));
    assert!(names.iter().any(|n| n == "stage3"), "stage taps present: {names:?}");
}

#[test]
fn hatnet_graph_stats_are_reported() {
    let weights = Weights::from_bytes("hatnet-micro/weights.safetensors", &fixture("weights.safetensors")).unwrap();
    let graph = build_graph("hatnet-micro", &weights, &[1, 3, 224, 224]).unwrap();
    let exe = pollster::block_on(common::engine().compile(&graph, &ConstantCache::new())).unwrap();
    let s = &exe.stats;
    eprintln!(
        "hatnet-micro @224: {} dispatches, {} pipelines, {:.1} MFLOP, activations {} B planned vs {} B unshared",
        s.dispatches, s.pipelines, s.flops as f64 / 1e6, s.planned_bytes, s.unshared_bytes
    );
    assert!(s.planned_bytes * 2 < s.unshared_bytes, "liveness sharing should at least halve activation memory");
}

#[test]
fn hatnet_rejects_sizes_the_official_model_cannot_take() {
    let weights = Weights::from_bytes("hatnet-micro/weights.safetensors", &fixture("weights.safetensors")).unwrap();
    for bad in [[1, 3, 256, 256], [1, 3, 224, 384], [1, 3, 220, 224]] {
        let err = build_graph("hatnet-micro", &weights, &bad).unwrap_err();
        assert!(matches!(err, Error::BadInputShape { .. }), "{err}");
        assert!(err.to_string().contains("224"), "the message lists the valid sizes: {err}");
    }
    for good in [[1, 3, 224, 224], [1, 3, 221, 448], [2, 3, 224, 224]] {
        build_graph("hatnet-micro", &weights, &good).unwrap_or_else(|e| panic!("{good:?}: {e}"));
    }
}

#[test]
fn hatnet_missing_and_misshapen_tensors_are_named() {
    let full = Weights::from_bytes("w", &fixture("weights.safetensors")).unwrap();
    let mut tensors: Vec<(String, wgvit::HostTensor)> = full
        .names()
        .into_iter()
        .filter(|n| n != "blocks.0.0.attn.qkv.bias" && n != "classifier.1.bias")
        .map(|n| {
            let shape = full.shape_of(&n).unwrap().to_vec();
            let data = full.reader().param(&n, &shape).unwrap().as_ref().clone();
            (n, wgvit::HostTensor { shape, data })
        })
        .collect();
    let missing = Weights::from_tensors("partial.safetensors", tensors.clone());
    let err = build_graph("hatnet-micro", &missing, &[1, 3, 224, 224]).unwrap_err().to_string();
    assert!(err.contains("blocks.0.0.attn.qkv.bias") && err.contains("classifier.1.bias") && err.contains("partial.safetensors"), "{err}");

    let i = tensors.iter().position(|(n, _)| n == "blocks.1.0.attn.kv.weight").unwrap();
    tensors[i].1.shape = vec![64, 16, 2, 1];
    let bad = Weights::from_tensors("bad.safetensors", tensors);
    let err = build_graph("hatnet-micro", &bad, &[1, 3, 224, 224]).unwrap_err().to_string();
    assert!(err.contains("blocks.1.0.attn.kv.weight") && err.contains("[64, 32, 1, 1]"), "{err}");
}

/// A built-in variant's pipelines compile before its weights exist (`Engine::precompile`, what
/// the browser does during the download): the model's graph then creates none of its own; a
/// model whose configuration is in its weights' metadata is a clear error.
#[test]
fn precompile_leaves_nothing_for_the_model_to_compile() {
    let engine = pollster::block_on(wgvit::Engine::new()).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"));
    let shape = [1, 3, 224, 224];
    let pre = pollster::block_on(engine.precompile("hatnet-micro", &shape)).unwrap();
    assert!(!pre.pipelines.is_empty(), "a fresh engine compiles the model's pipelines");
    let model = engine.load_model("hatnet-micro", Weights::synthetic(7)).unwrap();
    let exe = pollster::block_on(model.prepare(&shape)).unwrap();
    assert!(exe.times.pipelines.is_empty(), "the weights' graph created {:?}", exe.times.pipelines);
    let err = pollster::block_on(engine.precompile("hatnet-digits", &[1, 3, 64, 64])).unwrap_err().to_string();
    assert!(err.contains("hatnet-digits") && err.contains("metadata"), "{err}");
    // An impossible size is the same one error the model's own build gives, before any compile.
    for (shape, what) in [([1, 3, 64, 64], "cannot take input shape [1, 3, 64, 64]"), ([1, 3, 224 * 64, 224 * 64], "too large")] {
        let err = pollster::block_on(engine.precompile("hatnet-micro", &shape)).unwrap_err().to_string();
        assert!(err.contains(what), "{shape:?}: {err}");
    }
}

/// At 224 the last stage (7 × 7 tokens) and the pooled maps of the global attentions (7 × 7)
/// have token counts that are not multiples of 4; they run token-major, so every GEMM loads its
/// operands as vec4s (the element-wise kernel reads a 49-float row one float at a time).
#[test]
fn hatnet_at_224_runs_every_gemm_on_the_vec4_kernel() {
    let weights = Weights::from_bytes("hatnet-micro/weights.safetensors", &fixture("weights.safetensors")).unwrap();
    for profile in [DeviceProfile::default(), common::lavapipe()] {
        let spec = resolve("hatnet-micro", &weights).unwrap();
        let graph = build_spec_graph(&spec, &weights, &[1, 3, 224, 224], profile).unwrap();
        let element_wise: Vec<&str> = graph.nodes.iter().filter(|n| n.key.kernel == wgvit::kernels::Kernel::Matmul).map(|n| n.label.as_str()).collect();
        assert!(element_wise.is_empty(), "element-wise GEMMs on {}: {element_wise:?}", graph.profile.name);
    }
}
