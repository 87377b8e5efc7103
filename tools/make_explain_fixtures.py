#!/usr/bin/env python3
"""Fixtures for `wgvit explain` (the attention maps): the PyTorch reference maps of the bundled
digit models on one seeded input, in both modes.

    python3 tools/make_explain_fixtures.py [--family hatnet] [--out tests/fixtures/explain]

Needs torch, numpy and safetensors (not PIL, not CI); a few seconds on one CPU thread.
Deterministic tensors (float64 forward, seeded input); only the order of the metadata keys in
the header can change between runs (safetensors writes them from a hash map).

For each family (hatnet, vvt, accvit, lavit): assets/models/<family>-digits.safetensors (f16)
loaded into train_digits.build_model(family, CONFIGS[family]["arch"]) and run in float64 on
x = torch.randn(1, 3, S, S, generator=torch.Generator().manual_seed(0)) (float32; S the model's
wgvit.input_size: 64, 32, 64, 64). The maps are tools/reference/explain.py's (its docstring
defines them): received mode (no query) and query mode with (X, Y) = (S // 3, S // 2) in input
pixels (X = column, Y = row). The script also checks that the logits of the hooked forward equal
those of a plain forward exactly (the hooks change nothing).

Writes <out>/<family>-digits.safetensors, float32 tensors:
  input              [1, 3, S, S]
  received/<name>    [hk, wk]   for every map name, in the order of metadata "maps"
  query/<name>       [hk, wk]
  received/<name>/heads  [heads, hk, wk]  per-head maps of every attention map (every name but
  query/<name>/heads     [heads, hk, wk]  the ACC-ViT gate maps `...attn.gate.{i}`); their mean
                                          over heads is received/<name> (query/<name>): checked
                                          here to 1e-12 in float64 and 1e-7 on the stored f32
  summary/received   [S, S]
  summary/query      [S, S]
  logits             [1, 10]    float64 forward, stored as f32
metadata: model ("<family>-digits"), query ("X,Y"), maps (JSON list of the map names in order),
heads (JSON object: map name -> head count, for the maps that have "/heads" tensors), what, script.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "reference"))

from train_digits import CONFIGS, build_model  # noqa: E402
from explain import capture, explain_maps  # noqa: E402

FAMILIES = ("hatnet", "vvt", "accvit", "lavit")
WHAT = ("attention maps of `wgvit explain` (tools/reference/explain.py, float64 PyTorch, stored f32) "
        "of the bundled digit model on a seeded N(0,1) input: received mode (no query) and query mode, "
        "head mean and per head (<mode>/<map>/heads)")


def load_model(family: str, models: Path):
    path = models / f"{family}-digits.safetensors"
    with safe_open(str(path), "pt") as f:
        size = int(f.metadata()["wgvit.input_size"])
    assert size == CONFIGS[family]["input_size"], (family, size)
    model = build_model(family, CONFIGS[family]["arch"])
    sd = load_file(str(path))
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
    return model.double().eval(), size


def make(family: str, models: Path, out: Path) -> Path:
    model, s = load_model(family, models)
    x = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(0))
    query = (s // 3, s // 2)

    with torch.no_grad():
        plain = model(x.double())
    captured, hooked = capture(family, model, x)
    assert torch.equal(plain, hooked), f"{family}: the hooks changed the logits"

    received, sum_received, received_heads = explain_maps(family, model, x, None, heads=True)
    queried, sum_query, queried_heads = explain_maps(family, model, x, query, heads=True)
    names = [n for n, _ in received]
    assert names == [n for n, _ in queried] == [c.name for c in captured]
    assert len(set(names)) == len(names), names
    head_names = [c.name for c in captured if c.kind == "attention"]
    assert head_names == [n for n, _ in received_heads] == [n for n, _ in queried_heads]
    assert all(n in head_names or ".attn.gate." in n for n in names), names
    head_counts = {n: int(hm.shape[0]) for n, hm in received_heads}
    for maps, heads in ((received, received_heads), (queried, queried_heads)):
        mean = dict(maps)
        for n, hm in heads:
            assert hm.shape[1:] == mean[n].shape and hm.shape[0] == head_counts[n], (n, hm.shape)
            err = np.abs(hm.mean(axis=0) - mean[n]).max()
            assert err <= 1e-12, f"{family} {n}: mean over heads differs from the head mean by {err:.3e} (f64)"

    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(torch.float32)  # noqa: E731
    tensors = {"input": x.contiguous()}
    for n, m in received:
        tensors[f"received/{n}"] = t(m)
    for n, m in queried:
        tensors[f"query/{n}"] = t(m)
    for n, hm in received_heads:
        tensors[f"received/{n}/heads"] = t(hm)
    for n, hm in queried_heads:
        tensors[f"query/{n}/heads"] = t(hm)
    for mode in ("received", "query"):  # the stored f32: mean over heads vs the head-mean map
        for n in head_names:
            err = (tensors[f"{mode}/{n}/heads"].double().mean(dim=0) - tensors[f"{mode}/{n}"].double()).abs().max().item()
            assert err <= 1e-7, f"{family} {mode}/{n}: stored mean over heads differs by {err:.3e}"
    tensors["summary/received"] = t(sum_received)
    tensors["summary/query"] = t(sum_query)
    tensors["logits"] = plain.to(torch.float32).contiguous()
    meta = {
        "model": f"{family}-digits",
        "query": f"{query[0]},{query[1]}",
        "maps": json.dumps(names),
        "heads": json.dumps(head_counts),
        "what": WHAT,
        "script": "tools/make_explain_fixtures.py",
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{family}-digits.safetensors"
    save_file(tensors, str(path), metadata=meta)

    print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}: {path.stat().st_size} bytes, "
          f"input {s}x{s}, query (X, Y) = {query}, {len(names)} maps, logits {[round(v, 4) for v in plain[0].tolist()]}")
    for (n, r), (_, q) in zip(received, queried):
        heads = f"{head_counts[n]:2d} heads" if n in head_counts else " no heads"
        print(f"  {n:40s} {str(list(r.shape)):9s} {heads}  received sum {r.sum():.12f}  query sum {q.sum():.12f}")
    print(f"  summary sums: received {sum_received.sum():.12f}, query {sum_query.sum():.12f}")
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", default="all", choices=["all", *FAMILIES])
    ap.add_argument("--models", default=str(ROOT / "assets" / "models"))
    ap.add_argument("--out", default=str(ROOT / "tests" / "fixtures" / "explain"))
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    for fam in (FAMILIES if a.family == "all" else [a.family]):
        make(fam, Path(a.models), Path(a.out))


if __name__ == "__main__":
    main()
