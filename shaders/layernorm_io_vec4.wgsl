// layernorm_io_vec4.wgsl — element type and storage bindings of layernorm.wgsl when the row
// length is a multiple of 4: x, gamma, beta and y are array<vec4<f32>> and `c` counts vec4s. A
// quarter of the loads of the scalar prelude: on CPU devices (lavapipe runs every storage load as
// a per-lane loop) most of the cost.

alias V = vec4<f32>;
const ELEMS: f32 = 4.0; // floats per V

@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> gamma: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> beta: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<vec4<f32>>;

fn splat(s: f32) -> V { return vec4<f32>(s); }
fn hsum(v: V) -> f32 { return (v.x + v.y) + (v.z + v.w); }
fn first(v: V) -> f32 { return v.x; }
