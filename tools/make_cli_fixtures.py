#!/usr/bin/env python3
"""Fixtures for the command-line tests: images with their reference preprocessing, and PyTorch
checkpoints of the `toy` model (tests/classify.rs, tests/preprocess.rs, tests/pth.rs).

Writes tests/fixtures/cli/. Deterministic (but for the random serialization id torch.save adds);
needs torch, numpy, Pillow and safetensors (not CI).

images/       small procedural images (gradients, shapes, stripes fine enough to alias):
              gradient.png 96x64 RGB, shapes.jpg 72x100 (JPEG q95, 4:4:4), gray.png 80x80 L,
              alpha.webp 64x64 RGBA (lossless)
expected/     the reference evaluation transform of every image:
              preprocessed_32.safetensors  tensor '<image file>' [3, 32, 32] f32, normalised
              <stem>_<S>.png               the 8-bit S x S crop (before scaling and normalising)
                                           for S = 64 (all images) and S = 224 (two of them)
              shapes_decoded.png           PIL's decoding of shapes.jpg (JPEG decoders differ
                                           by a level or two; this separates that from resizing)
toy*.pth      tests/fixtures/toy/weights.safetensors loaded into the toy module
              (tools/make_toy_fixture.py) and saved with torch.save:
              toy.pth                 torch.save(model.state_dict())   (OrderedDict, _metadata,
                                      int64 num_batches_tracked)
              toy_wrapped.pth         {'model': {'module.' + name: Parameter}, 'epoch', 'args'
                                      (argparse.Namespace), 'optimizer'}  — a training checkpoint
              toy_f16.pth             {'state_dict': every float tensor in float16}
              toy_noncontig.pth       the state_dict with a transposed view, a view at an offset
                                      into a larger storage, and two tensors sharing one storage
malicious*.pth  checkpoints whose pickle calls os.system / builtins.eval when loaded with
              torch.load(weights_only=False): wgvit must refuse them (they are never loaded here)

The reference transform is torchvision's evaluation transform for timm's default crop_pct 0.875
(`Resize(floor(S / 0.875), BICUBIC)`, `CenterCrop(S)`, `ToTensor()`, `Normalize(mean, std)`),
written out with PIL and torch directly so that torchvision is not needed:
  shorter side -> floor(S / 0.875), longer side int(new_short * long / short);
  img.resize((w, h), Image.BICUBIC); crop offsets int(round((in - S) / 2.0));
  x = uint8 HWC -> float32 CHW / 255; (x - mean) / std in float32.
If torchvision is importable it is used as well and must agree exactly.

Usage: python3 tools/make_cli_fixtures.py
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import io
import math
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "cli"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CROP_PCT = 0.875


# ---------------------------------------------------------------- images

def gradient_png() -> Image.Image:
    w, h = 96, 64
    x = np.arange(w)[None, :].repeat(h, 0)
    y = np.arange(h)[:, None].repeat(w, 1)
    r = (255 * x / (w - 1)).astype(np.uint8)
    g = (255 * y / (h - 1)).astype(np.uint8)
    b = np.where(((x // 3) + (y // 3)) % 2 == 0, 230, 20).astype(np.uint8)  # fine checker: aliases if not filtered
    img = Image.fromarray(np.stack([r, g, b], -1), "RGB")
    d = ImageDraw.Draw(img)
    d.ellipse((50, 8, 90, 48), fill=(250, 240, 30))
    d.line((0, 63, 95, 0), fill=(0, 0, 0), width=2)
    return img


def shapes_jpg() -> Image.Image:
    w, h = 72, 100
    y = np.arange(h)[:, None].repeat(w, 1)
    x = np.arange(w)[None, :].repeat(h, 0)
    base = np.stack([(40 + 2 * y) % 256, (200 - 2 * x) % 256, 128 + 60 * np.sin(x / 5.0) * np.cos(y / 7.0)], -1)
    img = Image.fromarray(base.astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    d.rectangle((8, 10, 40, 40), fill=(220, 30, 40))
    d.ellipse((30, 50, 68, 92), fill=(20, 60, 220), outline=(255, 255, 255), width=3)
    d.polygon([(5, 95), (25, 60), (45, 95)], fill=(30, 180, 60))
    return img


def gray_png() -> Image.Image:
    n = 80
    y, x = np.mgrid[0:n, 0:n]
    rad = np.hypot(x - 37.5, y - 41.0)
    v = 127.5 + 127.5 * np.cos(rad * rad / 60.0)  # a chirp: ever finer rings
    v = np.where((x % 7) == 0, 255 - v, v)
    return Image.fromarray(v.astype(np.uint8), "L")


def alpha_webp() -> Image.Image:
    n = 64
    y, x = np.mgrid[0:n, 0:n]
    r = (4 * x) % 256
    g = (4 * y) % 256
    b = ((x * y) // 8) % 256
    a = np.clip(255 - 4 * np.abs(x - y), 0, 255)  # transparency must be dropped, not blended
    return Image.fromarray(np.stack([r, g, b, a], -1).astype(np.uint8), "RGBA")


def write_images(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    p = out / "gradient.png"
    gradient_png().save(p, optimize=True)
    paths.append(p)
    p = out / "shapes.jpg"
    shapes_jpg().save(p, quality=95, subsampling=0)
    paths.append(p)
    p = out / "gray.png"
    gray_png().save(p, optimize=True)
    paths.append(p)
    p = out / "alpha.webp"
    alpha_webp().save(p, lossless=True)
    paths.append(p)
    return paths


# ---------------------------------------------------------------- reference transform

def reference_crop(img: Image.Image, size: int) -> Image.Image:
    img = img.convert("RGB")
    scale = math.floor(size / CROP_PCT)
    w, h = img.size
    if w <= h:
        nw, nh = scale, int(scale * h / w)
    else:
        nw, nh = int(scale * w / h), scale
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BICUBIC)
    left = int(round((nw - size) / 2.0))
    top = int(round((nh - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def normalise(crop: Image.Image) -> torch.Tensor:
    x = torch.from_numpy(np.asarray(crop).copy()).permute(2, 0, 1).contiguous().float().div(255)
    mean = torch.tensor(MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(STD, dtype=torch.float32).view(3, 1, 1)
    return (x - mean) / std


def check_with_torchvision(img: Image.Image, size: int, ours: torch.Tensor) -> None:
    try:
        from torchvision import transforms as T
    except ImportError:
        return
    tf = T.Compose([T.Resize(math.floor(size / CROP_PCT), interpolation=T.InterpolationMode.BICUBIC),
                    T.CenterCrop(size), T.ToTensor(), T.Normalize(MEAN, STD)])
    theirs = tf(img.convert("RGB"))
    assert torch.equal(theirs, ours), "the PIL-only transform differs from torchvision's"


def write_expected(images: list[Path], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for p in images:
        img = Image.open(p)
        img.load()
        t = normalise(reference_crop(img, 32))
        check_with_torchvision(img, 32, t)
        tensors[p.name] = t.contiguous()
        if p.suffix == ".jpg":  # PIL's (libjpeg-turbo's) decoded pixels: resize parity apart from decoding
            img.convert("RGB").save(out / f"{p.stem}_decoded.png", optimize=True)
        reference_crop(img, 64).save(out / f"{p.stem}_64.png", optimize=True)
        if p.stem in ("gradient", "shapes"):
            reference_crop(img, 224).save(out / f"{p.stem}_224.png", optimize=True)
    save_file(tensors, str(out / "preprocessed_32.safetensors"),
              metadata={"source": "tools/make_cli_fixtures.py", "transform": "floor(S/0.875) bicubic (PIL), center crop, ImageNet mean/std"})


# ---------------------------------------------------------------- checkpoints

def toy_module() -> torch.nn.Module:
    spec = importlib.util.spec_from_file_location("make_toy_fixture", ROOT / "tools" / "make_toy_fixture.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.Toy().eval()
    sd = load_file(str(ROOT / "tests" / "fixtures" / "toy" / "weights.safetensors"))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
    return model


class Evil:
    """Pickles as a call to os.system: what a malicious checkpoint does on torch.load."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/wgvit-pwned-by-pickle",))


class EvilEval:
    def __reduce__(self):
        return (eval, ("__import__('os').system('touch /tmp/wgvit-pwned-by-pickle')",))


def write_checkpoints(out: Path) -> None:
    import argparse as ap

    model = toy_module()
    sd = model.state_dict()
    torch.save(sd, out / "toy.pth")

    wrapped = collections.OrderedDict()
    for k, v in sd.items():
        wrapped["module." + k] = torch.nn.Parameter(v.clone(), requires_grad=False) if v.is_floating_point() else v
    torch.save({
        "model": wrapped,
        "epoch": 7,
        "args": ap.Namespace(model="toy", lr=1e-3, input_size=32),
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]},
    }, out / "toy_wrapped.pth")

    torch.save({"state_dict": collections.OrderedDict((k, v.half() if v.is_floating_point() else v) for k, v in sd.items())},
               out / "toy_f16.pth")

    nc = collections.OrderedDict((k, v.clone()) for k, v in sd.items())
    nc["head.weight"] = sd["head.weight"].t().contiguous().t()  # stride (1, 10): a transposed view
    fc1 = sd["blocks.0.mlp.fc1.weight"]
    big = torch.zeros(fc1.numel() + 37)
    big[37:] = fc1.flatten()
    nc["blocks.0.mlp.fc1.weight"] = big[37:].view(fc1.shape)  # storage offset 37
    both = torch.cat([sd["blocks.0.norm1.weight"], sd["blocks.0.norm1.bias"]])
    n = sd["blocks.0.norm1.weight"].numel()
    nc["blocks.0.norm1.weight"], nc["blocks.0.norm1.bias"] = both[:n], both[n:]  # one shared storage
    qkv = sd["blocks.1.attn.qkv.weight"]  # [48, 16]: stored as every other row of a [96, 16] tensor
    wide = torch.zeros(2 * qkv.shape[0], qkv.shape[1])
    wide[::2] = qkv
    nc["blocks.1.attn.qkv.weight"] = wide[::2]
    assert not nc["head.weight"].is_contiguous() and not nc["blocks.1.attn.qkv.weight"].is_contiguous()
    torch.save(nc, out / "toy_noncontig.pth")

    torch.save({"model": Evil()}, out / "malicious.pth")
    # The same attack as a protocol-4 pickle (STACK_GLOBAL builtins.eval) inside a torch-style zip.
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("malicious_eval/data.pkl", pickle.dumps({"state_dict": EvilEval()}, protocol=4))
        z.writestr("malicious_eval/byteorder", "little")
        z.writestr("malicious_eval/version", "3\n")
    (out / "malicious_eval.pth").write_bytes(buf.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.manual_seed(0)
    images = write_images(args.out / "images")
    write_expected(images, args.out / "expected")
    write_checkpoints(args.out)
    total = 0
    for p in sorted(args.out.rglob("*")):
        if p.is_file():
            total += p.stat().st_size
            print(f"{p.relative_to(ROOT)}  {p.stat().st_size} bytes")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
