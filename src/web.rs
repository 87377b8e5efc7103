//! The JavaScript API (wasm32 only), a thin layer over [`crate::Engine`] and [`crate::Model`]:
//!
//! ```js
//! import init, { Engine } from "./pkg/wgvit.js";
//! await init();
//! const engine = await Engine.create();                 // rejects with a readable message without WebGPU
//! engine.adapterInfo();                                 // JSON: adapter, backend, features, limits
//! const model = await engine.loadModel("hatnet-tiny", bytes);   // Uint8Array of a .safetensors
//! const logits = await model.run(input, [1, 3, 224, 224]);      // Float32Array -> Float32Array
//! model.free();
//! ```
//! Every failure rejects the promise with the engine's error text (file, tensor, shape...).

use std::rc::Rc;

use wasm_bindgen::prelude::*;

use crate::tensor::HostTensor;
use crate::weights::Weights;

fn js_error(e: crate::Error) -> JsValue {
    JsError::new(&e.to_string()).into()
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
        let inner = crate::Engine::new().await.map_err(js_error)?;
        Ok(Engine { inner })
    }

    /// The adapter, backend, features and limits, as a JSON string.
    #[wasm_bindgen(js_name = adapterInfo)]
    pub fn adapter_info(&self) -> String {
        let i = self.inner.info();
        let l = &i.limits;
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        format!(
            concat!(
                "{{\"adapter\":\"{}\",\"backend\":\"{}\",\"deviceType\":\"{}\",\"driver\":\"{}\",",
                "\"features\":{{\"shaderF16\":{},\"timestampQuery\":{}}},",
                "\"limits\":{{\"maxStorageBufferBindingSize\":{},\"maxBufferSize\":{},",
                "\"maxComputeWorkgroupStorageSize\":{},\"maxComputeInvocationsPerWorkgroup\":{},",
                "\"maxComputeWorkgroupsPerDimension\":{},\"maxStorageBuffersPerShaderStage\":{}}}}}"
            ),
            esc(&i.name),
            esc(&i.backend),
            esc(&i.device_type),
            esc(&i.driver),
            i.shader_f16,
            i.timestamp_query,
            l.max_storage_buffer_binding_size,
            l.max_buffer_size,
            l.max_compute_workgroup_storage_size,
            l.max_compute_invocations_per_workgroup,
            l.max_compute_workgroups_per_dimension,
            l.max_storage_buffers_per_shader_stage
        )
    }

    /// Loads model `id` from the bytes of a weights file.
    #[wasm_bindgen(js_name = loadModel)]
    pub async fn load_model(&self, id: String, bytes: Vec<u8>) -> Result<Model, JsValue> {
        let weights = Weights::from_bytes(&format!("{id} weights"), &bytes).map_err(js_error)?;
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
}
