// binary_io_scalar.wgsl — element type and storage bindings of binary.wgsl for any shapes: a, b
// and c are array<f32>, and shapes and strides count floats. See binary.wgsl.

alias V = f32;

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

fn activate_v(v: V, act: u32) -> V { return activate(v, act); }
