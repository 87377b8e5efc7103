//! The JavaScript API (wasm32 only), a thin layer over [`crate::Engine`] and [`crate::Model`]:
//!
//! ```js
//! import init, { Engine } from "./pkg/wgvit.js";
//! await init();
//! const engine = await Engine.create();                 // rejects with a readable message without WebGPU
//! engine.adapterInfo();                                 // JSON: adapter, backend, features, limits
//! const compiling = engine.precompile("hatnet-tiny");  // compiles its pipelines while the weights download
//! const model = await engine.loadModel("hatnet-tiny", bytes);   // Uint8Array of a .safetensors
//! const logits = await model.run(input, [1, 3, 224, 224]);      // Float32Array -> Float32Array
//! const top = await model.classify(image, 5);   // ImageData | ImageBitmap | HTMLImageElement | HTMLCanvasElement
//!                                               // -> [{index, label, prob}], preprocessed as `wgvit classify`
//! const ex = await model.explain(image, [x, y]);  // attention maps (optional query pixel of the input):
//!                                               // {model, inputSize, query, top, maps: [{name, height, width, values}], summary}
//! model.inputSize();                            // [H, W]: the weights' `wgvit.input_size`, else the family's usual size
//! modelIds();                                   // every id loadModel accepts
//! model.free();
//! ```
//! Every failure rejects the promise with the engine's error text (file, tensor, shape...).

use std::rc::Rc;

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{HtmlCanvasElement, HtmlImageElement, ImageBitmap, ImageData, OffscreenCanvas, OffscreenCanvasRenderingContext2d};

use crate::preprocess::{top_k, RgbImage};
use crate::tensor::HostTensor;
use crate::weights::Weights;

fn js_error(e: crate::Error) -> JsValue {
    JsError::new(&e.to_string()).into()
}

/// Every model id `loadModel` accepts.
#[wasm_bindgen(js_name = modelIds)]
pub fn model_ids() -> Vec<String> {
    crate::models::model_ids()
}

/// A WebGPU device and the pipelines compiled on it.
#[wasm_bindgen]
pub struct Engine {
    inner: crate::Engine,
}

#[wasm_bindgen]
impl Engine {
    /// Requests a WebGPU adapter and device.
    pub async fn create() -> Result<Engine, JsValue> {
        // A panic (a bug) aborts the module with a bare "unreachable"; its message goes to the
        // console first.
        static HOOK: std::sync::Once = std::sync::Once::new();
        HOOK.call_once(|| std::panic::set_hook(Box::new(|info| web_sys::console::error_1(&format!("wgvit panicked: {info}").into()))));
        let inner = crate::Engine::new().await.map_err(js_error)?;
        Ok(Engine { inner })
    }

    /// The adapter, backend, features, kernel set and limits, as a JSON string.
    #[wasm_bindgen(js_name = adapterInfo)]
    pub fn adapter_info(&self) -> String {
        let i = self.inner.info();
        let l = &i.limits;
        serde_json::json!({
            "adapter": i.name,
            "backend": i.backend,
            "deviceType": i.device_type,
            "driver": i.driver,
            "kernels": i.profile.kernels.name(),
            "features": {"shaderF16": i.shader_f16, "timestampQuery": i.timestamp_query, "subgroups": i.profile.subgroups},
            "limits": {
                "maxStorageBufferBindingSize": l.max_storage_buffer_binding_size,
                "maxBufferSize": l.max_buffer_size,
                "maxComputeWorkgroupStorageSize": l.max_compute_workgroup_storage_size,
                "maxComputeInvocationsPerWorkgroup": l.max_compute_invocations_per_workgroup,
                "maxComputeWorkgroupsPerDimension": l.max_compute_workgroups_per_dimension,
                "maxStorageBuffersPerShaderStage": l.max_storage_buffers_per_shader_stage,
            },
        })
        .to_string()
    }

    /// Compiles the pipelines of built-in model `id` (`hatnet-tiny`: its configuration is its id)
    /// for an input of `size` ([H, W]; default the model's usual size) before its weights are
    /// here. Start it, then fetch the weights: the browser compiles while the download runs, and
    /// the model's first run finds its pipelines. Resolves to JSON `{"graphMs", "modulesMs",
    /// "pipelines", "pipelinesMs", "pipelinesAsyncMs"}`; rejects for a model whose configuration
    /// is in its weights' metadata (the bundled `*-digits`).
    pub async fn precompile(&self, id: String, size: Option<Vec<u32>>) -> Result<String, JsValue> {
        let (h, w) = input_side(size.as_deref(), || self.inner.default_input_size(&id).map_err(js_error))?;
        let t = self.inner.precompile(&id, &[1, 3, h, w]).await.map_err(js_error)?;
        Ok(serde_json::json!({
            "graphMs": t.graph_ms,
            "modulesMs": t.modules_ms,
            "pipelines": t.pipelines_new,
            "pipelinesMs": t.pipelines_ms(),
            "pipelinesAsyncMs": t.pipelines_async_ms,
        })
        .to_string())
    }

    /// Loads model `id` from the bytes of a weights file; an empty `id` takes the model the
    /// weights' metadata names (`wgvit.model`, e.g. the bundled `hatnet-digits`).
    #[wasm_bindgen(js_name = loadModel)]
    pub async fn load_model(&self, id: String, bytes: Vec<u8>) -> Result<Model, JsValue> {
        let name = if id.is_empty() { "weights".to_string() } else { format!("{id} weights") };
        let weights = Weights::from_bytes(&name, &bytes).map_err(js_error)?;
        let id = match (id.is_empty(), weights.model_id()) {
            (false, _) => id,
            (true, Some(named)) => named.to_string(),
            (true, None) => return Err(invalid("loadModel: no model id given and the weights' metadata names none (wgvit.model)")),
        };
        let inner = self.inner.load_model(&id, weights).map_err(js_error)?;
        Ok(Model { inner: Rc::new(inner) })
    }
}

/// A model on the device; graphs are built and cached per input shape.
#[wasm_bindgen]
pub struct Model {
    inner: Rc<crate::Model>,
}

#[wasm_bindgen]
impl Model {
    /// The model id.
    #[wasm_bindgen(getter)]
    pub fn id(&self) -> String {
        self.inner.id.clone()
    }

    /// One forward: `input` (`shape` = [B, 3, H, W]) -> logits `[B * classes]`.
    pub async fn run(&self, input: Vec<f32>, shape: Vec<u32>) -> Result<Vec<f32>, JsValue> {
        let model = self.inner.clone();
        let shape: Vec<usize> = shape.into_iter().map(|d| d as usize).collect();
        let x = HostTensor::new(shape, input).map_err(js_error)?;
        let logits = model.run(&x).await.map_err(js_error)?;
        Ok(logits.data)
    }

    /// Builds and compiles the graph for `size` (`[height, width]`; default [`Model::input_size`])
    /// ahead of the first forward, and returns where its build time went, as JSON:
    /// `{"graphMs", "planMs", "uploadMs", "modulesMs", "pipelines", "pipelinesMs", "pipelinesAsyncMs",
    /// "bindGroupsMs", "flops"}` (`pipelines`: how many were created, those the engine already had
    /// cost nothing; `pipelinesAsyncMs`: the part of `pipelinesMs` spent compiling them
    /// concurrently; `flops`: one forward's, a multiply-add counting 2).
    pub async fn prepare(&self, size: Option<Vec<u32>>) -> Result<String, JsValue> {
        let (h, w) = self.size_or_default(size.as_deref())?;
        let exe = self.inner.prepare(&[1, 3, h, w]).await.map_err(js_error)?;
        let t = &exe.times;
        Ok(serde_json::json!({
            "graphMs": t.graph_ms,
            "planMs": t.plan_ms,
            "uploadMs": t.upload_ms,
            "modulesMs": t.modules_ms,
            "pipelines": t.pipelines.len(),
            "pipelinesMs": t.pipelines_ms(),
            "pipelinesAsyncMs": t.pipelines_async_ms,
            "bindGroupsMs": t.bind_groups_ms,
            "flops": exe.stats.flops,
        })
        .to_string())
    }

    fn size_or_default(&self, size: Option<&[u32]>) -> Result<(usize, usize), JsValue> {
        input_side(size, || Ok(self.inner.card.input_size()))
    }

    /// The input size classify uses: the weights' `wgvit.input_size`, else the model's usual one
    /// (the family's: toy 32, LaViT the size its weights were made for, else 224), as
    /// `[height, width]`.
    #[wasm_bindgen(js_name = inputSize)]
    pub fn input_size(&self) -> Vec<u32> {
        let (h, w) = self.inner.card.input_size();
        vec![h as u32, w as u32]
    }

    /// Classifies one image: its RGBA pixels (alpha dropped), then the native CLI's transform
    /// (PIL-exact bicubic resize, center crop, normalisation from the weights' metadata) at
    /// [`Model::input_size`], one forward, softmax, the `k` most probable classes as
    /// `[{index, label, prob}]` (`label` null when the head has no names).
    /// An optional `size` (`[height, width]`, or `[S]`) overrides the input size.
    pub async fn classify(&self, image: JsValue, k: Option<u32>, size: Option<Vec<u32>>) -> Result<js_sys::Array, JsValue> {
        let k = k.unwrap_or(5).max(1) as usize;
        let rgb = rgba_of(&image)?;
        let model = self.inner.clone();
        let size = self.size_or_default(size.as_deref())?;
        let prep = model.card.preprocess_at(size);
        let x = HostTensor::new(vec![1, 3, size.0, size.1], prep.tensor(&rgb)).map_err(js_error)?;
        let logits = model.run(&x).await.map_err(js_error)?;
        let classes = logits.shape.get(1).copied().unwrap_or(logits.data.len());
        let names = model.card.labels_for(classes);
        let out = js_sys::Array::new();
        for (index, prob) in top_k(&logits.data[..classes.min(logits.data.len())], k) {
            let o = js_sys::Object::new();
            let label = names.as_ref().map_or(JsValue::NULL, |n| JsValue::from_str(&n[index]));
            js_sys::Reflect::set(&o, &"index".into(), &JsValue::from_f64(index as f64))?;
            js_sys::Reflect::set(&o, &"label".into(), &label)?;
            js_sys::Reflect::set(&o, &"prob".into(), &JsValue::from_f64(prob))?;
            out.push(&o);
        }
        Ok(out)
    }
}

impl Model {
    /// The explain result as a JS object: `{model, inputSize: [H, W], query: [x, y] | null,
    /// top: [{index, label, prob}] (5), maps: [{name, height, width, values, heads?}], summary,
    /// crop}` where `crop` is the model's input image (the preprocessed crop with the
    /// normalisation undone) as RGBA bytes, `H·W·4`.
    async fn explain_input(&self, x: HostTensor, query: Option<Vec<u32>>) -> Result<JsValue, JsValue> {
        let query = match query.as_deref() {
            None | Some([]) => None,
            Some(&[qx, qy]) => Some((qx as usize, qy as usize)),
            Some(other) => return Err(invalid(&format!("explain: query {other:?} is not [x, y], a pixel of the model's input"))),
        };
        let (logits, maps) = self.inner.explain(&x, query).await.map_err(js_error)?;
        let classes = logits.data.len();
        let names = self.inner.card.labels_for(classes);
        let top: Vec<serde_json::Value> = top_k(&logits.data, 5)
            .into_iter()
            .map(|(index, prob)| serde_json::json!({ "index": index, "label": names.as_ref().map(|n| n[index].clone()), "prob": prob }))
            .collect();
        let (h, w) = (x.shape[2], x.shape[3]);
        let crop: Vec<u8> = self.inner.card.preprocess.pixels(&x.data, (h, w)).chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect();
        let json = serde_json::json!({
            "model": self.inner.id,
            "crop": crop,
            "inputSize": [x.shape[2], x.shape[3]],
            "query": query.map(|(x, y)| [x, y]),
            "top": top,
            "maps": maps.maps,
            "summary": maps.summary,
        });
        js_sys::JSON::parse(&json.to_string())
    }
}

#[wasm_bindgen]
impl Model {
    /// The attention maps of one image, preprocessed as [`Model::classify`] does: every map of the
    /// forward and their summary over the input pixels (see `wgvit explain`; README "Explain").
    /// `query` (`[x, y]`, a pixel of the model's input) gives that query's maps; without it, the
    /// attention each position receives. Resolves to `{model, inputSize, query, top, maps, summary}`.
    pub async fn explain(&self, image: JsValue, query: Option<Vec<u32>>, size: Option<Vec<u32>>) -> Result<JsValue, JsValue> {
        let rgb = rgba_of(&image)?;
        let size = self.size_or_default(size.as_deref())?;
        let prep = self.inner.card.preprocess_at(size);
        let x = HostTensor::new(vec![1, 3, size.0, size.1], prep.tensor(&rgb)).map_err(js_error)?;
        self.explain_input(x, query).await
    }

    /// [`Model::explain`] on an input tensor `[1, 3, H, W]` (already preprocessed).
    #[wasm_bindgen(js_name = explainTensor)]
    pub async fn explain_tensor(&self, input: Vec<f32>, shape: Vec<u32>, query: Option<Vec<u32>>) -> Result<JsValue, JsValue> {
        let x = HostTensor::new(shape.into_iter().map(|d| d as usize).collect(), input).map_err(js_error)?;
        self.explain_input(x, query).await
    }
}

/// `size` as `(H, W)`: `[S]`, `[H, W]`, or (absent or empty) `default()`.
fn input_side(size: Option<&[u32]>, default: impl FnOnce() -> Result<(usize, usize), JsValue>) -> Result<(usize, usize), JsValue> {
    match size {
        None | Some([]) => default(),
        Some(&[s]) if s > 0 => Ok((s as usize, s as usize)),
        Some(&[h, w]) if h > 0 && w > 0 => Ok((h as usize, w as usize)),
        Some(other) => Err(invalid(&format!("size {other:?} is not [S] or [H, W] with positive sides"))),
    }
}

fn invalid(msg: &str) -> JsValue {
    JsError::new(msg).into()
}

/// The 8-bit RGB pixels of an `ImageData`, `ImageBitmap`, `HTMLImageElement` or
/// `HTMLCanvasElement` (the last three drawn at their natural size onto an `OffscreenCanvas`).
fn rgba_of(image: &JsValue) -> Result<RgbImage, JsValue> {
    let from = |d: ImageData| RgbImage::from_rgba(d.width() as usize, d.height() as usize, &d.data()).map_err(js_error);
    if let Some(d) = image.dyn_ref::<ImageData>() {
        return from(d.clone());
    }
    let (w, h) = if let Some(b) = image.dyn_ref::<ImageBitmap>() {
        (b.width(), b.height())
    } else if let Some(i) = image.dyn_ref::<HtmlImageElement>() {
        if !i.complete() || i.natural_width() == 0 {
            return Err(invalid("classify: the <img> has not loaded (or failed to decode); await img.decode() first"));
        }
        (i.natural_width(), i.natural_height())
    } else if let Some(c) = image.dyn_ref::<HtmlCanvasElement>() {
        (c.width(), c.height())
    } else {
        return Err(invalid("classify: expected ImageData, ImageBitmap, HTMLImageElement or HTMLCanvasElement"));
    };
    if w == 0 || h == 0 {
        return Err(invalid("classify: the image is empty (0 pixels)"));
    }
    let canvas = OffscreenCanvas::new(w, h)?;
    let ctx: OffscreenCanvasRenderingContext2d = canvas
        .get_context("2d")?
        .ok_or_else(|| invalid("classify: no 2d context on an OffscreenCanvas"))?
        .dyn_into()
        .map_err(|_| invalid("classify: unexpected 2d context type"))?;
    if let Some(b) = image.dyn_ref::<ImageBitmap>() {
        ctx.draw_image_with_image_bitmap(b, 0.0, 0.0)?;
    } else if let Some(i) = image.dyn_ref::<HtmlImageElement>() {
        ctx.draw_image_with_html_image_element(i, 0.0, 0.0)?;
    } else if let Some(c) = image.dyn_ref::<HtmlCanvasElement>() {
        ctx.draw_image_with_html_canvas_element(c, 0.0, 0.0)?;
    }
    from(ctx.get_image_data(0.0, 0.0, w as f64, h as f64)?)
}
