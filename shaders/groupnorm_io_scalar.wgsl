// groupnorm_io_scalar.wgsl — element type and storage bindings of groupnorm.wgsl for any shape:
// x, add and y are array<f32> and every length in the shader counts floats. See groupnorm.wgsl.

alias V = f32;
const ELEMS: f32 = 1.0; // floats per V

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> add: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

fn splat(s: f32) -> V { return s; }
fn hsum(v: V) -> f32 { return v; }
fn first(v: V) -> f32 { return v; }
fn activate_v(v: V, act: u32) -> V { return activate(v, act); }
