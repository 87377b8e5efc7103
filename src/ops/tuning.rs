//! Every per-device choice the ops make, in one place: which kernel variant and which tiling a
//! graph built for a [`DeviceProfile`] gets. Ops ask here and nowhere else, so a new kernel set
//! (or a device measured to prefer other tiles) changes this file only.
//!
//! Today's table (measured on lavapipe, `wgvit bench-ops --sweep` and `wgvit profile`):
//!
//! | choice | CPU-like set | GPU-like set |
//! |---|---|---|
//! | matmul / implicit-GEMM conv register tile | lavapipe: 16 × 8 outputs, 8 × 8 invocations, 8 × 8 outputs from 0.25 to 4 MFLOP, matmuls 16 × 16 from 4 MFLOP in 4 × 8 invocations (the element-wise kernel and convs over padded patches from 32); SwiftShader (any other software device): 8 × 8 outputs; 4 × 4 below 4 MFLOP (lavapipe: below 0.25; SwiftShader: in 4 × 4 invocations); lavapipe's convs below 32 MFLOP 8 × 4 (16 × 4 up to 16 channels) | 16 × 8, 4 × 4 below 4 MFLOP, convs from 4 MFLOP (a GPU-tuned set is open work) |
//! | GEMM workgroup layout | fitted to narrow outputs (`gemm_launch`: N or M with fewer tiles than the workgroup's side gets only what it needs); SwiftShader's 8 × 8-tiled GEMMs and lavapipe's 16-row tiles: the layout that launches the fewest invocations | the declared 8 × 8 |
//! | VVT vicinity_apply token tile | 16 tokens; 4 below 4 MFLOP (fast JIT) | 16 tokens |
//! | VVT vicinity_kv column tile | 8 columns; 4 below 4 MFLOP (fast JIT) | 8 columns |
//! | constant GEMM operands and biases, conv weights | flat rgba32float textures (`constant_textures`) | storage buffers |
//! | activations between texture-capable kernels (LayerNorm, matmul or depthwise-conv outputs read only by matmuls, attentions, depthwise or ACC-ViT's atrous convs) | lavapipe: flat textures, written as storage textures (`activation_textures`); where the host makes texture stores costly (`context::store_probe`) written to buffers and copied into textures after their producer, those of at least 4096 texels that texture-capable readers fetch at least 4 times a texel (`copied_textures`; other readers keep the buffer); SwiftShader: buffers | storage buffers |
//! | how flat textures are read | lavapipe: as read-only storage textures (`flat_texture_images`), where a kernel's textures fit the storage-texture limit; elsewhere sampled (`textureLoad` with a level) | sampled |
//! | attention (channel loops written out per head size) | lavapipe: 4 query rows per invocation; SwiftShader: 2 rows up to d = 48, else 1; q, k, v from textures where `activation_textures` | 1 row |
//! | ACC-ViT atrous depthwise conv's run of 4 output columns | lavapipe: written out, shared fetches fetched once | a loop |
//! | GroupNorm lanes per workgroup | 8 for a group of one chunk, else 32 | 32 |
//! | GroupNorm chunks | a group of up to 32k elements in one; SwiftShader: `GroupNorm(x + add)` of larger groups as an add and the norm | 4096 elements |
//! | row reductions (LayerNorm, softmax) | 16 lanes per row for few long rows, else 1 | the same |
//! | strided means | 1 lane per output | 16 lanes for few long means, else 1 |

use crate::kernels::{DeviceProfile, Kernel};

use super::matmul::{MatmulLoads, MatmulTiling};

/// GEMMs of fewer FLOPs than this take the small tile.
pub const SMALL_GEMM_FLOPS: u64 = 4_000_000;

/// On lavapipe only GEMMs of fewer FLOPs than this take the small tile; from here up to
/// [`SMALL_GEMM_FLOPS`] they take 8 × 8 outputs in 8 × 8 invocations (see [`matmul_tiling`]).
pub const LAVAPIPE_MID_GEMM_FLOPS: u64 = 250_000;

/// The register tile and workgroup of the core matmul for a GEMM of `flops` FLOPs. 16 × 8 outputs
/// per invocation in 8 × 8 workgroups measured fastest on lavapipe (4-row tiles are several times
/// slower there on large GEMMs), then 16 × 16 ([`LAVAPIPE_LARGE_GEMM_FLOPS`], in workgroups of 4 ×
/// 8 since session 24: [`LAVAPIPE_LARGE_TILE`]). Below
/// [`SMALL_GEMM_FLOPS`] the dispatch, not the arithmetic, is the cost, and a 4 × 4 tile compiles
/// far faster: lavapipe JIT-compiles at the first dispatch, and hatnet-digits' first forward took
/// 11.5 s with 16 × 8 tiles against 5.2 s with 4 × 4 (empty shader cache, AMD EPYC host).
///
/// Other software devices (SwiftShader, the browser's) take 8 × 8: SwiftShader compiles a
/// pipeline when it is created, and a 16 × 8 GEMM took it 1.2–2.8 s, 0.8–1.2 s at 8 × 8, while the
/// smaller tile ran as fast or faster (its SIMD registers hold far less than 128 accumulators).
/// The tiny models at 224 through SwiftShader's Vulkan ICD (AMD EPYC, `wgvit bench --runs 5`, 16
/// × 8 → 8 × 8): cold 9.9 → 6.0 s and warm 1.88 → 1.67 s (hatnet-tiny), 10.7 → 6.0 s and 1.28 →
/// 0.93 s (lavit-tiny), 9.2 → 7.1 s and 4.0 → 3.2 s (accvit-tiny), 6.4 → 6.6 s and 1.69 → 1.60 s
/// (vvt-tiny, whose vicinity kernels dominate its compile). 8 × 4 compiled faster still (cold
/// 3.7–4.4 s) but ran lavit-, vvt- and accvit-tiny 1.3× slower.
///
/// The small tile's workgroup is 4 × 4 invocations on SwiftShader, 8 × 8 elsewhere. SwiftShader
/// runs a workgroup on one thread, its invocations four at a time, and a small GEMM filled few
/// 64-invocation workgroups: the digit models' last-stage GEMMs (4–16 tokens) ran as one or two
/// workgroups with half their invocations past the edge, leaving a core idle. With 16
/// invocations (AMD EPYC, GPU time ÷ an untouched op, 3 pairs, `tools/profile_pair.py`), the
/// matmuls took 0.89 (accvit-digits), 0.82 (lavit-digits), 0.85 (hatnet-digits) and 0.75
/// (vvt-digits) of their time; 4 invocations 1.04 of 16's. lavapipe pays per workgroup: 16
/// invocations took its matmuls 1.64–1.72× as long, 256 took 1.03–1.14×. The convolutions' small
/// tile measured the same either way on SwiftShader (1.05), so it keeps 8 × 8.
///
/// On lavapipe the GEMMs from [`LAVAPIPE_MID_GEMM_FLOPS`] (0.25 MFLOP) up to 4 MFLOP take 8 × 8
/// outputs (session 16): the digit models' are mostly K = 16–128, where the 4 × 4 tile's loads
/// (half a component per output per k) and its epilogue per 16 outputs outweighed its FMAs, and
/// the 8 × 8 halves the first. Warm medians (Intel Xeon, `tools/bench_pair.py`, 4 × 100 runs,
/// before → after): accvit-digits 6.79 → 5.84 ms, lavit-digits 4.45 → 3.85 ms, hatnet-digits
/// 2.95 → 2.80 ms, vvt-digits 1.13 → 1.15 ms. vvt-digits' GEMMs are mostly under 0.25 MFLOP,
/// where 8 × 8 took its matmuls 1.3× as long (fewer, emptier workgroups), hence the floor. The
/// cost is JIT at a first run with Mesa's cache empty: 0.11–0.19 s per 8 × 8 pipeline against
/// 0.06–0.07 s at 4 × 4; whole-process `wgvit classify` with empty caches accvit-digits 1.14 →
/// 1.58 s, lavit-digits 0.62 → 0.99 s, hatnet-digits 1.22 → 1.36 s (the target is 2.5 s).
pub fn matmul_tiling(profile: &DeviceProfile, flops: u64) -> MatmulTiling {
    let swiftshader = profile.is_cpu_like() && !is_lavapipe(profile);
    let small = flops < SMALL_GEMM_FLOPS;
    let lavapipe_mid = small && is_lavapipe(profile) && flops >= LAVAPIPE_MID_GEMM_FLOPS;
    if small && swiftshader {
        MatmulTiling { wg_m: 4, wg_n: 4, ..SMALL_TILE }
    } else if small && !lavapipe_mid {
        SMALL_TILE
    } else if swiftshader || lavapipe_mid {
        MatmulTiling { tm: 8, tn: 8, wg_m: 8, wg_n: 8, loads: MatmulLoads::Auto }
    } else if is_lavapipe(profile) && flops >= LAVAPIPE_LARGE_GEMM_FLOPS {
        LAVAPIPE_LARGE_TILE
    } else {
        MatmulTiling { tm: 16, tn: 8, wg_m: 8, wg_n: 8, loads: MatmulLoads::Auto }
    }
}

/// The least outputs per invocation from which a CPU-like device's GEMM takes the workgroup shape
/// that launches the fewest invocations ([`least_waste_lanes_n`]) rather than the narrow-output
/// rule: 64 (the 8 × 8 tile) on SwiftShader; on lavapipe 128, the 16 × 8 and 16 × 16 tiles of the
/// models at 224. Their channel counts are rarely multiples of the declared workgroup's 128 rows:
/// VVT-tiny's 3136 × 144 qkv GEMM (`m` tokens by `n` outputs, 16 × 16 tiles) launched 50
/// workgroups of 8 × 8 invocations and now 35 of 32 along M by 2 along N, hatnet-tiny's
/// 48-channel projections 13 workgroups whose invocations covered 64 rows and now 12 covering 48.
/// Warm on lavapipe (Intel
/// Xeon, `tools/bench_pair.py`, 4 × 8 runs): vvt-tiny 0.93 of its time, hatnet-tiny 0.99,
/// accvit-tiny 0.99, lavit-tiny 0.98 (3 × 6). With the 8 × 8 tile too, lavit-digits took 1.08 of
/// its time (4 × 100 runs; the other digit models 0.99–1.00), so the mid-size tile keeps the
/// narrow rule there. Counting the workgroups in rounds of four (lavapipe's threads here) as well
/// measured the same (0.97–1.01). With the 16 × 16 tile's workgroups of 32 invocations
/// ([`LAVAPIPE_LARGE_TILE`], session 24) that qkv GEMM launches 63 workgroups of 32 along M.
fn least_waste_min_outputs(profile: &DeviceProfile) -> u32 {
    if is_lavapipe(profile) {
        128
    } else {
        64
    }
}

/// Into how many shares a GEMM of `tiles` register tiles splits its reduction of length `k`
/// (`ops::matmul`: the shares' mean, one dispatch more): on lavapipe, a GEMM from
/// [`SMALL_GEMM_FLOPS`] whose tiles fill fewer than two workgroups of 64 invocations, into enough
/// shares for four, each of at least 256 of K. LaViT's spatial-reduction convs (patches of 8 × 8
/// or 4 × 4 by 64–128 channels, to 49 tokens) are such GEMMs: 32 invocations over a K of 4096
/// kept one core busy, and half its SIMD lanes.
pub fn gemm_k_splits(profile: &DeviceProfile, tiles: usize, k: usize, flops: u64) -> usize {
    const WORKGROUP: usize = 64;
    if !is_lavapipe(profile) || flops < SMALL_GEMM_FLOPS || tiles >= 2 * WORKGROUP {
        return 1;
    }
    (4 * WORKGROUP).div_ceil(tiles).min(k / 256).max(1)
}

/// On lavapipe GEMMs of at least this many FLOPs take 16 × 16 outputs per invocation (the tiny
/// models' at 224; no digit model has one). A k step then loads 16 A rows and 16 B columns (as
/// vec4 blocks) for 1024 FMAs instead of 16 and 8 for 512, and lavapipe's loads, gathers lane by
/// lane, are what its GEMMs wait on; the 256 accumulators spill, but a spill is a plain vector
/// move. `wgvit bench-ops --sweep` (Intel Xeon, 2 cores, in one run): 384×96·96×3136 26.1 →
/// 33.2–36.4 GFLOP/s (28 → 36–39 % of the FMA peak), 3136×64·64×256ᵀ 25.7 → 32.2–33.3;
/// 3136×384·384×1536ᵀ 38.5 GFLOP/s (41 %). Warm (`tools/bench_pair.py`, 3 × 6 runs): lavit-tiny
/// 0.87–0.90, accvit-tiny 0.87–0.90, vvt-tiny 0.85–0.86, hatnet-tiny 0.87–0.91 of their time.
/// The cost is JIT: a 16 × 16 GEMM pipeline takes lavapipe about 0.3–0.5 s to compile, and a
/// 224 model's first forward with Mesa's cache empty took 1.1–2.0 s longer (lavit-tiny 6.9 →
/// 8.0 s, hatnet-tiny 5.1 → 6.9 s, vvt-tiny 4.4 → 6.1 s, accvit-tiny 5.5 → 7.6 s). A 16 × 32 or
/// 32 × 16 tile ran a 512³ microkernel 1.2 and 1.1 times as fast again, for 0.9–1.4 s of JIT per
/// pipeline, but 16 × 32 took LaViT-tiny 1.01–1.05 of its GPU time (its last stages' GEMMs have
/// too few tiles for it).
///
/// Session 20 moved the threshold from 32 to 4 MFLOP, where the small tile ends: once the
/// workgroups launch the fewest invocations (`gemm_launch`), the 4–32 MFLOP GEMMs of the tiny
/// models' later stages ran faster with 16 × 16 too, except on the element-wise kernel
/// ([`gemm_tiling`]), and convs over padded patches keep 16 × 8 below
/// [`SMALL_CONV_FLOPS`] ([`conv_patches_tiling`]). Warm against 32 MFLOP (Intel Xeon,
/// `tools/bench_pair.py`, 5 × 8 runs): hatnet-tiny 0.97, accvit-tiny 0.98, lavit-tiny 1.00,
/// vvt-tiny 1.00 (3 × 6). The cost is JIT at a first run with Mesa's cache empty: hatnet-tiny's
/// first forward 5.3 → 6.5 s, lavit-tiny's 6.9 → 7.7 s.
pub const LAVAPIPE_LARGE_GEMM_FLOPS: u64 = SMALL_GEMM_FLOPS;

/// lavapipe's 16 × 16 tile from [`LAVAPIPE_LARGE_GEMM_FLOPS`], in workgroups of 4 × 8 invocations
/// (the 16 × 8 tiles cut from it for convs keep them): each workgroup covers half the outputs one
/// of 64 did. Most of the tiny
/// models' later-stage GEMMs filled only 2–7 workgroups of 64 (hatnet-tiny's stage-2 `conv3.0`,
/// 240 × 196 outputs: 4; accvit-tiny's stage-3 projections, 49 × 512: 2) for lavapipe's four
/// threads, and a workgroup is the unit its threads share out. `wgvit bench-ops` at those shapes
/// (Intel Xeon, 7 runs, one binary, 64 → 32 invocations): 196×1024·1024×256ᵀ 2.09 → 1.84 ms,
/// 196×240ᵀ·240×240ᵀ 0.52 → 0.46 ms, 49×2048·2048×512ᵀ 2.38 → 2.25 ms, 48×384·384×3136 2.13 →
/// 2.02 ms, 240×960·960×196 and 96×768·768×784 unchanged. Fewer invocations are slower again (16:
/// 1.6–1.9× the time of 64, see [`matmul_tiling`]). Warm, the same binary paired with itself
/// (`tools/bench_pair.py --after-env`, three runs of 4–5 rounds × 8): lavit-tiny 0.95–0.97,
/// lavit-tiny-psi 0.97, vvt-tiny 0.98–1.05, accvit-tiny 0.98–0.99, hatnet-tiny 0.97–1.01.
/// The pipelines are the same ones with another workgroup size, so no more of them to compile.
const LAVAPIPE_LARGE_TILE: MatmulTiling = MatmulTiling { tm: 16, tn: 16, wg_m: 4, wg_n: 8, loads: MatmulLoads::Auto };

/// The register tile of an automatically tiled GEMM of `flops` FLOPs, on the vec4 kernel or not
/// (`ops::matmul::vec4_compatible`): [`matmul_tiling`]'s, but on lavapipe the element-wise kernel
/// (`Kernel::Matmul`: N or an operand's contiguous dimension not a multiple of 4, e.g. LaViT's
/// attention over 49 tokens) keeps 16 × 8 below [`SMALL_CONV_FLOPS`] ([`jit_bound_tile`]). Its
/// loads and stores are element by element, and lavapipe writes each out as a loop over the SIMD
/// lanes, so its 16 × 16 pipelines are far larger: with them lavit-tiny's first forward with
/// Mesa's cache empty took 13.2 s instead of 6.9 s.
pub fn gemm_tiling(profile: &DeviceProfile, flops: u64, vec4_kernel: bool) -> MatmulTiling {
    let tiling = matmul_tiling(profile, flops);
    if vec4_kernel {
        tiling
    } else {
        jit_bound_tile(profile, tiling, flops)
    }
}

/// The register tile of a conv run as the GEMM over its padded patches
/// (`ops::matmul::conv_patches_gemm`): [`matmul_tiling`]'s, but 16 × 8 below [`SMALL_CONV_FLOPS`]
/// on lavapipe ([`jit_bound_tile`]). accvit-digits' second stem conv (19 MFLOP) with 16 × 16 took
/// its whole-process cold start with empty caches from 1.76–1.78 to 1.92–1.94 s (the larger
/// tile's JIT) for 0.99 of its warm time.
pub fn conv_patches_tiling(profile: &DeviceProfile, flops: u64) -> MatmulTiling {
    jit_bound_tile(profile, matmul_tiling(profile, flops), flops)
}

/// `tiling` with at most 8 columns below [`SMALL_CONV_FLOPS`] on lavapipe: for GEMM kinds whose
/// 16 × 16 pipelines cost more JIT at the first forward than they save warm there.
fn jit_bound_tile(profile: &DeviceProfile, tiling: MatmulTiling, flops: u64) -> MatmulTiling {
    if is_lavapipe(profile) && flops < SMALL_CONV_FLOPS && tiling.tn > 8 {
        MatmulTiling { tn: 8, ..tiling }
    } else {
        tiling
    }
}

/// Whether a register-tiled GEMM stores its tile in a loop over its 4 × 4 blocks (`STORE_LOOP`,
/// gemm_tile.wgsl) instead of written out: on SwiftShader, for every tile of four blocks or more.
///
/// SwiftShader expands every lane's store, so a written-out epilogue (16 blocks' worth of row
/// segments, each with its bias, activation, residual and guards) was most of a GEMM pipeline's
/// creation time. hatnet-tiny's (AMD EPYC, SwiftShader's Vulkan ICD, `examples/pipeline_compile_times`):
/// the scalar matmuls 0.13–0.22 s → 0.06–0.07 s each, the 3 × 3 convs 0.21 and 0.09 s → 0.10 and
/// 0.07 s; the matmuls and convs together 1.46 → 0.88 s. What runs is the same work plus a loop:
/// the convs' GPU time 1.01, the matmuls' 1.02 (÷ depthwise convs, 3 pairs, `tools/profile_pair.py`).
/// The vec4 matmuls loop too (session 15): on the AMD EPYC that saved 0.19 s more of creation for
/// 2–4 % of their GPU time, and was left out; on an Intel Xeon their GPU time measured 0.99–1.01
/// (÷ an untouched op, the tiny models at 224, 2 pairs), hatnet-tiny's pipelines 1.3–1.4 → 1.2 s
/// to create natively, and in Chromium its cold start 3.01 → 2.80 s (medians of six page loads
/// each, alternated; warm 1094 → 1084 ms, the digit models 0.99–1.01): the browser's compile of
/// the written-out epilogue (Tint's code, not naga's) apparently costs more than the native one,
/// and every page load pays it. Tiles of fewer than four blocks (the small GEMMs' and convs' 4 × 4 and
/// 8 × 4) keep it written out: they have little epilogue to save, and with the loop vvt-digits'
/// 7 × 7 stem conv took 1.04 of its time.
///
/// On lavapipe only the mid-size GEMMs' 8 × 8 tile loops: its pipelines with an activation took
/// 0.17–0.18 s of JIT written out, 0.11 s looped (accvit-digits, `examples/pipeline_compile_times`
/// with Mesa's cache off), for 1.00–1.01 of the digit models' warm time (Intel Xeon,
/// `tools/bench_pair.py`, 4 × 100 runs). Its 16 × 8 tile was measured written out and stays so.
pub fn gemm_store_loop(profile: &DeviceProfile, tm: u32, tn: u32) -> bool {
    // The loop moves at most 8 blocks (gemm_tile.wgsl).
    if tm * tn > 128 {
        false
    } else if is_lavapipe(profile) {
        tm * tn == 64
    } else {
        profile.is_cpu_like() && tm * tn >= 64
    }
}

/// How a workgroup of the register-tiled GEMM (matmul, implicit-GEMM conv) lays its
/// invocations over an `m` × `n` output: 2^[`GemmLaunch::lanes_n_log2`] along N, the rest along
/// M, and the workgroups that cover the output per batch entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmLaunch {
    pub lanes_n_log2: u32,
    pub tiles_m: usize,
    pub tiles_n: usize,
}

/// The GEMM launch for `tiling` over an `m` × `n` output.
///
/// GPU-like devices keep the workgroup's declared shape (`wg_n` invocations along N). CPU-like
/// devices fit it to a narrow output: a software device runs consecutive invocations as one SIMD
/// group (8 on lavapipe's 256-bit llvmpipe, 4 on SwiftShader), so invocations past the edge are
/// lanes that load and multiply for nothing. LaViT's channel-major q/k/v projections at the last
/// stage (M = 128 channels, N = 4 tokens) used 1 lane in 8 with the 8 × 8 workgroup, and its fc1
/// at 4 tokens (M = 4, N = 512) 8 invocations in 64. So when N's tiles need fewer invocations
/// than `wg_n`, N gets the power of two that covers them and M the rest; when M's need fewer than
/// `wg_m`, the other way round. Outputs wide and tall enough keep the declared shape. The digit
/// models took 0.67–0.79 of their time on lavapipe (README, "GEMM workgroups fitted to narrow
/// outputs"). The cost: fewer workgroups for a narrow GEMM, which a threaded device (SwiftShader)
/// spreads over fewer cores; a floor on the count measured within noise there, so there is none.
///
/// On SwiftShader the 8 × 8-tiled GEMMs (from [`SMALL_GEMM_FLOPS`]), on lavapipe those of 16-row
/// tiles ([`least_waste_min_outputs`]), take the workgroup shape that launches the fewest
/// invocations instead ([`least_waste_lanes_n`]): hatnet-tiny's 48- and 96-channel outputs are 6 and 12 row tiles, which 8 rows of invocations covered as 8 and 16,
/// a quarter of the invocations past the edge (they still run the epilogue there,
/// masked). hatnet-tiny's matmuls 0.97 of their GPU time (÷ its attentions, SwiftShader's Vulkan
/// ICD, Intel Xeon, `tools/profile_pair.py`, 2 × 3 pairs); vvt-, lavit- and accvit-tiny's 0.94–0.98
/// (÷ LayerNorm, 2 pairs) with their absolute times 0.98–1.02. The smaller tiles keep the rule
/// above: on all GEMMs it took vvt-digits' 8 × 4-tiled 3 × 3 convs twice as long (fewer
/// workgroups for SwiftShader's threads).
pub fn gemm_launch(profile: &DeviceProfile, tiling: &MatmulTiling, m: usize, n: usize) -> GemmLaunch {
    let lanes = (tiling.wg_m * tiling.wg_n) as usize;
    let needed_m = m.div_ceil(tiling.tm as usize).next_power_of_two();
    let needed_n = n.div_ceil(tiling.tn as usize).next_power_of_two();
    let declared_n = tiling.wg_n as usize;
    let lanes_n = if !profile.is_cpu_like() {
        declared_n
    } else if tiling.tm * tiling.tn >= least_waste_min_outputs(profile) {
        least_waste_lanes_n(lanes, m.div_ceil(tiling.tm as usize), n.div_ceil(tiling.tn as usize), declared_n)
    } else if needed_n < declared_n {
        needed_n
    } else if needed_m < lanes / declared_n {
        (lanes / needed_m).min(needed_n)
    } else {
        declared_n
    };
    let lanes_m = lanes / lanes_n;
    GemmLaunch {
        lanes_n_log2: lanes_n.trailing_zeros(),
        tiles_m: m.div_ceil(lanes_m * tiling.tm as usize),
        tiles_n: n.div_ceil(lanes_n * tiling.tn as usize),
    }
}

/// The invocations along N (a power of two up to `lanes`) that launch the fewest invocations
/// over `tiles_m` × `tiles_n` register tiles; among equals, the one nearest `declared_n`.
fn least_waste_lanes_n(lanes: usize, tiles_m: usize, tiles_n: usize, declared_n: usize) -> usize {
    let mut best = (usize::MAX, declared_n);
    let mut lanes_n = 1;
    while lanes_n <= lanes {
        let lanes_m = lanes / lanes_n;
        let launched = tiles_m.div_ceil(lanes_m) * lanes_m * tiles_n.div_ceil(lanes_n) * lanes_n;
        let key = (launched, lanes_n.abs_diff(declared_n));
        if key < (best.0, best.1.abs_diff(declared_n)) {
            best = (launched, lanes_n);
        }
        lanes_n *= 2;
    }
    best.1
}

const SMALL_TILE: MatmulTiling = MatmulTiling { tm: 4, tn: 4, wg_m: 8, wg_n: 8, loads: MatmulLoads::Auto };

const SMALL_CONV_TILE: MatmulTiling = MatmulTiling { tm: 8, tn: 4, wg_m: 8, wg_n: 8, loads: MatmulLoads::Auto };

/// Convolutions of fewer FLOPs than this take the small tile on lavapipe.
pub const SMALL_CONV_FLOPS: u64 = 32_000_000;

/// The implicit-GEMM convolution's tile: the matmul's (channels × pixels per invocation), with
/// a mid-size tile up to [`SMALL_CONV_FLOPS`] on lavapipe. A conv kernel with the big tile
/// costs lavapipe about 1 s of JIT at the first dispatch; the models' convs below 32 MFLOP are the
/// stems and patch embeddings of small models, where it is the only big-tile pipeline.
/// accvit-digits' second stem conv (19 MFLOP): 1.0 s of compile saved (5.1 → 3.8 s over the
/// model) for 1.7 → 2.7–3.0 ms warm (of a 31 ms forward) with the 4 × 4 tile. 8 × 4 (8 output
/// channels per invocation: half the im2col gathers per FMA) took that conv from 2.7 to 1.8 ms
/// for 0.22 → 0.29 s of JIT, and vvt-digits from 2.7 to 1.8 ms warm (paired, 4 × 30 runs);
/// the same tile on the small GEMMs cost 1 s of JIT per model for no warm gain.
///
/// On lavapipe a small conv of at most 16 output `channels` (the digit models' stems and first
/// patch embeddings) takes 16 × 4: one invocation covers every channel, so each im2col gather
/// feeds all of them. By GPU time ÷ the matmuls (`tools/profile_pair.py`, 4 pairs, AMD EPYC):
/// accvit-digits' convs 0.76, hatnet-digits' 0.88; warm (`tools/bench_pair.py`, 3 × 100)
/// accvit-digits 6.83 → 6.57 ms, hatnet-digits 2.97 → 2.90 ms, vvt-digits 1.27 → 1.27 ms; for
/// 0.1 s (accvit-digits) and 0.3 s (hatnet-digits, one more pipeline) of JIT summed over the
/// model. Wider convs keep 8 × 4: all small convs at 16 × 4 took vvt-digits' 3 × 3 convs (32–64
/// channels) 1.18 of their time.
///
/// SwiftShader keeps 8 × 4 only below [`SMALL_GEMM_FLOPS`] and takes the matmuls' 8 × 8 tile
/// from there: since that conv stores in a loop (`gemm_store_loop`) it compiles about as fast as
/// the 8 × 4 one, and a model with a conv over 32 MFLOP (every tiny model at 224) needs it
/// anyway, so a 4–32 MFLOP stem conv at 8 × 4 was one more pipeline for every page load to
/// compile: hatnet-tiny's patch_embed.0, the first pipeline its first forward waits for. Its
/// convs' GPU time 0.99 of before (SwiftShader's Vulkan ICD, AMD EPYC, `tools/profile_pair.py`,
/// 3 pairs). Below 4 MFLOP the matmuls' 4 × 4 took hatnet-digits' convs 1.13 of their time.
pub fn conv_gemm_tiling(profile: &DeviceProfile, flops: u64, channels: usize) -> MatmulTiling {
    if is_lavapipe(profile) && flops < SMALL_CONV_FLOPS && channels <= 16 {
        MatmulTiling { tm: 16, ..SMALL_CONV_TILE }
    } else if (is_lavapipe(profile) && flops < SMALL_CONV_FLOPS) || (profile.is_cpu_like() && flops < SMALL_GEMM_FLOPS) {
        SMALL_CONV_TILE
    } else {
        // conv2d.wgsl's tiles are at most 8 pixels wide.
        let t = matmul_tiling(profile, flops);
        MatmulTiling { tn: t.tn.min(8), ..t }
    }
}

/// Whether ACC-ViT's atrous depthwise conv writes out its run of output columns
/// (`RUN_WRITTEN_OUT`, atrous_dwconv.wgsl) instead of looping over it: on lavapipe. Written out,
/// the input fetches neighbouring outputs share are one expression each and the compiler fetches
/// them once: at stride 2 an output needs 14 new fetches of its 25 after the first of a run of 4.
/// lavapipe fetches a texel lane by lane, so the fetches are the kernel's cost: accvit-digits'
/// atrous convs 0.74–0.79 → 0.49–0.57 ms a forward (`wgvit profile --repeat 5`, Intel Xeon, 4
/// runs), its warm median 5.77 → 5.57 ms (`tools/bench_pair.py`, 4 × 100 runs). The 3-branch
/// pipeline takes 0.71 s of JIT instead of 0.21 s, but the first run's compile is spread over
/// both cores (`driver_warmup`): accvit-digits' whole-process cold start with empty caches
/// 1.41–1.57 → 1.45–1.60 s (3 pairs). A run of 2 shares less than it loses (0.71–0.75 ms); of 8,
/// 2.1 s of JIT. SwiftShader keeps the loop: written out, accvit-digits took 0.97 of its warm
/// time through its Vulkan ICD, but the 3-branch pipeline 0.47 s to create instead of 0.18 s,
/// which every page load pays before its first forward. The one-branch conv (ACC-ViT's 2×2
/// average pool, a few µs of work) keeps the loop: written out, it took 0.2 s of JIT for
/// nothing measurable warm (1.00).
pub fn atrous_dwconv_run_written_out(profile: &DeviceProfile, branches: usize) -> bool {
    is_lavapipe(profile) && branches > 1
}

/// Whether a model's dense convs run channel-last on the direct kernel (`conv2d_nhwc.wgsl`)
/// where it has the choice (ACC-ViT's stem): on lavapipe. There a load is the cost, and the
/// direct kernel fetches each input vec4 once per kernel row for a run of output columns where
/// the implicit GEMM gathers every im2col element alone. accvit-digits' second stem conv (16 → 16
/// channels, 32 × 32, weights from a texture) took 0.42–0.44 ms a forward instead of 0.68
/// (`wgvit profile --repeat 5`, Intel Xeon, 2 cores) with runs of 16 columns; of 32 0.33 ms, of 8
/// 0.53, of 4 0.80. The first conv then stores channel-last into a texture (`OUT_NHWC`):
/// 0.16–0.18 → 0.20–0.24 ms. accvit-digits 0.96 of its warm time. SwiftShader gained nothing
/// (1.00 through its Vulkan ICD) and keeps the NCHW stem.
pub fn direct_nhwc_convs(profile: &DeviceProfile) -> bool {
    is_lavapipe(profile)
}

/// Whether matmuls and convolutions read their constant operands (weights) from flat textures
/// (`Graph::constant_texture`) rather than storage buffers. Software devices: a texel fetch is a
/// vectorised gather there, a storage load a loop over the SIMD lanes. Measured with a 4 × 4-tiled
/// `a · bᵀ` GEMM (`examples/gemm_operand_paths.rs`, AMD EPYC, µs, both from buffers → b from a
/// texture): lavapipe 256×16×128 409 → 331, 4×128×512 207 → 175; SwiftShader 633 → 577,
/// 421 → 321. Activations copied into textures before each GEMM (a buffer-to-texture copy
/// between compute passes) made the GEMM kernels another 9 % faster but the forwards slower by
/// wall-clock (lavapipe: lavit-digits 1.18, vvt-digits 1.39; SwiftShader: lavit-digits 1.60):
/// [`activation_textures`] has the producer write the texture instead. GPUs keep storage buffers.
pub fn constant_textures(profile: &DeviceProfile) -> bool {
    profile.is_cpu_like()
}

/// Whether a kernel reads a constant operand of at most 64 KiB from a uniform buffer
/// (`Graph::constant_uniform`) where it can, rather than from a texture: on lavapipe. There a
/// uniform-buffer load is one gather across the SIMD lanes; a texel fetch takes the sampler's
/// path. `examples/load_paths.rs` (an 8 × 4 register tile, A in vec4s along k, M = N = K = 512,
/// Intel Xeon, ms): A and B textures 18.7, B uniform 15.2, both uniform 13.2; SwiftShader the
/// other way (33.5, 41.7, 64.7), so it keeps textures. Most of the digit models' GEMM weights
/// and biases, the direct and implicit convs' weights and the atrous convs' weights and biases
/// fit: accvit-digits 0.97 of its warm time for the GEMM weights, 0.98 more for the convs', 0.98–0.99
/// more for the GEMM biases (`tools/bench_pair.py`, 4 × 100 runs, Intel Xeon); hatnet-digits 0.98,
/// lavit-digits 0.99, vvt-digits 1.00 for the GEMM weights. GEMMs of one kind whose weights do
/// not all fit read them all from textures (`Graph::without_split_uniform_constants`): a second
/// pipeline per kind cost more cold start than its warm gain.
pub fn constant_uniforms(profile: &DeviceProfile) -> bool {
    is_lavapipe(profile)
}

/// Whether activations of at most 64 KiB that only uniform-capable bindings read are read as
/// uniform buffers (`Graph::with_activation_uniforms`, before the textures): on lavapipe, for
/// the reason of [`constant_uniforms`]; their producers still write storage buffers. Offered
/// by the GEMMs' vec4 operands and residual, LayerNorm's input, the token mean's input and the
/// one-branch atrous conv's (the average pool's) input: kernels every instance of which in the
/// bundled models can take it, so that no pipeline splits in two.
/// Warm, against the same binary without (`tools/bench_pair.py`, 4 × 100 runs, Intel Xeon): the
/// GEMM operands alone lavit-digits 0.84, accvit-digits 0.92, hatnet-digits 0.99, vvt-digits
/// 1.00; with the norms, residuals and means accvit-digits another 0.94.
pub fn activation_uniforms(profile: &DeviceProfile) -> bool {
    is_lavapipe(profile)
}

/// Whether activations that only texture-capable bindings touch live in flat textures
/// (`Graph::with_activation_textures`): the producing kernel writes a storage texture, the
/// consumers fetch texels. lavapipe only. With the real matmul kernel at the tiny models' GEMM
/// shapes (lavapipe, AMD EPYC, 16 × 8 tile, weight in a texture), the activation operand read
/// from a texture instead of a buffer took 0.69–0.83 of the time (3136×512·512×64ᵀ 12.5 → 8.8
/// ms, 1536×384·384×784 58 → 40 ms), and writing a storage texture costs about what a buffer
/// store does: warm lavit-tiny 0.80, accvit-tiny 0.75, vvt-tiny 0.81 of the time. SwiftShader
/// gained nothing overall (natively: lavit-digits 0.87, vvt-digits 1.02, accvit-digits
/// 1.03–1.17; in Chromium 1.00, 0.92, 1.21), so it keeps its activations in buffers. Where the
/// host makes texture stores costly (`DeviceProfile::texture_stores_costly`) they are copied
/// into textures after their producer instead ([`copied_textures`]).
pub fn activation_textures(profile: &DeviceProfile) -> bool {
    is_lavapipe(profile)
}

/// How many times in all an activation's readers must fetch each of its texels for its producer
/// to store it as a texture (`Graph::with_activation_textures`): 0, every time they can, where
/// texture stores are cheap. Where they are costly (`DeviceProfile::texture_stores_costly`,
/// `context::store_probe`) the executor copies the large ones instead ([`copied_textures`]) and
/// the rest move by this rule at 64: fetched that often, or read by a kernel that always takes a
/// texture (Intel Xeon, lavapipe: a texel stored into a texture about 6.5 ns more than into a
/// buffer; LaViT-tiny's fc1 took 15.4 ms storing a texture against 8.5 ms storing a buffer, and
/// fc2 read it in 7.5 against 8.5 ms).
pub fn texture_min_fetches(profile: &DeviceProfile) -> u64 {
    if profile.texture_stores_costly {
        64
    } else {
        0
    }
}

/// Which activations are copied into textures from their producer's buffer
/// (`Graph::with_activation_textures_copied`) rather than stored as textures by their producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopiedTextures {
    /// The least fetches per texel, summed over the readers.
    pub min_fetches: u64,
    /// The least texels: below it a copy's pass boundary costs more than the fetches save.
    pub min_texels: usize,
}

/// Where texture stores are costly (`DeviceProfile::texture_stores_costly`), activations move to
/// textures by a copy after their producer: on the Intel Xeon of session 19 a texel stored into a
/// storage buffer cost 2.5 ns, into a storage texture 8.7 ns, and `copy_buffer_to_texture` 1.1 ns
/// (both cores for the stores, the copy alone). Thresholds measured on the tiny and digit models
/// (`tools/bench_pair.py`): 8 fetches did better than 4 and 16 (1.00–1.05 against 8); without a
/// least size hatnet-digits lost 1.06 (every copy ends a compute pass). Since kernels read their
/// textures as images ([`flat_texture_images`], session 21) a fetch costs half what it did, and 4
/// does better (Intel Xeon, 3 × 8 runs, against 8): hatnet-tiny 0.96, vvt-tiny 0.93, accvit-tiny
/// 0.94, lavit-tiny 0.98, the digit models 0.99–1.04 (4 × 100); 2 took hatnet-tiny 1.07 of 4's
/// time, 6 accvit-tiny 1.06 and lavit-tiny 1.04. The activations left
/// then take session 18's rule ([`texture_min_fetches`]: stored by their producer when fetched 64
/// times a texel, or read by a kernel that always takes a texture): without it accvit-digits'
/// first forward paid 0.7 s more JIT for its convs' and atrous kernels' buffer reads (cold start
/// 1.7 → 2.4 s). `None` elsewhere: the producers store the textures.
pub fn copied_textures(profile: &DeviceProfile) -> Option<CopiedTextures> {
    profile.texture_stores_costly.then_some(CopiedTextures { min_fetches: 4, min_texels: 4096 })
}

/// Whether kernels read their flat textures (constants and activations in textures) as read-only
/// storage textures (`texture_storage_2d<rgba32float, read>`) instead of sampled ones
/// (`Graph::with_flat_texture_images`, for the kernels whose textures fit the device's
/// storage-texture limit): on lavapipe. llvmpipe (Mesa 22.3) loads an image texel without the
/// sampler's set-up: `examples/load_paths.rs` (an 8 × 4 tile, A and B as vec4 texels, Intel Xeon)
/// ran 16.4 ms with sampled textures and 8.5 ms with images.
pub fn flat_texture_images(profile: &DeviceProfile) -> bool {
    is_lavapipe(profile)
}

/// Mesa's lavapipe (the adapter llvmpipe), the native software device; SwiftShader is the
/// browser's.
pub fn is_lavapipe(profile: &DeviceProfile) -> bool {
    profile.is_cpu_like() && profile.name.starts_with("llvmpipe")
}

/// Which attention kernel runs, the query rows each invocation owns, and whether it stores its
/// output in a loop (`STORE_LOOP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionVariant {
    pub kernel: Kernel,
    pub rows: usize,
    pub store_loop: bool,
}

/// The largest head size whose attention keeps its output stores written out on SwiftShader
/// ([`attention_variant`]).
pub const STORE_LOOP_HEAD_DIM: usize = 32;

/// The largest head size for which SwiftShader takes two query rows ([`attention_variant`]).
pub const TWO_ROW_HEAD_DIM: usize = 48;

/// The attention kernel for heads of `head_dim` channels (the larger of q's and v's). Every
/// variant has its channel loops written out for the head size: q and the output accumulators
/// are arrays indexed by the channel group, and an array indexed by a loop variable is memory on
/// a software device (a per-lane loop per access on lavapipe, a gather on SwiftShader).
///
/// lavapipe takes four query rows per invocation (`attention_qb4`). Against the rolled kernels
/// it replaced (loops bounded by the uniform head size; AMD EPYC, paired): hatnet-tiny's
/// attentions ÷ its depthwise convs 3.04 → 1.30 and 3.36 → 1.32 (`wgvit profile`, four rows
/// rolled), with less JIT at the first dispatch (3.18 → 1.83 s); hatnet-digits warm 0.83 of its
/// time (`tools/bench_pair.py`, one row rolled) for 0.41 → 0.55 s of JIT. With one or two rows
/// the unrolled kernel had measured slower there: each k and v load then fed too few FMAs.
///
/// SwiftShader compiles a pipeline on every page load, and the written-out code grows with the
/// rows times the head size. Up to [`TWO_ROW_HEAD_DIM`] it takes two rows (`attention_qb2`):
/// hatnet-digits' (d = 16) attentions ÷ its matmuls 0.87 → 0.52 by GPU timestamps against one
/// rolled row (`wgvit profile`, three runs each), the forward 0.87–0.89 of its time (AMD EPYC,
/// `tools/bench_pair.py --swiftshader`) and 0.88 in Chromium, for 0.08 → 0.21 s to create the
/// pipeline. At d = 48 (hatnet-tiny) two rows take 0.50 s to create against one row's 0.28 s,
/// and hatnet-tiny's attentions 0.66 of one row's time, its forward 0.91 (GPU time ÷ its
/// depthwise convs, `tools/profile_pair.py`, 2 pairs); in Chromium its warm forward took 0.92–0.95
/// of the time and its cold start the same (`tools/ortweb/run.mjs`, 2 rounds alternating).
/// Larger heads take one row (`attention`). Writing each key block's four keys out too measured
/// the same (0.53 on hatnet-digits).
/// On SwiftShader heads over [`STORE_LOOP_HEAD_DIM`] channels store their output in a loop
/// (`STORE_LOOP`): hatnet-tiny's (d = 48) attention pipeline took 0.37 s to create instead of
/// 0.47 s (SwiftShader's Vulkan ICD, `examples/pipeline_compile_times`), its attentions 0.98 of
/// their GPU time (÷ depthwise convs, 3 pairs). Smaller heads keep the written-out stores: their
/// code is small, and hatnet-digits' (d = 16) attentions took 1.07 of their time with the loop.
///
/// GPUs take one row (q and the accumulators stay in registers).
pub fn attention_variant(profile: &DeviceProfile, head_dim: usize) -> AttentionVariant {
    if !profile.is_cpu_like() {
        AttentionVariant { kernel: Kernel::Attention, rows: 1, store_loop: false }
    } else if is_lavapipe(profile) {
        AttentionVariant { kernel: Kernel::AttentionQb4, rows: 4, store_loop: false }
    } else if head_dim <= TWO_ROW_HEAD_DIM {
        AttentionVariant { kernel: Kernel::AttentionQb2, rows: 2, store_loop: head_dim > STORE_LOOP_HEAD_DIM }
    } else {
        AttentionVariant { kernel: Kernel::Attention, rows: 1, store_loop: true }
    }
}

/// Output rows of a depthwise conv's tile where every input row of the tile is loaded once
/// ([`depthwise_all_rows`]) and they fit its registers (a 3 × 3 stride-1 conv; 4 otherwise): 8 on
/// lavapipe for convs of [`DEPTHWISE_TALL_TILE_OUTPUTS`] outputs or more on maps of 8 rows or
/// more, 10 input row segments for 8 output rows instead of 6 for 4. `wgvit profile --isolate 10`
/// (AMD EPYC, depthwise convs ÷ matmuls): vvt-tiny 0.174–0.209 (median 0.183) → 0.161–0.201
/// (median 0.166) over six runs each, hatnet-tiny 0.159–0.170 → 0.146–0.157 over two. The
/// digit models' convs (8–32 K outputs, maps of 2–16 rows) keep 4: on their small maps 8 rows
/// computed rows past the map and left half the tiles to share out (vvt-digits' depthwise convs
/// 0.046–0.049 → 0.066–0.068 ms), and where one of their maps is taller a second pipeline would
/// cost JIT for nothing. Every tiny model's depthwise convs (188 K outputs and more) take 8: one
/// pipeline each, as before. Also 8 columns (two vec4 runs from one wider segment): no better
/// (0.168–0.169 at 4 rows, 0.158–0.182 at 8).
pub fn depthwise_tile_rows(profile: &DeviceProfile, out_h: usize, outputs: usize) -> usize {
    if depthwise_all_rows(profile) && out_h >= 8 && outputs >= DEPTHWISE_TALL_TILE_OUTPUTS {
        8
    } else {
        4
    }
}

/// The least outputs of a depthwise conv that takes 8-row tiles ([`depthwise_tile_rows`]).
pub const DEPTHWISE_TALL_TILE_OUTPUTS: usize = 65_536;

/// Whether a depthwise conv loads each input row of its tile once, for every output row and
/// kernel row that reads it (`ALL_ROWS` in conv2d_depthwise.wgsl), rather than once per kernel
/// row of each output row: on lavapipe, where each storage load is a loop over the SIMD lanes.
pub fn depthwise_all_rows(profile: &DeviceProfile) -> bool {
    is_lavapipe(profile)
}

/// Whether a channel-last conv of `flops` FLOPs (`ops::conv2d_nhwc`) runs as the GEMM with its
/// patches gathered in the kernel (`ops::matmul::conv_patches_gemm`) rather than the direct
/// kernel: on lavapipe from [`SMALL_GEMM_FLOPS`], where the GEMM's register tile feeds 1024
/// FMAs from 32 vec4 loads.
pub fn conv_nhwc_as_gemm(profile: &DeviceProfile, flops: u64) -> bool {
    is_lavapipe(profile) && flops >= SMALL_GEMM_FLOPS
}

/// Query tokens one ACC-ViT atrous-attention invocation owns (`family/atrous_attention.wgsl`):
/// 4 on lavapipe from [`SMALL_GEMM_FLOPS`], so that each k and v texel fetched feeds four
/// queries; 1 elsewhere, and for small attentions, whose bigger code lavapipe's JIT would pay
/// for more than the fetches save.
pub fn atrous_attention_queries(profile: &DeviceProfile, flops: u64) -> usize {
    if is_lavapipe(profile) && flops >= SMALL_GEMM_FLOPS {
        4
    } else {
        1
    }
}

/// Token quads (4 tokens each) one VVT vicinity_apply invocation owns, for an apply of `flops`
/// FLOPs: 4 (a 16 × 8 register tile), except for small applies on CPU-like devices, which take 1.
/// The big tile's code cost lavapipe 2.5 s to JIT-compile for vvt-digits, the small one's 1.0 s;
/// below 4 MFLOP the dispatch, not the tile, is the cost.
pub fn vicinity_token_quads(profile: &DeviceProfile, flops: u64) -> usize {
    if small_on_cpu(profile, flops) {
        1
    } else {
        4
    }
}

/// Column quads (4 columns each) one VVT vicinity_kv invocation owns, for a k side of `flops`
/// FLOPs: 2 (a 16 × 8 register tile), except for small ones on CPU-like devices, which take 1
/// (half the code for lavapipe's JIT; vvt-digits' kv kernel 1.3 s → 0.7 s).
pub fn vicinity_column_quads(profile: &DeviceProfile, flops: u64) -> usize {
    if small_on_cpu(profile, flops) {
        1
    } else {
        2
    }
}

/// A kernel of `flops` FLOPs on a CPU-like device small enough that the JIT of a bigger tile
/// costs more than the tile saves.
fn small_on_cpu(profile: &DeviceProfile, flops: u64) -> bool {
    profile.is_cpu_like() && flops < SMALL_GEMM_FLOPS
}

/// The largest chunk (elements) one GroupNorm workgroup reduces, for a group of `group_len`.
/// CPU-like devices take a group of up to [`CPU_GROUP_NORM_ONE_CHUNK`] elements in one chunk
/// (one dispatch, `group_norm_lanes` lanes): HAT-Net-tiny's last stage at 224 (384 × 49) then
/// shares its pooled tokens' norm pipeline, and needs one residual variant of it instead of three
/// pipelines of its own at 32 lanes (statistics, normalisation, residual): two fewer for every
/// page load to compile. hatnet-tiny's norms' GPU time 1.01 on SwiftShader's ICD, 0.96 on
/// lavapipe (AMD EPYC, `tools/profile_pair.py`, 3 pairs).
pub fn group_norm_chunk(profile: &DeviceProfile, group_len: usize) -> usize {
    if profile.is_cpu_like() && group_len <= CPU_GROUP_NORM_ONE_CHUNK {
        group_len
    } else {
        super::groupnorm::CHUNK
    }
}

/// Whether `GroupNorm(x + add)` over groups of `group_len` elements sums `add` in the norm's own
/// loads (the `ADD = 1` kernels) rather than in an add dispatch before a plain norm: everywhere
/// but SwiftShader's norms of more than one chunk. There the fused kernels are two more pipelines
/// (statistics and normalisation) for every page load to compile, 40–65 ms each in Chromium and
/// on the path to HAT-Net-tiny's first forward, while the add dispatch costs a forward 0.4 %
/// (hatnet-tiny, SwiftShader's Vulkan ICD, AMD EPYC: the adds +6.8 ms, the norms −2.2 ms of
/// 1210 ms; `tools/profile_pair.py`). A one-chunk norm saves one pipeline, and on hatnet-digits
/// the add cost 1.5 % of its forward. lavapipe caches its pipelines, and the add dispatch cost
/// it 0.5 % (+5.1 ms, −2.6 ms of 502 ms).
pub fn group_norm_fuses_input_add(profile: &DeviceProfile, group_len: usize) -> bool {
    !profile.is_cpu_like() || is_lavapipe(profile) || group_len <= CPU_GROUP_NORM_ONE_CHUNK
}

/// See [`group_norm_chunk`].
pub const CPU_GROUP_NORM_ONE_CHUNK: usize = 32 * 1024;

/// Invocations per GroupNorm workgroup (`chunks_per_group` workgroups share a group). Small on
/// purpose: on lavapipe a workgroup's barriers cost in proportion to its size; measured for
/// GroupNorm(1, C) on [1, 96, 112, 112] / [8, 64, 28, 28] (ms, both dispatches): 8 lanes 19.6 /
/// 4.0, 16: 15.2 / 4.3, 32: 14.5 / 3.8, 64: 17.9 / 5.3, 128: 29.3 / 4.9, 256: 31.2 / 7.9. A group
/// of one chunk (the digit models' maps, one dispatch) takes 8 on a CPU-like device: one SIMD
/// group on lavapipe, and two of SwiftShader's coroutines between barriers (hatnet-digits' 27
/// GroupNorms against its matmuls, AMD EPYC, two profiles each: lavapipe 0.42–0.43 at 32 lanes,
/// 0.34–0.35 at 8, 0.40–0.41 at 4; SwiftShader 0.55–0.62, 0.47–0.50, 0.44–0.50).
pub fn group_norm_lanes(profile: &DeviceProfile, chunks_per_group: usize) -> usize {
    if profile.is_cpu_like() && chunks_per_group == 1 {
        8
    } else {
        32
    }
}

/// Lanes that share one row of LayerNorm or softmax (`rows` rows of `len` elements): 16 when
/// fewer than 128 long rows would leave a GPU idle, else 1 (no workgroup memory, no barriers).
/// Measured on lavapipe (ms; L = lanes per row): layer_norm 3136x64: L1 0.74, L4 1.9, L16 3.4;
/// 196x320: L1 0.25, L16 0.75; 49x512: L1 0.18, L16 0.26; 4096x1024: L1 58, L16 76. softmax
/// 3136x49: L1 0.66, L4 1.4, L16 2.3; 1568x196: L1 1.8, L16 2.5; 64x1024: L1 0.45, L16 0.47;
/// 16x3136: L1 0.29, L16 0.37. A CPU device always prefers a row per invocation; the reduction
/// costs lavapipe < 0.1 ms where it is used.
pub fn row_lanes(_profile: &DeviceProfile, rows: usize, len: usize) -> usize {
    if rows < 128 && len >= 256 {
        16
    } else {
        1
    }
}

/// Lanes per output of a strided mean (token and spatial means over `len` elements, `outputs`
/// of them): lanes keep a GPU busy for few long reductions. A CPU device takes one invocation
/// per output: it loses to the barriers (lavapipe, 64 × 3136: 0.25 ms with a reduction per
/// invocation, 0.28 ms with 16 lanes; 2048 × 49: 0.16 ms vs 1.0 ms), and SwiftShader runs a
/// barrier as a switch between the workgroup's coroutines (accvit-digits' five token means, AMD
/// EPYC: 0.74–0.81 ms with 16 lanes, 0.25–0.35 ms with one; lavapipe 0.12–0.18 → 0.07–0.11 ms).
pub fn mean_lanes(profile: &DeviceProfile, outputs: usize, len: usize) -> usize {
    if !profile.is_cpu_like() && outputs < 512 && len >= 256 {
        16
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_like_gemm_workgroups_fit_narrow_outputs() {
        let lavapipe = DeviceProfile { name: "llvmpipe (LLVM 15.0.6, 256 bits)".into(), ..DeviceProfile::cpu_like() };
        let small = matmul_tiling(&lavapipe, 0);
        // LaViT's last-stage channel-major projection: 128 channels by 4 tokens.
        assert_eq!(gemm_launch(&lavapipe, &small, 128, 4), GemmLaunch { lanes_n_log2: 0, tiles_m: 1, tiles_n: 1 });
        // Its fc1 at 4 tokens: one row of tiles, every invocation along N.
        assert_eq!(gemm_launch(&lavapipe, &small, 4, 512), GemmLaunch { lanes_n_log2: 6, tiles_m: 1, tiles_n: 2 });
        assert_eq!(gemm_launch(&lavapipe, &small, 256, 16), GemmLaunch { lanes_n_log2: 2, tiles_m: 4, tiles_n: 1 });
        // lavapipe's mid-size GEMMs (0.25-4 MFLOP) take 8 x 8 outputs, fitted the same way:
        // accvit-digits' stage-3 fc1 (16 tokens x 64 -> 512) is 2 row tiles.
        let mid = matmul_tiling(&lavapipe, 2 * 16 * 64 * 512);
        assert_eq!((mid.tm, mid.tn), (8, 8));
        assert_eq!((matmul_tiling(&lavapipe, LAVAPIPE_MID_GEMM_FLOPS - 1).tm, matmul_tiling(&lavapipe, SMALL_GEMM_FLOPS).tm), (4, 16));
        assert_eq!(gemm_launch(&lavapipe, &mid, 16, 512), GemmLaunch { lanes_n_log2: 5, tiles_m: 1, tiles_n: 2 });
        // 8 rows of tiles: 8 invocations along M, the rest along N.
        assert_eq!(gemm_launch(&lavapipe, &small, 32, 512), GemmLaunch { lanes_n_log2: 3, tiles_m: 1, tiles_n: 16 });
        assert_eq!(gemm_launch(&lavapipe, &small, 8, 512), GemmLaunch { lanes_n_log2: 5, tiles_m: 1, tiles_n: 4 });
        // lavapipe's 16-row tiles launch the fewest invocations (workgroups of 4 x 8): 3136
        // tokens are 196 row tiles, covered exactly by 4 invocations along M.
        // 16 x 8 (a padded-patch conv below 32 MFLOP; an implicit-GEMM conv stays 8 pixels wide):
        let large = conv_patches_tiling(&lavapipe, SMALL_CONV_FLOPS - 1);
        assert_eq!((large.tm, large.tn), (16, 8));
        assert_eq!(LAVAPIPE_LARGE_GEMM_FLOPS, SMALL_GEMM_FLOPS);
        assert_eq!(conv_patches_tiling(&lavapipe, SMALL_CONV_FLOPS).tn, 16);
        assert_eq!(gemm_launch(&lavapipe, &large, 3136, 1536), GemmLaunch { lanes_n_log2: 3, tiles_m: 49, tiles_n: 24 });
        let huge = matmul_tiling(&lavapipe, LAVAPIPE_LARGE_GEMM_FLOPS);
        assert_eq!((huge.tm, huge.tn, huge.wg_m * huge.wg_n), (16, 16, 32));
        // The element-wise kernel keeps 16 x 8 below 32 MFLOP (its 16 x 16 pipelines' JIT).
        assert_eq!(gemm_tiling(&lavapipe, SMALL_CONV_FLOPS - 1, false).tn, 8);
        assert_eq!(gemm_tiling(&lavapipe, SMALL_CONV_FLOPS, false).tn, 16);
        assert_eq!(gemm_tiling(&lavapipe, SMALL_GEMM_FLOPS, true).tn, 16);
        assert_eq!(gemm_launch(&lavapipe, &huge, 3136, 1536), GemmLaunch { lanes_n_log2: 3, tiles_m: 49, tiles_n: 12 });
        // vvt-tiny's qkv (3136 tokens -> 144: 9 column tiles), one invocation along N instead of
        // 8 of which 7 cover one column tile; hatnet-tiny's 48 channels (3 row tiles) by 3136
        // pixels: one invocation along M instead of 4.
        assert_eq!(gemm_launch(&lavapipe, &huge, 3136, 144), GemmLaunch { lanes_n_log2: 0, tiles_m: 7, tiles_n: 9 });
        assert_eq!(gemm_launch(&lavapipe, &huge, 48, 3136), GemmLaunch { lanes_n_log2: 5, tiles_m: 3, tiles_n: 7 });
        assert_eq!(conv_gemm_tiling(&lavapipe, u64::MAX, 96).tn, 8);
        assert!(!gemm_store_loop(&lavapipe, 16, 16) && !gemm_store_loop(&DeviceProfile::cpu_like(), 16, 16));
        // LaViT-tiny's first spatial reduction (49 tokens x 4096 -> 64: 32 tiles of 16 x 8) in
        // 8 shares; enough tiles, a small GEMM or another device: none; K caps the shares.
        assert_eq!(gemm_k_splits(&lavapipe, 32, 4096, 25_000_000), 8);
        assert_eq!(gemm_k_splits(&lavapipe, 128, 4096, 25_000_000), 1);
        assert_eq!(gemm_k_splits(&lavapipe, 32, 4096, SMALL_GEMM_FLOPS - 1), 1);
        assert_eq!(gemm_k_splits(&DeviceProfile::cpu_like(), 32, 4096, 25_000_000), 1);
        assert_eq!(gemm_k_splits(&lavapipe, 8, 1000, 25_000_000), 3);
        let swiftshader = DeviceProfile { name: "SwiftShader Device (Subzero)".into(), ..DeviceProfile::cpu_like() };
        let large = matmul_tiling(&swiftshader, u64::MAX);
        assert_eq!((large.tm, large.tn), (8, 8));
        assert_eq!(gemm_launch(&swiftshader, &large, 3136, 1536), GemmLaunch { lanes_n_log2: 3, tiles_m: 49, tiles_n: 24 });
        // hatnet-tiny's 48-channel outputs (6 row tiles): 2 invocations along M, 32 along N,
        // instead of 8 rows of invocations of which 2 lie past the edge.
        assert_eq!(gemm_launch(&swiftshader, &large, 48, 3136), GemmLaunch { lanes_n_log2: 5, tiles_m: 3, tiles_n: 13 });
        // 96 channels (12 row tiles) by 784 pixels (98 column tiles): 4 along M, 16 along N.
        assert_eq!(gemm_launch(&swiftshader, &large, 96, 784), GemmLaunch { lanes_n_log2: 4, tiles_m: 3, tiles_n: 7 });
        assert_eq!(matmul_tiling(&DeviceProfile::gpu_like(), u64::MAX).tm, 16);
        // SwiftShader's small GEMMs take 16-invocation workgroups: the last stage's 4 tokens by
        // 128 channels fill two of them, not half of one.
        let small = matmul_tiling(&swiftshader, 0);
        assert_eq!((small.wg_m, small.wg_n), (4, 4));
        assert_eq!(gemm_launch(&swiftshader, &small, 4, 128), GemmLaunch { lanes_n_log2: 4, tiles_m: 1, tiles_n: 2 });
        assert_eq!(gemm_launch(&lavapipe, &matmul_tiling(&lavapipe, 0), 4, 128), GemmLaunch { lanes_n_log2: 5, tiles_m: 1, tiles_n: 1 });
        // GPUs keep the declared workgroup shape.
        let gpu = DeviceProfile::gpu_like();
        assert_eq!(gemm_launch(&gpu, &matmul_tiling(&gpu, 0), 128, 4), GemmLaunch { lanes_n_log2: 3, tiles_m: 4, tiles_n: 1 });
    }

    #[test]
    fn group_norms_on_swiftshader_take_fewer_pipelines() {
        let lavapipe = DeviceProfile { name: "llvmpipe (LLVM 15.0.6, 256 bits)".into(), ..DeviceProfile::cpu_like() };
        let swiftshader = DeviceProfile { name: "SwiftShader Device (Subzero)".into(), ..DeviceProfile::cpu_like() };
        let gpu = DeviceProfile::gpu_like();
        assert!(group_norm_fuses_input_add(&lavapipe, 48 * 3136) && group_norm_fuses_input_add(&gpu, 48 * 3136));
        assert!(!group_norm_fuses_input_add(&swiftshader, 48 * 3136));
        assert!(group_norm_fuses_input_add(&swiftshader, 64 * 49));
        // HAT-Net-tiny's last stage at 224: one chunk on the CPU devices, 4096-element chunks on GPUs.
        for cpu in [&lavapipe, &swiftshader] {
            assert_eq!(group_norm_chunk(cpu, 384 * 49), 384 * 49);
            assert_eq!(group_norm_chunk(cpu, 96 * 784), super::super::groupnorm::CHUNK);
        }
        assert_eq!(group_norm_chunk(&gpu, 384 * 49), super::super::groupnorm::CHUNK);
    }

    #[test]
    fn small_convs_of_up_to_16_channels_cover_them_all_on_lavapipe() {
        let lavapipe = DeviceProfile { name: "llvmpipe (LLVM 15.0.6, 256 bits)".into(), ..DeviceProfile::cpu_like() };
        let swiftshader = DeviceProfile { name: "SwiftShader Device (Subzero)".into(), ..DeviceProfile::cpu_like() };
        let tile = |p: &DeviceProfile, flops: u64, channels: usize| {
            let t = conv_gemm_tiling(p, flops, channels);
            (t.tm, t.tn)
        };
        assert_eq!(tile(&lavapipe, 4_700_000, 16), (16, 4));
        assert_eq!(tile(&lavapipe, 4_700_000, 32), (8, 4));
        assert_eq!(tile(&lavapipe, SMALL_CONV_FLOPS, 16), (16, 8));
        // SwiftShader: the matmuls' tile (the 3 × 3 convs' pipeline serves small convs too).
        assert_eq!(tile(&swiftshader, 4_700_000, 16), (8, 8));
        assert_eq!(tile(&swiftshader, 1_000_000, 16), (8, 4));
    }
}
