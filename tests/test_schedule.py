"""Overlapping playbooks in the runner (labctl/schedule.py), fast, over the scripted transport.

Timing is never inferred from the wall clock of the whole run: the transport records when each
command started and ended, and the tests compare those intervals. The same properties on real
sshd nodes, with timestamps taken on the nodes, are in tests/ssh/test_overlap.py."""

from __future__ import annotations

import io
import textwrap
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from labctl.errors import ExitCode
from labctl.plan import Plan, build_plan, load_playbooks
from labctl.runner import ProviderResult, Runner, RunnerError, StepFailed
from labctl.schedule import SERIAL_ENV, run_ready
from labctl.spec import LabSpec
from labctl.transport.base import Host, Result
from labctl.transport.scripted import ScriptedTransport

NAMES = ("master", "worker1", "nfs")
HOSTS = {n: Host(name=n, address=f"10.251.202.{i}") for i, n in enumerate(NAMES, 10)}


class Timed(ScriptedTransport):
    """Records (host, first script line, start, end) of every command, thread-safely."""

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[tuple[str, str, float, float]] = []
        self.threads: set[str] = set()

    def run(self, host, script, **kw) -> Result:  # type: ignore[no-untyped-def, override]
        start = time.monotonic()
        result = super().run(host, script, **kw)
        with self._lock:
            self.spans.append((host.name, script.splitlines()[0], start, time.monotonic()))
        return result

    def span(self, host: str, marker: str) -> tuple[float, float]:
        found = [(s, e) for h, line, s, e in self.spans if h == host and line == marker]
        assert len(found) == 1, (host, marker, self.spans)
        return found[0]


def books(tmp_path: Path, **files: str):  # type: ignore[no-untyped-def]
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    return load_playbooks(tmp_path)


# prep on the Kubernetes nodes, nfs beside it on the NFS VM, then join after both.
THREE = {
    "10-prep.yaml": """\
        title: Prep
        steps:
          - {name: hosts-file, title: Hosts file, hosts: all, run: "echo prep-hosts"}
          - {name: slow, title: Slow prep, hosts: k8s, run: "echo prep-slow"}
          - {name: fail-maybe, title: Maybe fails, hosts: k8s, run: "echo prep-fail"}
        """,
    "20-nfs.yaml": """\
        title: NFS
        after: []
        steps:
          - {name: install, title: Install, hosts: nfs, run: "echo nfs-install", capture: export_path, capture_check: true}
          - {name: export, title: Export, hosts: nfs, run: "echo nfs-export"}
        """,
    "30-join.yaml": """\
        title: Join
        after: [prep, nfs]
        steps:
          - {name: join, title: Join, hosts: workers, run: "echo join", uses: [export_path]}
        """,
}


def three(tmp_path: Path) -> Plan:
    return build_plan(LabSpec.default(), books(tmp_path, **THREE), include_provider=False)


def runner(transport, tmp_path: Path, **kw) -> tuple[Runner, io.StringIO]:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=300, highlight=False)
    return Runner(transport, HOSTS, log_path=tmp_path / "run.log", console=console, **kw), out


def overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return min(a[1], b[1]) - max(a[0], b[0])


def test_playbooks_on_disjoint_hosts_run_at_the_same_time_and_each_host_keeps_file_order(tmp_path):
    t = Timed().on("prep-slow", delay=0.6).on("nfs-install", delay=0.3).on("nfs-export", delay=0.3)
    r, out = runner(t, tmp_path)
    report = r.run(three(tmp_path))
    slow = t.span("master", "echo prep-slow")
    assert overlap(slow, t.span("nfs", "echo nfs-install")) > 0.2 and overlap(slow, t.span("nfs", "echo nfs-export")) > 0.2
    # The NFS VM still ran node prep's hosts-file step first; join waited for both branches.
    assert t.span("nfs", "echo prep-hosts")[1] <= t.span("nfs", "echo nfs-install")[0]
    join = t.span("worker1", "echo join")
    assert join[0] >= t.span("nfs", "echo nfs-export")[1] and join[0] >= t.span("worker1", "echo prep-fail")[1]
    # The report lists the steps in plan order, whatever order they finished in.
    assert [s.step_id for s in report.steps] == [s.id for s in three(tmp_path).steps]
    # Lines of overlapping playbooks say which playbook they belong to, aligned.
    text = out.getvalue()
    assert "prep | ==> Step: Slow prep" in text and "nfs  | ==> Step: Install" in text
    assert "nfs  |     nfs: done" in text and "prep |     master: done" in text
    assert "==> Finished in" in text


def test_a_fact_captured_in_one_branch_reaches_the_playbook_after_it(tmp_path):
    t = Timed().on("nfs-install", stdout="/srv/nfs\n")
    r, _ = runner(t, tmp_path)
    facts: dict[str, str] = {}
    r.run(three(tmp_path), facts)
    assert facts["export_path"] == "/srv/nfs"
    join = [c for c in t.calls if "echo join" in c.script]
    assert [c.env for c in join] == [{"LABCTL_EXPORT_PATH": "/srv/nfs"}]


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_serial_runs_the_file_order_one_step_at_a_time(tmp_path, monkeypatch, how):
    t = Timed().on("prep-slow", delay=0.2).on("nfs-install", delay=0.2)
    if how == "environment":
        monkeypatch.setenv(SERIAL_ENV, "1")
    r, out = runner(t, tmp_path, **({"serial": True} if how == "argument" else {}))
    r.run(three(tmp_path))
    order = [line for _, line, _, _ in sorted(t.spans, key=lambda s: s[2])]
    firsts = list(dict.fromkeys(order))
    assert firsts == ["echo prep-hosts", "echo prep-slow", "echo prep-fail", "echo nfs-install", "echo nfs-export", "echo join"]
    assert overlap(t.span("master", "echo prep-slow"), t.span("nfs", "echo nfs-install")) < 0
    assert " | " not in out.getvalue()  # no playbook prefixes: the old output


def test_a_failure_in_one_branch_stops_the_run_and_the_other_branch_reports(tmp_path):
    """prep fails on worker1 while nfs.install runs: install finishes and is reported done, nothing
    new starts (nfs.export, join), and the error is prep's, with labctl's exit code for it."""
    t = Timed().on("nfs-install", delay=0.5).on("prep-fail", host="worker1", exit_code=4, stderr="E: broken\n")
    r, out = runner(t, tmp_path)
    with pytest.raises(StepFailed) as info:
        r.run(three(tmp_path))
    err = info.value
    assert (err.step_id, err.host, err.remote_exit_code, err.exit_code) == ("prep.fail-maybe", "worker1", 4, ExitCode.STEP_FAILED)
    outcomes = {s.step_id: {o.host: o.status for o in s.outcomes} for s in err.report.steps}
    assert outcomes["nfs.install"] == {"nfs": "done"}
    assert outcomes["prep.fail-maybe"] == {"master": "done", "worker1": "failed"}
    assert "nfs.export" not in outcomes and "join.join" not in outcomes
    assert not any("nfs-export" in c.script or "echo join" in c.script for c in t.calls)
    text = out.getvalue()
    assert "==> 2 step(s) not started because prep.fail-maybe failed" in text
    assert "nfs.install" in text.split("Summary:")[1]  # the summary shows the branch that finished
    assert "not started: nfs.export, join.join" in (tmp_path / "run.log").read_text()


def test_a_rerun_after_a_branch_failed_resumes(tmp_path):
    """The runner's checks are the resume: a second run skips what the first finished."""
    marker: set[tuple[str, str]] = set()

    class Stateful(Timed):
        fail = True

        def run(self, host, script, **kw) -> Result:  # type: ignore[no-untyped-def, override]
            line = script.splitlines()[0]
            if line.startswith("check "):
                done = (host.name, line[6:]) in marker
                return Result(host.name, 0 if done else 1, stdout="/srv/nfs\n" if done else "")
            if line == "echo prep-fail" and host.name == "worker1" and self.fail:
                return Result(host.name, 1, stderr="boom")
            marker.add((host.name, line))
            return super().run(host, script, **kw)

    text = {k: _with_checks(v) for k, v in THREE.items()}
    plan = build_plan(LabSpec.default(), books(tmp_path, **text), include_provider=False)
    first = Stateful()
    with pytest.raises(StepFailed):
        runner(first, tmp_path)[0].run(plan)
    second = Stateful()
    second.fail = False
    report = runner(second, tmp_path)[0].run(plan)
    statuses = {s.step_id: {o.host: o.status for o in s.outcomes} for s in report.steps}
    assert statuses["prep.hosts-file"] == {"master": "skipped", "worker1": "skipped", "nfs": "skipped"}
    assert statuses["prep.fail-maybe"] == {"master": "skipped", "worker1": "done"}
    assert statuses["join.join"] == {"worker1": "done"}
    assert [c.env for c in second.calls if c.script.startswith("echo join")] == [{"LABCTL_EXPORT_PATH": "/srv/nfs"}]


def _with_checks(text: str) -> str:
    """Give every step a check `check <its run line>` (Stateful answers it from what ran)."""
    out = []
    for line in text.splitlines():
        if 'run: "echo ' in line:
            run = line.split('run: "', 1)[1].split('"', 1)[0]
            line = line.replace(f'run: "{run}"', f'check: "check {run}", run: "{run}"')
        out.append(line)
    return "\n".join(out) + "\n"


def test_provider_steps_run_in_the_main_thread_before_everything(tmp_path):
    """Vagrant is driven with signal handlers only the main thread may install."""
    seen: list[bool] = []
    base = three(tmp_path)
    from labctl.providers import provider_step

    plan = Plan(base.lab, base.provider, base.hosts, (provider_step(LabSpec.default(), tmp_path), *base.steps), base.playbooks)
    t = Timed()

    def hook(step):  # type: ignore[no-untyped-def]
        seen.append(threading.current_thread() is threading.main_thread())
        return ProviderResult(HOSTS)

    r = Runner(t, {}, log_path=tmp_path / "run.log", console=Console(file=io.StringIO()), on_provider_step=hook)
    report = r.run(plan)
    assert seen == [True] and report.steps[0].step_id == "provider.up"


def test_a_host_without_an_address_is_refused_before_anything_runs(tmp_path):
    t = Timed()
    r = Runner(t, {"master": HOSTS["master"]}, log_path=tmp_path / "run.log", console=Console(file=io.StringIO()))
    with pytest.raises(RunnerError, match="worker1"):
        r.run(three(tmp_path))
    assert t.calls == []


def test_run_ready_never_starts_a_step_before_its_dependencies():
    started: list[int] = []
    lock = threading.Lock()
    deps = [frozenset(), frozenset(), frozenset({0}), frozenset({0, 1}), frozenset({2, 3})]

    def run(i: int) -> bool:
        with lock:
            started.append(i)
        time.sleep(0.01 * (5 - i))
        return False

    assert run_ready(deps, run, poll=0.01) == []
    assert sorted(started) == [0, 1, 2, 3, 4]
    for i, need in enumerate(deps):
        assert all(started.index(j) < started.index(i) for j in need)


def test_on_a_terminal_the_overlapping_steps_share_one_spinner(tmp_path):
    """rich allows one live display at a time: two steps' spinners at once would raise LiveError."""
    t = Timed().on("prep-slow", delay=0.4).on("nfs-install", delay=0.4)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200)
    Runner(t, HOSTS, log_path=tmp_path / "run.log", console=console).run(three(tmp_path))
    assert overlap(t.span("master", "echo prep-slow"), t.span("nfs", "echo nfs-install")) > 0.2
    assert "Slow prep — 2 host(s)" in out.getvalue() and "Install — 1 host(s)" in out.getvalue()


def test_ctrl_c_while_branches_run_starts_nothing_new_and_says_interrupted(tmp_path):
    import _thread

    t = Timed().on("prep-slow", delay=0.6).on("nfs-install", delay=0.6)
    r, out = runner(t, tmp_path)
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        r.run(three(tmp_path))
    timer.join()
    time.sleep(0.8)  # the running steps finish (the scripted transport cannot be stopped)
    assert not any(c.script.startswith(("echo nfs-export", "echo join", "echo prep-fail")) for c in t.calls)
    assert "==> Interrupted after" in out.getvalue()
    assert "INTERRUPTED" in (tmp_path / "run.log").read_text()


def test_when_both_branches_fail_the_first_is_raised_and_the_other_named(tmp_path):
    t = Timed().on("nfs-install", delay=0.4, exit_code=2).on("prep-slow", host="worker1", exit_code=3)
    r, out = runner(t, tmp_path)
    with pytest.raises(StepFailed) as info:
        r.run(three(tmp_path))
    assert info.value.step_id == "prep.slow"
    outcomes = {s.step_id: {o.host: o.status for o in s.outcomes} for s in info.value.report.steps}
    assert outcomes["nfs.install"] == {"nfs": "failed"}
    assert "==> Also failed in another branch: nfs.install" in out.getvalue()
