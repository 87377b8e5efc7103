//! Every kernel, checked without a GPU. For each `Kernel::source()` (what the device compiles):
//! naga parses and validates it with every capability and again with WebGPU's baseline (no f16,
//! no subgroups), resolves its `override` constants, and translates the result to SPIR-V, MSL,
//! HLSL and GLSL — what wgpu hands to Vulkan, Metal, DX12 and GL. The module must fit WebGPU's
//! default limits and follow the binding convention the executor's bind-group layouts assume.
//! Then the same for the pipelines the ops really create (their override values, checked against
//! their nodes' reads, writes and uniform words) on model-like graphs built on the CPU.
//! Each kernel's WGSL `Params` struct is reflected and checked against its Rust uniform struct.
//! The files in `shaders/` must carry their header line and each be compiled by some kernel.
//!
//! Every check collects all failures before panicking, so one run names every broken shader.

use std::path::{Path, PathBuf};

use naga::back::PipelineConstants;
use naga::valid::{Capabilities, ModuleInfo, ValidationFlags, Validator};
use naga::{AddressSpace, Module, ShaderStage, StorageAccess};
use wgvit::kernels::params::{ParamField, Scalar};
use wgvit::kernels::{wgsl, DeviceProfile, Kernel};
use wgvit::ops::Activation;
use wgvit::{Graph, TensorId};

/// WebGPU's default limits, the ones every kernel is written for (see ENV.md).
const MAX_INVOCATIONS: u32 = 256;
const MAX_WORKGROUP_SIZE: [u32; 3] = [256, 256, 64];
const MAX_WORKGROUP_STORAGE_BYTES: u32 = 16 * 1024;
const MAX_STORAGE_BUFFERS: usize = 8;
/// The `ACT` override takes every `Activation` discriminant; each value selects a different
/// branch once the constant is folded, so each is translated.
const ACT_VALUES: [Activation; 7] = [
    Activation::None,
    Activation::Relu,
    Activation::Gelu,
    Activation::GeluTanh,
    Activation::Silu,
    Activation::Sigmoid,
    Activation::Tanh,
];

fn shaders_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders")
}

/// Where the line numbers in naga's messages point: `source()` joins several files (the library
/// files a kernel requires, then the kernel), each after a `// ---- shaders/<path>` line.
fn location_note(source: &str) -> String {
    let mut parts = Vec::new();
    let mut current: Option<(usize, &str)> = None;
    for (i, line) in source.lines().enumerate() {
        if let Some(path) = line.strip_prefix("// ---- ") {
            if let Some((first, name)) = current.take() {
                parts.push(format!("{}-{i} {name}", first + 1));
            }
            current = Some((i + 1, path));
        }
    }
    if let Some((first, name)) = current {
        parts.push(format!("{}-{} {name}", first + 1, source.lines().count()));
    }
    format!("(source lines: {})", parts.join(", "))
}

fn parse(shader: &Kernel, source: &str) -> Result<Module, String> {
    naga::front::wgsl::parse_str(source)
        .map_err(|e| format!("{}: WGSL parse error {}\n{}", shader.name(), location_note(source), e.emit_to_string(source)))
}

fn validate(shader: &Kernel, source: &str, module: &Module, caps: Capabilities, what: &str) -> Result<ModuleInfo, String> {
    Validator::new(ValidationFlags::all(), caps).validate(module).map_err(|e| {
        format!("{}: invalid with {what} {}\n{}", shader.name(), location_note(source), e.emit_to_string(source))
    })
}

/// Parses and validates with all capabilities; the first step of every other check. `constants`
/// specialise the source as the executor does for a pipeline (the rest at their defaults).
fn load_for(shader: &Kernel, constants: &[(&'static str, u32)]) -> Result<(String, Module, ModuleInfo), String> {
    let source = shader.source_for(constants);
    let module = parse(shader, &source)?;
    let info = validate(shader, &source, &module, Capabilities::all(), "all capabilities")?;
    Ok((source, module, info))
}

/// [`load_for`] with every override at its default.
fn load(shader: &Kernel) -> Result<(String, Module, ModuleInfo), String> {
    load_for(shader, &[])
}

fn check_all(check: impl Fn(&Kernel) -> Result<String, String>) {
    let mut failures = Vec::new();
    for shader in Kernel::ALL {
        match check(shader) {
            Ok(report) => eprintln!("{:<20} ok  {report}", shader.name()),
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{} shader(s) failed:\n\n{}", failures.len(), failures.join("\n\n"));
}

#[test]
fn every_shader_validates_with_all_capabilities() {
    check_all(|shader| load(shader).map(|(source, _, _)| format!("{} lines", source.lines().count())));
}

/// WebGPU without optional features: no `shader-f16`, and no subgroups (wgpu 30 has none on the
/// web). Naga's default capabilities are that baseline.
#[test]
fn every_shader_validates_with_webgpu_baseline_capabilities() {
    check_all(|shader| {
        let (source, module, _) = load(shader)?;
        validate(shader, &source, &module, Capabilities::default(), "WebGPU baseline capabilities (no f16, no subgroups)")?;
        Ok(String::new())
    });
}

/// The texel-store probe (`context::store_probe`) is created by no op: both its variants here.
#[test]
fn the_store_probe_validates_storing_a_buffer_and_a_texture() {
    for out_texture in [0, 1] {
        let (source, module, _) = load_for(&Kernel::StoreProbe, &[("OUT_TEXTURE", out_texture)]).unwrap_or_else(|e| panic!("{e}"));
        validate(&Kernel::StoreProbe, &source, &module, Capabilities::default(), "WebGPU baseline capabilities").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(source.contains("var out_texture: texture_storage_2d"), out_texture == 1, "OUT_TEXTURE = {out_texture}");
    }
}

fn has_override(module: &Module, name: &str) -> bool {
    module.overrides.iter().any(|(_, o)| o.name.as_deref() == Some(name))
}

/// The override assignments each shader is translated with: its defaults, plus every activation
/// when it has an `ACT` override.
fn constant_sets(module: &Module) -> Vec<PipelineConstants> {
    let mut sets = vec![PipelineConstants::default()];
    if has_override(module, "ACT") {
        for act in ACT_VALUES.iter().skip(1) {
            let mut c = PipelineConstants::default();
            c.insert("ACT".to_string(), *act as u32 as f64);
            sets.push(c);
        }
    }
    sets
}

fn describe(constants: &PipelineConstants) -> String {
    if constants.is_empty() {
        "default overrides".to_string()
    } else {
        let mut v: Vec<String> = constants.iter().map(|(k, v)| format!("{k}={v}")).collect();
        v.sort();
        v.join(", ")
    }
}

/// Resolves the overrides, as wgpu does at pipeline creation, for the `main` compute entry point.
fn resolve<'a>(
    shader: &Kernel,
    module: &'a Module,
    info: &'a ModuleInfo,
    constants: &PipelineConstants,
) -> Result<(std::borrow::Cow<'a, Module>, std::borrow::Cow<'a, ModuleInfo>), String> {
    naga::back::pipeline_constants::process_overrides(module, info, Some((ShaderStage::Compute, "main")), constants)
        .map_err(|e| format!("{}: overrides ({}) do not resolve: {e}", shader.name(), describe(constants)))
}

fn translate(module: &Module, info: &ModuleInfo) -> Result<[usize; 4], String> {
    let spv = naga::back::spv::write_vec(
        module,
        info,
        &naga::back::spv::Options::default(),
        Some(&naga::back::spv::PipelineOptions { shader_stage: ShaderStage::Compute, entry_point: "main".into() }),
    )
    .map_err(|e| format!("SPIR-V: {e}"))?;

    let msl_options = naga::back::msl::Options { lang_version: (2, 4), ..Default::default() };
    let msl_pipeline = naga::back::msl::PipelineOptions {
        entry_point: Some((ShaderStage::Compute, "main".into())),
        ..Default::default()
    };
    let (msl, _) = naga::back::msl::write_string(module, info, &msl_options, &msl_pipeline).map_err(|e| format!("MSL: {e}"))?;

    let mut hlsl = String::new();
    let hlsl_options = naga::back::hlsl::Options::default();
    let hlsl_pipeline = naga::back::hlsl::PipelineOptions { entry_point: Some((ShaderStage::Compute, "main".into())) };
    naga::back::hlsl::Writer::new(&mut hlsl, &hlsl_options, &hlsl_pipeline)
        .write(module, info, None)
        .map_err(|e| format!("HLSL: {e}"))?;

    let mut glsl = String::new();
    let glsl_options = naga::back::glsl::Options::default(); // GLSL ES 3.10: compute on GL/GLES
    let glsl_pipeline =
        naga::back::glsl::PipelineOptions { shader_stage: ShaderStage::Compute, entry_point: "main".into(), multiview: None };
    naga::back::glsl::Writer::new(&mut glsl, module, info, &glsl_options, &glsl_pipeline, Default::default())
        .and_then(|mut w| w.write())
        .map_err(|e| format!("GLSL: {e}"))?;

    Ok([spv.len() * 4, msl.len(), hlsl.len(), glsl.len()])
}

#[test]
fn every_shader_translates_to_spirv_msl_hlsl_glsl() {
    check_all(|shader| {
        let (_, module, _) = load(shader)?;
        let sets = constant_sets(&module);
        let mut sizes = [0; 4];
        for constants in &sets {
            // The source is specialised for each ACT value (its `#if ACT == ..` blocks).
            let act: Vec<(&'static str, u32)> = constants.get("ACT").map(|&v| vec![("ACT", v as u32)]).unwrap_or_default();
            let (_, module, info) = load_for(shader, &act)?;
            let (resolved, resolved_info) = resolve(shader, &module, &info, constants)?;
            sizes = translate(&resolved, &resolved_info)
                .map_err(|e| format!("{}: translation with {} failed: {e}", shader.name(), describe(constants)))?;
        }
        Ok(format!(
            "{} override set(s); bytes: spv {} msl {} hlsl {} glsl {}",
            sets.len(),
            sizes[0],
            sizes[1],
            sizes[2],
            sizes[3]
        ))
    });
}

/// What a resolved module asks of the device: workgroup size, workgroup memory, bindings.
struct Footprint {
    workgroup_size: [u32; 3],
    workgroup_bytes: u32,
    /// `(binding, variable, address space, size of its type)`, in binding order.
    bindings: Vec<(u32, String, AddressSpace, u32)>,
}

/// Checks a module with resolved overrides against WebGPU's default limits and the executor's
/// binding layout: group 0; binding 0 the uniform `params`; then read-only storage; then
/// read_write storage; numbered upwards (unused ones may be absent); a compute entry point `main`.
fn footprint(module: &Module) -> Result<Footprint, Vec<String>> {
    let mut problems = Vec::new();
    let Some(main) = module.entry_points.iter().find(|e| e.name == "main" && e.stage == ShaderStage::Compute) else {
        return Err(vec!["no `@compute fn main`, the entry point the executor uses".into()]);
    };
    let wg = main.workgroup_size;
    let invocations: u32 = wg.iter().product();
    if invocations > MAX_INVOCATIONS || wg.iter().zip(MAX_WORKGROUP_SIZE).any(|(&d, max)| d > max) {
        problems.push(format!("workgroup size {wg:?} ({invocations} invocations) is over WebGPU's {MAX_INVOCATIONS} / {MAX_WORKGROUP_SIZE:?}"));
    }
    let mut layouter = naga::proc::Layouter::default();
    if let Err(e) = layouter.update(module.to_ctx()) {
        return Err(vec![format!("type layout: {e}")]);
    }
    let workgroup_bytes: u32 = module
        .global_variables
        .iter()
        .filter(|(_, v)| v.space == AddressSpace::WorkGroup)
        .map(|(_, v)| layouter[v.ty].size)
        .sum();
    if workgroup_bytes > MAX_WORKGROUP_STORAGE_BYTES {
        problems.push(format!("{workgroup_bytes} bytes of workgroup memory, over {MAX_WORKGROUP_STORAGE_BYTES}"));
    }
    let mut bound: Vec<(u32, u32, String, AddressSpace, u32)> = module
        .global_variables
        .iter()
        .filter_map(|(_, v)| v.binding.map(|b| (b.group, b.binding, v.name.clone().unwrap_or_default(), v.space, layouter[v.ty].size)))
        .collect();
    bound.sort_by_key(|b| (b.0, b.1));
    let storage = bound.iter().filter(|b| matches!(b.3, AddressSpace::Storage { .. })).count();
    if storage > MAX_STORAGE_BUFFERS {
        problems.push(format!("{storage} storage buffers, over {MAX_STORAGE_BUFFERS}"));
    }
    match bound.first() {
        Some((0, 0, var, AddressSpace::Uniform, _)) if var == "params" => {}
        other => problems.push(format!("binding 0 must be `var<uniform> params`, found {other:?}")),
    }
    let mut seen_read_write = false;
    for (i, (group, binding, var, space, _)) in bound.iter().enumerate() {
        // Bindings a variant's source does not use are absent (the `#if`s removed their uses), so
        // numbers may skip; the executor's layout has them all.
        if *group != 0 || (i > 0 && *binding <= bound[i - 1].1) {
            problems.push(format!("`{var}` is at @group({group}) @binding({binding}); expected group 0, numbered upwards"));
        }
        match space {
            _ if i == 0 => {}
            AddressSpace::Storage { access } if access.contains(StorageAccess::STORE) => seen_read_write = true,
            AddressSpace::Storage { .. } if !seen_read_write => {}
            AddressSpace::Storage { .. } => problems.push(format!("read-only `{var}` comes after a read_write binding")),
            // A sampled texture (`Graph::constant_texture`) takes a read's place.
            AddressSpace::Handle if !seen_read_write => {}
            AddressSpace::Handle => problems.push(format!("texture `{var}` comes after a read_write binding")),
            // So does a uniform buffer (`Graph::constant_uniform`).
            AddressSpace::Uniform if !seen_read_write => {}
            AddressSpace::Uniform => problems.push(format!("uniform `{var}` comes after a read_write binding")),
            other => problems.push(format!("`{var}` is in {other:?}; only storage buffers, textures and uniform buffers follow params")),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let bindings = bound.into_iter().map(|(_, b, var, space, size)| (b, var, space, size)).collect();
    Ok(Footprint { workgroup_size: wg, workgroup_bytes, bindings })
}

/// With default overrides.
#[test]
fn every_shader_fits_webgpu_limits_and_binding_convention() {
    check_all(|shader| {
        let (_, module, info) = load(shader)?;
        let (module, _) = resolve(shader, &module, &info, &PipelineConstants::default())?;
        let f = footprint(&module).map_err(|p| format!("{}: {}", shader.name(), p.join("; ")))?;
        let storage = f.bindings.len().saturating_sub(1);
        Ok(format!("workgroup {:?}, {} B workgroup memory, {storage} storage buffers", f.workgroup_size, f.workgroup_bytes))
    });
}

/// Model-like calls of every op. Each builds a small graph; the nodes' pipeline keys are what the
/// device would compile.
type OpGraph = fn(&mut Graph) -> wgvit::Result<TensorId>;

fn op_graphs() -> Vec<(&'static str, OpGraph)> {
    use wgvit::ops::conv2d::{conv2d, Conv2dParams};
    use wgvit::ops::binary::{binary, BinaryOp};
    use wgvit::ops::unary::unary;
    use wgvit::ops::matmul::{linear, matmul, BiasAxis, Epilogue};
    vec![
        ("unary gelu", |g| {
            let x = g.input("x", &[1000]);
            unary(g, x, Activation::Gelu, 1.0, 0.0)
        }),
        ("binary mul broadcast", |g| {
            let (a, b) = (g.input("a", &[2, 8, 7, 7]), g.input("b", &[8, 1, 1]));
            binary(g, a, b, BinaryOp::Mul, Activation::Silu)
        }),
        ("matmul 196x64 . 64x192", |g| {
            let (a, b) = (g.input("a", &[196, 64]), g.input("b", &[64, 192]));
            matmul(g, a, b, false, false, Epilogue::default())
        }),
        ("patch_linear: 4x4 patches of an image gathered by the GEMM", |g| {
            use wgvit::ops::matmul::{patch_linear, Patches};
            let patches = Patches { batch: 1, h: 32, w: 32, c: 3, p: 4, channels_last: false };
            let (x, w) = (g.input("x", &patches.source_shape()), g.input("w", &[16, 48]));
            patch_linear(g, x, patches, w, None)
        }),
        ("matmul 37x29 . 29x53 (odd sizes)", |g| {
            let (a, b) = (g.input("a", &[37, 29]), g.input("b", &[29, 53]));
            matmul(g, a, b, false, false, Epilogue::default())
        }),
        ("matmul batched q.k^T with bias, act, residual", |g| {
            let (q, k) = (g.input("q", &[2, 4, 49, 32]), g.input("k", &[2, 4, 49, 32]));
            let (bias, res) = (g.input("bias", &[49]), g.input("res", &[2, 4, 49, 49]));
            let epi = Epilogue { alpha: 0.125, bias: Some((bias, BiasAxis::Col)), act: Activation::Relu, residual: Some(res) };
            matmul(g, q, k, false, true, epi)
        }),
        ("matmul trans_a, row bias", |g| {
            let (a, b) = (g.input("a", &[64, 30]), g.input("b", &[64, 50]));
            let bias = g.input("bias", &[30]);
            matmul(g, a, b, true, false, Epilogue { bias: Some((bias, BiasAxis::Row)), ..Default::default() })
        }),
        ("linear 196x64 -> 256 gelu", |g| {
            let (x, w, b) = (g.input("x", &[1, 196, 64]), g.input("w", &[256, 64]), g.input("b", &[256]));
            linear(g, x, w, Some(b), Activation::Gelu)
        }),
        ("conv2d stem 3->32 k3 s2 p1", |g| {
            let (x, w, b) = (g.input("x", &[1, 3, 64, 64]), g.input("w", &[32, 3, 3, 3]), g.input("b", &[32]));
            let p = Conv2dParams { stride: (2, 2), padding: (1, 1), ..Default::default() };
            conv2d(g, x, w, Some(b), &p, Activation::Gelu)
        }),
        ("conv2d depthwise 32 k3 p1", |g| {
            let (x, w) = (g.input("x", &[1, 32, 28, 28]), g.input("w", &[32, 1, 3, 3]));
            conv2d(g, x, w, None, &Conv2dParams { padding: (1, 1), groups: 32, ..Default::default() }, Activation::None)
        }),
        ("conv2d pointwise 32->64", |g| {
            let (x, w) = (g.input("x", &[2, 32, 14, 14]), g.input("w", &[64, 32, 1, 1]));
            conv2d(g, x, w, None, &Conv2dParams::default(), Activation::Relu)
        }),
        ("layer_norm 196x64 affine", |g| {
            let (x, gamma, beta) = (g.input("x", &[1, 196, 64]), g.input("g", &[64]), g.input("b", &[64]));
            wgvit::ops::layernorm::layer_norm(g, x, Some(gamma), Some(beta), 1e-6)
        }),
        ("layer_norm 49x30 plain", |g| {
            let x = g.input("x", &[2, 49, 30]);
            wgvit::ops::layernorm::layer_norm(g, x, None, None, 1e-5)
        }),
        ("group_norm 1 group + add + gelu", |g| {
            let (x, gamma, beta, add) = (g.input("x", &[1, 64, 14, 14]), g.input("g", &[64]), g.input("b", &[64]), g.input("a", &[1, 64, 14, 14]));
            wgvit::ops::groupnorm::group_norm(g, x, 1, gamma, beta, 1e-5, Some(wgvit::ops::groupnorm::Sum::Input(add)), Activation::Gelu)
        }),
        ("group_norm 1 group, residual after (2 chunks)", |g| {
            let (x, gamma, beta, r) = (g.input("x", &[1, 32, 16, 16]), g.input("g", &[32]), g.input("b", &[32]), g.input("r", &[1, 32, 16, 16]));
            wgvit::ops::groupnorm::group_norm(g, x, 1, gamma, beta, 1e-5, Some(wgvit::ops::groupnorm::Sum::Output(r)), Activation::None)
        }),
        ("group_norm 8 groups [B,C,N]", |g| {
            let (x, gamma, beta) = (g.input("x", &[2, 32, 49]), g.input("g", &[32]), g.input("b", &[32]));
            wgvit::ops::groupnorm::group_norm(g, x, 8, gamma, beta, 1e-5, None, Activation::None)
        }),
        ("softmax 4x49x49", |g| {
            let x = g.input("x", &[4, 49, 49]);
            wgvit::ops::softmax::softmax(g, x, 0.125)
        }),
        ("softmax 3x1000", |g| {
            let x = g.input("x", &[3, 1000]);
            wgvit::ops::softmax::softmax(g, x, 1.0)
        }),
        ("avg_pool2d k3 s1 p1", |g| {
            let x = g.input("x", &[1, 32, 28, 28]);
            wgvit::ops::pool::avg_pool2d(g, x, (3, 3), (1, 1), (1, 1), false)
        }),
        ("avg_pool2d k2 s2", |g| {
            let x = g.input("x", &[2, 16, 15, 15]);
            wgvit::ops::pool::avg_pool2d(g, x, (2, 2), (2, 2), (0, 0), true)
        }),
        ("mean_spatial", |g| {
            let x = g.input("x", &[2, 64, 7, 7]);
            wgvit::ops::pool::mean_spatial(g, x)
        }),
        ("mean_tokens", |g| {
            let x = g.input("x", &[2, 49, 64]);
            wgvit::ops::pool::mean_tokens(g, x)
        }),
        ("permute NHWC -> NCHW", |g| {
            let x = g.input("x", &[1, 14, 14, 64]);
            wgvit::ops::layout::permute(g, x, &[0, 3, 1, 2])
        }),
        ("concat channels", |g| {
            let (a, b) = (g.input("a", &[1, 32, 7, 7]), g.input("b", &[1, 16, 7, 7]));
            wgvit::ops::layout::concat(g, &[a, b], 1)
        }),
        ("slice channels", |g| {
            let x = g.input("x", &[1, 64, 14, 14]);
            wgvit::ops::layout::slice(g, x, 1, 16, 32)
        }),
        ("attention 49 tokens with bias", |g| {
            let (q, k, v) = (g.input("q", &[1, 2, 49, 32]), g.input("k", &[1, 2, 49, 32]), g.input("v", &[1, 2, 49, 32]));
            let bias = g.input("bias", &[2, 49, 49]);
            wgvit::ops::attention::attention(g, q, k, v, Some(bias), 32f32.powf(-0.5))
        }),
        ("attention pooled keys, d 16", |g| {
            let (q, k, v) = (g.input("q", &[2, 4, 196, 16]), g.input("k", &[2, 4, 49, 16]), g.input("v", &[2, 4, 49, 16]));
            wgvit::ops::attention::attention(g, q, k, v, None, 0.25)
        }),
    ]
}

/// Checks one node's pipeline as the device would build it: the key's override values resolve,
/// the result fits WebGPU's default limits and translates for every backend, the shader's bindings
/// match the layout the executor derives from the node (binding 0 the uniform of `params`, then
/// `reads` read-only and `writes` read_write storage buffers), and `params` covers the uniform.
fn check_node(node: &wgvit::graph::Node, bindings: wgvit::graph::Bindings) -> Result<String, String> {
    let shader = &node.key.kernel;
    let (source, module, info) = load_for(shader, node.key.constants())?;
    let mut constants = PipelineConstants::default();
    for &(name, value) in node.key.constants() {
        constants.insert(name.to_string(), value as f64);
    }
    let (module, info) = resolve(shader, &module, &info, &constants)?;
    let what = format!("{} ({})", shader.name(), describe(&constants));
    let f = footprint(&module).map_err(|p| format!("{what}: {}", p.join("; ")))?;
    let mut problems = Vec::new();
    let (reads, writes) = (node.reads.len() as u32, node.writes.len() as u32);
    for (binding, var, space, size) in &f.bindings {
        let expected = match *binding {
            0 => "uniform",
            b if b <= reads && bindings.is_texture(b as usize - 1) => "texture",
            b if b <= reads && bindings.is_uniform(b as usize - 1) => "uniform",
            b if b <= reads => "read-only storage",
            b if b <= reads + writes && bindings.is_texture(b as usize - 1) => "texture",
            b if b <= reads + writes => "read_write storage",
            _ => "nothing (past the node's reads and writes)",
        };
        let found = match space {
            AddressSpace::Uniform => "uniform",
            AddressSpace::Storage { access } if access.contains(StorageAccess::STORE) => "read_write storage",
            AddressSpace::Storage { .. } => "read-only storage",
            AddressSpace::Handle => "texture",
            _ => "other",
        };
        if expected != found {
            problems.push(format!("binding {binding} `{var}` is {found}, the node's layout has {expected} ({reads} reads, {writes} writes)"));
        }
        // A constant in a uniform buffer is bound as a window of exactly this size.
        if *binding > 0 && matches!(space, AddressSpace::Uniform) && *size != wgvit::graph::UNIFORM_WINDOW_BYTES as u32 {
            problems.push(format!("uniform `{var}` is {size} bytes; constants are bound as {} B windows", wgvit::graph::UNIFORM_WINDOW_BYTES));
        }
        let uniform_bytes = (node.params.words.len().max(4).div_ceil(4) * 16) as u32;
        if *binding == 0 && *size > uniform_bytes {
            problems.push(format!("`{var}` is {size} bytes but the node supplies {} words ({uniform_bytes} bytes bound)", node.params.words.len()));
        }
    }
    if node.params.type_name != shader.params_name() {
        problems.push(format!("the node's uniform is {}, the kernel declares {}", node.params.type_name, shader.params_name()));
    }
    let sizes = translate(&module, &info).map_err(|e| format!("{what}: translation failed: {e}"))?;
    validate(shader, &source, &module, Capabilities::default(), "WebGPU baseline capabilities after resolving overrides")?;
    if !problems.is_empty() {
        return Err(format!("{what}, node '{}': {}", node.label, problems.join("; ")));
    }
    Ok(format!(
        "{what}: workgroup {:?}, {} B workgroup memory, spv {} B",
        f.workgroup_size, f.workgroup_bytes, sizes[0]
    ))
}

/// The pipelines the ops really create — their override values, not the shaders' defaults — and
/// their bindings against the nodes. Lavapipe grants 1024 invocations and 32 KiB of workgroup
/// memory, so only this check catches a tile that the browser's WebGPU would refuse.
#[test]
fn pipelines_the_ops_create_fit_webgpu_and_match_their_nodes() {
    let mut failures = Vec::new();
    let mut unbuilt = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let graphs = op_graphs();
    let profiles = [DeviceProfile::gpu_like(), DeviceProfile::cpu_like()];
    for ((what, build), profile) in graphs.iter().flat_map(|b| profiles.clone().map(|p| (b, p))) {
        let mut g = Graph::for_profile(profile);
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| build(&mut g))) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                unbuilt.push(format!("{what}: {e}"));
                continue;
            }
            Err(_) => {
                unbuilt.push(format!("{what}: panicked"));
                continue;
            }
        }
        for node in &g.nodes {
            let id = (node.key.clone(), g.bindings(node), node.params.words.len());
            if !seen.insert(id) {
                continue;
            }
            match check_node(node, g.bindings(node)) {
                Ok(report) => eprintln!("ok  {what}: {report}"),
                Err(e) => failures.push(format!("{what}: {e}")),
            }
        }
    }
    for u in &unbuilt {
        eprintln!("not built (op not implemented yet?): {u}");
    }
    eprintln!("{} distinct pipelines from {} op graphs ({} not built)", seen.len(), graphs.len(), unbuilt.len());
    assert!(failures.is_empty(), "{} pipeline(s) failed:\n\n{}", failures.len(), failures.join("\n\n"));
}

/// Every `.wgsl` file under `shaders/` as (path relative to `shaders/`, text).
fn shader_files() -> Vec<(String, String)> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = entry.expect("readable dir entry").path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let rel = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
            if p.is_dir() {
                walk(&p, &rel, out);
            } else if p.extension().is_some_and(|x| x == "wgsl") {
                let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                out.push((rel, text));
            }
        }
    }
    let mut files = Vec::new();
    walk(&shaders_dir(), "", &mut files);
    files.sort();
    files
}

/// Each file opens with `// <file name> — <what it computes>`.
#[test]
fn shader_files_open_with_their_header_line() {
    let bad: Vec<String> = shader_files()
        .into_iter()
        .filter(|(path, text)| {
            let name = path.rsplit('/').next().unwrap_or(path);
            !text.lines().next().unwrap_or("").starts_with(&format!("// {name} — "))
        })
        .map(|(path, text)| format!("{path}: first line is {:?}", text.lines().next().unwrap_or("")))
        .collect();
    assert!(bad.is_empty(), "shader files without the `// <name>.wgsl — ...` header line:\n{}", bad.join("\n"));
}

/// naga 30 rejects `enable subgroups;` and WebGPU devices without `shader-f16` reject `enable f16;`.
#[test]
fn no_shader_enables_subgroups_or_f16() {
    let mut bad = Vec::new();
    for (name, text) in shader_files() {
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("").trim();
            if code.starts_with("enable") && (code.contains("subgroups") || code.contains("f16")) {
                bad.push(format!("{name}: `{code}`"));
            }
        }
    }
    assert!(bad.is_empty(), "shaders must run on WebGPU's baseline:\n{}", bad.join("\n"));
}

/// A file no kernel compiles would never be validated nor run: every file outside `lib/` is some
/// kernel's file, and every `lib/` file is required (transitively) by some kernel.
#[test]
fn every_shader_file_is_compiled_by_some_kernel() {
    let mut used: std::collections::BTreeSet<String> = Kernel::ALL.iter().map(|k| k.file().to_string()).collect();
    let mut frontier: Vec<&str> = Kernel::ALL.iter().map(|k| k.file_text()).collect();
    while let Some(text) = frontier.pop() {
        for name in wgsl::requires(text) {
            if used.insert(format!("lib/{name}.wgsl")) {
                let lib = wgsl::library().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("unknown requirement {name}")).1;
                frontier.push(lib);
            }
        }
    }
    let orphans: Vec<String> = shader_files().into_iter().map(|(path, _)| path).filter(|p| !used.contains(p)).collect();
    assert!(orphans.is_empty(), "shader files no kernel compiles (add a line to the table in src/kernels/mod.rs): {orphans:?}");
    let library: Vec<String> = wgsl::library().map(|(n, _)| format!("lib/{n}.wgsl")).collect();
    let unlisted: Vec<String> = shader_files().into_iter().map(|(p, _)| p).filter(|p| p.starts_with("lib/") && !library.contains(p)).collect();
    assert!(unlisted.is_empty(), "lib files missing from the library table in src/kernels/wgsl.rs: {unlisted:?}");
}

/// Each variant's defines select something: a define no `#if` of its files tests is a typo.
#[test]
fn every_define_is_tested_by_the_files_of_its_kernel() {
    let mut bad = Vec::new();
    for kernel in Kernel::ALL {
        let mut texts = vec![kernel.file_text()];
        texts.extend(wgsl::library().filter(|(n, _)| kernel.source().contains(&format!("// ---- shaders/lib/{n}.wgsl"))).map(|(_, t)| t));
        for define in kernel.defines() {
            let tested = texts.iter().any(|t| t.lines().any(|l| matches!(l.trim().strip_prefix("#if").map(str::trim), Some(c) if c.trim_start_matches('!') == *define)));
            if !tested {
                bad.push(format!("{}: define {define} is tested by no #if", kernel.name()));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The scalar members of a WGSL type, flattened as `ParamField` names them.
fn wgsl_fields(module: &Module, ty: naga::Handle<naga::Type>, name: &str, offset: u32, layouter: &naga::proc::Layouter, out: &mut Vec<(String, u32, &'static str)>) {
    match &module.types[ty].inner {
        naga::TypeInner::Scalar(s) => out.push((name.to_string(), offset, scalar_name(s))),
        naga::TypeInner::Struct { members, .. } => {
            for m in members {
                let member = m.name.clone().unwrap_or_default();
                let full = if name.is_empty() { member } else { format!("{name}.{member}") };
                wgsl_fields(module, m.ty, &full, offset + m.offset, layouter, out);
            }
        }
        naga::TypeInner::Vector { size, scalar } => {
            // Only as elements of arrays (`array<vec4<u32>, 2>`): component i is scalar `[base + i]`.
            for i in 0..*size as u32 {
                out.push((format!("{name}#{i}"), offset + 4 * i, scalar_name(scalar)));
            }
        }
        naga::TypeInner::Array { base, size: naga::ArraySize::Constant(n), stride } => {
            let mut elements = Vec::new();
            for i in 0..n.get() {
                wgsl_fields(module, *base, "", offset + i * stride, layouter, &mut elements);
            }
            for (k, (_, off, scalar)) in elements.into_iter().enumerate() {
                out.push((format!("{name}[{k}]"), off, scalar));
            }
        }
        other => out.push((name.to_string(), offset, Box::leak(format!("{other:?}").into_boxed_str()))),
    }
}

fn scalar_name(s: &naga::Scalar) -> &'static str {
    match (s.kind, s.width) {
        (naga::ScalarKind::Uint, 4) => "u32",
        (naga::ScalarKind::Float, 4) => "f32",
        (naga::ScalarKind::Sint, 4) => "i32",
        _ => "other",
    }
}

/// Every kernel's WGSL `Params` (members, order, offsets, scalar types, nested structs and arrays
/// flattened) equals its Rust uniform struct, so swapping two fields on either side fails here.
#[test]
fn every_kernel_params_struct_matches_its_rust_uniform() {
    let mut failures = Vec::new();
    for kernel in Kernel::ALL {
        let (_, module, _) = match load(kernel) {
            Ok(m) => m,
            Err(e) => {
                failures.push(e);
                continue;
            }
        };
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).expect("layout");
        let Some((ty, _)) = module.types.iter().find(|(_, t)| t.name.as_deref() == Some("Params")) else {
            failures.push(format!("{}: no `struct Params`", kernel.name()));
            continue;
        };
        let mut wgsl = Vec::new();
        wgsl_fields(&module, ty, "", 0, &layouter, &mut wgsl);
        let rust: Vec<(String, u32, &'static str)> = kernel
            .params_fields()
            .into_iter()
            .map(|ParamField { name, offset, scalar }| (name, offset as u32, if scalar == Scalar::U32 { "u32" } else { "f32" }))
            .collect();
        if wgsl != rust {
            let diff: Vec<String> = (0..wgsl.len().max(rust.len()))
                .filter(|&i| wgsl.get(i) != rust.get(i))
                .take(6)
                .map(|i| format!("  #{i}: WGSL {:?} vs Rust {:?}", wgsl.get(i), rust.get(i)))
                .collect();
            failures.push(format!("{} (Rust {}): the uniform layouts differ\n{}", kernel.name(), kernel.params_name(), diff.join("\n")));
        }
    }
    assert!(failures.is_empty(), "{} kernel(s) failed:\n\n{}", failures.len(), failures.join("\n\n"));
}

/// Chrome's WGSL compiler (Tint) rejects a float literal whose exact decimal value lies beyond
/// f32::MAX (e.g. `3.4028235e38`, which rounds to f32::MAX but is larger than it), while naga
/// accepts it: check the literals ourselves.
#[test]
fn float_literals_are_representable_as_f32() {
    let mut bad = Vec::new();
    for (name, source) in shader_files() {
        for (line_no, line) in source.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for token in code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '+')) {
                let literal = token.trim_start_matches(['-', '+']).trim_end_matches('f');
                if !literal.contains(['e', 'E']) || !literal.starts_with(|c: char| c.is_ascii_digit()) {
                    continue;
                }
                if let Ok(v) = literal.parse::<f64>() {
                    if v.abs() > f32::MAX as f64 {
                        bad.push(format!("{name}:{}: {literal} is beyond f32::MAX", line_no + 1));
                    }
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Every pipeline every model creates (random weights, or the bundled digit models' own; graph
/// building only: no GPU), checked like the op graphs above: the families' own kernels at their
/// real override values included.
#[test]
fn pipelines_every_model_creates_fit_webgpu_and_match_their_nodes() {
    // Every model id the library knows (random weights, the family's usual input size), then the
    // bundled digit models on their own weights, at batch 8.
    let mut models: Vec<(String, wgvit::Weights, Vec<usize>)> = Vec::new();
    for id in wgvit::models::model_ids() {
        // The fixture's weights where there is one (the toy network reads its structure off them).
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{id}/weights.safetensors"));
        let weights = match std::fs::read(&fixture) {
            Ok(bytes) => wgvit::Weights::from_bytes(&fixture.display().to_string(), &bytes).unwrap(),
            Err(_) => wgvit::Weights::synthetic(0),
        };
        let (h, w) = wgvit::models::ModelCard::new(&id, &weights).unwrap_or_else(|e| panic!("{id}: {e}")).input_size();
        models.push((id, weights, vec![1, 3, h, w]));
    }
    models.push(("vvt-micro".into(), wgvit::Weights::synthetic(0), vec![1, 3, 61, 47]));
    for id in ["hatnet-digits", "vvt-digits", "accvit-digits", "lavit-digits"] {
        let rel = format!("assets/models/{id}.safetensors");
        let bytes = std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(&rel)).unwrap();
        let weights = wgvit::Weights::from_bytes(&rel, &bytes).unwrap();
        let (h, w) = wgvit::models::ModelCard::new(id, &weights).unwrap().input_size();
        models.push((id.into(), weights, vec![8, 3, h, w]));
    }
    let mut failures = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // The CPU-like set as lavapipe and SwiftShader take it too: their own variants (tiles, loops
    // written out or not, textures) are only built for those adapter names.
    let named = |name: &str| DeviceProfile { name: name.into(), ..DeviceProfile::cpu_like() };
    let profiles = [DeviceProfile::gpu_like(), DeviceProfile::cpu_like(), named("llvmpipe (LLVM 15.0.6, 256 bits)"), named("SwiftShader Device (Subzero)")];
    for ((id, weights, shape), profile) in models.iter().flat_map(|m| profiles.clone().map(|p| (m, p))) {
        let spec = wgvit::models::resolve(id, weights).unwrap();
        let lavapipe = profile.name.starts_with("llvmpipe");
        let g = wgvit::models::build_spec_graph(&spec, weights, shape, profile).unwrap_or_else(|e| panic!("{id} {shape:?}: {e}"));
        // lavapipe's graphs also as the executor runs them: activations in textures, every
        // texture read as a read-only storage texture (`FLAT_IMAGE`).
        let graphs = if lavapipe { vec![g.with_activation_textures(0).with_flat_texture_images(u32::MAX), g] } else { vec![g] };
        for g in &graphs {
            for node in &g.nodes {
                if seen.insert((node.key.clone(), g.bindings(node), node.params.words.len())) {
                    if let Err(e) = check_node(node, g.bindings(node)) {
                        failures.push(format!("{id}: {e}"));
                    }
                }
            }
        }
    }
    eprintln!("{} distinct pipelines across {} models and {} kernel sets", seen.len(), models.len(), profiles.len());
    assert!(failures.is_empty(), "{} pipeline(s) failed:\n\n{}", failures.len(), failures.join("\n\n"));
}
