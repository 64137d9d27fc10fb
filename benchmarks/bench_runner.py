"""labctl's runner vs ansible-core, pyinfra, a plain Fabric group and raw ssh — same steps, same nodes.

Ten guarded, idempotent steps ("check || change": write a root-owned file unless it exists) on N
real sshd nodes in network namespaces (tests/sshnodes.py), N = 3 and 20, all hosts in one run:

- labctl:   labctl.runner.Runner + SSHTransport, 10 PlannedSteps with check and run (sudo)
- ansible:  ansible-core, 10 `shell` tasks with become, pipelining, ssh ControlPersist, forks = N
- pyinfra:  one `server.shell` operation per step with _sudo, --parallel N
- fabric:   a plain Fabric ThreadingGroup issuing the 10 "check || change" commands (sudo -n)
- ssh:      one OpenSSH `ssh` per host running all 10 commands in one shell — the floor

For each size, ``--reps`` rounds (default 5); in each round every tool in turn: wipe the steps' files on every node, time the
first run, check every file was written, time the no-change re-run. Medians, then a table with
ratios. Every timing includes connecting (fresh connections per run; ansible's ControlPersist
masters live through the re-run, which is what ControlPersist is for, and are stopped afterwards).

Needs root (network namespaces). Run: ``python3 benchmarks/bench_runner.py --sizes 3 20 --reps 5``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labctl.plan import HostCommands, Plan, PlannedStep  # noqa: E402
from tests.sshnodes import NodeSet, start_nodes  # noqa: E402

STEPS = 10
STATE_DIR = "/etc/labctl-bench"
TOOLS = ("labctl", "ansible", "pyinfra", "fabric", "ssh")


def check(i: int) -> str:
    return f"test -f {STATE_DIR}/step{i}"


def change(i: int) -> str:
    return f"mkdir -p {STATE_DIR} && echo {i} > {STATE_DIR}/step{i}"


def guarded(i: int) -> str:
    return f"{check(i)} || {{ {change(i)}; }}"


# ---------------------------------------------------------------------------------------------- tools
def run_labctl(nodes: NodeSet, work: Path) -> None:
    from rich.console import Console

    from labctl.runner import Runner
    from labctl.transport.ssh import SSHTransport

    hosts = nodes.hosts()
    steps = tuple(
        PlannedStep(
            id=f"bench.step{i}", playbook="bench", title=f"Bench step {i}", purpose="", kind="remote",
            commands=tuple(HostCommands(h, check(i), change(i)) for h in hosts), timeout=60,
            done_reason=f"step{i} already written",
        )
        for i in range(STEPS)
    )
    transport = SSHTransport()
    try:
        with open(os.devnull, "w") as devnull:  # progress is rendered, just not shown
            console = Console(file=devnull, force_terminal=False, width=120)
            Runner(transport, hosts, log_path=work / f"labctl-{time.monotonic_ns()}.log", console=console).run(
                Plan(lab="bench", provider="ssh", hosts=(), steps=steps)
            )
    finally:
        transport.close()


def ansible_setup(nodes: NodeSet, work: Path) -> dict:
    inventory = work / "inventory.ini"
    inventory.write_text(
        "[nodes]\n"
        + "".join(
            f"{n.name} ansible_host={n.address} ansible_user={n.user} ansible_ssh_private_key_file={n.key_file}\n"
            for n in nodes.values()
        )
        + "[nodes:vars]\nansible_python_interpreter=/usr/bin/python3\n"
    )
    tasks = "".join(f"    - name: step {i}\n      ansible.builtin.shell: {json.dumps(guarded(i))}\n" for i in range(STEPS))
    playbook = work / "bench.yml"
    playbook.write_text(f"- hosts: nodes\n  gather_facts: false\n  become: true\n  tasks:\n{tasks}")
    return {"inventory": inventory, "playbook": playbook}


def run_ansible(nodes: NodeSet, work: Path, control_dir: Path, setup: dict) -> None:
    cfg = work / "ansible.cfg"
    cfg.write_text(
        textwrap.dedent(f"""\
        [defaults]
        host_key_checking = False
        forks = {len(nodes)}
        stdout_callback = default
        retry_files_enabled = False
        interpreter_python = /usr/bin/python3
        [ssh_connection]
        pipelining = True
        control_path_dir = {control_dir}
        ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no
        """)
    )
    env = {**os.environ, "ANSIBLE_CONFIG": str(cfg), "ANSIBLE_LOCAL_TEMP": str(work / "ansible-tmp")}
    res = subprocess.run(
        ["ansible-playbook", "-i", str(setup["inventory"]), str(setup["playbook"])], env=env,
        capture_output=True, text=True, cwd=work,
    )  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(f"ansible-playbook failed: {res.stdout[-1500:]}{res.stderr[-800:]}")


def stop_control_masters(control_dir: Path) -> None:
    """ansible's ControlPersist masters: ask each to exit (they are ours; stopping by socket, not name)."""
    for sock in control_dir.glob("*"):
        subprocess.run(["ssh", "-O", "exit", "-o", f"ControlPath={sock}", "bench"], capture_output=True)


def pyinfra_setup(nodes: NodeSet, work: Path) -> dict:
    inventory = work / "pyinfra_inventory.py"
    entries = ",\n".join(
        f"    ({n.address!r}, {{'ssh_user': {n.user!r}, 'ssh_key': {str(n.key_file)!r}, "
        f"'ssh_strict_host_key_checking': 'no', 'ssh_known_hosts_file': '/dev/null'}})"
        for n in nodes.values()
    )
    inventory.write_text(f"nodes = [\n{entries},\n]\n")
    deploy = work / "pyinfra_deploy.py"
    ops = "".join(f"server.shell(name={f'step {i}'!r}, commands=[{guarded(i)!r}], _sudo=True)\n" for i in range(STEPS))
    deploy.write_text("from pyinfra.operations import server\n\n" + ops)
    return {"inventory": inventory, "deploy": deploy}


def run_pyinfra(nodes: NodeSet, work: Path, setup: dict) -> None:
    res = subprocess.run(
        ["pyinfra", "-y", "--parallel", str(len(nodes)), str(setup["inventory"]), str(setup["deploy"])],
        capture_output=True, text=True, cwd=work,
    )  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(f"pyinfra failed: {res.stdout[-1500:]}{res.stderr[-800:]}")


def run_fabric(nodes: NodeSet, work: Path) -> None:
    from fabric import ThreadingGroup

    first = next(iter(nodes.values()))
    group = ThreadingGroup(
        *[n.address for n in nodes.values()], user=first.user,
        connect_kwargs={"key_filename": [str(first.key_file)], "look_for_keys": False, "allow_agent": False},
    )  # fmt: skip
    try:
        for i in range(STEPS):
            group.run(f"sudo -n sh -c {_q(guarded(i))}", hide=True)
    finally:
        group.close()


def run_ssh(nodes: NodeSet, work: Path) -> None:
    script = "; ".join(guarded(i) for i in range(STEPS))
    procs = [
        subprocess.Popen(
            ["ssh", "-i", str(n.key_file), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", f"{n.user}@{n.address}",
             f"sudo -n sh -c {_q(script)}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        for n in nodes.values()
    ]
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"ssh failed: {err.decode()[-500:]}")


def _q(text: str) -> str:
    import shlex

    return shlex.quote(text)


# ---------------------------------------------------------------------------------------------- driver
def wipe(nodes: NodeSet) -> None:
    for name in nodes:
        shutil.rmtree(nodes.path(name, STATE_DIR), ignore_errors=True)


def verify(nodes: NodeSet, tool: str) -> None:
    for name in nodes:
        for i in range(STEPS):
            path = nodes.path(name, f"{STATE_DIR}/step{i}")
            if not path.exists() or path.read_text().strip() != str(i):
                raise RuntimeError(f"{tool} did not write step{i} on {name}")


def measure(nodes: NodeSet, work: Path, reps: int, tools: tuple[str, ...], log: Callable[[str], None]) -> dict:
    ans = ansible_setup(nodes, work) if "ansible" in tools else {}
    pyi = pyinfra_setup(nodes, work) if "pyinfra" in tools else {}
    results: dict[str, dict[str, list[float]]] = {tool: {"first": [], "rerun": []} for tool in tools}
    # Round-robin (rep outer, tool inner): a load spike on this shared machine then hits every tool
    # in that round instead of all the reps of one tool.
    for rep in range(reps):
        for tool in tools:
            wipe(nodes)
            control_dir = Path(tempfile.mkdtemp(prefix="cp-", dir=work))
            runners: dict[str, Callable[[], None]] = {
                "labctl": lambda: run_labctl(nodes, work),
                "ansible": lambda cd=control_dir: run_ansible(nodes, work, cd, ans),
                "pyinfra": lambda: run_pyinfra(nodes, work, pyi),
                "fabric": lambda: run_fabric(nodes, work),
                "ssh": lambda: run_ssh(nodes, work),
            }
            try:
                for phase in ("first", "rerun"):
                    started = time.perf_counter()
                    runners[tool]()
                    elapsed = time.perf_counter() - started
                    results[tool][phase].append(elapsed)
                    if phase == "first":
                        verify(nodes, tool)
            finally:
                stop_control_masters(control_dir)
            log(f"  N={len(nodes)} {tool:<8} rep {rep + 1}/{reps}: first {results[tool]['first'][-1]:.2f}s, "
                f"re-run {results[tool]['rerun'][-1]:.2f}s")  # fmt: skip
    return results


def table(all_results: dict[int, dict], reps: int) -> str:
    lines = [
        f"Median of {reps} runs, seconds; 10 guarded steps, all hosts in one run. Ratios are tool ÷ labctl "
        "(above 1 = labctl faster), except the labctl ÷ fabric column (overhead over a plain Fabric group).",
        "",
        "| N | run | labctl | ansible-core | pyinfra | Fabric group | ssh (floor) | ansible ÷ labctl | pyinfra ÷ labctl | labctl ÷ Fabric | labctl ÷ ssh |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, res in all_results.items():
        for phase, label in (("first", "first run"), ("rerun", "no-change re-run")):
            med = {t: statistics.median(res[t][phase]) for t in res}

            def cell(t: str, med: dict[str, float] = med) -> str:
                return f"{med[t]:.2f}" if t in med else "—"

            def ratio(a: str, b: str, med: dict[str, float] = med) -> str:
                return f"{med[a] / med[b]:.2f}×" if a in med and b in med else "—"

            lines.append(
                f"| {n} | {label} | {cell('labctl')} | {cell('ansible')} | {cell('pyinfra')} | {cell('fabric')} | "
                f"{cell('ssh')} | {ratio('ansible', 'labctl')} | {ratio('pyinfra', 'labctl')} | "
                f"{ratio('labctl', 'fabric')} | {ratio('labctl', 'ssh')} |"
            )
    return "\n".join(lines)


def targets(all_results: dict[int, dict]) -> str:
    """The issue's targets: ≥5× faster than ansible-core, ≥1.2× faster than pyinfra, ≤1.3× the Fabric group."""
    out = []
    for n, res in all_results.items():
        for phase, label in (("first", "first run"), ("rerun", "re-run")):
            med = {t: statistics.median(res[t][phase]) for t in res}
            if "labctl" not in med:
                continue
            checks = []
            if "ansible" in med:
                r = med["ansible"] / med["labctl"]
                checks.append(f"vs ansible-core {r:.1f}× (target ≥ 5×: {'met' if r >= 5 else 'NOT met'})")
            if "pyinfra" in med:
                r = med["pyinfra"] / med["labctl"]
                checks.append(f"vs pyinfra {r:.2f}× (target ≥ 1.2×: {'met' if r >= 1.2 else 'NOT met'})")
            if "fabric" in med:
                r = med["labctl"] / med["fabric"]
                checks.append(f"labctl ÷ Fabric {r:.2f} (target ≤ 1.3: {'met' if r <= 1.3 else 'NOT met'})")
            out.append(f"- N={n}, {label}: " + "; ".join(checks))
    return "\n".join(out)


def load_average() -> str:
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 20])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tools", nargs="+", default=list(TOOLS), choices=TOOLS)
    parser.add_argument("--output", type=Path, help="also write the markdown table here")
    parser.add_argument("--json", type=Path, help="write every timing here")
    args = parser.parse_args()
    missing = [t for t, exe in (("ansible", "ansible-playbook"), ("pyinfra", "pyinfra")) if t in args.tools and not shutil.which(exe)]
    if missing:
        sys.exit(f"error: {', '.join(missing)} not installed — pip install -e '.[bench]'")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    all_results: dict[int, dict] = {}
    with tempfile.TemporaryDirectory(prefix="labctl-bench-") as tmp:
        for n in args.sizes:
            work = Path(tmp) / f"n{n}"
            started = time.perf_counter()
            nodes = start_nodes([f"node{i:02d}" for i in range(n)], work)
            log(f"N={n}: {n} netns sshd nodes up in {time.perf_counter() - started:.1f}s (load average {load_average()})")
            try:
                all_results[n] = measure(nodes, work, args.reps, tuple(args.tools), log)
            finally:
                nodes.close()
    text = table(all_results, args.reps) + "\n\nTargets (issue 6):\n" + targets(all_results) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({str(k): v for k, v in all_results.items()}, indent=2))


if __name__ == "__main__":
    main()
