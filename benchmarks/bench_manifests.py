"""Render + validate time of the full apps layer (every option on), whole process, median of N.

Each run is a fresh `python -c` process: import labctl, load the spec, render the three lab bundles
with every option on, and validate every object for real (kubernetes-validate --strict at the pinned
Kubernetes version; our JSON schemas for the MetalLB resources). What a user pays for
`labctl render` plus a validation pass, cold imports included.

    python3 benchmarks/bench_manifests.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

RUN = """
import sys
sys.path.insert(0, "tests")
from manifest_cases import bundles
from labctl.manifests import load_objects, validation_problems
objs = [o for text in bundles("all-options").values() for o in load_objects(text)]
problems = validation_problems(objs)
assert not problems, problems
print(len(objs))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    times, count = [], 0
    for _ in range(args.runs):
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", RUN], capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
        count = int(out.stdout.strip())
    print(
        f"render + validate, all options ({count} objects), {args.runs} runs: median {statistics.median(times):.2f} s "
        f"(min {min(times):.2f}, max {max(times):.2f})"
    )


if __name__ == "__main__":
    main()
