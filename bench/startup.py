#!/usr/bin/env python3
"""How long an admin command takes to start, beside the interpreter's own start-up measured in the same run.

    python3 dev.py bench --startup

Each command runs `--runs` times (default 15), interleaved with `python -c pass` (the baseline: nothing
floatsrv can save), as real processes; medians and the ratio to the baseline are printed. Goal: `floatsrv
--version` and `floatsrv check-config` under 0.3 s on a 2-vCPU VM (issue 18: each command used to import the
whole server, about 1 s).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
GOAL_SECONDS = 0.3

COMMANDS: dict[str, list[str]] = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "floatsrv --version": [str(BIN / "floatsrv"), "--version"],
    "floatsrv check-config": [str(BIN / "floatsrv"), "check-config", "--config", str(ROOT / "config.example.yaml")],
    "floatsrv --help": [str(BIN / "floatsrv"), "--help"],
}


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    for command in COMMANDS.values():  # warm the file cache (and compile .pyc files) before measuring
        timed(command)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, command in COMMANDS.items():
            times[name].append(timed(command))
    baseline = statistics.median(times["python -c pass"])
    results = {}
    print(f"{'command':<24}{'median s':>10}{'p90 s':>8}{'× python':>10}  goal")
    failed = False
    for name, samples in times.items():
        median = statistics.median(samples)
        p90 = statistics.quantiles(samples, n=10)[-1] if len(samples) >= 2 else median
        goal = ""
        if name in ("floatsrv --version", "floatsrv check-config"):
            passed = median < GOAL_SECONDS
            failed |= not passed
            goal = f"< {GOAL_SECONDS} s {'PASS' if passed else 'FAIL'}"
        print(f"{name:<24}{median:>10.3f}{p90:>8.3f}{median / baseline:>10.1f}  {goal}")
        results[name] = {"median_s": median, "p90_s": p90, "ratio_to_python": median / baseline}
    out = HERE / "results" / "startup.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"runs": args.runs, "commands": results}, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
