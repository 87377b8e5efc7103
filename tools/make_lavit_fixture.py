#!/usr/bin/env python3
"""Golden fixture for LaViT from the shared contract (../shared/reference/contract.py, `LaViTR`).

    python tools/make_lavit_fixture.py [--variant micro] [--size 64] [--seed 0] [--dtype f16] [--out DIR]

No official LaViT code or weights exist; shared/spec/lavit.md defines the network and contract.py
is its executable form, loaded by path through tools/reference/lavit.py (not copied). The model
is built and initialised exactly as `contract.py --family lavit` does it (same seeds, its
`perturb_norms`), then:
  * `attn.res_gamma` (all ones in the contract) gets distinct per-head values and
    `attn.res_down` a visible bias, so that a head or tap mix-up in the residual attention
    downsampling cannot hide;
  * with `--dtype f16` (the default, for the committed fixtures) every parameter is rounded to
    float16 and stored as F16, which halves the files; the golden outputs are computed from the
    rounded values, so they are exact for what is stored (the engine widens F16 to f32 on load).

Writes into DIR (default tests/fixtures/lavit-<variant>, or lavit-<variant>-<S> at another size):
  weights.safetensors        the contract's state_dict names, F16 or F32 (metadata: wgvit.model, wgvit.input_size)
  input.safetensors          `input` [1, 3, S, S], seeded N(0, 1) as contract.py does
  logits.safetensors         `logits` [1, 1000], the contract's forward in float64, stored as f32
  intermediates.safetensors  per stage (forward hooks on `stages.{m}`): `stage{m}` the output
                             tokens [1, N, C] and `stage{m}.attn` the attention matrix the stage
                             carries out [1, H, N, M] (post-softmax after a VA layer, pre-softmax
                             after an LA layer); `pre_logits` [1, C] (input of `head`)
The micro variants run at 64x64 (the CI fixtures), and `micro` also at 96x96 (`--size 96`: 3 x 3
= 9 keys in every stage, which the engine pads to 12 key slots, as it pads the full variants' 49
keys to 52); the full variants only at the size their weights were made for (224), e.g.
`--variant tiny --size 224 --dtype f32 --out /tmp/lavit-tiny`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tools" / "reference"))
from fixture_utils import save  # noqa: E402
import lavit  # noqa: E402  (the shared contract, loaded by path)


def build(variant: str, size: int, seed: int) -> torch.nn.Module:
    """The contract's model with its own initialisation, plus the res_gamma / res_down perturbation."""
    model = lavit.build(variant, size, seed)
    gen = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("attn.res_gamma"):
                p.copy_(1.0 + 0.25 * torch.randn(p.shape, generator=gen))
            elif name.endswith("attn.res_down.bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="micro")
    ap.add_argument("--size", type=int, default=None, help="input side (default 64 for micro*, else 224)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["f16", "f32"], default="f16", help="storage of the weights")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    if args.variant not in lavit.VARIANTS:
        raise SystemExit(f"unknown variant '{args.variant}' (known: {', '.join(sorted(lavit.VARIANTS))})")
    size = args.size or lavit.default_size(args.variant)
    suffix = "" if size == lavit.default_size(args.variant) else f"-{size}"
    out = args.out or ROOT / "tests" / "fixtures" / f"lavit-{args.variant}{suffix}"

    model = build(args.variant, size, args.seed)
    if args.dtype == "f16":
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.half().float())
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(args.seed), dtype=torch.float32)

    stages: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        logits32 = model(x)
        model.double()
        handles = lavit.stage_hooks(model, stages)
        logits = model(x.double())
        for h in handles:
            h.remove()
        model.float()

    meta = {"model": f"lavit-{args.variant}", "size": [size, size], "seed": args.seed,
            "source": "shared/reference/contract.py LaViTR + tools/make_lavit_fixture.py perturbation"}
    out.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if args.dtype == "f16" else torch.float32
    weights = {k: v.detach().to(dtype).contiguous() for k, v in model.state_dict().items() if torch.is_floating_point(v)}
    # wgvit.* keys let `wgvit run/bench --weights` find the model id and the input size by themselves.
    header = {"fixture": json.dumps(meta, sort_keys=True), "wgvit.model": f"lavit-{args.variant}", "wgvit.input_size": str(size)}
    save_file(weights, str(out / "weights.safetensors"), metadata=header)
    save(out / "input.safetensors", {"input": x}, meta)
    save(out / "logits.safetensors", {"logits": logits}, meta)
    save(out / "intermediates.safetensors", stages, meta)
    n = sum(p.numel() for p in model.parameters())
    print(f"{out}: {n} parameters ({args.dtype}), logits {tuple(logits.shape)}, "
          f"|f32 - f64| = {(logits32.double() - logits).abs().max().item():.2e}, "
          f"logits mean |.| {logits.abs().mean().item():.3f}")


if __name__ == "__main__":
    main()
