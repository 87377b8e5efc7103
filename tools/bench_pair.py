#!/usr/bin/env python3
"""Paired warm wall-clock comparison of two wgvit binaries, on lavapipe or on SwiftShader.

    python3 tools/bench_pair.py BEFORE_BIN AFTER_BIN [--models hatnet-digits,lavit-digits]
        [--rounds 4] [--runs 20] [--swiftshader]

Alternates `wgvit bench --model M --runs N` between the two binaries, round by round (which one
goes first alternates too: ABBA), and prints
per model the median over rounds of each binary's warm median and warm minimum, and their
ratios (after / before). Interleaving is what makes the ratio trustworthy on a host whose speed
drifts by tens of percent from one minute to the next; compare ratios, not absolute times.

`--swiftshader` runs both on SwiftShader, the software WebGPU device of headless Chromium, through
the Vulkan ICD Chromium ships (`/usr/lib/chromium/vk_swiftshader_icd.json`, or `--icd PATH`): the
same device and JIT as in the browser, outside it. Use wall-clock there: SwiftShader's GPU
timestamps are not per-dispatch times (`tools/profile_pair.py` is for lavapipe).

`--before-env VAR=VALUE` / `--after-env VAR=VALUE` (repeatable) set variables for one side only,
so one binary can be paired with itself under another driver or driver setting, e.g. Mesa 25's
lavapipe unpacked as in `../shared/ENV.md`:

    python3 tools/bench_pair.py target/release/wgvit target/release/wgvit \
        --after-env VK_ICD_FILENAMES=/tmp/mesa25/lvp.json --models hatnet-tiny --runs 8

Prints the CPU model first. Not part of CI.
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
from bench_compare import cpu_model  # noqa: E402 (one CPU line for every comparison tool)

WARM = re.compile(r"^warm:\s+median ([0-9.]+) ms, min ([0-9.]+) ms")
SWIFTSHADER_ICD = "/usr/lib/chromium/vk_swiftshader_icd.json"


def bench(binary: str, model: str, runs: int, env: dict[str, str]) -> tuple[float, float]:
    """(warm median, warm min) in ms from one `wgvit bench` process."""
    out = subprocess.run([binary, "bench", "--model", model, "--runs", str(runs)], capture_output=True, text=True, env=env, check=False)
    for line in out.stdout.splitlines():
        m = WARM.match(line.strip())
        if m:
            return float(m.group(1)), float(m.group(2))
    sys.exit(f"{binary} bench --model {model} printed no warm line (exit {out.returncode}):\n{out.stderr[-2000:]}")


def side_env(base: dict[str, str], assignments: list[str], flag: str) -> dict[str, str]:
    """`base` with one side's VAR=VALUE assignments applied."""
    env = dict(base)
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        if not sep or not name:
            sys.exit(f"{flag}: expected VAR=VALUE, got {assignment!r}")
        env[name] = value
    return env


def describe(assignments: list[str]) -> str:
    return f" (with {' '.join(assignments)})" if assignments else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--models", default="hatnet-digits,vvt-digits,accvit-digits,lavit-digits")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--swiftshader", action="store_true", help="run on Chromium's SwiftShader Vulkan ICD")
    ap.add_argument("--icd", default=SWIFTSHADER_ICD, help="the SwiftShader ICD manifest (with --swiftshader)")
    ap.add_argument("--before-env", action="append", default=[], metavar="VAR=VALUE", help="an environment variable for the before side only (repeatable)")
    ap.add_argument("--after-env", action="append", default=[], metavar="VAR=VALUE", help="an environment variable for the after side only (repeatable)")
    args = ap.parse_args()

    env = dict(os.environ)
    env.setdefault("WGPU_BACKEND", "vulkan")
    if args.swiftshader:
        if not Path(args.icd).is_file():
            sys.exit(f"--swiftshader: no ICD manifest at {args.icd} (install Chromium, or pass --icd PATH)")
        env["VK_ICD_FILENAMES"] = args.icd
    envs = {"before": side_env(env, args.before_env, "--before-env"), "after": side_env(env, args.after_env, "--after-env")}
    device = "SwiftShader (Chromium's Vulkan ICD)" if args.swiftshader else "the default Vulkan adapter (lavapipe without a GPU)"
    print(f"CPU: {cpu_model()}; device: {device}; {args.rounds} interleaved rounds × {args.runs} warm runs")
    print(f"before = {args.before}{describe(args.before_env)}, after = {args.after}{describe(args.after_env)}\n")
    for model in args.models.split(","):
        results: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
        for r in range(args.rounds):
            # The binary that runs second in a round measured up to 1.4× slower than the same
            # binary run first (vvt-digits, the 2-core AMD EPYC), so the order alternates.
            pair = (("before", args.before), ("after", args.after))
            for which, binary in pair if r % 2 == 0 else pair[::-1]:
                med, low = bench(binary, model, args.runs, envs[which])
                results[which].append((med, low))
                print(f"round {r + 1} {model:<16} {which:<6} median {med:8.2f} ms  min {low:8.2f} ms", flush=True)
        b_med = statistics.median(m for m, _ in results["before"])
        a_med = statistics.median(m for m, _ in results["after"])
        b_min = statistics.median(n for _, n in results["before"])
        a_min = statistics.median(n for _, n in results["after"])
        print(f"{model:<16} median {b_med:8.2f} → {a_med:8.2f} ms ({a_med / b_med:.2f})   min {b_min:8.2f} → {a_min:8.2f} ms ({a_min / b_min:.2f})\n")


if __name__ == "__main__":
    main()
