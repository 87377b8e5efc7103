// store_probe.wgsl — what a texel store costs on this device: into a storage buffer of vec4s,
// or (OUT_TEXTURE) into a write-only rgba32float storage texture at the flat coordinates of
// flat_texture.wgsl. `context::store_probe` times both when a lavapipe device opens: an activation
// moved to a texture (`Graph::with_activation_textures`) is written so by its producer, and
// whether that pays depends on this cost (`DeviceProfile::texture_stores_costly`).
//
// requires: flat_texture
// Bindings: 0 params {texels} (uniform), 1 out (storage array<vec4<f32>>, or the storage
// texture `out_texture`: 2^FLAT_WIDTH_LOG2 texels wide, texels / that many rows).
// Dispatch: texels / (PER_INVOCATION * WG) workgroups; invocation i stores texels i, i + S,
// i + 2S, ... (S = texels / PER_INVOCATION), so neighbouring lanes store neighbouring texels as a
// GEMM's lanes along N do. Workgroup memory: none.

struct Params {
    texels: u32,
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;

override WG: u32 = 64u;
override OUT_TEXTURE: bool = false;

#if OUT_TEXTURE
@group(0) @binding(1) var out_texture: texture_storage_2d<rgba32float, write>;
fn store_texel(t: u32, v: vec4<f32>) { textureStore(out_texture, flat_coords(4u * t), v); }
#else
@group(0) @binding(1) var<storage, read_write> out: array<vec4<f32>>;
fn store_texel(t: u32, v: vec4<f32>) { out[t] = v; }
#endif

const PER_INVOCATION: u32 = 16u;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let stride = params.texels / PER_INVOCATION;
    if (gid.x >= stride) {
        return;
    }
    var v = vec4<f32>(f32(gid.x));
    // Four stores a step, four steps; the bound plus nwg.z - 1 (always 0) keeps the loop rolled,
    // so the texture store's code is compiled 4 times rather than 16 (the probe's cost at a cold
    // start is its compile), and the loop's own cost is spread over 4 stores.
    for (var j = 0u; j < PER_INVOCATION + nwg.z - 1u; j += 4u) {
        v = fma(v, vec4<f32>(0.5), vec4<f32>(1.0));
        store_texel(gid.x + j * stride, v);
        store_texel(gid.x + (j + 1u) * stride, v + 1.0);
        store_texel(gid.x + (j + 2u) * stride, v + 2.0);
        store_texel(gid.x + (j + 3u) * stride, v + 3.0);
    }
}
