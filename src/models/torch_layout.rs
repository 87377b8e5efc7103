//! PyTorch tensor layouts turned into the layouts the kernels read, once, on the host: folded
//! BatchNorms, channel-last conv weights, gathered relative-position tables. Pure functions of
//! the checkpoint's tensors; their results become graph constants keyed by what they were made
//! from (e.g. `stem.conv1.weight+stem.bn1`).

/// BatchNorm (inference) folded into the preceding conv: returns (weight', bias') with
/// `w' = w · γ/√(var+ε)` per output channel and `b' = (b − mean) · γ/√(var+ε) + β`
/// (computed in f64, rounded once).
#[allow(clippy::too_many_arguments)]
pub fn fold_batchnorm(weight: &[f32], bias: Option<&[f32]>, cout: usize, gamma: &[f32], beta: &[f32], mean: &[f32], var: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let per_channel = weight.len() / cout.max(1);
    let mut w = weight.to_vec();
    let mut b = vec![0f32; cout];
    for o in 0..cout {
        let scale = gamma[o] as f64 / (var[o] as f64 + eps as f64).sqrt();
        for v in &mut w[o * per_channel..(o + 1) * per_channel] {
            *v = (*v as f64 * scale) as f32;
        }
        let b0 = bias.map_or(0.0, |b| b[o] as f64);
        b[o] = ((b0 - mean[o] as f64) * scale + beta[o] as f64) as f32;
    }
    (w, b)
}

/// The `[NB, 3, 3, C]` weights of `ops::family::atrous_dwconv` from one PyTorch depthwise
/// weight `[C, 1, 3, 3]` per branch, each channel scaled by `scale[c]` (a folded BatchNorm; pass
/// an empty slice for none).
pub fn atrous_dwconv_weights(branches: &[&[f32]], c: usize, scale: &[f32]) -> Vec<f32> {
    let mut out = vec![0f32; branches.len() * 9 * c];
    for (i, w) in branches.iter().enumerate() {
        for ch in 0..c {
            let s = scale.get(ch).map_or(1.0, |&s| s as f64);
            for t in 0..9 {
                out[(i * 9 + t) * c + ch] = (w[ch * 9 + t] as f64 * s) as f32;
            }
        }
    }
    out
}

/// The `[nb, heads, (2·win − 1)²]` table of `ops::family::atrous_attention` from the branches'
/// PyTorch relative-position tables `[(2·win − 1)², heads]`.
pub fn atrous_attention_table(tables: &[&[f32]], heads: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(tables.iter().map(|t| t.len()).sum());
    for t in tables {
        let n = t.len() / heads.max(1);
        for h in 0..heads {
            out.extend((0..n).map(|i| t[i * heads + h]));
        }
    }
    out
}

/// A conv weight `[Cout, Cin, kh, kw]` (PyTorch) as `[Cout, kh, kw, Cin]`: the patch order of a
/// channel-last input (LaViT's patchify GEMM on tokens).
pub fn conv_weight_ohwi(weight: &[f32], cout: usize, cin: usize, (kh, kw): (usize, usize)) -> Vec<f32> {
    let mut ohwi = vec![0f32; weight.len()];
    debug_assert_eq!(weight.len(), cout * cin * kh * kw);
    for (i, &v) in weight.iter().enumerate() {
        let (kx, r) = (i % kw, i / kw);
        let (ky, r) = (r % kh, r / kh);
        let (ci, co) = (r % cin, r / cin);
        ohwi[((co * kh + ky) * kw + kx) * cin + ci] = v;
    }
    ohwi
}

/// Swin's relative position bias for `window × window` windows, gathered: `[heads, n, n]` with
/// `bias[h, i, j] = table[index(i, j), h]`, `index` the offset `(Δrow, Δcol)` between window
/// tokens `i` and `j`, each shifted into `0..2·window−1`; `table` is `[(2·window−1)², heads]`.
pub fn relative_position_bias(table: &[f32], window: usize, heads: usize) -> Vec<f32> {
    let span = 2 * window - 1;
    let n = window * window;
    let mut bias = vec![0f32; heads * n * n];
    for i in 0..n {
        for j in 0..n {
            let dy = i / window + window - 1 - j / window;
            let dx = i % window + window - 1 - j % window;
            let index = dy * span + dx;
            for hd in 0..heads {
                bias[(hd * n + i) * n + j] = table[index * heads + hd];
            }
        }
    }
    bias
}
