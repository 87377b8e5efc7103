#!/usr/bin/env python3
"""Attention maps of the four families (the PyTorch twin of `wgvit explain`).

    import sys; sys.path.insert(0, "tools/reference")
    from explain import explain_maps
    maps, summary = explain_maps("hatnet", model, x, None)        # received mode
    maps, summary = explain_maps("hatnet", model, x, (21, 32))    # query mode, (X, Y) in pixels
    maps, summary, head_maps = explain_maps("hatnet", model, x, None, heads=True)  # + per head

`model` is the family's reference network (tools/reference/{hatnet,vvt}.py, or the contract's
AccViTR / LaViTR) with its weights loaded; `explain_maps` switches it to float64 and eval mode in
place. `x` is one image [1, 3, H, W]. The result is the ordered list of (map name, map
[hk, wk] float64) and the summary [H, W] float64. With heads=True (default False: the return
is unchanged) a third item is added: the ordered list of (map name, per-head maps [heads, hk, wk]
float64) of every attention map (not the ACC-ViT gate maps), in the order of the first list.
`reduce_head_maps(captured, query, input_hw)` gives the same list from `capture`'s result.
tools/make_explain_fixtures.py writes the engine's test fixtures with it.

The maps are read off the forward itself: forward hooks (and pre-hooks) on the attention modules
and their projection layers record the tensors the forward computes (q/k projections, the
returned attention of LaViT, the gate logits of ACC-ViT), and the attention probabilities are
formed from them with the module's own constants (scale, relative-position bias, angle tables).
The hooks return nothing, so the forward is unchanged; `capture` also checks, for every
attention, that the probabilities it forms reproduce the module's own attention output.

Definitions (the engine implements the same). "Head mean" = mean over heads of the attention
probabilities. Each attention map is a matrix A[q, k] over a query grid (hq x wq, row-major) and
a key grid (hk x wk, row-major).
  received mode (no query): map[k] = mean over all queries q of A[q, k]
  query mode, (X, Y) in input pixels of an H x W input: the query cell is
      (qy, qx) = (min(hq-1, Y*hq // H), min(wq-1, X*wq // W)); map[k] = A[qy*wq + qx, k]
  summary: mean over every attention map (not the ACC-ViT gate maps) of the map spread over the
      H x W input grid by mass (pixel (y, x) belongs to cell (y*hk // H, x*wk // W) and gets
      map[cell] / (number of pixels of that cell)), divided by its total (uniform 1/(H*W) when
      the total is 0). Query mode uses the query-mode maps, received mode the received maps.
  per-head maps: the same definitions without the head mean: the map of head h uses only head h's
      probabilities A_h[q, k] (received: mean over queries of A_h[q, k]; query: A_h[query cell, k]),
      so the head-mean map is the mean over heads of the per-head maps. Every attention map has
      them (the gate maps have no heads). The heads of a map are the heads of the attention it is
      read off (per family below: HAT-Net's HMHSA, VVT's VicinityAttention, each ACC-ViT branch,
      the heads axis of LaViT's returned attention [B, heads, N, M]), in their channel order.
Per family (names are the checkpoint module paths):
  hatnet  blocks.{s}.{j}.attn.local   softmax attention inside each G x G cell (0 across cells),
                                      query and key grid: the stage map h x w
          blocks.{s}.{j}.attn.global  every position (h x w) to the r x r pooled tokens
                                      (key grid h/r x w/r)
          blocks.{s}.{j}.attn         (grid 1 stages) plain attention over all tokens
  vvt     block{i}.{j}.attn           the linear attention's effective weights,
                                      A[q, k] = phi_q[q].phi_k[k] / sum_k' phi_q[q].phi_k[k']
                                      (a row with denominator 0 is all zeros), before the
                                      magnitude clamps and DEN_EPS; grids: the stage grid;
                                      per head: A_h[q, k] = phi_q_h[q].phi_k_h[k] /
                                      sum_k' phi_q_h[q].phi_k_h[k'] (zero row if 0); A = mean_h A_h
  accvit  stages.{s}.blocks.{j}.attn.branches.{i}  softmax(scale q.k + rel_bias) inside each
                                      dilated window (dilation 2**i), 0 across windows; grids:
                                      the stage map
          stages.{s}.blocks.{j}.attn.gate.{i}      the gate's softmax weight of branch i at
                                      every position (only with more than one branch; the same
                                      in both modes; not in the summary)
  lavit   stages.{m}.layers.{l}.attn  "va": the attention it returns (softmax of its logits,
                                      residual from the previous stage included); "la":
                                      softmax(t, dim=-1) of the transformed attention t;
                                      query grid: the stage's token grid, key grid: the reduced
                                      grid (h // sr) x (w // sr)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

FAMILIES = ("hatnet", "vvt", "accvit", "lavit")
CHECK_TOL = 1e-9  # float64: recomputed attention outputs agree with the forward's to ~1e-15


@dataclass
class Captured:
    """One map's raw data. kind "attention": `matrix` is A [hq*wq, hk*wk] (head mean), `heads`
    the per-head A_h [heads, hq*wq, hk*wk] (matrix = heads.mean(0), up to rounding: `matrix` is
    computed as before, by the head mean in torch); kind "gate": `matrix` is the map itself
    [hk, wk] (query and key grid are the same), `heads` None."""

    name: str
    kind: str
    query_grid: tuple[int, int]
    key_grid: tuple[int, int]
    matrix: np.ndarray
    heads: np.ndarray | None = None


# ---------------------------------------------------------------------------------------- helpers

def _record(store: dict, key: str):
    """Forward hook storing the module output in store[key]."""
    def hook(_mod, _inp, out):
        store[key] = out
    return hook


def _record_input(store: dict, key: str):
    """Forward pre-hook storing the positional inputs in store[key]."""
    def hook(_mod, args):
        store[key] = args
    return hook


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy().copy()


def _check(name: str, what: str, mine: torch.Tensor, forward: torch.Tensor):
    err = (mine - forward).abs().max().item()
    scale = max(1.0, forward.abs().max().item())
    if not err <= CHECK_TOL * scale:
        raise AssertionError(f"{name}: recomputed {what} differs from the forward's by {err:.3e}")


def _class_name(m) -> str:
    return type(m).__name__


# ---------------------------------------------------------------------------------------- HAT-Net

def _hatnet_hooks(model, entries, handles):
    for name, m in model.named_modules():
        if _class_name(m) != "HMHSA":
            continue
        st = {}
        entries.append((name, m, st))
        handles.append(m.register_forward_pre_hook(_record_input(st, "x")))
        handles.append(m.qkv.register_forward_hook(_record(st, "qkv")))
        handles.append(m.proj.register_forward_pre_hook(_record_input(st, "proj_in")))
        if m.grid > 1:
            handles.append(m.grid_norm.register_forward_pre_hook(_record_input(st, "grid_in")))
            handles.append(m.grid_norm.register_forward_hook(_record(st, "grid_x")))
            handles.append(m.q.register_forward_hook(_record(st, "q2")))
            handles.append(m.kv.register_forward_hook(_record(st, "kv")))


def _hatnet_maps(name, m, st) -> list[Captured]:
    qkv = st["qkv"]
    b, c3, h, w = qkv.shape
    c = c3 // 3
    q, k, v = m._heads(qkv[:, :c]), m._heads(qkv[:, c:2 * c]), m._heads(qkv[:, 2 * c:])  # [1, heads, N, d]
    logits = (q * m.scale) @ k.transpose(-2, -1)                                          # [1, heads, N, N]

    def merge(o):  # [1, heads, N, d] -> [1, C, h, w] (channel = head * d + lane)
        return o.transpose(-2, -1).reshape(b, c, h, w)

    if m.grid == 1:
        p = torch.softmax(logits, dim=-1)
        _check(name, "attention output", merge(p @ v), st["proj_in"][0])
        return [Captured(name, "attention", (h, w), (h, w), _np(p.mean(dim=1)[0]), _np(p[0]))]

    # Local: softmax inside each G x G cell, as a full N x N matrix (0 across cells).
    g = m.grid
    n = torch.arange(h * w)
    cell = (n // w // g) * (w // g) + (n % w) // g
    same = cell[:, None] == cell[None, :]
    p_local = torch.softmax(logits.masked_fill(~same, float("-inf")), dim=-1)
    _check(name, "local attention output", merge(p_local @ v), st["grid_in"][0] - st["x"][0])

    # Global: every position to the pooled tokens.
    q2 = m._heads(st["q2"])
    kv = st["kv"]
    hp, wp = kv.shape[-2:]
    k2, v2 = m._heads(kv[:, :c]), m._heads(kv[:, c:])
    p_global = torch.softmax((q2 * m.scale) @ k2.transpose(-2, -1), dim=-1)              # [1, heads, N, hp*wp]
    _check(name, "global attention output", merge(p_global @ v2), st["proj_in"][0] - st["grid_x"])

    return [
        Captured(f"{name}.local", "attention", (h, w), (h, w), _np(p_local.mean(dim=1)[0]), _np(p_local[0])),
        Captured(f"{name}.global", "attention", (h, w), (hp, wp), _np(p_global.mean(dim=1)[0]), _np(p_global[0])),
    ]


# ---------------------------------------------------------------------------------------- VVT

def _vvt_hooks(model, entries, handles):
    for name, m in model.named_modules():
        if _class_name(m) != "VicinityAttention":
            continue
        st = {}
        entries.append((name, m, st))
        handles.append(m.register_forward_pre_hook(_record_input(st, "args")))  # (u, h, w)
        handles.append(m.q_proj.register_forward_hook(_record(st, "q")))
        handles.append(m.k_proj.register_forward_hook(_record(st, "k")))
        handles.append(m.v_proj.register_forward_hook(_record(st, "v")))
        handles.append(m.out_proj.register_forward_pre_hook(_record_input(st, "o")))


def _vvt_maps(name, m, st) -> list[Captured]:
    import vvt

    u, h, w = st["args"][:3]
    b, n, c = u.shape
    d = c // m.heads // m.fr

    def split(t):  # [B, N, heads*d] -> [B, heads, N, d], as the reference
        return t.reshape(b, n, m.heads, d).transpose(1, 2)

    q, k, v = split(F.relu(st["q"])), split(F.relu(st["k"])), split(st["v"])
    alpha, beta = vvt.angle_tables(h, w)
    trig = [f(a).to(u.dtype).reshape(1, 1, n, 1) for a in (alpha.to(u.dtype), beta.to(u.dtype)) for f in (torch.cos, torch.sin)]
    phi_q = torch.cat([q * t for t in trig], dim=-1)  # [B, heads, N, 4d]
    phi_k = torch.cat([k * t for t in trig], dim=-1)

    # Check phi against the forward: the reference's clamped linear attention from these phi
    # must give exactly the out_proj input the forward computed.
    cm = vvt.clampmag
    kv = cm(phi_k.transpose(-1, -2) @ v)
    z = cm(1 / ((phi_q * phi_k.sum(dim=2, keepdim=True)).sum(dim=-1) + vvt.DEN_EPS))
    o = cm(cm(phi_q @ kv) * z.unsqueeze(-1)).transpose(1, 2).reshape(b, n, m.heads * d)
    _check(name, "linear attention output", o, st["o"][0])

    s = phi_q @ phi_k.transpose(-1, -2)                 # [B, heads, N, N], all >= 0
    den = s.sum(dim=-1, keepdim=True)
    a = torch.where(den > 0, s / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(s))
    return [Captured(name, "attention", (h, w), (h, w), _np(a.mean(dim=1)[0]), _np(a[0]))]


# ---------------------------------------------------------------------------------------- ACC-ViT

def _accvit_hooks(model, entries, handles):
    for name, m in model.named_modules():
        if _class_name(m) != "AtrousAttention":
            continue
        st = {}
        entries.append((name, m, st))
        handles.append(m.register_forward_pre_hook(_record_input(st, "x")))
        for i, br in enumerate(m.branches):
            handles.append(br.qkv.register_forward_hook(_record(st, f"qkv{i}")))
            handles.append(br.proj.register_forward_pre_hook(_record_input(st, f"o{i}")))
        if m.gate is not None:
            handles.append(m.gate.register_forward_hook(_record(st, "gate")))


def _accvit_maps(name, m, st) -> list[Captured]:
    from contract_loader import load_contract
    contract = load_contract()

    x = st["x"][0]
    _, hh, ww, _ = x.shape
    out = []
    for i, (d, br) in enumerate(zip(m.dilations, m.branches)):
        qkv = st[f"qkv{i}"]
        nwin, L, c3 = qkv.shape
        c = c3 // 3
        t = qkv.view(nwin, L, 3, br.heads, c // br.heads).permute(2, 0, 3, 1, 4)
        q, k, v = t[0], t[1], t[2]                                                     # [nWin, heads, L, hd]
        logits = (q * br.scale) @ k.transpose(-1, -2)
        bias = br.rel_bias[br.rel_idx.reshape(-1)].view(L, L, br.heads).permute(2, 0, 1)
        p = (logits + bias.unsqueeze(0)).softmax(dim=-1)                               # [nWin, heads, L, L]
        _check(f"{name}.branches.{i}", "window attention output", (p @ v).transpose(1, 2).reshape(nwin, L, c), st[f"o{i}"][0])

        # Window token -> flat position on the H x W map, by the contract's own partition.
        pos = torch.arange(hh * ww, dtype=torch.float64).view(1, hh, ww, 1)
        pos = contract.dilated_partition(pos, m.w, d).reshape(nwin, L).round().long()
        assert torch.equal(pos.flatten().sort().values, torch.arange(hh * ww)), "dilated windows must tile the map"
        a = torch.zeros(hh * ww, hh * ww, dtype=torch.float64)
        a[pos[:, :, None], pos[:, None, :]] = p.mean(dim=1).to(torch.float64)
        a_h = torch.zeros(br.heads, hh * ww, hh * ww, dtype=torch.float64)             # per head
        a_h[:, pos[:, :, None], pos[:, None, :]] = p.transpose(0, 1).to(torch.float64)
        out.append(Captured(f"{name}.branches.{i}", "attention", (hh, ww), (hh, ww), _np(a), _np(a_h)))
    if m.gate is not None:
        g = st["gate"].softmax(dim=-1)[0]                                              # [H, W, nb]
        for i in range(len(m.branches)):
            out.append(Captured(f"{name}.gate.{i}", "gate", (hh, ww), (hh, ww), _np(g[..., i])))
    return out


# ---------------------------------------------------------------------------------------- LaViT

def _lavit_hooks(model, entries, handles):
    for name, m in model.named_modules():
        if _class_name(m) not in ("VAAttention", "LAAttention"):
            continue
        st = {}
        entries.append((name, m, st))
        handles.append(m.register_forward_pre_hook(_record_input(st, "args")))  # (x, h, w, prev)
        handles.append(m.register_forward_hook(_record(st, "out")))              # (y, a or t)


def _lavit_maps(name, m, st) -> list[Captured]:
    x, h, w = st["args"][:3]
    r = m.reduce.r
    hk, wk = h // r, w // r
    att = st["out"][1]                                  # [B, heads, N, M]
    if _class_name(m) == "LAAttention":
        att = att.softmax(dim=-1)
    _, _, n, mm = att.shape
    assert n == h * w == x.shape[1], (name, n, h, w)
    assert mm == hk * wk, f"{name}: M = {mm} != {hk} x {wk}"
    return [Captured(name, "attention", (h, w), (hk, wk), _np(att.mean(dim=1)[0]), _np(att[0]))]


_FAMILY = {
    "hatnet": (_hatnet_hooks, _hatnet_maps),
    "vvt": (_vvt_hooks, _vvt_maps),
    "accvit": (_accvit_hooks, _accvit_maps),
    "lavit": (_lavit_hooks, _lavit_maps),
}


# ---------------------------------------------------------------------------------------- API

def capture(family: str, model: torch.nn.Module, x: torch.Tensor) -> tuple[list[Captured], torch.Tensor]:
    """Runs `model` (switched to float64 and eval mode in place) on `x` [1, 3, H, W] with the
    hooks; returns the raw maps in order and the logits of that forward."""
    if family not in _FAMILY:
        raise ValueError(f"unknown family {family!r}; have {FAMILIES}")
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"one image [1, 3, H, W] expected, got {tuple(x.shape)}")
    add_hooks, maps = _FAMILY[family]
    model.double().eval()
    entries, handles = [], []
    try:
        add_hooks(model, entries, handles)
        if not entries:
            raise ValueError(f"no attention module of family {family} in the model")
        with torch.no_grad():
            logits = model(x.double())
            captured = [c for name, m, st in entries for c in maps(name, m, st)]
        for c in captured:  # the head-mean matrix is the mean of the per-head ones
            if c.kind == "attention":
                assert c.heads is not None and c.heads.shape[1:] == c.matrix.shape, (c.name, c.heads.shape)
                err = np.abs(c.heads.mean(axis=0) - c.matrix).max()
                if not err <= CHECK_TOL:
                    raise AssertionError(f"{c.name}: mean over heads differs from the head mean by {err:.3e}")
    finally:
        for hd in handles:
            hd.remove()
    return captured, logits


def reduce_maps(captured: list[Captured], query: tuple[int, int] | None, input_hw: tuple[int, int]):
    """(list of (name, map [hk, wk])), summary [H, W]) of the captured maps for a query (X, Y) in
    input pixels, or None for received mode."""
    hh, ww = input_hw
    maps, parts = [], []
    for c in captured:
        hk, wk = c.key_grid
        if c.kind == "gate":
            m = c.matrix.reshape(hk, wk)
        elif query is None:
            m = c.matrix.mean(axis=0).reshape(hk, wk)
        else:
            m = c.matrix[_query_row(c, query, input_hw)].reshape(hk, wk)
        m = np.ascontiguousarray(m, dtype=np.float64)
        maps.append((c.name, m))
        if c.kind != "gate":
            parts.append(spread(m, hh, ww))
    summary = np.mean(parts, axis=0) if parts else np.zeros((hh, ww))
    total = summary.sum()
    summary = summary / total if total != 0 else np.full((hh, ww), 1.0 / (hh * ww))
    return maps, summary


def _query_row(c: Captured, query: tuple[int, int], input_hw: tuple[int, int]) -> int:
    """Row of A (flat query cell) of the query (X, Y) in input pixels."""
    hh, ww = input_hw
    qx, qy = query
    hq, wq = c.query_grid
    cy, cx = min(hq - 1, qy * hq // hh), min(wq - 1, qx * wq // ww)
    return cy * wq + cx


def reduce_head_maps(captured: list[Captured], query: tuple[int, int] | None, input_hw: tuple[int, int]):
    """list of (name, per-head maps [heads, hk, wk] float64) of the captured attention maps (the
    gate maps are left out), in capture order, for a query (X, Y) in input pixels, or None for
    received mode. The mean over heads is `reduce_maps`'s map of that name (up to rounding)."""
    out = []
    for c in captured:
        if c.kind == "gate":
            continue
        hk, wk = c.key_grid
        nh = c.heads.shape[0]
        if query is None:
            m = c.heads.mean(axis=1).reshape(nh, hk, wk)
        else:
            m = c.heads[:, _query_row(c, query, input_hw)].reshape(nh, hk, wk)
        out.append((c.name, np.ascontiguousarray(m, dtype=np.float64)))
    return out


def spread(m: np.ndarray, hh: int, ww: int) -> np.ndarray:
    """The map [hk, wk] resampled to hh x ww by mass: pixel (y, x) belongs to cell
    (y*hk // hh, x*wk // ww) and gets map[cell] / (number of pixels of that cell)."""
    hk, wk = m.shape
    ry, rx = (np.arange(hh) * hk) // hh, (np.arange(ww) * wk) // ww
    count = np.bincount(ry, minlength=hk)[:, None] * np.bincount(rx, minlength=wk)[None, :]
    return (m / np.maximum(count, 1))[ry][:, rx]


def explain_maps(family: str, model: torch.nn.Module, x: torch.Tensor, query: tuple[int, int] | None,
                 heads: bool = False):
    """The ordered list of (map name, map [hk, wk] float64) and the summary [H, W] float64 of one
    image x [1, 3, H, W]; `query` = (X, Y) in input pixels (X = column), or None for received mode.
    With heads=True also, third, the ordered list of (map name, per-head maps [heads, hk, wk]
    float64) of the attention maps (`reduce_head_maps`). Switches `model` to float64 and eval mode
    in place."""
    captured, _ = capture(family, model, x)
    hw = tuple(x.shape[-2:])
    maps, summary = reduce_maps(captured, query, hw)
    if not heads:
        return maps, summary
    return maps, summary, reduce_head_maps(captured, query, hw)
