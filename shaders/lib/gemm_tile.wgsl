// gemm_tile.wgsl — the register-tiled GEMM core shared by matmul.wgsl and conv2d.wgsl (both
// require it): C[TM x TN] = sum_k A[m, k] * B[k, n] for one invocation's tile, then the walk that
// hands every output row segment to the epilogue.
//
// The including shader provides: `params` with fields `k` (the reduction length), `m`, `n`,
// `tiles_m`, `tiles_n`, `batches` and `lanes_n_log2` (the launch: WG_M * WG_N invocations per
// workgroup, a power of two, each a TM x TN tile, 2^lanes_n_log2 of them along N and the rest
// along M; tiles_m x tiles_n workgroups per batch entry); `override WG_M, WG_N`; the types
// `Tile` (with fields m0, n0: the tile's first row and column) and `KStep` (where a k step
// reads: `k` plus whatever its loads precompute); `k_first(t) -> KStep`, `k_advance(s) -> KStep`
// (the next 4 k); `a_block(t, q, s, masked)` (rows m0+4q.. m0+4q+3 of A at k..k+3, column i =
// row 4q+i) and `b_block(t, g, s, masked)` (B at k..k+3 by columns n0+4g.. n0+4g+3, column j =
// row k+j); `masked` asks for zeros at k >= K; and `store_block(batch, m, n, c)` (the epilogue of
// one 4 x 4 block: column i of c is C[m + i, n..n+3]; it skips what lies past M or N).
//
// Tile: TM x TN outputs (TM in {4, 8, 12, 16}, TN in {4, 8, 16}; STORE_LOOP only up to 8
// blocks) as (TM/4) x (TN/4) 4x4 blocks
// (`mat4x4`, column i = output row i of the block). One k step loads TM x 4 of A and 4 x TN of
// B and does TM*TN*4 FMAs. Why so tall: on lavapipe every storage load is a loop over the SIMD
// lanes (about ten FMAs' worth per float) while spilled accumulators are plain SIMD moves, so
// FMAs per loaded float decide the speed. The blocks are written out, each under `#if TM > ..`
// (the source holds only the pipeline's own tile): NIR does not unroll loops over register
// arrays of this size and then keeps the arrays in scratch memory, itself a per-lane loop.
// Workgroup memory: none (shared-memory reads cost as much as global reads there, plus barriers).
// requires: mad4

override TM: u32 = 16u;
override TN: u32 = 8u;
// K % 4 != 0: compile the masked last k step (dead code otherwise).
override K_TAIL: bool = true;
// The includer's tiles take a share of the reduction each (`Tile.k_begin`, `k_end`; matmul.wgsl).
override K_SPLIT: bool = false;
// The epilogue in a loop over the tile's blocks instead of written out (`gemm_store`).
override STORE_LOOP: bool = false;

// Where an invocation's tile is: its batch entry and first output row and column, `valid` false
// for an invocation past the output (the launch rounds up to whole workgroups).
struct TilePosition {
    batch: u32,
    m0: u32,
    n0: u32,
    valid: bool,
}

// 0, from `num_workgroups.z - 1` (every launch has one z layer). The k loop's bound adds it so
// that the bound does not derive from the uniform alone: lavapipe (Mesa 22.3) "inlines" a
// pipeline's uniforms when they alone decide a loop or branch and that halves the shader, and
// it then re-compiles the pipeline at every bind. matmul with TRANS_A and not TRANS_B was such
// a pipeline: 1.4 ms of compile per dispatch, 1.4 of lavit-digits' 10.4 ms forward.
var<private> k_opaque_zero: u32;

fn tile_position(wid: vec3<u32>, nwg: vec3<u32>, lane: u32) -> TilePosition {
    k_opaque_zero = nwg.z - 1u;
    let wg = wid.x + wid.y * nwg.x;
    let tiles = params.tiles_m * params.tiles_n;
    let tile = wg % tiles;
    let lanes_n = 1u << params.lanes_n_log2;
    let lanes_m = (WG_M * WG_N) >> params.lanes_n_log2;
    let m0 = ((tile / params.tiles_n) * lanes_m + (lane >> params.lanes_n_log2)) * TM;
    let n0 = ((tile % params.tiles_n) * lanes_n + (lane & (lanes_n - 1u))) * TN;
    return TilePosition(wg / tiles, m0, n0, wg < tiles * params.batches && m0 < params.m && n0 < params.n);
}

// c<q><g>: rows 4q..4q+3 (the columns of the mat4x4) by output columns 4g..4g+3 (components).
struct Acc {
    c00: mat4x4<f32>, c01: mat4x4<f32>, c02: mat4x4<f32>, c03: mat4x4<f32>,
    c10: mat4x4<f32>, c11: mat4x4<f32>, c12: mat4x4<f32>, c13: mat4x4<f32>,
    c20: mat4x4<f32>, c21: mat4x4<f32>, c22: mat4x4<f32>, c23: mat4x4<f32>,
    c30: mat4x4<f32>, c31: mat4x4<f32>, c32: mat4x4<f32>, c33: mat4x4<f32>,
}

// One k step (k .. k+3) over the whole register tile. The tile's blocks are `#if`ed by TM and
// TN, so a pipeline's source holds only its own tile's code.
fn gemm_step(acc: ptr<function, Acc>, t: Tile, s: KStep, masked: bool) {
    let b0 = b_block(t, 0u, s, masked);
#if TN > 4
    let b1 = b_block(t, 1u, s, masked);
#endif
#if TN > 8
    let b2 = b_block(t, 2u, s, masked);
    let b3 = b_block(t, 3u, s, masked);
#endif
    let a0 = a_block(t, 0u, s, masked);
    (*acc).c00 = mad((*acc).c00, a0, b0);
#if TN > 4
    (*acc).c01 = mad((*acc).c01, a0, b1);
#endif
#if TN > 8
    (*acc).c02 = mad((*acc).c02, a0, b2);
    (*acc).c03 = mad((*acc).c03, a0, b3);
#endif
#if TM > 4
    let a1 = a_block(t, 1u, s, masked);
    (*acc).c10 = mad((*acc).c10, a1, b0);
#if TN > 4
    (*acc).c11 = mad((*acc).c11, a1, b1);
#endif
#if TN > 8
    (*acc).c12 = mad((*acc).c12, a1, b2);
    (*acc).c13 = mad((*acc).c13, a1, b3);
#endif
#endif
#if TM > 8
    let a2 = a_block(t, 2u, s, masked);
    (*acc).c20 = mad((*acc).c20, a2, b0);
#if TN > 4
    (*acc).c21 = mad((*acc).c21, a2, b1);
#endif
#if TN > 8
    (*acc).c22 = mad((*acc).c22, a2, b2);
    (*acc).c23 = mad((*acc).c23, a2, b3);
#endif
#endif
#if TM > 12
    let a3 = a_block(t, 3u, s, masked);
    (*acc).c30 = mad((*acc).c30, a3, b0);
#if TN > 4
    (*acc).c31 = mad((*acc).c31, a3, b1);
#endif
#if TN > 8
    (*acc).c32 = mad((*acc).c32, a3, b2);
    (*acc).c33 = mad((*acc).c33, a3, b3);
#endif
#endif
}

// The whole reduction for tile `t`: full k steps, then one masked step for K % 4 leftovers. With
// K_SPLIT only the tile's share, `t.k_begin` .. `t.k_end` (whole steps: `k_first` starts there).
fn gemm_accumulate(t: Tile) -> Acc {
    var acc: Acc;
    var s = k_first(t);
#if K_SPLIT
    let k_full = t.k_end + k_opaque_zero;
    for (var k = t.k_begin; k < k_full; k += 4u) {
#else
    let k_full = (params.k & ~3u) + k_opaque_zero;
    for (var k = 0u; k < k_full; k += 4u) {
#endif
        gemm_step(&acc, t, s, false);
        s = k_advance(s);
    }
#if K_TAIL
    if (k_full < params.k) {
        gemm_step(&acc, t, s, true);
    }
#endif
    return acc;
}

fn gemm_store_block(batch: u32, t: Tile, q: u32, g: u32, c: mat4x4<f32>) {
    store_block(batch, t.m0 + 4u * q, t.n0 + 4u * g, c);
}

#if STORE_LOOP
// Hands every 4 x 4 block of the tile to `store_block`, one block per iteration of a loop that
// moves the next block into place: the epilogue is in the code once instead of once per block.
// On SwiftShader most of a GEMM pipeline's compile is its written-out epilogue (every lane's
// store is expanded), so the host picks this there.
#let BLOCKS = (TM / 4) * (TN / 4)
fn gemm_store(batch: u32, t: Tile, acc: Acc) {
    var r0 = acc.c00;
#if TN > 4
    var r1 = acc.c01;
#if TM > 4
    var r2 = acc.c10;
    var r3 = acc.c11;
#endif
#if TM > 8
    var r4 = acc.c20;
    var r5 = acc.c21;
#endif
#if TM > 12
    var r6 = acc.c30;
    var r7 = acc.c31;
#endif
#else
#if TM > 4
    var r1 = acc.c10;
#endif
#if TM > 8
    var r2 = acc.c20;
#endif
#if TM > 12
    var r3 = acc.c30;
#endif
#endif
    let blocks_n = TN / 4u;
    for (var b = 0u; b < (TM / 4u) * blocks_n; b++) {
        gemm_store_block(batch, t, b / blocks_n, b % blocks_n, r0);
#if BLOCKS > 1
        r0 = r1;
#endif
#if BLOCKS > 2
        r1 = r2;
#endif
#if BLOCKS > 3
        r2 = r3;
#endif
#if BLOCKS > 4
        r3 = r4;
#endif
#if BLOCKS > 5
        r4 = r5;
#endif
#if BLOCKS > 6
        r5 = r6;
#endif
#if BLOCKS > 7
        r6 = r7;
#endif
    }
}
#else
// Hands every 4 x 4 block of the tile to `store_block`.
fn gemm_store(batch: u32, t: Tile, acc: Acc) {
    gemm_store_block(batch, t, 0u, 0u, acc.c00);
#if TN > 4
    gemm_store_block(batch, t, 0u, 1u, acc.c01);
#endif
#if TN > 8
    gemm_store_block(batch, t, 0u, 2u, acc.c02);
    gemm_store_block(batch, t, 0u, 3u, acc.c03);
#endif
#if TM > 4
    gemm_store_block(batch, t, 1u, 0u, acc.c10);
#if TN > 4
    gemm_store_block(batch, t, 1u, 1u, acc.c11);
#endif
#if TN > 8
    gemm_store_block(batch, t, 1u, 2u, acc.c12);
    gemm_store_block(batch, t, 1u, 3u, acc.c13);
#endif
#endif
#if TM > 8
    gemm_store_block(batch, t, 2u, 0u, acc.c20);
#if TN > 4
    gemm_store_block(batch, t, 2u, 1u, acc.c21);
#endif
#if TN > 8
    gemm_store_block(batch, t, 2u, 2u, acc.c22);
    gemm_store_block(batch, t, 2u, 3u, acc.c23);
#endif
#endif
#if TM > 12
    gemm_store_block(batch, t, 3u, 0u, acc.c30);
#if TN > 4
    gemm_store_block(batch, t, 3u, 1u, acc.c31);
#endif
#if TN > 8
    gemm_store_block(batch, t, 3u, 2u, acc.c32);
    gemm_store_block(batch, t, 3u, 3u, acc.c33);
#endif
#endif
}
#endif
