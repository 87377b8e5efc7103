// attention_downsample.wgsl — LaViT's residual attention downsampling between stages: the previous
// stage's attention [B, Hp, 4N, M] averaged over its heads, a single-channel 2x2 / stride-2 conv
// over the query map of every key slice, then one scaled copy per head of the new stage:
//     out[b, h, y*w + x, j] = gamma[h] * (cb + sum_{dy,dx} cw[dy*2 + dx] * mean_hp prev[b, hp, (2y+dy)*2w + 2x+dx, j])
// (N = h*w queries of the new stage; the previous map is 2h x 2w, row-major). The result is what
// the stage's first attention layer adds to its logits before the softmax.
//
// Bindings: 0 params (uniform), 1 prev [B, Hp, 4N, M], 2 cw [4] (the conv weight [1, 1, 2, 2]),
// 3 cb [1], 4 gamma [H] (read), 5 out [B, H, N, M] (write).
// Dispatch: one invocation per (b, query, key) of the new stage — it writes the H heads — in
// workgroups of WG, ceil(B*N*M / WG) of them folded into (x, y) by `ops::grid`.
// Workgroup memory: none.

struct Params {
    batch: u32,
    heads_prev: u32,
    heads: u32,
    h: u32,
    w: u32,
    m: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> prev: array<f32>;
@group(0) @binding(2) var<storage, read> cw: array<f32>;
@group(0) @binding(3) var<storage, read> cb: array<f32>;
@group(0) @binding(4) var<storage, read> gamma: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

override WG: u32 = 64u;

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let idx = (wid.x + wid.y * nwg.x) * WG + lid;
    let mk = params.m;
    let n = params.h * params.w;
    if (idx >= params.batch * n * mk) {
        return;
    }
    let j = idx % mk;
    let q = (idx / mk) % n;
    let b = idx / (mk * n);
    let y = q / params.w;
    let xq = q % params.w;
    let w2 = 2u * params.w;
    let np = 4u * n;

    // Sum over the previous heads first (the mean's 1/Hp is applied once), tap by tap.
    var taps = vec4<f32>(0.0);
    for (var hp = 0u; hp < params.heads_prev; hp++) {
        let plane = (b * params.heads_prev + hp) * np * mk;
        let top = plane + (2u * y * w2 + 2u * xq) * mk + j;
        let bottom = top + w2 * mk;
        taps += vec4<f32>(prev[top], prev[top + mk], prev[bottom], prev[bottom + mk]);
    }
    let weights = vec4<f32>(cw[0], cw[1], cw[2], cw[3]);
    let d = dot(weights, taps) / f32(params.heads_prev) + cb[0];

    for (var hh = 0u; hh < params.heads; hh++) {
        out[((b * params.heads + hh) * n + q) * mk + j] = gamma[hh] * d;
    }
}
