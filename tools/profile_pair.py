#!/usr/bin/env python3
"""Paired kernel-time comparison of two wgvit binaries on one model, robust to a noisy host.

    python3 tools/profile_pair.py BEFORE_BIN AFTER_BIN --model hatnet-digits \
        [--control group_norm] [--pairs 5] [--runs 15] [--repeat 5]

Runs `wgvit profile` (GPU timestamps around every dispatch, the sum of per-dispatch medians;
with `--repeat N` each dispatch's wall-clock cost by repetition instead, `wgvit profile
--repeat`) alternately with each binary, `--pairs` times, and prints per op kind the median over pairs of
its milliseconds, and of its time divided by the `--control` op kind's time in the same process.
On a host whose speed drifts by tens of percent from one run to the next (2-core cloud VMs), the
ratio to an op kind the change does not touch cancels the drift that a bare before/after of
wall-clock times cannot. Pick a control whose kernel and shapes both binaries share. Prints the
CPU model first. Not part of CI.

On lavapipe, prefer `--repeat 5 --runs 6` for the bundled digit models: with every workgroup on
the submitting thread (LP_NUM_THREADS=0) its timestamps do not attribute time to dispatches
(accvit-digits' first conv and first expand GEMM read about 2 µs each; repeated, they cost 0.18
and 0.54–0.60 ms on a 2-core Intel Xeon). The 224 models' forwards are too noisy for repetition at a few runs.

Sets LP_NUM_THREADS=0 (the CLI's own choice for the small bundled models on llvmpipe) unless the
environment sets it, and WGPU_BACKEND=vulkan unless set.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_compare import cpu_model  # noqa: E402 (the same CPU line as the wgvit/PyTorch/ORT comparison)

OP_LINE = re.compile(r"^(\S+)\s+(-?[0-9.]+)\s+-?[0-9.]+%\s+(\d+)\s+-?[0-9.]+$")


def profile(binary: str, model: str, runs: int, size: str | None, repeat: int | None) -> tuple[float, dict[str, float]]:
    """(total ms, {op kind: ms}) from one `wgvit profile` process."""
    cmd = [binary, "profile", "--model", model, "--runs", str(runs)]
    if size:
        cmd += ["--size", size]
    if repeat:
        cmd += ["--repeat", str(repeat)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr.strip()}")
    total, kinds, in_kinds = None, {}, False
    for line in out.stdout.splitlines():
        if line.startswith("time:"):
            total = float(line.split()[1])
        elif line.startswith("op kind"):
            in_kinds = True
        elif in_kinds:
            m = OP_LINE.match(line.strip())
            if not m:
                in_kinds = False
                continue
            kinds[m.group(1)] = float(m.group(2))
    if total is None or not kinds:
        sys.exit(f"could not read `{' '.join(cmd)}`'s output:\n{out.stdout}")
    return total, kinds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--model", required=True)
    ap.add_argument("--size", help="input size, as `wgvit profile --size`")
    ap.add_argument("--control", default="group_norm", help="op kind both binaries run unchanged (default group_norm)")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--runs", type=int, default=15, help="profiled forwards per process (pairs per dispatch with --repeat)")
    ap.add_argument("--repeat", type=int, help="time each dispatch by repeating it N more times (`wgvit profile --repeat`)")
    args = ap.parse_args()
    os.environ.setdefault("WGPU_BACKEND", "vulkan")
    os.environ.setdefault("LP_NUM_THREADS", "0")

    method = f"repetition (--repeat {args.repeat})" if args.repeat else "GPU timestamps"
    print(f"CPU: {cpu_model()}; model {args.model}; control op kind `{args.control}`; {args.pairs} alternating pairs; {method}")
    samples: dict[str, list[tuple[float, dict[str, float]]]] = {"before": [], "after": []}
    for i in range(args.pairs):
        # Which binary goes first alternates (ABBA): a run measured slower right after another.
        for which in ("before", "after") if i % 2 == 0 else ("after", "before"):
            total, kinds = profile(getattr(args, which), args.model, args.runs, args.size, args.repeat)
            if args.control not in kinds:
                sys.exit(f"{which}: no op kind `{args.control}` in the profile (have: {', '.join(sorted(kinds))})")
            samples[which].append((total, kinds))
            print(f"pair {i + 1} {which:6}: total {total:8.3f} ms, {args.control} {kinds[args.control]:.3f} ms")

    def med(which: str, kind: str | None, relative: bool) -> float | None:
        values = []
        for total, kinds in samples[which]:
            v = total if kind is None else kinds.get(kind)
            if v is None:
                return None
            values.append(v / kinds[args.control] if relative else v)
        return statistics.median(values)

    kinds = sorted({k for _, ks in samples["before"] + samples["after"] for k in ks})
    print(f"\n{'op kind':22} {'before ms':>10} {'after ms':>10} {'before/ctl':>11} {'after/ctl':>10} {'after/before (vs ctl)':>22}")
    for kind in [None] + kinds:
        name = "(whole forward)" if kind is None else kind
        b, a = med("before", kind, False), med("after", kind, False)
        rb, ra = med("before", kind, True), med("after", kind, True)
        fmt = lambda v, w, p: f"{v:{w}.{p}f}" if v is not None else " " * (w - 1) + "-"
        ratio = fmt(ra / rb, 22, 2) if rb and ra is not None else " " * 21 + "-"
        print(f"{name:22} {fmt(b, 10, 3)} {fmt(a, 10, 3)} {fmt(rb, 11, 2)} {fmt(ra, 10, 2)} {ratio}")


if __name__ == "__main__":
    main()
