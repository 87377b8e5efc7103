#!/usr/bin/env python3
"""Golden fixture for ACC-ViT from the project's contract (../shared/reference/contract.py).

    python tools/make_accvit_fixture.py [--variant micro] [--size 224] [--seed 0] [--out tests/fixtures/accvit-micro]
        [--stem]

The weights and input are exactly those of `contract.py --family accvit --variant V --seed N
--size S` (same seeds, same draws: BatchNorm running statistics, BN/LN affine parameters
perturbed; the contract drops the int64 `num_batches_tracked`). Writes weights.safetensors,
input.safetensors (`input` [1,3,S,S]), logits.safetensors (`logits`, the contract network run in
float64, stored as f32) and intermediates.safetensors (float64 forward-hook outputs: `stage0` ..
`stage3` NCHW, `head.norm` [1, C4]; `stem` only with --stem, it is the largest map).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "reference"))
from fixture_utils import save  # noqa: E402
import accvit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="micro", choices=sorted(accvit.VARIANTS))
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stem", action="store_true", help="also store the stem output")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(__file__).resolve().parent.parent / "tests" / "fixtures" / f"accvit-{args.variant}"

    # The contract's own order of draws (contract.py main()): model init, norms, input.
    torch.manual_seed(args.seed)
    model = accvit.build(args.variant, args.seed)
    x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(args.seed), dtype=torch.float32)

    with torch.inference_mode():
        logits32 = model(x)
        m64 = copy.deepcopy(model).double()
        stages: dict = {}
        handles = accvit.stage_hooks(m64, stages)
        logits = m64(x.double())
        for h in handles:
            h.remove()
    if not args.stem:
        stages.pop("stem")
    weights = {k: v for k, v in model.state_dict().items() if torch.is_floating_point(v)}
    meta = {"model": f"accvit-{args.variant}", "size": [args.size, args.size], "seed": args.seed,
            "source": "shared/reference/contract.py --family accvit"}
    save(out / "weights.safetensors", weights, meta)
    save(out / "input.safetensors", {"input": x}, meta)
    save(out / "logits.safetensors", {"logits": logits}, meta)
    save(out / "intermediates.safetensors", stages, meta)
    print(f"{out}: logits {tuple(logits.shape)}, |f32 - f64| = {(logits32.double() - logits).abs().max().item():.2e}, "
          f"intermediates {sorted(stages)}")


if __name__ == "__main__":
    main()
