#!/usr/bin/env python3
"""ACC-ViT reference: the project's shared contract, ../../../shared/reference/contract.py
(`--family accvit`), loaded by path — no official code exists, the contract *is* the model.

    from accvit import build, VARIANTS, contract
    model = build("tiny")            # or "small", "base", "micro": eval mode, BN running stats set

The contract file is located by contract_loader.py ($WGVIT_CONTRACT, else ../shared/reference).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from contract_loader import load_contract  # noqa: E402


contract = load_contract()
VARIANTS = contract.ACCVIT_VARIANTS


def build(variant: str, seed: int = 0) -> torch.nn.Module:
    """The contract network in eval mode, with the contract's non-trivial norms: BatchNorm running
    statistics and affine parameters and LayerNorm affine parameters drawn from `seed + 1` (as
    `contract.py --seed seed` does). Callers may overwrite the parameters afterwards (the running
    statistics stay non-trivial)."""
    model = contract.AccViTR(variant)
    contract.perturb_norms(model, torch.Generator().manual_seed(seed + 1))
    return model.eval()


def stage_hooks(model: torch.nn.Module, store: dict) -> list:
    """Forward hooks recording the outputs of the stem, of each stage (NCHW) and of the head's
    LayerNorm (the pooled, normalised features) into `store`; returns the handles."""
    handles = [model.stem.register_forward_hook(lambda m, i, o: store.__setitem__("stem", o))]
    for s, stage in enumerate(model.stages):
        handles.append(stage.register_forward_hook(lambda m, i, o, s=s: store.__setitem__(f"stage{s}", o)))
    handles.append(model.head.norm.register_forward_hook(lambda m, i, o: store.__setitem__("head.norm", o)))
    return handles
