"""Shared helpers for the fixture scripts: deterministic non-trivial weights and safetensors I/O."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file


def perturb(model: torch.nn.Module, seed: int, gain: float = 0.5) -> None:
    """Overwrites every parameter deterministically (state_dict order) so that no bias is zero and
    no norm is the identity: a loader that drops a bias or swaps gamma/beta is caught.
    Conv/linear weights: N(0,1) * gain / sqrt(fan_in); norm scales: 1 + 0.1 N; biases: 0.05 N."""
    g = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in model.state_dict().keys():
            p = params.get(name)
            if p is None:
                continue
            if name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            elif p.ndim == 1:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.numel() // p.shape[0]
                p.copy_(torch.randn(p.shape, generator=g) * (gain / math.sqrt(fan_in)))


def save(path: Path, tensors: dict[str, torch.Tensor], meta: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    save_file(tensors, str(path), metadata={"fixture": json.dumps(meta or {}, sort_keys=True)})
