#!/usr/bin/env python3
"""Golden fixtures for VVT from the project's own reference (tools/reference/vvt.py).

    python tools/make_vvt_fixture.py [--variant micro] [--sizes 61x47,221] [--full-taps 61x47] [--seed 0]
                                     [--gain 0.5] [--out tests/fixtures/vvt-micro]

The committed fixtures are
    tests/fixtures/vvt-micro         default arguments (gain 0.5: the z floor fires at 221,
                                     dropping the clamps moves the logits by 2e-4)
    tests/fixtures/vvt-micro-gain1.5 --gain 1.5 --sizes 129x97 --full-taps ''
                                     (floors and 1e4 ceilings fire; without the clamps the
                                     logits move by 0.6)

One set of weights (official names, f32, perturbed: `fixture_utils.perturb(model, seed + 2)`,
the same rule and order as shared/reference/official_parity.py, so seed 0 and the same gain
reproduce its weights and inputs bit for bit) and, per input size S (`HxW`):

    input-S.safetensors          `input` [1, 3, H, W] = randn from a generator seeded seed + 1
    logits-S.safetensors         `logits` [1, 1000], computed in float64, stored as f32
    intermediates-S.safetensors  float64-computed taps stored as f32: for sizes in --full-taps
                                 `patch_embed{i}`, `block{i}.{j}`, `norm{i}` (tokens [1, N, C])
                                 and `pre_logits`; for the others only `norm{i}` and `pre_logits`
                                 (keeps the committed files small)

It prints, per size, the reference's own f32-vs-f64 logit error and how often each of VVT's
clamps fires (z at the 1e-4 floor, KV / phi_q.KV at the 1e4 ceiling), to show that the fixture
exercises them.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "reference"))
from fixture_utils import perturb, save  # noqa: E402
import vvt  # noqa: E402


def parse_size(s: str) -> tuple[int, int]:
    s = s.lower()
    return tuple(int(v) for v in s.split("x")) if "x" in s else (int(s), int(s))  # type: ignore[return-value]


def clamp_stats(model: vvt.VVT, x: torch.Tensor) -> Counter:
    """Counts clamp hits by wrapping vvt.clampmag while running the float64 model."""
    hits: Counter = Counter()
    original = vvt.clampmag

    def counting(t: torch.Tensor) -> torch.Tensor:
        a = t.abs()
        hits["elements"] += t.numel()
        hits["floor (0 < |t| < 1e-4)"] += int(((a > 0) & (a < vvt.CLAMP_MIN)).sum())
        hits["ceiling (|t| > 1e4)"] += int((a > vvt.CLAMP_MAX).sum())
        return original(t)

    vvt.clampmag = counting
    try:
        with torch.no_grad():
            model(x)
    finally:
        vvt.clampmag = original
    return hits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="micro", choices=sorted(vvt.VARIANTS))
    ap.add_argument("--sizes", default="61x47,221", help="comma-separated S or HxW")
    ap.add_argument("--full-taps", default="61x47", help="sizes that get every per-block tap")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--gain", type=float, default=0.5, help="weight scale of fixture_utils.perturb")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    out = args.out or Path(__file__).resolve().parent.parent / "tests" / "fixtures" / f"vvt-{args.variant}"
    full = {parse_size(s) for s in args.full_taps.split(",") if s}

    torch.manual_seed(args.seed)
    model = vvt.build(args.variant)
    perturb(model, args.seed + 2, gain=args.gain)
    meta = {"model": f"vvt-{args.variant}", "seed": args.seed, "gain": args.gain}
    save(out / "weights.safetensors", model.state_dict(), meta)
    m64 = vvt.build(args.variant).double()
    m64.load_state_dict(model.state_dict())

    for size in args.sizes.split(","):
        h, w = parse_size(size)
        x = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(args.seed + 1))
        with torch.no_grad():
            stages = dict(m64.forward_stages(x.double()))
            logits32 = model(x)
        logits = stages.pop("logits")
        keep = {k: v for k, v in stages.items() if (h, w) in full or k.startswith("norm") or k == "pre_logits"}
        tag = f"{h}x{w}"
        m = dict(meta, size=[h, w])
        save(out / f"input-{tag}.safetensors", {"input": x}, m)
        save(out / f"logits-{tag}.safetensors", {"logits": logits}, m)
        save(out / f"intermediates-{tag}.safetensors", keep, m)
        hits = clamp_stats(m64, x.double())
        print(f"{out} {tag}: {len(keep)} taps, |f32 - f64| logits = {(logits32.double() - logits).abs().max().item():.2e}, "
              f"clamps: {dict(hits)}")


if __name__ == "__main__":
    main()
