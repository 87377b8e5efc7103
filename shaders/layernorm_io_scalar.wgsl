// layernorm_io_scalar.wgsl — element type and storage bindings of layernorm.wgsl for any row
// length: x, gamma, beta and y are array<f32> and `c` counts floats. See layernorm.wgsl.

alias V = f32;
const ELEMS: f32 = 1.0; // floats per V

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

fn splat(s: f32) -> V { return s; }
fn hsum(v: V) -> f32 { return v; }
fn first(v: V) -> f32 { return v; }
