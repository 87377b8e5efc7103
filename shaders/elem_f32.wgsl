// elem_f32.wgsl — the element type V = f32 for kernels written once over V (binary, groupnorm,
// layernorm): their storage arrays are array<V> and their lengths count V elements. The vec4
// variant of each is the same kernel over elem_vec4.wgsl. Needs activations.wgsl before it.

alias V = f32;
const ELEMS: f32 = 1.0; // floats per V

fn splat(s: f32) -> V { return s; }
fn hsum(v: V) -> f32 { return v; }
fn first(v: V) -> f32 { return v; }
fn activate_v(v: V, act: u32) -> V { return activate(v, act); }
