#!/usr/bin/env python3
"""Compares chest-bench binaries on one workload's chest side, alternating.

    scripts/bench-ab.py w3 BEFORE AFTER [MORE ...] [--pairs 40] [--scale 1]

Each BIN is a `chest-bench` built at some commit (copy
`target/release/chest-bench` aside after each build). Every round runs
`BIN __run WORKLOAD chest --rep 0 --scale S --dir D` once per binary, in
order, each in a fresh scratch directory (W4's after its `setup` side, by
the same binary); the machine's drift then falls on
every side alike. Prints each binary's median per phase, and per phase the
median of the paired ratios against the first binary with how many rounds
it won (a ratio above 1 is faster for throughputs).

On a shared machine a median of a dozen rounds moves by ±10%: run an A/A
first (one binary against a copy of itself) and take at least 40 rounds to
call a few percent. Nothing here asserts; the figures go into the issue
note with the command.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile


# Workloads whose chest side reopens what a `setup` side wrote first.
WITH_SETUP = {"w4"}


def run_side(binary, workload, side, scale, scratch):
    """The report of one `__run` (a JSON line), as a dict."""
    cmd = [binary, "__run", workload, side, "--rep", "0",
           "--scale", str(scale), "--dir", scratch]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if not lines:
        sys.exit(f"{' '.join(cmd)} printed no report:\n{out.stdout}")
    return json.loads(lines[-1])


def run_once(binary, workload, scale, scratch):
    """One run's phases: {name: (value, unit)}, in a fresh `scratch`."""
    if os.path.exists(scratch):
        shutil.rmtree(scratch)
    os.makedirs(scratch)
    if workload in WITH_SETUP:
        run_side(binary, workload, "setup", scale, scratch)
    report = run_side(binary, workload, "chest", scale, scratch)
    return {p["name"]: (p["value"], p["unit"]) for p in report["phases"]}


def figure(x):
    """A figure as the benchmark's tables show it: grouped digits when large."""
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("workload", help="w1 … w7, as `chest-bench __run` takes")
    parser.add_argument("binaries", nargs="+", help="chest-bench binaries; the first is the reference")
    parser.add_argument("--pairs", type=int, default=40, help="rounds (default 40)")
    parser.add_argument("--scale", type=float, default=1.0, help="--scale of each run (default 1)")
    args = parser.parse_args()
    if len(args.binaries) < 2:
        sys.exit("give at least two binaries (the same one twice for an A/A run)")

    names = [f"{i}:{os.path.basename(b)}" for i, b in enumerate(args.binaries)]
    runs = {n: [] for n in names}
    with tempfile.TemporaryDirectory(prefix="chest-ab-") as tmp:
        scratch = os.path.join(tmp, "d")
        for r in range(args.pairs):
            for name, binary in zip(names, args.binaries):
                phases = run_once(binary, args.workload, args.scale, scratch)
                runs[name].append(phases)
                shown = "  ".join(f"{k} {figure(v)} {u}" for k, (v, u) in phases.items())
                print(f"round {r + 1:3} {name:24} {shown}", flush=True)

    reference = names[0]
    print()
    for phase, (_, unit) in runs[reference][0].items():
        lower_is_better = unit in ("s", "µs", "MiB", "B/key")
        print(f"{phase} ({unit}{', lower is better' if lower_is_better else ''})")
        for name in names:
            values = [run[phase][0] for run in runs[name] if phase in run]
            if not values:
                print(f"  {name:24} (no such phase: another version of the benchmark)")
                continue
            line = f"  {name:24} median {figure(statistics.median(values)):>14}"
            if name != reference:
                ratios = [b[phase][0] / a[phase][0]
                          for a, b in zip(runs[reference], runs[name])
                          if phase in b and a[phase][0]]
                if ratios:
                    wins = sum((x < 1) if lower_is_better else (x > 1) for x in ratios)
                    line += (f"   paired ratio to {reference}: {statistics.median(ratios):.3f}"
                             f" (better in {wins} of {len(ratios)})")
            print(line)


if __name__ == "__main__":
    main()
