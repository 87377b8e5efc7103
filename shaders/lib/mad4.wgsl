// mad4.wgsl — 4×4 register-block multiply-adds for the register-tiled kernels (gemm_tile.wgsl,
// family/vicinity_kv.wgsl, family/vicinity_apply.wgsl). A block is a mat4x4 whose column i is
// output row i of the block; everything is written out (no loop-indexed arrays: NIR keeps those
// in scratch memory, a per-lane loop on lavapipe).

// One output row of a block: c + sum_j a[j] * b[j] (4 vec4 FMAs, j in order).
fn mad_row(c: vec4<f32>, a: vec4<f32>, b: mat4x4<f32>) -> vec4<f32> {
    return fma(b[3], vec4<f32>(a.w), fma(b[2], vec4<f32>(a.z), fma(b[1], vec4<f32>(a.y), fma(b[0], vec4<f32>(a.x), c))));
}

// c += a-block · b-block for one 4x4 output block (16 vec4 FMAs).
fn mad(c: mat4x4<f32>, a: mat4x4<f32>, b: mat4x4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(mad_row(c[0], a[0], b), mad_row(c[1], a[1], b), mad_row(c[2], a[2], b), mad_row(c[3], a[3], b));
}
