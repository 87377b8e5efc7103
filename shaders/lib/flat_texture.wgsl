// flat_texture.wgsl — reads a tensor stored as an rgba32float texture 2^FLAT_WIDTH_LOG2 texels
// wide, row-major and flat: elements 4j .. 4j+3 are texel (j % width, j / width), whatever the
// tensor's shape (`Graph::constant_texture` uploads constants so, `Graph::activation_texture`
// copies activations so before the reading dispatch). Why: on software devices (lavapipe,
// SwiftShader) a texel fetch is a vectorised gather, a storage-buffer load a loop over the SIMD
// lanes. Bindings, dispatch, workgroup memory: none of its own (the including kernel declares the
// textures). Must match `graph::FLAT_TEXTURE_WIDTH`.

const FLAT_WIDTH_LOG2: u32 = 8u;

// Elements i .. i+3 (i a multiple of 4).
fn flat_texel(t: texture_2d<f32>, i: u32) -> vec4<f32> {
    let j = i >> 2u;
    return textureLoad(t, vec2<u32>(j & ((1u << FLAT_WIDTH_LOG2) - 1u), j >> FLAT_WIDTH_LOG2), 0);
}

// Element i.
fn flat_elem(t: texture_2d<f32>, i: u32) -> f32 {
    return flat_texel(t, i & ~3u)[i & 3u];
}
