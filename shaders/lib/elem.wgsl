// elem.wgsl — the element type V of the kernels written once over it (binary, groupnorm,
// layernorm): their storage arrays are array<V> and their lengths count V elements.
// requires: activations
//
// Without VEC4, V = f32. With VEC4, V = vec4<f32>, for shapes whose contiguous runs are
// multiples of 4 floats: a quarter of the loads and stores, which on CPU devices (lavapipe runs
// every storage load as a per-lane loop) is most of a memory-bound kernel's cost.

#if VEC4
alias V = vec4<f32>;
const ELEMS: f32 = 4.0; // floats per V

fn splat(s: f32) -> V { return vec4<f32>(s); }
fn hsum(v: V) -> f32 { return (v.x + v.y) + (v.z + v.w); }
fn first(v: V) -> f32 { return v.x; }
fn activated_v(v: V) -> V { return activated4(v); }
#else
alias V = f32;
const ELEMS: f32 = 1.0; // floats per V

fn splat(s: f32) -> V { return s; }
fn hsum(v: V) -> f32 { return v; }
fn first(v: V) -> f32 { return v; }
fn activated_v(v: V) -> V { return activated(v); }
#endif
