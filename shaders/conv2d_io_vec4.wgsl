// conv2d_io_vec4.wgsl — the weight binding of conv2d.wgsl as array<vec4<f32>> (one load moves
// 4 weights), valid when K = Cin/groups*kh*kw is a multiple of 4, so every row of the weight
// and every k step starts on a vec4.

@group(0) @binding(2) var<storage, read> weight: array<vec4<f32>>;

fn load_w(i: u32) -> f32 { return weight[i >> 2u][i & 3u]; }
fn load_w4(i: u32) -> vec4<f32> { return weight[i >> 2u]; }
