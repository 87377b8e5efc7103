#!/usr/bin/env python3
"""HAT-Net in PyTorch, written from ../../../shared/spec/hatnet.md (the project's own reference).

Module names reproduce the official `state_dict` names exactly (so an official checkpoint loads
with `load_state_dict(strict=True)`), including the `attn.proj_norm` GroupNorm that the forward
never uses. Everything is NCHW, as in the official code.

    from hatnet import build, VARIANTS
    model = build("tiny")            # or "small", "medium", "large", "micro"
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

# (dims, head_dim, depths, dw kernel per stage, expansions)
VARIANTS = {
    "tiny": dict(dims=[48, 96, 240, 384], head_dim=48, depths=[2, 2, 6, 3], kernels=[3, 3, 3, 3], expansions=[8, 8, 4, 4]),
    "small": dict(dims=[64, 128, 320, 512], head_dim=64, depths=[2, 3, 8, 3], kernels=[3, 3, 3, 3], expansions=[8, 8, 4, 4]),
    "medium": dict(dims=[64, 128, 320, 512], head_dim=64, depths=[3, 6, 18, 3], kernels=[5, 3, 5, 3], expansions=[8, 8, 4, 4]),
    "large": dict(dims=[64, 128, 320, 640], head_dim=64, depths=[3, 8, 27, 3], kernels=[3, 3, 3, 3], expansions=[8, 8, 4, 4]),
    # Reduced width, every code path of the real variants (not an official model).
    "micro": dict(dims=[16, 32, 48, 64], head_dim=16, depths=[1, 1, 2, 1], kernels=[5, 3, 3, 3], expansions=[2, 2, 2, 2]),
}
GRID_SIZES = [8, 7, 7, 1]
POOL_RATIOS = [8, 4, 2, 1]
EPS = 1e-6


def gn(c: int) -> nn.GroupNorm:
    """GroupNorm with one group: statistics over the whole C*H*W image."""
    return nn.GroupNorm(1, c, eps=EPS)


class InvertedResidual(nn.Module):
    def __init__(self, dim: int, hidden: int, kernel: int):
        super().__init__()
        self.conv1 = nn.Sequential(gn(dim), nn.Conv2d(dim, hidden, 1, bias=False), nn.SiLU())
        self.conv2 = nn.Sequential(nn.Conv2d(hidden, hidden, kernel, padding=kernel // 2, groups=hidden, bias=False), nn.SiLU())
        self.conv3 = nn.Sequential(nn.Conv2d(hidden, dim, 1, bias=False), gn(dim))

    def forward(self, x):
        return self.conv3(self.conv2(self.conv1(x)))


class HMHSA(nn.Module):
    """H-MHSA: window attention in G x G cells, then attention to r x r average-pooled tokens."""

    def __init__(self, dim: int, head_dim: int, grid: int, pool: int):
        super().__init__()
        self.heads, self.d, self.grid, self.pool = dim // head_dim, head_dim, grid, pool
        self.scale = head_dim ** -0.5
        self.norm = gn(dim)
        self.qkv = nn.Conv2d(dim, 3 * dim, 1)
        self.proj = nn.Conv2d(dim, dim, 1)
        self.proj_norm = gn(dim)  # in the checkpoint, never used by the forward
        if grid > 1:
            self.grid_norm = gn(dim)
            self.ds_norm = gn(dim)
            self.q = nn.Conv2d(dim, dim, 1)
            self.kv = nn.Conv2d(dim, 2 * dim, 1)

    def _heads(self, t):
        """[B, C, H, W] -> [B, heads, H*W, d]; channel c is head c // d, lane c % d."""
        b, c, h, w = t.shape
        return t.reshape(b, self.heads, self.d, h * w).transpose(-2, -1)

    def _attend(self, q, k, v):
        return torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1) @ v

    def forward(self, x):
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x))
        q, k, v = qkv[:, :c], qkv[:, c:2 * c], qkv[:, 2 * c:]
        if self.grid == 1:
            out = self._attend(self._heads(q), self._heads(k), self._heads(v))
            return self.proj(out.transpose(-2, -1).reshape(b, c, h, w))

        g = self.grid
        gh, gw = h // g, w // g

        def windows(t):  # [B, C, H, W] -> [B, heads, gh, gw, G*G, d]
            t = t.reshape(b, self.heads, self.d, gh, g, gw, g)
            return t.permute(0, 1, 3, 5, 4, 6, 2).reshape(b, self.heads, gh, gw, g * g, self.d)

        local = self._attend(windows(q), windows(k), windows(v))
        local = local.reshape(b, self.heads, gh, gw, g, g, self.d).permute(0, 1, 6, 2, 4, 3, 5).reshape(b, c, h, w)
        grid_x = self.grid_norm(x + local)

        q2 = self._heads(self.q(grid_x))
        pooled = self.ds_norm(F.avg_pool2d(grid_x, self.pool, self.pool))
        kv = self.kv(pooled)
        k2, v2 = self._heads(kv[:, :c]), self._heads(kv[:, c:])
        glob = self._attend(q2, k2, v2).transpose(-2, -1).reshape(b, c, h, w)
        return self.proj(glob + grid_x)


class Block(nn.Module):
    def __init__(self, dim, head_dim, grid, pool, expansion, kernel):
        super().__init__()
        self.attn = HMHSA(dim, head_dim, grid, pool)
        self.conv = InvertedResidual(dim, dim * expansion, kernel)

    def forward(self, x):
        x = x + self.attn(x)
        return x + self.conv(x)


class Downsample(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
        self.norm = gn(cout)

    def forward(self, x):
        return self.norm(self.conv(x))


class HATNet(nn.Module):
    def __init__(self, dims, head_dim, depths, kernels, expansions, num_classes=1000):
        super().__init__()
        self.patch_embed = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), gn(16), nn.SiLU(), nn.Conv2d(16, dims[0], 3, stride=2, padding=1)
        )
        self.blocks = nn.ModuleList(
            nn.ModuleList(
                Block(dims[s], head_dim, GRID_SIZES[s], POOL_RATIOS[s], expansions[s], kernels[s]) for _ in range(depths[s])
            )
            for s in range(4)
        )
        self.ds2 = Downsample(dims[0], dims[1])
        self.ds3 = Downsample(dims[1], dims[2])
        self.ds4 = Downsample(dims[2], dims[3])
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(dims[3], num_classes))

    def forward_stages(self, x):
        """Yields (name, tensor) after the stem, each stage and the pooled features."""
        x = self.patch_embed(x)
        yield "patch_embed", x
        downsamples = [None, self.ds2, self.ds3, self.ds4]
        for s in range(4):
            if downsamples[s] is not None:
                x = downsamples[s](x)
            for blk in self.blocks[s]:
                x = blk(x)
            yield f"stage{s}", x
        yield "pre_logits", x.mean(dim=(2, 3))

    def forward(self, x):
        for _, x in self.forward_stages(x):
            pass
        return self.classifier(x)


def build(variant: str, num_classes: int = 1000) -> HATNet:
    return HATNet(**VARIANTS[variant], num_classes=num_classes).eval()


def valid_side(n: int) -> bool:
    s0 = -(-(-(-n // 2)) // 2)
    return s0 % 56 == 0
