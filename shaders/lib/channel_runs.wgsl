// channel_runs.wgsl — the invocation layout and the store of the channel-last "run" kernels
// (conv2d_nhwc.wgsl, family/atrous_dwconv.wgsl): one invocation per (image b, output row oh, run
// cb of output columns, group cg of 4 channels), the channel group fastest, so that neighbouring
// invocations fetch neighbouring vec4s of the same pixels.
// The including shader provides `params` with fields `total` (invocations), `col_blocks` (runs
// per row) and `out_h`; `override WG` (invocations per workgroup, the launch folded into (x, y)
// by `ops::grid`); `override OUT_TEXTURE` and `out_texture` (a flat storage texture) under it,
// else `out: array<vec4<f32>>`. Bindings, workgroup memory: none of its own.
// requires: activations, flat_texture

struct RunPosition {
    b: u32,
    oh: u32,
    cb: u32,
    cg: u32,
    // false past the last invocation (the launch rounds up to whole workgroups).
    valid: bool,
}

// Where invocation `lid` of workgroup `wid` works, for `groups` groups of 4 channels.
fn run_position(wid: vec3<u32>, nwg: vec3<u32>, lid: u32, groups: u32) -> RunPosition {
    let idx = (wid.x + wid.y * nwg.x) * WG + lid;
    let cg = idx % groups;
    var r = idx / groups;
    let cb = r % params.col_blocks;
    r = r / params.col_blocks;
    return RunPosition(r / params.out_h, r % params.out_h, cb, cg, idx < params.total);
}

// The activation of `v`, stored as out's vec4 `o`.
fn store_out(o: u32, v: vec4<f32>) {
#if OUT_TEXTURE
    textureStore(out_texture, flat_coords(4u * o), activated4(v));
#else
    out[o] = activated4(v);
#endif
}
