// flat_texture.wgsl — reads a tensor stored as an rgba32float texture 2^FLAT_WIDTH_LOG2 texels
// wide, row-major and flat: elements 4j .. 4j+3 are texel (j % width, j / width), whatever the
// tensor's shape (`Graph::constant_texture` uploads constants so; an activation moved to a
// texture by `Graph::with_activation_textures` is written so by its producer
// with `textureStore` at `flat_coords`: naga takes only a global storage texture there).
// Why: on software devices (lavapipe, SwiftShader) a texel fetch is a vectorised gather, a
// storage-buffer load a loop over the SIMD lanes. Bindings, dispatch, workgroup memory: none of
// its own (the including kernel declares the textures). Must match `graph::FLAT_TEXTURE_WIDTH`.

const FLAT_WIDTH_LOG2: u32 = 8u;

// The texel holding elements i .. i+3 (i a multiple of 4).
fn flat_coords(i: u32) -> vec2<u32> {
    let j = i >> 2u;
    return vec2<u32>(j & ((1u << FLAT_WIDTH_LOG2) - 1u), j >> FLAT_WIDTH_LOG2);
}

// With FLAT_IMAGE (lavapipe, `ops::tuning::flat_texture_images`) a flat texture is bound as a
// read-only storage texture: llvmpipe loads an image texel without the sampler's set-up, about
// twice as fast (`examples/load_paths.rs`). A kernel declares each flat texture as `FlatTexture`
// and reads it through an accessor of its own next to the declaration, `fn <name>_at(i: u32) ->
// vec4<f32>` (elements i .. i+3, i a multiple of 4), whose `#if FLAT_IMAGE` picks the
// `textureLoad` form: a storage texture cannot be a function argument everywhere (naga's MSL
// writer rejects one), so no shared function takes the texture.
override FLAT_IMAGE: bool = false;
#if FLAT_IMAGE
alias FlatTexture = texture_storage_2d<rgba32float, read>;
#else
alias FlatTexture = texture_2d<f32>;
#endif
