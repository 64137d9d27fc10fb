"""A timing benchmark of a whole `labctl create` of the seed lab, on netns SSH nodes, in simulated time.

The seed lab's real plan (labctl.plan.build_plan, every playbook, provider step left out) runs with
the real Runner and SSHTransport on three netns sshd nodes (master, worker1, nfs; tests/sshnodes.py)
holding the ssh tier's test doubles (tests/shims). What takes time in a real create is put back by a
simulator (create_sim.py, create_commands.py): the slow tools on the nodes ask it how long the real
tool would take — downloads at a modelled bandwidth, `kubeadm init`, pod start-up — from a table of
real figures with a source for each (create_figures.yaml). Time is compressed by ``scale`` (60: one
real minute is 1 s), so a whole simulated create takes seconds.

Reported per bandwidth (median of ``--reps`` runs, the variants interleaved in one session):
``before`` (one step after another, images pulled when their pods are scheduled: main's create) and
``after`` (the same harness with the overlapping plan: ``after:`` dependencies and background image
pulls, when this checkout has them), the critical path (create_critical.py: the longest chain of
things that must happen in order, including each node's unavoidable downloads on its link) and the
ratios after/before and after/critical path. Create times are the simulator's virtual clock, which
runs only while every runner command in flight is waiting on it (create_sim.py): the runner's own
cost on this machine (SSH round trips, the doubles' start-up: ~40 s a run under load) is left out,
as the critical path leaves it out; they are given in simulated seconds and real-equivalent minutes
(× scale). The wall time of each run, overhead included, is printed beside them.

Needs root (network namespaces). Run:
    python3 benchmarks/bench_create.py                       # 50 and 200 Mbit/s, 3 reps, per-host links
    python3 benchmarks/bench_create.py --mbit 50 --reps 1 --link shared
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.create_commands import decide  # noqa: E402
from benchmarks.create_critical import critical_path, format_chain  # noqa: E402
from benchmarks.create_sim import Simulation, serve  # noqa: E402

HERE = Path(__file__).resolve().parent
FIGURES = HERE / "create_figures.yaml"
SHIMS = HERE / "create_shims"
NAMES = ["master", "worker1", "nfs"]
# Test doubles wrapped by create_shims/bench-wrapper: node path → tool name.
WRAPPED = {
    "/usr/local/sbin/apt-get": "apt-get",
    "/usr/local/bin/curl": "curl",
    "/opt/labctl-shims/payload/kubeadm/usr/bin/kubeadm": "kubeadm",
    "/opt/labctl-shims/payload/kubectl/usr/bin/kubectl": "kubectl",
    "/opt/labctl-shims/payload/cri-tools/usr/bin/crictl": "crictl",
    "/opt/labctl-shims/payload/containerd/usr/bin/ctr": "ctr",
}


def load_figures(path: Path = FIGURES) -> dict:
    figures = yaml.safe_load(path.read_text())
    missing = [f"{section}.{name}" for section in ("images", "durations_s", "models", "workloads")
               for name, entry in figures[section].items() if section != "workloads" and not entry.get("source")]  # fmt: skip
    if missing:
        raise SystemExit(f"{path}: every figure needs a source; missing for {', '.join(missing)}")
    return figures


def zero_figures(figures: dict) -> dict:
    """The same table with every size and duration at zero: what is left is the runner's overhead."""
    z = json.loads(json.dumps(figures))

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("mb", "fixed_s", "value") and isinstance(v, (int, float)):
                    node[k] = 0
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(z)
    return z


def node_files_for_bench(scale: float) -> dict[str, tuple[bytes, int]]:
    """The ssh tier's doubles, with the slow tools wrapped and `sleep` passing in simulated time."""
    from labctl.spec import LabSpec
    from tests.shims import node_files
    from tests.ssh.test_playbooks_e2e import routes

    files = node_files(*routes(LabSpec.default()))
    wrapper = (SHIMS / "bench-wrapper").read_bytes()
    for path, tool in WRAPPED.items():
        if path in files:
            files[f"/opt/labctl-bench/orig/{tool}"] = files[path]
            files[path] = (wrapper, 0o755)
    files["/usr/local/bin/sleep"] = (wrapper, 0o755)
    return files


def variant_runner_kwargs(mode: str, runner_cls) -> dict:
    """How the Runner is told to keep the old one-step-at-a-time order, when it can overlap at all."""
    params = inspect.signature(runner_cls.__init__).parameters
    if "serial" in params:
        return {"serial": mode == "before"}
    return {}


def variant_plan(plan, mode: str):
    """``before``: main's create — no background-pull steps (they are the "after"'s)."""
    if mode == "after":
        return plan
    steps = tuple(s for s in plan.steps if not is_pull_step(s.id))
    return replace(plan, steps=steps)


def is_pull_step(step_id: str) -> bool:
    """The background pull's steps (playbook ``image-pull``, each layer's ``wait-for-…-images``): the
    "after" adds them, the "before" is the plan without them. kubeadm's own ``pull-control-plane-images``
    step is main's and stays."""
    playbook, _, name = step_id.partition(".")
    return playbook == "image-pull" or re.fullmatch(r"wait-for-.+-images", name) is not None


def has_after_variant(plan, runner_cls) -> bool:
    return "serial" in inspect.signature(runner_cls.__init__).parameters or any(is_pull_step(s.id) for s in plan.steps)


def counting_transport(sim: Simulation):
    """The real SSHTransport, telling the simulator when a runner command is in flight."""
    from labctl.transport.ssh import SSHTransport

    def counted(method):
        def call(self, *args, **kwargs):
            sim.command(+1)
            try:
                return method(self, *args, **kwargs)
            finally:
                sim.command(-1)

        return call

    # Every way the runner runs a command on a host: run, and run_guarded (check and run in one session).
    methods = {
        name: counted(getattr(SSHTransport, name)) for name in ("run", "run_guarded") if hasattr(SSHTransport, name)
    }
    return type("CountingTransport", (SSHTransport,), methods)()


@dataclass
class RunResult:
    mode: str
    mbit: float
    create: float  # virtual (simulated) seconds: the create with the runner's own cost left out
    wall: float  # as measured, runner overhead included
    events: list = field(default_factory=list)
    steps: list = field(default_factory=list)  # (step id, simulated seconds)
    unknown_images: list = field(default_factory=list)


def one_run(mode: str, mbit: float, figures: dict, *, link: str, scale: float, workdir: Path) -> RunResult:
    import io

    from rich.console import Console

    from labctl.artefacts import build_artefacts
    from labctl.plan import build_plan
    from labctl.runner import Runner
    from tests.ssh.test_playbooks_e2e import netns_spec
    from tests.sshnodes import start_nodes

    nodes = start_nodes(NAMES, workdir, files=node_files_for_bench(scale))
    sim = server = transport = None
    try:
        spec = netns_spec(nodes)
        plan = variant_plan(build_plan(spec, include_provider=False), mode)
        roles = {n.name: tuple(spec.roles_of(n)) + (("k8s",) if n.name != "nfs" else ()) for _, n in spec.all_nodes()}
        sim = Simulation(figures, mbit=mbit, link=link, hosts=roles, scale=scale, models=list(spec.apps.ollama.models))
        bridge = nodes["master"].address.rsplit(".", 1)[0] + ".1"  # the test bridge's host side
        server = serve(sim, decide, bridge)
        conf = json.dumps({"url": f"http://{bridge}:{server.server_address[1]}", "scale": scale}).encode()
        for name in NAMES:
            target = nodes.path(name, "/etc/labctl-bench.json")
            target.write_bytes(conf)
            target.chmod(0o644)
        transport = counting_transport(sim)
        runner = Runner(
            transport, nodes.hosts(), log_path=workdir / f"{mode}.log",
            artefacts=build_artefacts(spec, workdir / "state"),
            console=Console(file=io.StringIO(), force_terminal=False, width=200),
            **variant_runner_kwargs(mode, Runner),
        )  # fmt: skip
        start = time.monotonic()
        report = runner.run(plan, {})
        wall = time.monotonic() - start
        create = sim.now()
        bad = [
            (s.step_id, o.host, o.status)
            for s in report.steps
            for o in s.outcomes
            if o.status not in ("done", "skipped")
        ]
        if bad or len(report.steps) != len(plan.steps):
            raise RuntimeError(
                f"{mode} run at {mbit} Mbit/s did not finish cleanly: {bad[:5]} (log {workdir / f'{mode}.log'})"
            )
        steps = [(s.step_id, round(s.duration, 3)) for s in report.steps]
        return RunResult(mode, mbit, create, wall, list(sim.events), steps, sorted(sim.unknown))
    finally:
        if transport:
            transport.close()
        if server:
            server.shutdown()
        if sim:
            sim.close()
        nodes.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mbit", type=float, nargs="+", help="bandwidths in Mbit/s (default: the figures' list)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--scale", type=float, help="real seconds per simulated second (default: the figures')")
    ap.add_argument("--link", choices=("per-host", "shared"), default="per-host",
                    help="per-host: each node has the whole bandwidth; shared: one laptop uplink for all")  # fmt: skip
    ap.add_argument("--modes", nargs="+", default=["before", "after"], choices=("before", "after"))
    ap.add_argument("--json", type=Path, help="also write every run's figures (and the timelines) here")
    args = ap.parse_args(argv)
    figures = load_figures()
    scale = args.scale or float(figures["scale"])
    bandwidths = args.mbit or [float(b) for b in figures["bandwidths_mbit"]]
    modes = list(args.modes)
    if "after" in modes and not after_available():
        print("this checkout has no overlapping plan yet (no Runner(serial=...), no background pull): "
              "measuring the before only", file=sys.stderr)  # fmt: skip
        modes.remove("after")
    results = run_matrix(figures, bandwidths, modes, args.reps, link=args.link, scale=scale)
    print(report_markdown(figures, results, bandwidths, modes, link=args.link, scale=scale))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


def after_available() -> bool:
    from labctl.plan import build_plan
    from labctl.runner import Runner
    from labctl.spec import LabSpec

    return has_after_variant(build_plan(LabSpec.default(), include_provider=False), Runner)


def run_matrix(figures: dict, bandwidths: list[float], modes: list[str], reps: int, *, link: str, scale: float) -> dict:
    """Every (bandwidth, mode) once per round, ``reps`` rounds, interleaved so that both variants see
    the same machine load; returns the create times, wall times and one timeline per variant."""
    creates: dict[str, list[float]] = {}
    walls: dict[str, list[float]] = {}
    unknown: set[str] = set()
    events: dict[str, list] = {}
    steps: dict[str, list] = {}
    tmp = Path(tempfile.mkdtemp(prefix="labctl-bench-create-"))
    try:
        for rep in range(reps):
            for mbit in bandwidths:
                for mode in modes:
                    key = f"{mode}@{mbit:g}"
                    r = one_run(mode, mbit, figures, link=link, scale=scale, workdir=tmp / f"{key}-{rep}")
                    creates.setdefault(key, []).append(r.create)
                    walls.setdefault(key, []).append(r.wall)
                    unknown.update(r.unknown_images)
                    events.setdefault(key, r.events)
                    steps.setdefault(key, r.steps)
                    print(f"  round {rep + 1}/{reps}: {key:>12}  create {r.create:7.2f} s simulated "
                          f"({r.create * scale / 60:5.1f} min real), wall {r.wall:6.1f} s", file=sys.stderr, flush=True)  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"creates": creates, "walls": walls, "unknown_images": sorted(unknown), "events": events, "steps": steps}


def report_markdown(
    figures: dict, results: dict, bandwidths: list[float], modes: list[str], *, link: str, scale: float
) -> str:
    """The table: per bandwidth, the critical path and each variant's median create time (simulated
    seconds and real-equivalent minutes), the ratios, then each critical path as a chain."""
    creates, walls = results["creates"], results.get("walls", {})
    med = {k: statistics.median(v) for k, v in creates.items()}
    reps = max(len(v) for v in creates.values())
    both = modes == ["before", "after"]
    head = "| Mbit/s | critical path | " + " | ".join(f"{m}" for m in modes)
    lines = [
        f"Seed lab `create` on netns SSH nodes, simulated: links {link}; scale 1 s = {scale:g} real s; median of "
        f"{reps} runs; real-equivalent minutes (simulated seconds in brackets).",
        "",
        head + (" | after/before | after/critical path |" if both else " |"),
        "|---|---|" + "---|" * len(modes) + ("---|---|" if both else ""),
    ]
    chains = []
    for mbit in bandwidths:
        cp = critical_path(figures, mbit=mbit, link=link)
        row = [f"{mbit:g}", f"{cp.total / 60:.1f} min ({cp.total / scale:.1f} s)"]
        real = {}
        for m in modes:
            real[m] = med[f"{m}@{mbit:g}"] * scale
            row.append(f"{real[m] / 60:.1f} min ({med[f'{m}@{mbit:g}']:.1f} s)")
        if both:
            row += [f"{real['after'] / real['before']:.2f}", f"{real['after'] / cp.total:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
        chains.append(f"Critical path at {mbit:g} Mbit/s: {cp.total / 60:.1f} min\n{format_chain(cp)}")
    if walls:
        lines += ["", "Wall time of the runs, runner overhead included (median, s): "
                  + ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in sorted(walls.items()))]  # fmt: skip
    lines += ["", *chains]
    if results["unknown_images"]:
        lines += ["", "Images without a figure (the default size was used): " + ", ".join(results["unknown_images"])]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
