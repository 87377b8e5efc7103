//! Attention maps ("explain"): what each attention layer of a forward looked at.
//!
//! A family's builder attaches a [`Probe`] to the graph for every attention it computes. A probe
//! names the intermediate tensors of the real forward it reads (the q and k projections, a stored
//! probability matrix, gate logits) and turns them, on the host, into one map of the head-mean
//! attention matrix `A[query, key]` of that layer:
//! - received (no query): `map[k] = mean over queries q of A[q, k]`, the attention each key
//!   position receives (a distribution over the key grid for softmax attention);
//! - for one query `q`: `map[k] = A[q, k]`.
//!
//! The explain graph ([`crate::graph::Graph::promote_probes`]) reads those tensors back with the
//! logits; the normal forward reads none of them and is unchanged. What each family maps is
//! documented in README ("Explain: attention maps"); `tools/reference/explain.py` computes the
//! same maps in PyTorch.
//!
//! The **summary** of an image is the mean, over its attention maps (gate maps excluded), of each
//! map spread over the `H × W` input pixels by mass (pixel `(y, x)` belongs to key cell
//! `(y·hk / H, x·wk / W)` and takes the cell's value divided by the cell's pixel count),
//! normalised to sum to 1.

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::graph::TensorId;

/// Computes a probe's map from its tensors (batch 0 of each, in [`Probe::inputs`] order) for the
/// received mode (`None`) or one query (its index on the query grid), on the key grid: one map
/// per head (a gate: one map).
pub type ProbeFn = dyn Fn(&[&[f32]], Option<usize>) -> Vec<Vec<f64>> + Send + Sync;

/// One attention map a graph can produce.
#[derive(Clone)]
pub struct Probe {
    /// The layer's checkpoint path, e.g. `blocks.0.1.attn.local`.
    pub name: String,
    /// (rows, columns) of the query positions, row-major.
    pub query_grid: (usize, usize),
    /// (rows, columns) of the key positions the map covers, row-major.
    pub key_grid: (usize, usize),
    /// An attention distribution (part of the summary), or a per-position weight (a gate).
    pub attention: bool,
    pub inputs: Vec<TensorId>,
    pub map: Arc<ProbeFn>,
}

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probe")
            .field("name", &self.name)
            .field("query_grid", &self.query_grid)
            .field("key_grid", &self.key_grid)
            .field("attention", &self.attention)
            .field("inputs", &self.inputs)
            .finish()
    }
}

impl Probe {
    pub fn new(
        name: impl Into<String>,
        query_grid: (usize, usize),
        key_grid: (usize, usize),
        attention: bool,
        inputs: Vec<TensorId>,
        map: impl Fn(&[&[f32]], Option<usize>) -> Vec<Vec<f64>> + Send + Sync + 'static,
    ) -> Self {
        Self { name: name.into(), query_grid, key_grid, attention, inputs, map: Arc::new(map) }
    }
}

/// A map over a grid, row-major; values non-negative and finite. `values` is the mean over the
/// layer's heads; `heads` holds each head's map when there are several.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AttentionMap {
    pub name: String,
    pub height: usize,
    pub width: usize,
    pub values: Vec<f32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub heads: Vec<Vec<f32>>,
}

/// Every attention map of one image, and their summary over the input pixels.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Explanation {
    pub maps: Vec<AttentionMap>,
    pub summary: AttentionMap,
}

/// The cell of a `grid` that input pixel `(x, y)` of an `(h, w)` input falls in, as a row-major index.
pub fn query_cell((x, y): (usize, usize), (h, w): (usize, usize), (gh, gw): (usize, usize)) -> usize {
    let row = (y * gh / h.max(1)).min(gh.saturating_sub(1));
    let col = (x * gw / w.max(1)).min(gw.saturating_sub(1));
    row * gw + col
}

/// The maps of `probes` and their summary. `tensor` gives batch 0 of a probe input; `input` is
/// the image's (H, W); `query` a pixel `(x, y)` inside it, or `None` for the received maps.
pub fn explain<'a>(probes: &[Probe], tensor: impl Fn(TensorId) -> Result<&'a [f32]>, input: (usize, usize), query: Option<(usize, usize)>) -> Result<Explanation> {
    if let Some((x, y)) = query {
        if x >= input.1 || y >= input.0 {
            return Err(Error::Invalid(format!(
                "--query {x},{y} is outside the model's {}x{} input (x must be below {}, y below {})",
                input.1, input.0, input.1, input.0
            )));
        }
    }
    let mut maps = Vec::with_capacity(probes.len());
    let mut summary = vec![0f64; input.0 * input.1];
    let mut summed = 0usize;
    for probe in probes {
        let views = probe.inputs.iter().map(|&t| tensor(t)).collect::<Result<Vec<&[f32]>>>()?;
        let q = query.map(|px| query_cell(px, input, probe.query_grid));
        let heads = (probe.map)(&views, q);
        let (kh, kw) = probe.key_grid;
        if heads.is_empty() || heads.iter().any(|h| h.len() != kh * kw) {
            return Err(Error::Graph(format!("attention map {}: {} heads of a {kh}x{kw} grid expected", probe.name, heads.len())));
        }
        let values: Vec<f64> = (0..kh * kw).map(|k| heads.iter().map(|h| h[k]).sum::<f64>() / heads.len() as f64).collect();
        if let Some(bad) = heads.iter().flatten().find(|v| !v.is_finite() || **v < 0.0) {
            return Err(Error::Invalid(format!(
                "attention map {}: expected non-negative finite values, found {bad} (the forward produced non-finite activations)",
                probe.name
            )));
        }
        if probe.attention {
            spread_add(&values, probe.key_grid, input, &mut summary);
            summed += 1;
        }
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let heads = if heads.len() > 1 { heads.iter().map(|h| f32s(h)).collect() } else { Vec::new() };
        maps.push(AttentionMap { name: probe.name.clone(), height: kh, width: kw, values: f32s(&values), heads });
    }
    let total: f64 = summary.iter().sum();
    let uniform = 1.0 / summary.len().max(1) as f64;
    let values = summary.iter().map(|&v| if summed > 0 && total > 0.0 { v / total } else { uniform } as f32).collect();
    Ok(Explanation { maps, summary: AttentionMap { name: "summary".into(), height: input.0, width: input.1, values, heads: Vec::new() } })
}

/// Adds `map` (on `grid`) to `out` (an `(h, w)` pixel grid), each cell's value spread evenly over
/// the pixels that fall in it.
fn spread_add(map: &[f64], (gh, gw): (usize, usize), (h, w): (usize, usize), out: &mut [f64]) {
    let row_of = |y: usize| y * gh / h;
    let col_of = |x: usize| x * gw / w;
    let mut rows = vec![0usize; gh];
    let mut cols = vec![0usize; gw];
    (0..h).for_each(|y| rows[row_of(y)] += 1);
    (0..w).for_each(|x| cols[col_of(x)] += 1);
    for y in 0..h {
        for x in 0..w {
            let (r, c) = (row_of(y), col_of(x));
            out[y * w + x] += map[r * gw + c] / (rows[r] * cols[c]) as f64;
        }
    }
}

/// The per-head softmax attention maps of `nq` queries over `nk` keys: query `q` attends to the
/// keys `keys(q)` with scores `logit(head, q, k)`.
pub fn softmax_map(
    (nq, nk, heads): (usize, usize, usize),
    query: Option<usize>,
    keys: impl Fn(usize) -> Vec<usize>,
    logit: impl Fn(usize, usize, usize) -> f64,
) -> Vec<Vec<f64>> {
    let mut maps = vec![vec![0f64; nk]; heads];
    let queries: Vec<usize> = match query {
        Some(q) => vec![q],
        None => (0..nq).collect(),
    };
    let weight = 1.0 / queries.len() as f64;
    let mut scores = Vec::new();
    for &q in &queries {
        let ks = keys(q);
        for (h, map) in maps.iter_mut().enumerate() {
            scores.clear();
            scores.extend(ks.iter().map(|&k| logit(h, q, k)));
            let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = scores.iter().map(|s| (s - max).exp()).sum();
            for (&k, s) in ks.iter().zip(&scores) {
                map[k] += weight * (s - max).exp() / sum;
            }
        }
    }
    maps
}

/// The per-head maps of stored probabilities `[heads, nq, row]`: the first `nk` of a row are its
/// keys, the rest padding (LaViT pads its keys to a multiple of 4).
pub fn probability_map(probs: &[f32], (nq, nk, heads): (usize, usize, usize), row: usize, query: Option<usize>) -> Vec<Vec<f64>> {
    let queries: Vec<usize> = match query {
        Some(q) => vec![q],
        None => (0..nq).collect(),
    };
    let weight = 1.0 / queries.len() as f64;
    (0..heads)
        .map(|h| {
            let mut map = vec![0f64; nk];
            for &q in &queries {
                let keys = &probs[(h * nq + q) * row..][..nk];
                map.iter_mut().zip(keys).for_each(|(m, &p)| *m += weight * p as f64);
            }
            map
        })
        .collect()
}

/// Dot product in f64.
pub fn dot(a: impl Iterator<Item = f32>, b: impl Iterator<Item = f32>) -> f64 {
    a.zip(b).map(|(x, y)| x as f64 * y as f64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreading_keeps_mass_on_uneven_grids() {
        let map = [0.1, 0.2, 0.3, 0.4, 0.0, 0.0];
        let mut out = vec![0.0; 7 * 5];
        spread_add(&map, (2, 3), (7, 5), &mut out);
        assert!((out.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn query_cells_cover_the_grid() {
        assert_eq!(query_cell((0, 0), (64, 64), (16, 16)), 0);
        assert_eq!(query_cell((63, 63), (64, 64), (16, 16)), 255);
        assert_eq!(query_cell((21, 32), (64, 64), (4, 4)), 2 * 4 + 1);
    }

    #[test]
    fn softmax_rows_sum_to_one() {
        let m = softmax_map((3, 3, 2), None, |_| vec![0, 1, 2], |h, q, k| (h + q * k) as f64);
        assert!(m.iter().all(|head| (head.iter().sum::<f64>() - 1.0).abs() < 1e-12));
        let m = softmax_map((3, 3, 2), Some(1), |_| vec![1, 2], |_, _, k| k as f64);
        assert!((m[1][2] - 1.0 / (1.0 + (-1f64).exp())).abs() < 1e-12 && m[1][0] == 0.0);
    }
}
