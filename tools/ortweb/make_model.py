#!/usr/bin/env python3
"""Writes the model both engines load for the cold-start comparison (tools/ortweb/run.mjs):
HAT-Net-tiny from the project's reference (tools/reference/hatnet.py, seed 0, random weights) as
`out/hatnet-tiny.onnx` (for ONNX Runtime Web) and `out/hatnet-tiny.safetensors` (the official
state_dict names, for wgvit). Needs torch and onnx.

    python3 tools/ortweb/make_model.py
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tools" / "reference"))
import hatnet  # noqa: E402
from fixture_utils import save  # noqa: E402


def main() -> None:
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    torch.manual_seed(0)
    model = hatnet.build("tiny").eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(out / "hatnet-tiny.onnx"), opset_version=17, dynamo=False)
    save(out / "hatnet-tiny.safetensors", model.state_dict())
    for f in sorted(out.iterdir()):
        print(f"{f.relative_to(ROOT)}: {f.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
