// conv2d_io_scalar.wgsl — the weight binding of conv2d.wgsl for any K = Cin/groups*kh*kw:
// array<f32>, a row segment of 4 weights assembled from 4 scalar loads.

@group(0) @binding(2) var<storage, read> weight: array<f32>;

fn load_w(i: u32) -> f32 { return weight[i]; }
fn load_w4(i: u32) -> vec4<f32> { return vec4<f32>(weight[i], weight[i + 1u], weight[i + 2u], weight[i + 3u]); }
