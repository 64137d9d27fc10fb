"""Overlapping playbooks on real sshd nodes (tests/sshnodes.py): the runner's graph (labctl/schedule.py)
over the real SSH transport, with timestamps taken ON THE NODES (`date +%s.%N` into a file there;
every node shares the test machine's kernel clock, so the stamps compare).

The playbooks are written for the test, with the real loader and planner: `prep` on the Kubernetes
nodes (its first step on every node, like node prep's /etc/hosts), `nfs` with `after: []` on the NFS
VM, and `join` after both. Proven here: the two branches really run at the same time while each host
keeps file order; a failure in one branch stops the run cleanly (the other branch's running step
finishes and is in the report, nothing new starts, labctl's exit code for a failed step); and a
re-run resumes, skipping by their checks the steps the first run finished.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest
from rich.console import Console

from labctl.errors import ExitCode
from labctl.plan import build_plan, load_playbooks
from labctl.runner import Runner, StepFailed
from labctl.spec import LabSpec
from labctl.transport.ssh import SSHTransport

NAMES = ["master", "worker1", "nfs"]


def stamped(name: str, seconds: float, extra: str = "") -> str:
    """A step's YAML: record start and end on the node around `sleep`, guarded by a marker file."""
    script = (
        f"echo \"{name} start $(date +%s.%N)\" >> /var/tmp/stamps\n{extra}sleep {seconds}\n"
        f"echo \"{name} end $(date +%s.%N)\" >> /var/tmp/stamps\ntouch /var/tmp/done-{name}\n"
    )
    return (
        f"  - name: {name}\n    title: Step {name}\n    check: test -f /var/tmp/done-{name}\n    done_reason: already ran\n"
        "    run: |\n" + textwrap.indent(script, "      ")
    )


def playbooks(folder: Path) -> Path:
    folder.mkdir()
    (folder / "10-prep.yaml").write_text(
        "title: Prep\nsteps:\n"
        + stamped("prep-first", 0.1).replace("    check:", "    hosts: all\n    check:", 1)
        + stamped("prep-slow", 3).replace("    check:", "    hosts: k8s\n    check:", 1)
        # Fails on worker1 until /var/tmp/allow exists there (the "fix" before the re-run).
        + stamped("prep-gate", 0.1, extra='if [ "$(hostname)" = worker1 ] && [ ! -f /var/tmp/allow ]; then echo "E: gate closed" >&2; exit 7; fi\n')
        .replace("    check:", "    hosts: k8s\n    check:", 1)
    )
    (folder / "20-nfs.yaml").write_text(
        "title: NFS\nafter: []\nsteps:\n"
        + stamped("nfs-one", 2).replace("    check:", "    hosts: nfs\n    check:", 1)
        + stamped("nfs-two", 4).replace("    check:", "    hosts: nfs\n    check:", 1)
    )
    (folder / "30-join.yaml").write_text(
        "title: Join\nafter: [prep, nfs]\nsteps:\n" + stamped("join", 0.1).replace("    check:", "    hosts: workers\n    check:", 1)
    )
    return folder


def spec_for(nodes) -> LabSpec:
    ip = {n: nodes[n].address for n in NAMES}
    prefix = ip["master"].rsplit(".", 1)[0]
    node = {"cpus": 2, "memory_mib": 2048, "ssh_user": nodes["master"].user}
    return LabSpec.from_dict({
        "name": "overlap-lab",
        "provider": {"type": "ssh"},
        "network": {"subnet": f"{prefix}.0/24", "metallb_pool": f"{prefix}.200-{prefix}.203"},
        "nodes": {
            "master": {"name": "master", "ip": ip["master"], **node},
            "workers": [{"name": "worker1", "ip": ip["worker1"], **node}],
            "nfs": {"name": "nfs", "ip": ip["nfs"], **node},
        },
    })  # fmt: skip


def stamps(nodes, name: str) -> dict[str, tuple[float, float]]:
    """step → (start, end) as recorded on node ``name``."""
    seen: dict[str, dict[str, float]] = {}
    for line in nodes.read(name, "/var/tmp/stamps").decode().splitlines():
        step, edge, when = line.split()
        seen.setdefault(step, {})[edge] = float(when)
    return {step: (e["start"], e.get("end", float("inf"))) for step, e in seen.items()}


def run(nodes, plan, log: Path, **kw):  # type: ignore[no-untyped-def]
    out = io.StringIO()
    transport = SSHTransport()
    try:
        runner = Runner(transport, nodes.hosts(), log_path=log, console=Console(file=out, width=200), **kw)
        try:
            return runner.run(plan, {}), out.getvalue()
        except StepFailed as err:
            return err, out.getvalue()
    finally:
        transport.close()


@pytest.fixture
def lab(ssh_nodes, tmp_path):
    nodes = ssh_nodes(NAMES)
    plan = build_plan(spec_for(nodes), load_playbooks(playbooks(tmp_path / "books")), include_provider=False)
    return nodes, plan


def test_branches_on_disjoint_hosts_run_at_the_same_time_on_the_nodes(lab, tmp_path):
    nodes, plan = lab
    for name in ("worker1",):
        nodes.exec(name, "touch /var/tmp/allow", check=True)
    report, out = run(nodes, plan, tmp_path / "run.log")
    assert not isinstance(report, StepFailed), report
    master, nfs, worker = stamps(nodes, "master"), stamps(nodes, "nfs"), stamps(nodes, "worker1")
    slow = master["prep-slow"]
    # nfs-one and nfs-two ran on the NFS VM while prep-slow ran on the master: intervals overlap.
    assert nfs["nfs-one"][0] < slow[1] and slow[0] < nfs["nfs-one"][1]
    assert min(slow[1], nfs["nfs-one"][1]) - max(slow[0], nfs["nfs-one"][0]) > 1.0
    # Each host kept file order: on the NFS VM prep's first step came before the nfs playbook.
    assert nfs["prep-first"][1] <= nfs["nfs-one"][0] and nfs["nfs-one"][1] <= nfs["nfs-two"][0]
    # join (after prep and nfs) started only once both branches had finished.
    assert worker["join"][0] >= max(nfs["nfs-two"][1], worker["prep-gate"][1])
    # Wall time: prep (~3.2 s) beside nfs (~6 s), not their sum (~9.3 s) plus join.
    assert sum(s.duration for s in report.steps) > report.duration + 1.5
    assert "nfs  | ==> Step: Step nfs-one" in out and "prep | ==> Step: Step prep-slow" in out


def test_serial_runs_one_step_at_a_time_on_the_same_nodes(lab, tmp_path):
    nodes, plan = lab
    nodes.exec("worker1", "touch /var/tmp/allow", check=True)
    report, _ = run(nodes, plan, tmp_path / "run.log", serial=True)
    assert not isinstance(report, StepFailed), report
    master, nfs = stamps(nodes, "master"), stamps(nodes, "nfs")
    assert master["prep-gate"][1] <= nfs["nfs-one"][0]  # file order: nfs waited for all of prep


def test_a_failed_branch_stops_the_run_cleanly_the_other_reports_and_a_rerun_resumes(lab, tmp_path):
    nodes, plan = lab
    err, out = run(nodes, plan, tmp_path / "run1.log")
    assert isinstance(err, StepFailed)
    assert (err.step_id, err.host, err.remote_exit_code) == ("prep.prep-gate", "worker1", 7)
    assert err.exit_code == ExitCode.STEP_FAILED and "E: gate closed" in err.stderr_tail
    outcomes = {s.step_id: {o.host: o.status for o in s.outcomes} for s in err.report.steps}
    # prep-gate failed ~3.2 s in, while nfs-two (2 s → 6 s) was running: it finished and reports.
    assert outcomes["prep.prep-gate"] == {"master": "done", "worker1": "failed"}
    assert outcomes["nfs.nfs-one"] == {"nfs": "done"} and outcomes["nfs.nfs-two"] == {"nfs": "done"}
    assert "join.join" not in outcomes
    nfs = stamps(nodes, "nfs")
    assert nfs["nfs-two"][1] != float("inf"), "the running branch was cut off instead of finishing"
    assert not nodes.path("worker1", "/var/tmp/done-join").exists()
    assert "step(s) not started because prep.prep-gate failed" in out
    assert "not started: join.join" in (tmp_path / "run1.log").read_text()

    nodes.exec("worker1", "touch /var/tmp/allow", check=True)
    report, _ = run(nodes, plan, tmp_path / "run2.log")
    assert not isinstance(report, StepFailed), report
    again = {s.step_id: {o.host: o.status for o in s.outcomes} for s in report.steps}
    assert again["prep.prep-slow"] == {"master": "skipped", "worker1": "skipped"}
    assert again["nfs.nfs-two"] == {"nfs": "skipped"}
    assert again["prep.prep-gate"] == {"master": "skipped", "worker1": "done"}
    assert again["join.join"] == {"worker1": "done"}
