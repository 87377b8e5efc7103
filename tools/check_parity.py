#!/usr/bin/env python3
"""Full-size parity check of the engine against the project's PyTorch reference.

    python tools/check_parity.py --family hatnet --variant tiny [--size 224] [--seed 0] [--release]

Builds the reference model with perturbed weights, writes weights/input to a temp folder, runs
`wgvit run` (through cargo), and prints the max abs difference of the logits against the float64
reference (and the f32 reference's own error). Exit code 1 if it exceeds --tol (default 1e-4).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tools" / "reference"))
from fixture_utils import perturb, save  # noqa: E402


def reference(family: str):
    if family == "hatnet":
        import hatnet

        return hatnet.build, hatnet.VARIANTS
    if family == "vvt":
        import vvt  # tools/reference/vvt.py; run with --tol 1e-5 (the VVT issue's bar)

        return vvt.build, vvt.VARIANTS
    if family == "accvit":
        import accvit  # the shared contract (../shared/reference/contract.py), loaded by path

        return accvit.build, accvit.VARIANTS
    if family == "lavit":
        import lavit  # the shared contract (../shared/reference/contract.py), loaded by path

        return lavit.build, lavit.VARIANTS  # built for its fixed size: 224 (micro*: 64)
    raise SystemExit(f"family '{family}' has no reference in tools/reference yet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", required=True)
    ap.add_argument("--variant", required=True)
    ap.add_argument("--size", default="224", help="S or HxW")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--release", action="store_true", help="use the release build")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.lower().split("x")) if "x" in args.size.lower() else (int(args.size),) * 2

    build, variants = reference(args.family)
    if args.variant not in variants:
        raise SystemExit(f"unknown variant '{args.variant}' (known: {', '.join(sorted(variants))})")
    torch.manual_seed(args.seed)
    model = build(args.variant)
    perturb(model, args.seed + 2)
    x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(args.seed + 1))
    with torch.no_grad():
        want32 = model(x)
        want = model.double()(x.double())
        model.float()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save(tmp / "weights.safetensors", model.state_dict())
        save(tmp / "input.safetensors", {"input": x})
        cmd = ["cargo", "run", "-q"] + (["--release"] if args.release else []) + [
            "--", "run", "--model", f"{args.family}-{args.variant}",
            "--weights", str(tmp / "weights.safetensors"), "--input", str(tmp / "input.safetensors"),
            "--output", str(tmp / "out.safetensors"),
        ]
        t0 = time.time()
        subprocess.run(cmd, cwd=ROOT, check=True)
        got = load_file(str(tmp / "out.safetensors"))["logits"].double()
    diff = (got - want).abs().max().item()
    print(f"{args.family}-{args.variant} {h}x{w}: max |engine - f64 reference| = {diff:.3e} "
          f"(reference f32 vs f64: {(want32.double() - want).abs().max().item():.3e}; {time.time() - t0:.1f} s)")
    sys.exit(0 if diff <= args.tol else 1)


if __name__ == "__main__":
    main()
