//! Shared helpers for the GPU tests. There is deliberately no skip path: without an adapter the
//! engine creation fails and so does every GPU test, so a missing lavapipe install is visible.
#![allow(dead_code)]

pub mod cli;

use std::sync::OnceLock;

use wgvit::executor::ConstantCache;
use wgvit::{Engine, Graph, HostTensor};

pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let engine = pollster::block_on(Engine::new()).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"));
        eprintln!("adapter: {} ({})", engine.info().name, engine.info().backend);
        engine
    })
}

/// A graph built for lavapipe: the CPU-like set with its adapter's name (the device-specific
/// choices of `ops::tuning` key on it, e.g. activations in textures), whatever adapter the test
/// runs on.
pub fn lavapipe() -> wgvit::kernels::DeviceProfile {
    wgvit::kernels::DeviceProfile { name: "llvmpipe (LLVM 15.0.6, 256 bits)".into(), ..wgvit::kernels::DeviceProfile::cpu_like() }
}

/// A graph built for SwiftShader (Chromium's WebGPU device here): the CPU-like set with its
/// adapter's name, whatever adapter the test runs on.
pub fn swiftshader() -> wgvit::kernels::DeviceProfile {
    wgvit::kernels::DeviceProfile { name: "SwiftShader Device (Subzero)".into(), ..wgvit::kernels::DeviceProfile::cpu_like() }
}

/// `g` with its activations moved to textures (`Graph::with_activation_textures`), after
/// asserting that `tensors` moved and that the first node labelled `node_prefix…` has every
/// define of `defines` set; `case` names the case in the messages.
pub fn promoted_to_textures(g: &Graph, tensors: &[wgvit::TensorId], node_prefix: &str, defines: &[&str], case: &str) -> Graph {
    use wgvit::graph::StorageKind;
    let promoted = g.with_activation_textures(0);
    for t in tensors {
        assert!(matches!(promoted.storages[promoted.tensors[t.0].storage].kind, StorageKind::Activation { texture: true, .. }), "{case}: tensor {t:?} moves to a texture");
    }
    let node = promoted.nodes.iter().find(|n| n.label.starts_with(node_prefix)).unwrap_or_else(|| panic!("{case}: no node {node_prefix}…"));
    for define in defines {
        assert!(node.key.constants().contains(&(*define, 1)), "{case}: {define} in {:?}", node.key.constants());
    }
    promoted
}

/// Compiles and runs `g` with `inputs` (graph-input order); returns the outputs.
pub fn run(g: &Graph, inputs: &[&HostTensor]) -> Vec<HostTensor> {
    let e = engine();
    let exe = pollster::block_on(e.compile(g, &ConstantCache::new())).unwrap_or_else(|err| panic!("compile: {err}"));
    pollster::block_on(exe.run(inputs)).unwrap_or_else(|err| panic!("run: {err}"))
}

/// Runs `g` with `inputs` (graph-input order) and asserts each output, in order, close to its
/// `expected` values ([`assert_close`]), naming it.
pub fn run_and_compare(g: &Graph, inputs: &[HostTensor], expected: &[(String, Vec<f32>)], atol: f32, rtol: f32) {
    let refs: Vec<&HostTensor> = inputs.iter().collect();
    let out = run(g, &refs);
    for ((name, want), got) in expected.iter().zip(&out) {
        assert_close(name, &got.data, want, atol, rtol);
    }
}

/// Asserts `max |got - want| <= atol + rtol * |want|` element-wise, naming the first bad index.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length {} vs {}", got.len(), want.len());
    let mut worst = (0usize, 0f32);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        let tol = atol + rtol * w.abs();
        #[allow(clippy::neg_cmp_op_on_partial_ord)] // a NaN must fail too
        if !(err <= tol) {
            panic!("{what}: element {i}: got {g}, want {w} (|diff| {err} > tol {tol})");
        }
        if err > worst.1 {
            worst = (i, err);
        }
    }
    eprintln!("{what}: max abs diff {:.3e} at {}", worst.1, worst.0);
}

/// The engine's channel-last stage maps `[B, H, W, C]` as the contract's NCHW.
pub fn nhwc_to_nchw(t: &HostTensor) -> HostTensor {
    let [b, h, w, c] = [t.shape[0], t.shape[1], t.shape[2], t.shape[3]];
    let mut data = vec![0f32; t.data.len()];
    for (i, &v) in t.data.iter().enumerate() {
        let (ch, r) = (i % c, i / c);
        let (x, r) = (r % w, r / w);
        let (y, n) = (r % h, r / h);
        data[((n * c + ch) * h + y) * w + x] = v;
    }
    HostTensor { shape: vec![b, c, h, w], data }
}
