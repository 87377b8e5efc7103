#!/usr/bin/env python3
"""Golden fixture for HAT-Net from the project's own reference (tools/reference/hatnet.py).

    python tools/make_hatnet_fixture.py [--variant micro] [--size 224] [--seed 0] [--out tests/fixtures/hatnet-micro]

Writes weights.safetensors (official names, f32, perturbed), input.safetensors (`input`
[1,3,S,S]), logits.safetensors (`logits`, computed in float64 and stored as f32) and
intermediates.safetensors (outputs of the stem and of each stage, for locating a mismatch).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "reference"))
from fixture_utils import perturb, save  # noqa: E402
import hatnet  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="micro", choices=sorted(hatnet.VARIANTS))
    ap.add_argument("--size", default="224", help="S or HxW")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.lower().split("x")) if "x" in args.size.lower() else (int(args.size),) * 2
    out = args.out or Path(__file__).resolve().parent.parent / "tests" / "fixtures" / f"hatnet-{args.variant}"

    torch.manual_seed(args.seed)
    model = hatnet.build(args.variant)
    perturb(model, args.seed + 2)
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(args.seed + 1))

    with torch.no_grad():
        m64 = model.double()
        stages = dict(m64.forward_stages(x.double()))
        logits = m64.classifier(stages["pre_logits"])
        logits32 = model.float()(x)
    meta = {"model": f"hatnet-{args.variant}", "size": [h, w], "seed": args.seed}
    save(out / "weights.safetensors", model.state_dict(), meta)
    save(out / "input.safetensors", {"input": x}, meta)
    save(out / "logits.safetensors", {"logits": logits}, meta)
    save(out / "intermediates.safetensors", stages, meta)
    print(f"{out}: logits {tuple(logits.shape)}, |f32 - f64| = {(logits32.double() - logits).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
