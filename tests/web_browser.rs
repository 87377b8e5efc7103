//! The engine in real Chromium (WebGPU on SwiftShader: f32 only, no shader-f16, no subgroups):
//! a few ops against their CPU references, each family's small fixture against its golden logits
//! and each bundled digit model on 250 held-out digits against the PyTorch reference (the same
//! 1e-4 as natively), and the JS API's `loadModel`/`classify`. Run with
//! `CHROMEDRIVER=/usr/bin/chromedriver cargo test --release --target wasm32-unknown-unknown --test web_browser`.
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::*;
use wgvit::executor::ConstantCache;
use wgvit::ops::unary::{unary, unary_cpu};
use wgvit::ops::matmul::{linear, matmul, matmul_cpu, BiasAxis, Epilogue};
use wgvit::ops::Activation;
use wgvit::tensor::{max_abs_diff, Rng};
use wgvit::weights::read_tensor;
use wgvit::{Engine, Graph, Weights};

wasm_bindgen_test_configure!(run_in_browser);

async fn engine() -> Engine {
    Engine::new().await.unwrap_or_else(|e| panic!("the browser test needs WebGPU: {e}"))
}

#[wasm_bindgen_test]
async fn adapter_is_webgpu() {
    let e = engine().await;
    web_sys::console::log_1(&format!("adapter: {}", e.info()).into());
    assert_eq!(e.info().backend, "BrowserWebGpu");
}

/// Headless Chromium's SwiftShader is a fallback adapter, so graphs take the CPU-like kernels,
/// which read constant weights and biases through textures: checked on the node and by value.
#[wasm_bindgen_test]
async fn constant_weights_take_the_texture_path_on_swiftshader() {
    let e = engine().await;
    let profile = e.info().profile.clone();
    assert!(profile.is_cpu_like(), "SwiftShader should get the CPU-like kernels: {}", e.info());
    let mut rng = Rng::new(9);
    let (rows, k, n) = (37, 64, 36);
    let x = rng.tensor(&[rows, k], -1.0, 1.0);
    let w = rng.tensor(&[n, k], -1.0, 1.0);
    let b = rng.tensor(&[n], -1.0, 1.0);
    let mut g = Graph::for_profile(profile);
    let xi = g.input("x", &[rows, k]);
    let wi = g.constant("w", &[n, k], std::sync::Arc::new(w.data.clone())).unwrap();
    let bi = g.constant("b", &[n], std::sync::Arc::new(b.data.clone())).unwrap();
    let y = linear(&mut g, xi, wi, Some(bi), Activation::None).unwrap();
    let c = g.nodes[0].key.constants();
    assert!(c.contains(&("B_TEXTURE", 1)) && c.contains(&("BIAS_TEXTURE", 1)), "{c:?}");
    g.output("y", y);
    let out = e.compile(&g, &ConstantCache::new()).await.unwrap().run(&[&x]).await.unwrap();
    let (want, _) = matmul_cpu(&x.data, &[rows, k], &w.data, &[n, k], false, true, 1.0, Some((&b.data, BiasAxis::Col)), Activation::None, None);
    let diff = max_abs_diff(&out[0].data, &want);
    assert!(diff <= 1e-4, "linear through textures: max |diff| {diff}");
}

/// Activations in textures (what the executor does on lavapipe; SwiftShader keeps buffers): a
/// promoted matmul chain, run as it is, writes a storage texture and fetches it in the browser
/// too, with the bind-group layouts made for `createComputePipelineAsync`.
#[wasm_bindgen_test]
async fn a_matmul_chain_through_activation_textures_matches_cpu() {
    let e = engine().await;
    let mut rng = Rng::new(10);
    let (rows, k, hidden, n) = (37, 24, 96, 20);
    let x = rng.tensor(&[rows, k], -1.0, 1.0);
    let w1 = rng.tensor(&[hidden, k], -1.0, 1.0);
    let w2 = rng.tensor(&[n, hidden], -0.5, 0.5);
    let mut g = Graph::for_profile(e.info().profile.clone());
    let xi = g.input("x", &[rows, k]);
    let w1i = g.constant("w1", &[hidden, k], std::sync::Arc::new(w1.data.clone())).unwrap();
    let w2i = g.constant("w2", &[n, hidden], std::sync::Arc::new(w2.data.clone())).unwrap();
    let h = linear(&mut g, xi, w1i, None, Activation::Gelu).unwrap();
    let y = linear(&mut g, h, w2i, None, Activation::None).unwrap();
    g.output("y", y);
    let g = g.with_activation_textures(0);
    assert!(g.is_texture(h) && !g.is_texture(y), "the hidden in a texture, the output in a buffer");
    let out = e.compile(&g, &ConstantCache::new()).await.unwrap().run(&[&x]).await.unwrap();
    let (hw, _) = matmul_cpu(&x.data, &[rows, k], &w1.data, &[hidden, k], false, true, 1.0, None, Activation::Gelu, None);
    let (want, _) = matmul_cpu(&hw, &[rows, hidden], &w2.data, &[n, hidden], false, true, 1.0, None, Activation::None, None);
    let diff = max_abs_diff(&out[0].data, &want);
    assert!(diff <= 1e-4, "fc1 → fc2 through an activation texture: max |diff| {diff}");
}

#[wasm_bindgen_test]
async fn gelu_matches_cpu() {
    let e = engine().await;
    let x = Rng::new(3).tensor(&[1000], -6.0, 6.0);
    let mut g = Graph::new();
    let xi = g.input("x", &[1000]);
    let y = unary(&mut g, xi, Activation::Gelu, 1.0, 0.0).unwrap();
    g.output("y", y);
    let out = e.compile(&g, &ConstantCache::new()).await.unwrap().run(&[&x]).await.unwrap();
    let want = unary_cpu(&x.data, Activation::Gelu, 1.0, 0.0);
    let diff = max_abs_diff(&out[0].data, &want);
    assert!(diff < 2e-6, "gelu max abs diff {diff}");
}

#[wasm_bindgen_test]
async fn matmul_matches_cpu_on_odd_shapes() {
    let e = engine().await;
    let mut rng = Rng::new(4);
    for (m, k, n, ta, tb) in [(37, 51, 29, false, false), (64, 48, 100, false, true), (13, 9, 17, true, false)] {
        let a_shape = if ta { [k, m] } else { [m, k] };
        let b_shape = if tb { [n, k] } else { [k, n] };
        let a = rng.tensor(&a_shape, -1.0, 1.0);
        let b = rng.tensor(&b_shape, -1.0, 1.0);
        let mut g = Graph::new();
        let ai = g.input("a", &a_shape);
        let bi = g.input("b", &b_shape);
        let c = matmul(&mut g, ai, bi, ta, tb, Epilogue::default()).unwrap();
        g.output("c", c);
        let out = e.compile(&g, &ConstantCache::new()).await.unwrap().run(&[&a, &b]).await.unwrap();
        let (want, _) = matmul_cpu(&a.data, &a_shape, &b.data, &b_shape, ta, tb, 1.0, None, Activation::None, None);
        let diff = max_abs_diff(&out[0].data, &want);
        assert!(diff < 1e-4, "matmul {m}x{k}x{n}: max abs diff {diff}");
    }
}

async fn check_fixture(id: &str, weights: &[u8], input: &[u8], logits: &[u8]) {
    let e = engine().await;
    let model = e.load_model(id, Weights::from_bytes(id, weights).unwrap()).unwrap();
    let x = read_tensor("input", input, "input").unwrap();
    let want = read_tensor("logits", logits, "logits").unwrap();
    let got = model.run(&x).await.unwrap_or_else(|err| panic!("{id}: {err}"));
    let diff = got.max_abs_diff(&want);
    web_sys::console::log_1(&format!("{id}: max abs diff {diff:.3e}").into());
    assert!(diff <= 1e-4, "{id}: max abs diff {diff}");
}

#[wasm_bindgen_test]
async fn toy_matches_golden_logits() {
    check_fixture(
        "toy",
        include_bytes!("fixtures/toy/weights.safetensors"),
        include_bytes!("fixtures/toy/input.safetensors"),
        include_bytes!("fixtures/toy/logits.safetensors"),
    )
    .await;
}

#[wasm_bindgen_test]
async fn hatnet_micro_matches_golden_logits() {
    check_fixture(
        "hatnet-micro",
        include_bytes!("fixtures/hatnet-micro/weights.safetensors"),
        include_bytes!("fixtures/hatnet-micro/input.safetensors"),
        include_bytes!("fixtures/hatnet-micro/logits.safetensors"),
    )
    .await;
}

#[wasm_bindgen_test]
async fn vvt_micro_matches_golden_logits() {
    check_fixture(
        "vvt-micro",
        include_bytes!("fixtures/vvt-micro/weights.safetensors"),
        include_bytes!("fixtures/vvt-micro/input-61x47.safetensors"),
        include_bytes!("fixtures/vvt-micro/logits-61x47.safetensors"),
    )
    .await;
}

#[wasm_bindgen_test]
async fn accvit_micro_matches_golden_logits() {
    check_fixture(
        "accvit-micro",
        include_bytes!("fixtures/accvit-micro/weights.safetensors"),
        include_bytes!("fixtures/accvit-micro/input.safetensors"),
        include_bytes!("fixtures/accvit-micro/logits.safetensors"),
    )
    .await;
}

#[wasm_bindgen_test]
async fn lavit_micro_psi_matches_golden_logits() {
    check_fixture(
        "lavit-micro-psi",
        include_bytes!("fixtures/lavit-micro-psi/weights.safetensors"),
        include_bytes!("fixtures/lavit-micro-psi/input.safetensors"),
        include_bytes!("fixtures/lavit-micro-psi/logits.safetensors"),
    )
    .await;
}

/// `Model.classify` on an `ImageData`: the same top-k as the CLI's transform of the same pixels
/// through the core API; a non-image rejects with a readable message.
#[wasm_bindgen_test]
async fn classify_image_data_matches_the_cli_transform() {
    use wasm_bindgen::{Clamped, JsCast};
    use wgvit::preprocess::{top_k, RgbImage};

    let bytes = include_bytes!("fixtures/toy/weights.safetensors");
    let web_engine = wgvit::web::Engine::create().await.unwrap_or_else(|_| panic!("the browser test needs WebGPU"));
    let model = web_engine.load_model("toy".into(), bytes.to_vec()).await.unwrap_or_else(|_| panic!("toy weights"));
    assert_eq!(model.input_size(), [32, 32]);
    let (w, h) = (45u32, 38u32);
    let rgba: Vec<u8> =
        (0..w * h).flat_map(|i| [(i % w * 5) as u8, (i / w * 6) as u8, ((i % w) * (i / w) % 256) as u8, 255]).collect();
    let img = web_sys::ImageData::new_with_u8_clamped_array_and_sh(Clamped(&rgba), w, h).unwrap();
    let got = model.classify(img.into(), Some(3), None).await.unwrap_or_else(|_| panic!("classify failed"));

    let core = engine().await.load_model("toy", Weights::from_bytes("toy", bytes).unwrap()).unwrap();
    let prep = core.card.preprocess_at((32, 32));
    let rgb = RgbImage::from_rgba(w as usize, h as usize, &rgba).unwrap();
    let x = wgvit::HostTensor::new(vec![1, 3, 32, 32], prep.tensor(&rgb)).unwrap();
    let want = top_k(&core.run(&x).await.unwrap().data, 3);
    assert_eq!(got.length(), 3);
    for (i, (index, prob)) in want.into_iter().enumerate() {
        let o = got.get(i as u32);
        let field = |k: &str| js_sys::Reflect::get(&o, &k.into()).unwrap().as_f64().unwrap();
        assert_eq!(field("index") as usize, index, "rank {i}");
        assert!((field("prob") - prob).abs() < 1e-6, "rank {i}: {} vs {prob}", field("prob"));
    }

    let err = model.classify("not an image".into(), Some(3), None).await.err().expect("a string is not an image");
    let msg = err.dyn_into::<js_sys::Error>().map(|e| String::from(e.message())).unwrap_or_default();
    assert!(msg.contains("expected ImageData"), "{msg}");
}

/// `(images [N][28·28], labels [N])` of the held-out digits (tests/fixtures/digits).
fn heldout_digits() -> (Vec<Vec<u8>>, Vec<u8>) {
    let st = safetensors::SafeTensors::deserialize(include_bytes!("fixtures/digits/heldout.safetensors")).unwrap();
    let images = st.tensor("images").unwrap().data().chunks_exact(28 * 28).map(<[u8]>::to_vec).collect();
    (images, st.tensor("labels").unwrap().data().to_vec())
}

/// A bundled digit model on the first 250 held-out digits (one batch, the engine's own
/// preprocessing): logits within 1e-4 of the reference's, the same predicted digits.
async fn check_digits(id: &str, weights: &[u8], reference: &[u8]) {
    use wgvit::models::ModelCard;
    use wgvit::preprocess::RgbImage;
    const N: usize = 250;
    let weights = Weights::from_bytes(id, weights).unwrap();
    let card = ModelCard::new(id, &weights).unwrap();
    let (size, prep) = (card.input_size(), card.preprocess.clone());
    let model = engine().await.load_model(id, weights).unwrap_or_else(|e| panic!("{id}: {e}"));
    let (images, _) = heldout_digits();
    let mut input = Vec::with_capacity(N * 3 * size.0 * size.1);
    for grey in &images[..N] {
        let rgb: Vec<u8> = grey.iter().flat_map(|&v| [v, v, v]).collect();
        input.extend(prep.tensor(&RgbImage::new(28, 28, rgb).unwrap()));
    }
    let x = wgvit::HostTensor::new(vec![N, 3, size.0, size.1], input).unwrap();
    let got = model.run(&x).await.unwrap_or_else(|e| panic!("{id}: {e}"));
    let want = read_tensor("reference", reference, "logits").unwrap();
    let want = &want.data[..N * 10];
    let diff = max_abs_diff(&got.data, want);
    let argmax = |r: &[f32]| r.iter().enumerate().fold(0, |b, (i, &v)| if v > r[b] { i } else { b });
    let same = got.data.chunks(10).zip(want.chunks(10)).filter(|(g, w)| argmax(g) == argmax(w)).count();
    web_sys::console::log_1(&format!("{id}: {N} held-out digits, max abs diff {diff:.3e}, {same}/{N} predictions equal").into());
    assert!(diff <= 1e-4, "{id}: max abs diff {diff}");
    assert_eq!(same, N, "{id}: predictions equal on {same}/{N}");
}

#[wasm_bindgen_test]
async fn hatnet_digits_matches_the_reference() {
    let w = include_bytes!("../assets/models/hatnet-digits.safetensors");
    check_digits("hatnet-digits", w, include_bytes!("fixtures/digits/hatnet-logits.safetensors")).await;
}

#[wasm_bindgen_test]
async fn vvt_digits_matches_the_reference() {
    let w = include_bytes!("../assets/models/vvt-digits.safetensors");
    check_digits("vvt-digits", w, include_bytes!("fixtures/digits/vvt-logits.safetensors")).await;
}

#[wasm_bindgen_test]
async fn accvit_digits_matches_the_reference() {
    let w = include_bytes!("../assets/models/accvit-digits.safetensors");
    check_digits("accvit-digits", w, include_bytes!("fixtures/digits/accvit-logits.safetensors")).await;
}

#[wasm_bindgen_test]
async fn lavit_digits_matches_the_reference() {
    let w = include_bytes!("../assets/models/lavit-digits.safetensors");
    check_digits("lavit-digits", w, include_bytes!("fixtures/digits/lavit-logits.safetensors")).await;
}

/// The JS API with a bundled model: `loadModel("")` takes the id from the metadata, `inputSize`
/// its input size, and `classify` on a 28×28 digit's pixels names the digit.
#[wasm_bindgen_test]
async fn js_api_loads_a_bundled_model_by_its_metadata_and_reads_digits() {
    use wasm_bindgen::Clamped;
    let bytes = include_bytes!("../assets/models/lavit-digits.safetensors");
    let web_engine = wgvit::web::Engine::create().await.unwrap_or_else(|_| panic!("the browser test needs WebGPU"));
    let model = web_engine.load_model(String::new(), bytes.to_vec()).await.unwrap_or_else(|_| panic!("lavit-digits"));
    assert_eq!(model.id(), "lavit-digits");
    assert_eq!(model.input_size(), [64, 64]);
    let (images, labels) = heldout_digits();
    for i in 0..5 {
        let rgba: Vec<u8> = images[i].iter().flat_map(|&v| [v, v, v, 255]).collect();
        let img = web_sys::ImageData::new_with_u8_clamped_array_and_sh(Clamped(&rgba), 28, 28).unwrap();
        let top = model.classify(img.into(), Some(1), None).await.unwrap_or_else(|_| panic!("classify digit {i}"));
        let label = js_sys::Reflect::get(&top.get(0), &"label".into()).unwrap().as_string().unwrap_or_default();
        assert_eq!(label, labels[i].to_string(), "held-out digit {i}");
    }
}

/// `device.destroy()` (what a GPU reset or a tab losing its device looks like): the next forward
/// is `Error::DeviceLost`, not garbage or a hang, and a new engine works without a page reload.
#[wasm_bindgen_test]
async fn a_lost_device_is_an_error_and_a_new_engine_works() {
    let weights = include_bytes!("fixtures/toy/weights.safetensors");
    let x = read_tensor("input", include_bytes!("fixtures/toy/input.safetensors"), "input").unwrap();
    let e = engine().await;
    let model = e.load_model("toy", Weights::from_bytes("toy", weights).unwrap()).unwrap();
    let before = model.run(&x).await.unwrap();
    e.ctx.device.destroy();
    match model.run(&x).await {
        Err(wgvit::Error::DeviceLost { reason, .. }) => web_sys::console::log_1(&format!("after destroy(): device lost ({reason})").into()),
        other => panic!("a forward on a destroyed device: expected Error::DeviceLost, got {other:?}"),
    }
    let e = engine().await;
    let model = e.load_model("toy", Weights::from_bytes("toy", weights).unwrap()).unwrap();
    assert_eq!(model.run(&x).await.unwrap().data, before.data);
}

/// A bundled digit model's attention maps in Chromium against the PyTorch reference
/// (tests/fixtures/explain, tools/make_explain_fixtures.py), as natively (tests/explain.rs): the
/// same names in order, every map and the summary within 1e-5, received and query mode. The
/// query-mode call goes through the JS API (`Model.explainTensor`), the other through the core.
async fn check_explain(id: &str, weights: &[u8], fixture: &[u8]) {
    let st = safetensors::SafeTensors::deserialize(fixture).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(fixture).unwrap();
    let meta = meta.metadata().clone().unwrap();
    let names: Vec<String> = serde_json::from_str(&meta["maps"]).unwrap();
    let (qx, qy) = meta["query"].split_once(',').unwrap();
    let query = [qx.parse::<u32>().unwrap(), qy.parse::<u32>().unwrap()];
    let tensor = |name: &str| -> Vec<f32> { bytemuck::pod_collect_to_vec(st.tensor(name).unwrap_or_else(|e| panic!("{id}: {name}: {e}")).data()) };
    let input = st.tensor("input").unwrap();
    let shape = input.shape().to_vec();
    let x = wgvit::HostTensor::new(shape.clone(), tensor("input")).unwrap();
    let mut worst = 0f32;
    let mut check = |what: &str, got: &[f32], want: &[f32]| {
        let diff = max_abs_diff(got, want);
        assert!(got.len() == want.len() && diff <= 1e-5, "{id} {what}: {} values, max abs diff {diff}", got.len());
        worst = worst.max(diff);
    };

    let model = engine().await.load_model(id, Weights::from_bytes(id, weights).unwrap()).unwrap();
    let (_, maps) = model.explain(&x, None).await.unwrap_or_else(|e| panic!("{id}: {e}"));
    assert_eq!(maps.maps.iter().map(|m| m.name.clone()).collect::<Vec<_>>(), names, "{id}: map names");
    for m in &maps.maps {
        check(&format!("received/{}", m.name), &m.values, &tensor(&format!("received/{}", m.name)));
    }
    check("summary/received", &maps.summary.values, &tensor("summary/received"));

    let web_engine = wgvit::web::Engine::create().await.unwrap_or_else(|_| panic!("the browser test needs WebGPU"));
    let web_model = web_engine.load_model(id.into(), weights.to_vec()).await.unwrap_or_else(|_| panic!("{id} weights"));
    let shape32: Vec<u32> = shape.iter().map(|&d| d as u32).collect();
    let js = web_model.explain_tensor(x.data.clone(), shape32, Some(query.to_vec())).await.unwrap_or_else(|_| panic!("{id}: explainTensor"));
    let parsed: serde_json::Value = serde_json::from_str(&String::from(js_sys::JSON::stringify(&js).unwrap())).unwrap();
    let values = |v: &serde_json::Value| -> Vec<f32> { v["values"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect() };
    let js_maps = parsed["maps"].as_array().unwrap();
    assert_eq!(js_maps.len(), names.len(), "{id}: maps from explainTensor");
    for (m, name) in js_maps.iter().zip(&names) {
        assert_eq!(m["name"], name.as_str());
        check(&format!("query/{name}"), &values(m), &tensor(&format!("query/{name}")));
        if let (Some(heads), Ok(want)) = (m["heads"].as_array(), st.tensor(&format!("query/{name}/heads"))) {
            let want: Vec<f32> = bytemuck::pod_collect_to_vec(want.data());
            let got: Vec<f32> = heads.iter().flat_map(|h| h.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32)).collect();
            check(&format!("query/{name}/heads"), &got, &want);
        }
    }
    check("summary/query", &values(&parsed["summary"]), &tensor("summary/query"));
    assert_eq!(parsed["top"].as_array().unwrap().len(), 5, "{id}: top-5");
    web_sys::console::log_1(&format!("{id}: {} maps x 2 modes, max abs diff {worst:.3e}", names.len()).into());
}

#[wasm_bindgen_test]
async fn hatnet_digits_maps_match_the_reference() {
    check_explain("hatnet-digits", include_bytes!("../assets/models/hatnet-digits.safetensors"), include_bytes!("fixtures/explain/hatnet-digits.safetensors")).await;
}

#[wasm_bindgen_test]
async fn vvt_digits_maps_match_the_reference() {
    check_explain("vvt-digits", include_bytes!("../assets/models/vvt-digits.safetensors"), include_bytes!("fixtures/explain/vvt-digits.safetensors")).await;
}

#[wasm_bindgen_test]
async fn accvit_digits_maps_match_the_reference() {
    check_explain("accvit-digits", include_bytes!("../assets/models/accvit-digits.safetensors"), include_bytes!("fixtures/explain/accvit-digits.safetensors")).await;
}

#[wasm_bindgen_test]
async fn lavit_digits_maps_match_the_reference() {
    check_explain("lavit-digits", include_bytes!("../assets/models/lavit-digits.safetensors"), include_bytes!("fixtures/explain/lavit-digits.safetensors")).await;
}
