"""Start-up cost of the CLI, whole process, as a user feels it.

Measures (median of N runs each, wall time from spawn to exit, and the child's CPU time):
- `labctl --help`               target < 0.15 s
- `labctl create --dry-run`     target < 0.30 s (the built-in default lab: no lab.yaml in the cwd)
- `python3 -c pass`             the interpreter's own floor, for comparison

It runs the `labctl` on PATH if there is one (what a user types), else `python3 -m labctl.cli`
from this checkout. Each run happens in an empty temporary folder with a temporary LABCTL_HOME, so
nothing outside it is read or written and no network is used.

Usage:
    python3 benchmarks/bench_startup.py [--runs 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"labctl --help": 0.15, "labctl create --dry-run": 0.30}


def labctl_command() -> tuple[list[str], str]:
    found = shutil.which("labctl")
    if found:
        return [found], found
    return [sys.executable, "-m", "labctl.cli"], f"{sys.executable} -m labctl.cli (no labctl on PATH)"


def time_runs(argv: list[str], runs: int, cwd: Path, env: dict[str, str]) -> tuple[list[float], list[float]]:
    """Wall times and CPU times (user + system of the child) of ``runs`` runs. On a busy machine the
    wall time includes waiting for a core; the CPU time does not, so both are reported."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    return walls, cpus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()

    labctl, shown = labctl_command()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="labctl-bench-") as tmp:
        cwd = Path(tmp) / "work"
        cwd.mkdir()
        env = {**os.environ, "LABCTL_HOME": str(Path(tmp) / "home")}
        # An installed labctl always has its .pyc files (pip compiles them at install time). With
        # PYTHONDONTWRITEBYTECODE set (as in some dev shells and CI images) a checkout would instead
        # compile labctl's sources on every run and the figures would not be what a user sees.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        if labctl[0] == sys.executable:
            env["PYTHONPATH"] = str(REPO)
        cases = {
            "python3 -c pass": [sys.executable, "-c", "pass"],
            "labctl --help": [*labctl, "--help"],
            "labctl create --dry-run": [*labctl, "create", "--dry-run"],
        }
        for name, argv in cases.items():
            time_runs(argv, 1, cwd, env)  # warm the page cache and .pyc files; not counted
            walls, cpus = time_runs(argv, args.runs, cwd, env)
            results[name] = {
                "median_s": statistics.median(walls),
                "min_s": min(walls),
                "max_s": max(walls),
                "cpu_median_s": statistics.median(cpus),
            }
            if name in TARGETS:
                results[name]["target_s"] = TARGETS[name]
                results[name]["ratio_to_target"] = results[name]["median_s"] / TARGETS[name]

    if args.json:
        print(json.dumps({"labctl": shown, "runs": args.runs, "results": results}, indent=2))
        return 0
    print(f"labctl: {shown}; {args.runs} runs each; load average {os.getloadavg()[0]:.2f}")
    print(f"{'command':<26} {'median':>8} {'min':>8} {'max':>8} {'cpu med':>8} {'target':>8} {'ratio':>7}")
    for name, r in results.items():
        target = f"{r['target_s']:.2f}s" if "target_s" in r else "-"
        ratio = f"{r['ratio_to_target']:.2f}x" if "ratio_to_target" in r else "-"
        print(
            f"{name:<26} {r['median_s']:>7.3f}s {r['min_s']:>7.3f}s {r['max_s']:>7.3f}s "
            f"{r['cpu_median_s']:>7.3f}s {target:>8} {ratio:>7}"
        )
    print("median/min/max: wall time; cpu med: user+system CPU; ratio: wall median / target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
