#!/usr/bin/env python3
"""LaViT reference: the project's shared contract, ../../../shared/reference/contract.py
(`--family lavit`, class `LaViTR`), loaded by path — no official code or weights exist, the
contract *is* the model (shared/spec/lavit.md).

    from lavit import build, VARIANTS, stage_hooks
    model = build("tiny")            # "small", "base", "tiny-psi" at 224; "micro", "micro-psi" at 64

LaViT's input size is fixed by its weights (position embeddings, Θ and Ψ sizes): `build` makes
the micro variants for 64x64 and the others for 224x224 unless `size` says otherwise. The
contract file is located by contract_loader.py ($WGVIT_CONTRACT, else ../shared/reference).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contract_loader import load_contract  # noqa: E402


contract = load_contract()
VARIANTS = contract.LAVIT_VARIANTS


def default_size(variant: str) -> int:
    return 64 if variant.startswith("micro") else 224


def build(variant: str, size: int | None = None, seed: int = 0) -> torch.nn.Module:
    """The contract network for `size`x`size` inputs in eval mode, initialised as
    `contract.py --family lavit --seed seed` does (torch seed, then its LayerNorm perturbation
    from `seed + 1`). Callers may overwrite the parameters afterwards."""
    torch.manual_seed(seed)
    model = contract.LaViTR(variant, img=size or default_size(variant))
    contract.perturb_norms(model, torch.Generator().manual_seed(seed + 1))
    return model.eval()


def stage_hooks(model: torch.nn.Module, store: dict) -> list:
    """Forward hooks recording, per stage m, `stage{m}` (its output as tokens [B, N, C]) and
    `stage{m}.attn` (the attention matrix it carries out, [B, H, N, M]), and `pre_logits` (the
    input of `head`) into `store`; returns the handles."""
    handles = []
    for m, stage in enumerate(model.stages):
        def hook(_mod, _inp, out, m=m):
            x, a = out
            store[f"stage{m}"] = x.flatten(2).transpose(1, 2)      # (B, C, h, w) -> (B, N, C)
            store[f"stage{m}.attn"] = a
        handles.append(stage.register_forward_hook(hook))
    handles.append(model.head.register_forward_pre_hook(lambda _mod, inp: store.__setitem__("pre_logits", inp[0])))
    return handles
