// matmul_io_scalar.wgsl — storage bindings and loads of matmul.wgsl for any shape: every tensor
// is an array<f32>, so any element offset is legal. `load_a4` / `load_b4` gather four
// consecutive elements with four scalar loads (the vec4 path over this prelude is how the
// benchmark measures what real vec4 loads buy). See matmul.wgsl for the bindings.

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> residual: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

fn load_a(i: u32) -> f32 { return a[i]; }
fn load_b(i: u32) -> f32 { return b[i]; }
fn load_a4(i: u32) -> vec4<f32> { return vec4<f32>(a[i], a[i + 1u], a[i + 2u], a[i + 3u]); }
fn load_b4(i: u32) -> vec4<f32> { return vec4<f32>(b[i], b[i + 1u], b[i + 2u], b[i + 3u]); }
fn load_residual(i: u32) -> f32 { return residual[i]; }
fn load_residual4(i: u32) -> vec4<f32> {
    return vec4<f32>(residual[i], residual[i + 1u], residual[i + 2u], residual[i + 3u]);
}
fn store_out(i: u32, v: f32) { out[i] = v; }
fn store_out4(i: u32, v: vec4<f32>) {
    out[i] = v.x;
    out[i + 1u] = v.y;
    out[i + 2u] = v.z;
    out[i + 3u] = v.w;
}
