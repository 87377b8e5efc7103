// matmul_io_vec4.wgsl — storage bindings and loads of matmul.wgsl as array<vec4<f32>>: one load
// instruction moves four floats. Valid only when the host has checked that every offset passed
// to a `*4` function is a multiple of 4: the contiguous dimension of a and of b, and N (for out
// and residual), are multiples of 4. `bias` stays scalar (it is indexed per row or column).

@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> residual: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;

fn load_a(i: u32) -> f32 { return a[i >> 2u][i & 3u]; }
fn load_b(i: u32) -> f32 { return b[i >> 2u][i & 3u]; }
fn load_a4(i: u32) -> vec4<f32> { return a[i >> 2u]; }
fn load_b4(i: u32) -> vec4<f32> { return b[i >> 2u]; }
fn load_residual(i: u32) -> f32 { return residual[i >> 2u][i & 3u]; }
fn load_residual4(i: u32) -> vec4<f32> { return residual[i >> 2u]; }
fn store_out(i: u32, v: f32) { out[i >> 2u][i & 3u] = v; }
fn store_out4(i: u32, v: vec4<f32>) { out[i >> 2u] = v; }
