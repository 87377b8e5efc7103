#!/usr/bin/env python3
"""Paired warm-latency comparison: wgvit against PyTorch eager and ONNX Runtime (CPU), on the
same machine, in one run, with interleaved rounds.

    cargo build --release
    pip install torch --index-url https://download.pytorch.org/whl/cpu && pip install onnxruntime onnx
    python3 tools/bench_compare.py [--models hatnet-tiny,vvt-tiny,accvit-tiny,lavit-tiny]
                                   [--size 224] [--rounds 3] [--runs 10] [--threads 2]
                                   [--wgvit BIN] [--before BIN]

Each model is the project's PyTorch reference (tools/reference/, random weights: the weights do
not change the time) at batch 1. PyTorch runs eagerly under `inference_mode` with `--threads`
intra-op threads; ONNX Runtime runs the same module exported to ONNX on its CPU execution
provider with as many threads; wgvit runs `wgvit bench` (release build) on the default adapter
(WGPU_BACKEND=vulkan unless set: lavapipe on a machine without a GPU). Every figure is a median
of `--runs` warm forwards; a round measures every model on every engine, and the table gives the
median over rounds. Absolute times drift between runs and hosts by up to 60 %, so compare the
ratios, which are measured side by side; the CPU model is printed with them.

`--before BIN` times a second wgvit binary (e.g. the commit before a change) in the same rounds,
next to the first, and adds its ratio to PyTorch and the after / before ratio: on a host whose
speed drifts from minute to minute, two separate runs can disagree more than a change moves.

Not part of CI (it needs torch and onnxruntime).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools" / "reference"))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def reference(model_id: str):
    family, variant = model_id.split("-", 1)
    if family not in ("hatnet", "vvt", "accvit", "lavit"):
        raise SystemExit(f"{model_id}: no reference for family '{family}' in tools/reference")
    module = __import__(family)
    if variant not in module.VARIANTS:
        raise SystemExit(f"{model_id}: unknown variant '{variant}' (known: {', '.join(sorted(module.VARIANTS))})")
    return module.build(variant).eval()


def median_ms(fn, runs: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def export_onnx(model, x, path: Path) -> str | None:
    """Exports `model` to `path`; returns why it failed, or None."""
    import warnings

    import torch

    errors = []
    for dynamo in (False, True):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the tracer's notes on shape arithmetic
                torch.onnx.export(model, (x,), str(path), opset_version=17, dynamo=dynamo)
            return None
        except Exception as e:  # noqa: BLE001 - any exporter failure only drops the ORT column
            errors.append(f"{'dynamo' if dynamo else 'torchscript'} exporter: {str(e).splitlines()[0][:200]}")
    return "; ".join(errors)


class Torch:
    name = "PyTorch"

    def __init__(self, model, x):
        import torch

        self.model, self.x, self.torch = model, x, torch

    def time(self, runs: int) -> float:
        with self.torch.inference_mode():
            return median_ms(lambda: self.model(self.x), runs)


class Ort:
    name = "ONNX Runtime"

    def __init__(self, onnx_path: Path, x, threads: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.feed = {self.session.get_inputs()[0].name: x.numpy()}

    def time(self, runs: int) -> float:
        return median_ms(lambda: self.session.run(None, self.feed), runs)


class Wgvit:
    def __init__(self, binary: Path, model_id: str, size: int, name: str = "wgvit"):
        self.name = name
        self.cmd = [str(binary), "bench", "--model", model_id, "--size", str(size)]
        self.gflops = None

    def time(self, runs: int) -> float:
        out = subprocess.run(self.cmd + ["--runs", str(runs)], capture_output=True, text=True, env=wgvit_env())
        if out.returncode != 0:
            raise SystemExit(f"{' '.join(self.cmd)} failed:\n{out.stderr}")
        warm = re.search(r"warm:\s+median ([0-9.]+) ms", out.stdout)
        if not warm:
            raise SystemExit(f"no 'warm: median' line in the output of {' '.join(self.cmd)}:\n{out.stdout}")
        rate = re.search(r"([0-9.]+) GFLOP per forward, ([0-9.]+) GFLOP/s", out.stdout)
        if rate:
            self.gflops = float(rate.group(1))
        return float(warm.group(1))


def wgvit_env() -> dict:
    env = dict(os.environ)
    env.setdefault("WGPU_BACKEND", "vulkan")
    return env


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="hatnet-tiny,vvt-tiny,accvit-tiny,lavit-tiny")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2, help="PyTorch and ONNX Runtime intra-op threads")
    ap.add_argument("--wgvit", type=Path, default=ROOT / "target" / "release" / "wgvit")
    ap.add_argument("--before", type=Path, help="a second wgvit binary timed in the same rounds")
    args = ap.parse_args()
    if not args.wgvit.is_file():
        raise SystemExit(f"{args.wgvit} not found: run `cargo build --release` first (or pass --wgvit)")
    if args.before is not None and not args.before.is_file():
        raise SystemExit(f"--before {args.before}: not a file")

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    info = subprocess.run([str(args.wgvit), "info"], capture_output=True, text=True, env=wgvit_env()).stdout
    adapter = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("adapter:")), "?")
    print(f"CPU: {cpu_model()}; {os.cpu_count()} logical cores; PyTorch {torch.__version__} and ONNX Runtime with "
          f"{args.threads} threads; wgvit on {adapter}")

    engines: dict[str, list] = {}
    notes = []
    with tempfile.TemporaryDirectory() as tmp:
        for model_id in args.models.split(","):
            model = reference(model_id)
            x = torch.randn(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(1))
            row = [Wgvit(args.wgvit, model_id, args.size), Torch(model, x)]
            if args.before is not None:
                row.insert(1, Wgvit(args.before, model_id, args.size, name="wgvit before"))
            onnx_path = Path(tmp) / f"{model_id}.onnx"
            why = export_onnx(model, x, onnx_path)
            if why is None:
                row.append(Ort(onnx_path, x, args.threads))
            else:
                notes.append(f"{model_id}: no ONNX Runtime figure ({why})")
            engines[model_id] = row

        times: dict[tuple[str, str], list[float]] = {}
        for r in range(args.rounds):
            for model_id, row in engines.items():
                for engine in row:
                    ms = engine.time(args.runs)
                    times.setdefault((model_id, engine.name), []).append(ms)
                    print(f"round {r + 1} {model_id:14} {engine.name:13} {ms:9.1f} ms", file=sys.stderr)

    before = args.before is not None
    print()
    extra = " wgvit before | before / PyTorch | wgvit / before |" if before else ""
    print(f"| model @ {args.size} | GFLOP | wgvit | PyTorch | ONNX Runtime | wgvit / PyTorch | wgvit / ORT |{extra}")
    print("|---" * (10 if before else 7) + "|")
    for model_id, row in engines.items():
        med = {name: statistics.median(v) for (m, name), v in times.items() if m == model_id}
        w, t, o, b = med.get("wgvit"), med.get("PyTorch"), med.get("ONNX Runtime"), med.get("wgvit before")
        gflops = row[0].gflops
        cell = lambda v: f"{v:.1f} ms" if v is not None else "—"  # noqa: E731
        ratio = lambda a, b: f"{a / b:.1f}×" if a is not None and b else "—"  # noqa: E731
        line = f"| {model_id} | {gflops if gflops is not None else '?'} | {cell(w)} | {cell(t)} | {cell(o)} | {ratio(w, t)} | {ratio(w, o)} |"
        if before:
            line += f" {cell(b)} | {ratio(b, t)} | {w / b:.2f} |"
        print(line)
    print(f"\nmedians over {args.rounds} interleaved rounds of {args.runs} warm runs each")
    for note in notes:
        print(note)


if __name__ == "__main__":
    main()
