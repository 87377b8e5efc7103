#!/usr/bin/env python3
"""Seed corpus of the fuzz targets (fuzz/fuzz_targets/, bodies in src/fuzz.rs).

Writes fuzz/corpus/<target>/seed-*: the starting points libFuzzer mutates. Standard library
only; deterministic; re-run it and `git diff` shows nothing. What the fuzzer adds to the corpus
(files named by their SHA-1) is committed beside these, minimised with `cargo fuzz cmin`.

safetensors  the toy fixture, the four bundled digit models' headers over zeroed data (small),
             and hand-made files: every dtype, a rank-0 tensor, an empty tensor, metadata
pth          the toy checkpoints of tests/fixtures/cli (plain, wrapped, f16, non-contiguous)
             and the malicious pickles
metadata     `key=value` lines: the metadata of each bundled model (its `wgvit.config` JSON
             among them), and variants with every `wgvit.*` key
image        3 bytes of transform (crop height - 1, crop width - 1, crop fraction) then a file:
             the bundled digits, the CLI test images (PNG, JPEG, WebP)
"""
import json
import os
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def out(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def read(*path):
    with open(os.path.join(ROOT, *path), "rb") as f:
        return f.read()


def safetensors_header(data):
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n])


def safetensors_file(header):
    """A safetensors file of `header` (offsets already set) over zeroed data."""
    size = max([t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"] + [0])
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + bytes(size)


def tiny(tensors, metadata=None):
    header, offset = {}, 0
    for name, dtype, shape, itemsize in tensors:
        n = itemsize
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    if metadata:
        header["__metadata__"] = metadata
    return safetensors_file(header)


def main():
    if os.path.isdir(CORPUS):
        for target in os.listdir(CORPUS):
            for f in os.listdir(os.path.join(CORPUS, target)):
                if f.startswith("seed-"):
                    os.remove(os.path.join(CORPUS, target, f))

    out("safetensors", "toy", read("tests", "fixtures", "toy", "weights.safetensors"))
    digit_models = ["hatnet-digits", "vvt-digits", "accvit-digits", "lavit-digits"]
    for m in digit_models:
        header = safetensors_header(read("assets", "models", m + ".safetensors"))
        # Keep the first few tensors so the seed stays small; offsets renumbered densely.
        names = [k for k in header if k != "__metadata__"][:6]
        small, offset = {"__metadata__": header["__metadata__"]}, 0
        for k in names:
            t = dict(header[k])
            n = t["data_offsets"][1] - t["data_offsets"][0]
            t["data_offsets"] = [offset, offset + n]
            small[k] = t
            offset += n
        out("safetensors", m, safetensors_file(small))
    dtypes = [("F32", 4), ("F16", 2), ("BF16", 2), ("F64", 8), ("I64", 8), ("I32", 4), ("U8", 1), ("BOOL", 1)]
    out("safetensors", "dtypes", tiny([(f"t.{d.lower()}", d, [2, 3], s) for d, s in dtypes]))
    out("safetensors", "rank0-empty", tiny([("scalar", "F32", [], 4), ("empty", "F32", [0, 4], 4)], {"wgvit.model": "toy"}))

    for f in ["toy.pth", "toy_wrapped.pth", "toy_f16.pth", "toy_noncontig.pth", "malicious.pth", "malicious_eval.pth"]:
        out("pth", f.replace(".pth", ""), read("tests", "fixtures", "cli", f))

    for m in digit_models:
        md = safetensors_header(read("assets", "models", m + ".safetensors"))["__metadata__"]
        lines = "".join(f"{k}={v}\n" for k, v in sorted(md.items()) if "\n" not in v)
        out("metadata", m, lines.encode())
    out("metadata", "every-key", b"wgvit.model=hatnet-digits\nwgvit.input_size=32x48\nwgvit.crop_pct=0.9\n"
        b"wgvit.mean=0.5,0.5,0.5\nwgvit.std=0.25,0.25,0.25\nwgvit.classes=3\nwgvit.labels=a,b,c\n")
    out("metadata", "builtin", b"wgvit.model=vvt-micro\nwgvit.input_size=61x47\n")

    for i in range(10):
        out("image", f"digit{i}", bytes([31, 31, 224]) + read("assets", "samples", f"{i}.png"))
    for f in sorted(os.listdir(os.path.join(ROOT, "tests", "fixtures", "cli", "images"))):
        out("image", f.replace(".", "-"), bytes([63, 47, 223]) + read("tests", "fixtures", "cli", "images", f))


if __name__ == "__main__":
    main()
