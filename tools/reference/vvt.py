#!/usr/bin/env python3
"""VVT (Vicinity Vision Transformer) in PyTorch, written from ../../../shared/spec/vvt.md (the
project's own reference).

Module names reproduce the official `state_dict` names exactly (so an official checkpoint loads
with `load_state_dict(strict=True)`), in the official registration order (so that
`fixture_utils.perturb` with a given seed gives the same weights as the official model).
Tokens are `[B, N, C]` with `n = h*W + w`; there is no class token and no position embedding.

    from vvt import build, VARIANTS
    model = build("tiny")            # or "small", "medium", "large", "micro", "test"
    stages = model.forward_stages(x) # [(name, tensor)] incl. per-block outputs, then "logits"

Runs in float32 or float64 (`model.double()`); the angle tables are always evaluated the way
the official code evaluates them (float32 angles), then cast to the model's dtype before cos/sin.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# embed dims, heads, mlp ratios, depths, feature-reduction ratios (sr = 1, se ratio = 1 always)
VARIANTS = {
    "tiny": dict(dims=[96, 160, 320, 512], heads=[1, 2, 5, 8], mlp=[8, 8, 4, 4], depths=[2, 2, 2, 2], fr=[2, 2, 2, 2]),
    "small": dict(dims=[96, 160, 320, 512], heads=[1, 2, 5, 8], mlp=[8, 8, 4, 4], depths=[3, 3, 9, 3], fr=[2, 2, 2, 2]),
    "medium": dict(dims=[96, 160, 320, 512], heads=[1, 2, 5, 8], mlp=[8, 8, 4, 4], depths=[3, 3, 27, 3], fr=[2, 2, 2, 2]),
    "large": dict(dims=[96, 160, 320, 512], heads=[1, 2, 5, 8], mlp=[4, 4, 4, 4], depths=[4, 4, 36, 4], fr=[2, 2, 2, 2]),
    # The official repo's debug config (not in the paper; no checkpoint).
    "test": dict(dims=[32, 32, 32, 32], heads=[1, 1, 1, 1], mlp=[1, 1, 1, 1], depths=[1, 1, 1, 1], fr=[1, 2, 2, 4]),
    # Not an official model: the official class at reduced width (shared/reference/official_parity.py).
    "micro": dict(dims=[16, 32, 48, 64], heads=[1, 2, 3, 4], mlp=[2, 2, 2, 2], depths=[1, 1, 2, 1], fr=[1, 2, 2, 4]),
}
BLOCK_EPS = 1e-6  # block norms and stage norms
PATCH_EPS = 1e-5  # patch-embedding norms (nn.LayerNorm default)
CLAMP_MIN, CLAMP_MAX = 1e-4, 1e4
DEN_EPS = 1e-4


def clampmag(t: torch.Tensor) -> torch.Tensor:
    """sign(t) * clamp(|t|, 1e-4, 1e4); exact zeros stay zero."""
    return torch.sign(t) * t.abs().clamp(CLAMP_MIN, CLAMP_MAX)


def angle_tables(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha(n) = (pi/2) row / H and beta(n) = (pi/2) col / W as float32, rounded the way the
    official code rounds them: fl32(fl32(fl32(pi/2) * row) / H)."""
    n = torch.arange(h * w)
    half_pi = torch.tensor(math.pi / 2, dtype=torch.float32)
    alpha = (half_pi * (n // w).to(torch.float32)) / torch.tensor(float(h), dtype=torch.float32)
    beta = (half_pi * (n % w).to(torch.float32)) / torch.tensor(float(w), dtype=torch.float32)
    return alpha, beta


class VicinityAttention(nn.Module):
    """Feature-reduced linear attention with the 2-D cosine (Manhattan) vicinity re-weighting and
    an SE gate. Spec section 3.3."""

    def __init__(self, dim: int, heads: int, fr: int):
        super().__init__()
        self.heads, self.fr = heads, fr
        # Registration order of the official module: k, v, q, out, se.
        self.k_proj = nn.Linear(dim, dim // fr)
        self.v_proj = nn.Linear(dim, dim // fr)
        self.q_proj = nn.Linear(dim, dim // fr)
        self.out_proj = nn.Linear(dim // fr, dim)
        self.se_fc = nn.Sequential(nn.Linear(dim, dim, bias=False), nn.ReLU(), nn.Linear(dim, dim, bias=False), nn.Sigmoid())

    def forward(self, u: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = u.shape
        d = c // self.heads // self.fr
        s = self.se_fc(u.mean(dim=1))  # [B, C]

        def split(t):  # [B, N, h*d] -> [B, heads, N, d]
            return t.reshape(b, n, self.heads, d).transpose(1, 2)

        q = split(F.relu(self.q_proj(u)))
        k = split(F.relu(self.k_proj(u)))
        v = split(self.v_proj(u))
        alpha, beta = (t.to(u.device) for t in angle_tables(h, w))  # built on the host, in the official rounding
        trig = [f(a).to(u.dtype).reshape(1, 1, n, 1) for a in (alpha.to(u.dtype), beta.to(u.dtype)) for f in (torch.cos, torch.sin)]
        phi_q = torch.cat([q * t for t in trig], dim=-1)  # [B, heads, N, 4d]
        phi_k = torch.cat([k * t for t in trig], dim=-1)

        kv = clampmag(phi_k.transpose(-1, -2) @ v)  # [B, heads, 4d, d]
        ksum = phi_k.sum(dim=2, keepdim=True)  # [B, heads, 1, 4d], not clamped
        z = clampmag(1 / ((phi_q * ksum).sum(dim=-1) + DEN_EPS))  # [B, heads, N]
        o = clampmag(phi_q @ kv)
        o = clampmag(o * z.unsqueeze(-1))
        o = o.transpose(1, 2).reshape(b, n, self.heads * d)
        y = clampmag(self.out_proj(o))
        return clampmag(y + y * s.unsqueeze(1))


class DWConv(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        y = self.dwconv(x.transpose(1, 2).reshape(b, c, h, w))
        return y.flatten(2).transpose(1, 2)


class MixFFN(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = DWConv(hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return self.fc2(F.gelu(self.dwconv(self.fc1(x), h, w)))  # exact (erf) GELU


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int, fr: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_EPS)
        self.attn = VicinityAttention(dim, heads, fr)
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_EPS)
        self.mlp = MixFFN(dim, dim * mlp_ratio)

    def branches(self, x: torch.Tensor, h: int, w: int):
        a = self.attn(self.norm1(x), h, w)
        x = x + a
        m = self.mlp(self.norm2(x), h, w)
        return a, m, x + m

    def forward(self, x, h, w):
        return self.branches(x, h, w)[2]


class OverlapPatchEmbed(nn.Module):
    def __init__(self, cin: int, dim: int, kernel: int, stride: int):
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, kernel, stride, kernel // 2)
        self.norm = nn.LayerNorm(dim, eps=PATCH_EPS)

    def forward(self, x: torch.Tensor):
        x = self.proj(x)
        _, _, h, w = x.shape
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class VVT(nn.Module):
    def __init__(self, dims, heads, mlp, depths, fr, num_classes: int = 1000):
        super().__init__()
        for i in range(4):
            setattr(self, f"patch_embed{i + 1}", OverlapPatchEmbed(3 if i == 0 else dims[i - 1], dims[i], 7 if i == 0 else 3, 4 if i == 0 else 2))
            setattr(self, f"block{i + 1}", nn.ModuleList(Block(dims[i], heads[i], mlp[i], fr[i]) for _ in range(depths[i])))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(dims[i], eps=BLOCK_EPS))
        self.head = nn.Linear(dims[3], num_classes)

    def forward_stages(self, x: torch.Tensor, branches: bool = False):
        """[(name, tensor)]: `patch_embed{i}`, `block{i}.{j}` (and with `branches` the
        `block{i}.{j}.attn` / `.mlp` branch outputs before their residual adds), `norm{i}` (all
        tokens [B, N, C]), `pre_logits` [B, C] and `logits`."""
        out = []
        for i in range(1, 5):
            t, h, w = getattr(self, f"patch_embed{i}")(x)
            out.append((f"patch_embed{i}", t))
            for j, blk in enumerate(getattr(self, f"block{i}")):
                a, m, t = blk.branches(t, h, w)
                if branches:
                    out += [(f"block{i}.{j}.attn", a), (f"block{i}.{j}.mlp", m)]
                out.append((f"block{i}.{j}", t))
            t = getattr(self, f"norm{i}")(t)
            out.append((f"norm{i}", t))
            x = t.transpose(1, 2).reshape(t.shape[0], -1, h, w)
        pooled = t.mean(dim=1)
        out += [("pre_logits", pooled), ("logits", self.head(pooled))]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(x)[-1][1]


def build(variant: str, num_classes: int = 1000) -> VVT:
    return VVT(**VARIANTS[variant], num_classes=num_classes).eval()


def stage_sizes(h: int, w: int) -> list[tuple[int, int]]:
    """(H_i, W_i) of the four stages: 7x7/s4/p3, then 3x3/s2/p1 three times."""
    sizes = [((h - 1) // 4 + 1, (w - 1) // 4 + 1)]
    for _ in range(3):
        sizes.append(((sizes[-1][0] - 1) // 2 + 1, (sizes[-1][1] - 1) // 2 + 1))
    return sizes
