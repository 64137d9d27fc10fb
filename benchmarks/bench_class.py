"""`labctl class create` for a roster of N students against the stateful kubectl TEST DOUBLE.

What the instructor waits for on top of the cluster's own latency: roster parsing, quota sizing,
object building, one `kubectl apply` of every student's objects, one TokenRequest and one 0600
kubeconfig per student. Each run starts from an empty cluster and a new folder; a second run (the
idempotent re-run, no new tokens) is timed too. Whole process (`python -m labctl.cli`), median of N.

    python3 benchmarks/bench_class.py [--students 30] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOUBLE = ROOT / "tests" / "doubles" / "kubectl_cluster_double.py"


def cluster(folder: Path) -> dict[str, str]:
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(f'#!/bin/sh\nexec "{sys.executable}" "{DOUBLE}" "$@"\n')
    (bin_dir / "kubectl").chmod(0o755)
    nodes = [{"metadata": {"name": f"w{i}"}, "spec": {}, "status": {"allocatable": {"cpu": "16", "memory": "64Gi"}}}
             for i in range(4)]
    view = {"clusters": [{"name": "uni", "cluster": {"server": "https://127.0.0.1:6443", "certificate-authority-data": "Q0E="}}]}
    (folder / "state.json").write_text(json.dumps({"nodes": nodes, "objects": {}, "kubeconfig_view": view}))
    (folder / "admin.conf").write_text("apiVersion: v1\nkind: Config\n")
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
            "KUBECTL_CLUSTER_STATE": str(folder / "state.json"), "KUBECTL_CLUSTER_LOG": str(folder / "calls.jsonl")}


def one_run(students: int) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        env = cluster(folder)
        roster = folder / "roster.txt"
        roster.write_text("".join(f"student{i:03d}\n" for i in range(students)))
        cmd = [sys.executable, "-m", "labctl.cli", "class", "create", "--roster", str(roster), "--name", "cs101",
               "--kubeconfig", str(folder / "admin.conf"), "--dir", str(folder / "out")]
        times = []
        for _ in range(2):
            start = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=folder)
            times.append(time.perf_counter() - start)
        calls = len((folder / "calls.jsonl").read_text().splitlines())
        return times[0], times[1], calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    firsts, seconds = [], []
    for _ in range(args.runs):
        first, second, calls = one_run(args.students)
        firsts.append(first)
        seconds.append(second)
    print(f"class create, {args.students} students, {args.runs} runs (kubectl calls over both runs: {calls})")
    print(f"  first run:  median {statistics.median(firsts):.2f} s (min {min(firsts):.2f}, max {max(firsts):.2f})")
    print(f"  re-run:     median {statistics.median(seconds):.2f} s (min {min(seconds):.2f}, max {max(seconds):.2f})")


if __name__ == "__main__":
    main()
