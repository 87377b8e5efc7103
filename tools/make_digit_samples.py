#!/usr/bin/env python3
"""Writes assets/samples/<d>.png, one 28x28 grey handwritten digit per class (white on black, as
MNIST), for the README's main command and the demo page.

Each is the first digit of its class in the held-out split (tests/fixtures/digits/heldout.safetensors,
written by tools/train_digits.py) that every bundled model's reference classifies correctly with
probability >= 0.9 (tests/fixtures/digits/<family>-logits.safetensors): a clear example, never
one the models were trained on.

    python3 tools/make_digit_samples.py
"""

from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.numpy import load_file

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "digits"
FAMILIES = ["hatnet", "vvt", "accvit", "lavit"]


def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def main():
    held = load_file(str(FIXTURES / "heldout.safetensors"))
    images, labels = held["images"], held["labels"].astype(int)
    probs = [softmax(load_file(str(FIXTURES / f"{f}-logits.safetensors"))["logits"].astype(np.float64)) for f in FAMILIES]
    clear = np.all([p[np.arange(len(labels)), labels] >= 0.9 for p in probs], axis=0)
    out = ROOT / "assets" / "samples"
    out.mkdir(parents=True, exist_ok=True)
    for d in range(10):
        i = int(np.flatnonzero((labels == d) & clear)[0])
        Image.fromarray(images[i], mode="L").save(out / f"{d}.png", optimize=True)
        print(f"{d}.png: held-out index {i}, reference p(true) = " + ", ".join(f"{f} {p[i, d]:.3f}" for f, p in zip(FAMILIES, probs)))


if __name__ == "__main__":
    main()
