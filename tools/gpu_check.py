#!/usr/bin/env python3
"""One-shot check of wgvit on a real GPU: correctness, warm and cold speed, paired with PyTorch.

    cargo build --release
    python3 tools/gpu_check.py --wgvit target/release/wgvit --out gpu-check/ [--budget-s 300]

Written for the rare session that is lent a GPU machine for a few minutes (the developers' guide:
build here, carry the binary, the Vulkan loader and this script, run once). Every step has a
timeout, and the JSON is rewritten after each one, so a run cut short still says what it saw.
Steps, most important first:

1. `wgvit info`: the adapter, driver, features and the kernel set the device profile picked.
2. fixtures: the micro models of tests/fixtures (made by the official HAT-Net and VVT code and
   the contract) on both kernel sets: max |logit difference| (the tests' bar is 1e-5).
   parity: each family's tiny model at 224 with perturbed weights (tools/reference, as
   tools/check_parity.py builds them) against the float64 PyTorch reference, on the GPU-like
   kernel set and the CPU-like one (`WGVIT_KERNELS`): max |logit difference|.
3. the bundled digit models read the ten bundled samples (`classify --json`): top-1 per sample.
4. warm and cold `wgvit bench` for the tiny models (batch 1 and 16, both kernel sets) and the
   digit models, interleaved with PyTorch eager on CUDA (fp32, TF32 off) on the same models: the
   ratio wgvit / PyTorch of the median warm latency, input upload and logits readback included
   on both sides.
5. whole-process `wgvit classify` with an empty cache folder, then again (cold start).
6. `wgvit profile` of each tiny model and `wgvit bench-ops` (kernels against the FMA peak), raw.

Writes OUT/gpu_check.json and OUT/gpu_check.log (every command and its output). Needs python3
with torch and safetensors (the reference models); the ACC-ViT and LaViT references also need
the shared contract ($WGVIT_CONTRACT or --contract). Not part of CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tools" / "reference"))
from bench_compare import cpu_model, median_ms  # noqa: E402

FAMILIES = ("hatnet", "vvt", "accvit", "lavit")
KERNEL_SETS = ("gpu", "cpu")


class Check:
    def __init__(self, args):
        self.args = args
        self.out = args.out
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = open(self.out / "gpu_check.log", "w", buffering=1)
        self.deadline = time.monotonic() + args.budget_s
        self.report: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "steps": {}}
        self.env = dict(os.environ)
        self.env.setdefault("WGPU_BACKEND", "vulkan")
        self.env.setdefault("XDG_RUNTIME_DIR", "/tmp/xdg-runtime")
        os.makedirs(self.env["XDG_RUNTIME_DIR"], mode=0o700, exist_ok=True)

    def left_s(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        tmp = self.out / "gpu_check.json.tmp"
        tmp.write_text(json.dumps(self.report, indent=1))
        tmp.replace(self.out / "gpu_check.json")

    def wgvit(self, *argv, kernels: str | None = None, timeout: float = 120, env: dict | None = None):
        """Runs the binary; returns (returncode, stdout, stderr, seconds)."""
        run_env = dict(env or self.env)
        if kernels:
            run_env["WGVIT_KERNELS"] = kernels
        cmd = [str(self.args.wgvit), *map(str, argv)]
        timeout = max(5.0, min(timeout, self.left_s()))
        start = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, env=run_env, timeout=timeout)
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = 124, (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or ""), f"timed out after {timeout:.0f} s"
        seconds = time.perf_counter() - start
        self.log.write(f"\n$ {'WGVIT_KERNELS=' + kernels + ' ' if kernels else ''}{' '.join(cmd)}   # rc {rc}, {seconds:.2f} s\n{out}{err}")
        return rc, out, err, seconds

    def step(self, name: str, fn) -> None:
        if self.left_s() < 10:
            self.report["steps"][name] = {"skipped": "budget spent"}
            self.save()
            return
        start = time.perf_counter()
        try:
            self.report["steps"][name] = fn()
        except Exception as e:  # noqa: BLE001 - one failed step must not cost the others
            self.report["steps"][name] = {"error": f"{type(e).__name__}: {e}"}
            self.log.write(f"\n!! step {name} failed: {type(e).__name__}: {e}\n")
        self.report["steps"][name + "_seconds"] = round(time.perf_counter() - start, 1)
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
        self.save()


def host(check: Check) -> dict:
    info = {"cpu": cpu_model(), "logical_cores": os.cpu_count(), "python": platform.python_version()}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        info["nvidia_smi"] = f"unavailable: {e}"
    import torch

    info["torch"] = torch.__version__
    info["torch_cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return info


def adapter(check: Check) -> dict:
    rc, out, err, _ = check.wgvit("info", timeout=60)
    fields = dict(re.findall(r"^(adapter|backend|type|driver|features|kernels):\s+(.*)$", out, re.M))
    if rc != 0 or "adapter" not in fields:
        raise RuntimeError(f"wgvit info failed (rc {rc}): {err.strip()[-400:]}")
    fields["limits"] = dict((k, int(v)) for k, v in re.findall(r"^\s+(max_\w+|min_\w+)\s+(\d+)$", out, re.M))
    if "cpu" in fields.get("type", "").lower() or "llvmpipe" in fields["adapter"]:
        fields["warning"] = "the adapter is a CPU device, not the GPU"
    return fields


def parity(check: Check) -> list:
    import torch
    from safetensors.torch import load_file

    from bench_compare import reference
    from fixture_utils import perturb, save

    rows = []
    size = check.args.size
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for family in check.args.families.split(","):
            model_id = f"{family}-tiny"
            torch.manual_seed(0)
            model = reference(model_id)
            perturb(model, 2)
            x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(1))
            with torch.no_grad():
                want32 = model(x).double()
                want = model.double()(x.double())
                model.float()
            save(tmp / "w.safetensors", model.state_dict())
            save(tmp / "in.safetensors", {"input": x})
            for kernels in KERNEL_SETS:
                out = tmp / f"out-{kernels}.safetensors"
                rc, _, err, seconds = check.wgvit("run", "--model", model_id, "--weights", tmp / "w.safetensors",
                                                  "--input", tmp / "in.safetensors", "--output", out, kernels=kernels)
                row = {"model": model_id, "size": size, "kernels": kernels, "seconds": round(seconds, 2)}
                if rc != 0:
                    row["error"] = err.strip()[-400:]
                else:
                    got = load_file(str(out))["logits"].double()
                    diff = (got - want).abs().max().item()
                    row.update(max_abs_diff_vs_f64=diff, reference_f32_vs_f64=(want32 - want).abs().max().item(),
                               logit_scale=want.abs().max().item(), finite=bool(torch.isfinite(got).all()),
                               passed=bool(diff <= check.args.tol and torch.isfinite(got).all()))
                rows.append(row)
                check.log.write(f"parity {row}\n")
    return rows


FIXTURES = {  # tests/fixtures/<dir>: the model id its weights are for (official code or the contract made them)
    "hatnet-micro": "hatnet-micro", "vvt-micro": "vvt-micro", "vvt-micro-gain1.5": "vvt-micro",
    "accvit-micro": "accvit-micro", "lavit-micro": "lavit-micro", "lavit-micro-psi": "lavit-micro-psi",
}


def fixtures(check: Check) -> list:
    from safetensors.numpy import load_file

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for folder, model_id in FIXTURES.items():
            d = ROOT / "tests" / "fixtures" / folder
            for inp in sorted(d.glob("input*.safetensors")):
                tag = inp.stem[len("input"):]
                want = load_file(str(d / f"logits{tag}.safetensors"))["logits"].astype("float64")
                for kernels in KERNEL_SETS:
                    out = Path(tmp) / "out.safetensors"
                    rc, _, err, seconds = check.wgvit("run", "--model", model_id, "--weights", d / "weights.safetensors",
                                                      "--input", inp, "--output", out, kernels=kernels)
                    row = {"fixture": f"{folder}{tag}", "kernels": kernels, "seconds": round(seconds, 2)}
                    if rc != 0:
                        row["error"] = err.strip()[-400:]
                    else:
                        got = load_file(str(out))["logits"].astype("float64")
                        diff = float(abs(got - want).max())
                        row.update(max_abs_diff=diff, passed=bool(diff <= 1e-5))
                    rows.append(row)
    return rows


def digits(check: Check) -> list:
    samples = sorted((ROOT / "assets" / "samples").glob("*.png"))
    rows = []
    for family in FAMILIES:
        for kernels in KERNEL_SETS:
            rc, out, err, seconds = check.wgvit("classify", *samples, "--model", f"{family}-digits", "--json", "--top", "1", kernels=kernels)
            row = {"model": f"{family}-digits", "kernels": kernels, "seconds": round(seconds, 2)}
            if rc != 0:
                row["error"] = err.strip()[-400:]
            else:
                answers = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
                top1 = {Path(a["path"]).stem: (a["top"][0]["label"] if a.get("top") else a.get("error")) for a in answers}
                row["top1"] = top1
                row["correct"] = sum(1 for stem, label in top1.items() if str(label).split(" ")[0] == stem)
            rows.append(row)
    return rows


BENCH_RE = {
    "cold_ms": r"cold:\s+([0-9.]+) ms",
    "warm_median_ms": r"warm:\s+median ([0-9.]+) ms",
    "warm_min_ms": r"warm:.*min ([0-9.]+) ms",
    "gflop": r"([0-9.]+) GFLOP per forward",
    "gflops": r"GFLOP per forward, ([0-9.]+) GFLOP/s",
    "dispatches": r"graph:\s+(\d+) dispatches",
    "pipelines": r"dispatches per forward \(one submission\), (\d+) pipelines",
}


def wgvit_bench(check: Check, model_id: str, size: int | None, batch: int, kernels: str) -> dict:
    argv = ["bench", "--model", model_id, "--batch", batch, "--runs", check.args.runs]
    if size:
        argv += ["--size", size]
    rc, out, err, _ = check.wgvit(*argv, kernels=kernels)
    row = {"model": model_id, "size": size, "batch": batch, "kernels": kernels}
    if rc != 0:
        row["error"] = err.strip()[-400:]
        return row
    for key, pattern in BENCH_RE.items():
        m = re.search(pattern, out)
        if m:
            row[key] = float(m.group(1))
    building = re.search(r"building: (.*)", out)
    if building:
        row["building"] = building.group(1).strip()
    return row


class TorchCuda:
    """PyTorch eager on CUDA, fp32 without TF32; upload of the input and readback of the logits
    are timed, as wgvit's warm figure includes them."""

    def __init__(self, model_id: str, size: int, batch: int):
        import torch

        from bench_compare import reference

        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.manual_seed(0)
        self.torch = torch
        self.model = reference(model_id).cuda()
        self.x = torch.randn(batch, 3, size, size)

    def time(self, runs: int) -> float:
        # `.cpu()` waits for the GPU, so each timed forward starts on an idle device.
        with self.torch.inference_mode():
            return median_ms(lambda: self.model(self.x.cuda()).cpu(), runs, warmup=3)


def speed(check: Check) -> dict:
    size = check.args.size
    families = check.args.families.split(",")
    batches = [int(b) for b in check.args.batches.split(",")]
    cases = [(f"{f}-tiny", size, b) for b in batches for f in families] + [(f"{f}-digits", None, 1) for f in families]
    rows = []
    torch_rows = []
    for rnd in range(check.args.rounds):
        for model_id, s, batch in cases:
            for kernels in KERNEL_SETS:
                if check.left_s() < check.args.reserve_s:
                    break
                row = wgvit_bench(check, model_id, s, batch, kernels)
                row["round"] = rnd
                rows.append(row)
            if s and check.left_s() > check.args.reserve_s:
                try:
                    ms = TorchCuda(model_id, s, batch).time(check.args.runs)
                    torch_rows.append({"model": model_id, "size": s, "batch": batch, "round": rnd, "median_ms": ms})
                    check.log.write(f"torch cuda {model_id} b{batch}: {ms:.3f} ms\n")
                except Exception as e:  # noqa: BLE001
                    torch_rows.append({"model": model_id, "batch": batch, "error": f"{type(e).__name__}: {e}"})
        check.report["steps"]["speed_partial"] = {"wgvit": rows, "torch_cuda": torch_rows}
        check.save()
    check.report["steps"].pop("speed_partial", None)
    summary = []
    for model_id, s, batch in cases:
        for kernels in KERNEL_SETS:
            warm = [r["warm_median_ms"] for r in rows if r["model"] == model_id and r["batch"] == batch
                    and r["kernels"] == kernels and "warm_median_ms" in r]
            ref = [r["median_ms"] for r in torch_rows if r["model"] == model_id and r.get("batch") == batch and "median_ms" in r]
            if not warm:
                continue
            w = statistics.median(warm)
            line = {"model": model_id, "batch": batch, "kernels": kernels, "wgvit_ms": w}
            if ref:
                t = statistics.median(ref)
                line.update(torch_cuda_ms=t, wgvit_over_torch=round(w / t, 3))
            summary.append(line)
    return {"summary": summary, "wgvit": rows, "torch_cuda": torch_rows}


def cold(check: Check) -> list:
    rows = []
    sample = ROOT / "assets" / "samples" / "7.png"
    for family in FAMILIES:
        with tempfile.TemporaryDirectory() as home:
            env = dict(check.env, HOME=home, XDG_CACHE_HOME=str(Path(home) / "cache"))
            times = []
            for _ in range(3):
                rc, out, err, seconds = check.wgvit("classify", sample, "--model", f"{family}-digits", env=env)
                times.append(round(seconds, 3) if rc == 0 else f"rc {rc}: {err.strip()[-200:]}")
            rows.append({"model": f"{family}-digits", "empty_cache_s": times[0], "again_s": times[1:]})
    return rows


def raw(check: Check, *argv, kernels=None) -> dict:
    rc, out, err, seconds = check.wgvit(*argv, kernels=kernels, timeout=90)
    return {"rc": rc, "seconds": round(seconds, 1), "stdout": out[-6000:], "stderr": err[-1500:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wgvit", type=Path, default=ROOT / "target" / "release" / "wgvit")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--contract", type=Path, help="the shared contract.py (else $WGVIT_CONTRACT, else ../shared/reference)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--families", default=",".join(FAMILIES), help="for parity and speed")
    ap.add_argument("--batches", default="1,16", help="batch sizes of the tiny models' speed runs")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--budget-s", type=float, default=300, help="stop starting steps after this many seconds")
    ap.add_argument("--reserve-s", type=float, default=80, help="seconds of the budget the speed step leaves to the later steps")
    ap.add_argument("--steps", default="host,adapter,fixtures,parity,speed,cold,digits,profile,bench_ops")
    args = ap.parse_args()
    if args.contract:
        os.environ["WGVIT_CONTRACT"] = str(args.contract.resolve())
    if not args.wgvit.is_file():
        raise SystemExit(f"{args.wgvit} not found: run `cargo build --release` first (or pass --wgvit)")

    check = Check(args)
    steps = {
        "host": lambda: host(check),
        "adapter": lambda: adapter(check),
        "fixtures": lambda: fixtures(check),
        "parity": lambda: parity(check),
        "digits": lambda: digits(check),
        "speed": lambda: speed(check),
        "cold": lambda: cold(check),
        "profile": lambda: {f: raw(check, "profile", "--model", f"{f}-tiny", "--size", args.size, "--runs", 5, "--top", 12)
                            for f in args.families.split(",")},
        "bench_ops": lambda: raw(check, "bench-ops", "--runs", 5),
    }
    for name in args.steps.split(","):
        check.step(name, steps[name])
        if name == "adapter" and "error" in check.report["steps"]["adapter"]:
            print("no adapter: the later steps cannot run", file=sys.stderr)
            break
    check.report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    check.save()
    print(json.dumps(check.report["steps"].get("parity"), indent=None)[:2000])
    print(json.dumps(check.report["steps"].get("speed", {}).get("summary"), indent=None)[:4000])


if __name__ == "__main__":
    main()
