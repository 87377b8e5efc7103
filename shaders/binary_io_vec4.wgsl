// binary_io_vec4.wgsl — element type and storage bindings of binary.wgsl four elements at a
// time, for shapes whose last axis is a multiple of 4 and runs contiguously in b too (its
// last-axis stride 1, its other strides multiples of 4: equal shapes, per-channel gates of a
// channel-last map, ...): a, b and c are array<vec4<f32>>, and the last axis and every stride
// count vec4s. A quarter of the loads and index arithmetic of the scalar prelude: on CPU devices
// (lavapipe runs every storage load as a per-lane loop) most of the cost.

alias V = vec4<f32>;

@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> c: array<vec4<f32>>;

fn activate_v(v: V, act: u32) -> V {
    return vec4<f32>(activate(v.x, act), activate(v.y, act), activate(v.z, act), activate(v.w, act));
}
