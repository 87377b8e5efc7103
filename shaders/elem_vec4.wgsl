// elem_vec4.wgsl — the element type V = vec4<f32> for kernels written once over V (binary,
// groupnorm, layernorm) when their contiguous runs are multiples of 4 floats: a quarter of the
// loads and stores of elem_f32.wgsl, which on CPU devices (lavapipe runs every storage load as a
// per-lane loop) is most of a memory-bound kernel's cost. Needs activations.wgsl before it.

alias V = vec4<f32>;
const ELEMS: f32 = 4.0; // floats per V

fn splat(s: f32) -> V { return vec4<f32>(s); }
fn hsum(v: V) -> f32 { return (v.x + v.y) + (v.z + v.w); }
fn first(v: V) -> f32 { return v.x; }
fn activate_v(v: V, act: u32) -> V {
    return vec4<f32>(activate(v.x, act), activate(v.y, act), activate(v.z, act), activate(v.w, act));
}
