"""A step's ``on_interrupt`` (labctl.interrupt_hooks) over the scripted fake transport: on Ctrl-C it
runs on exactly the hosts where the step's run started — not where its check said "already done",
not for steps that never started — and never when the run fails the ordinary way (StepFailed: the
re-run reuses what the step left running, e.g. 26-image-pull's background job)."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console
from runner_cases import plan, step

from labctl.runner import Runner, StepFailed
from labctl.transport.base import Host, Result
from labctl.transport.scripted import ScriptedGuardedTransport, ScriptedTransport

HOSTS = {n: Host(name=n, address=f"10.251.200.{i}") for i, n in enumerate(("master", "worker1", "nfs"), 10)}


@pytest.fixture(params=[ScriptedTransport, ScriptedGuardedTransport], ids=["two-round-trips", "one-round-trip"])
def scripted(request):
    return request.param


def make_runner(transport, tmp_path: Path) -> tuple[Runner, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200, highlight=False)
    return Runner(transport, HOSTS, log_path=tmp_path / "run.log", console=console), out


def hook_hosts(t: ScriptedTransport, marker: str) -> list[str]:
    return sorted(c.host for c in t.runs() if c.script == marker)


def test_ctrl_c_runs_the_hook_where_the_step_ran_only(tmp_path, scripted):
    t = (
        scripted()
        .on("start-check", host="nfs", exit_code=0)  # already done there: its run never starts
        .on("start-check", exit_code=1)
        .on("STOP-JOB", stdout="stopped the job (pid 42)\n")
        .on("slow-run", delay=1.5)
    )
    r, out = make_runner(t, tmp_path)
    p = plan(
        step("pull.start", "start-job", check="start-check", on_interrupt="STOP-JOB"),
        step("pull.other", "true", hosts=("master",)),
        # In flight on worker1 when Ctrl-C comes: its run started there, so its hook is owed.
        step("pull.slow", "slow-run", hosts=("worker1",), on_interrupt="STOP-SLOW"),
        step("pull.never", "never-run", on_interrupt="STOP-NEVER"),  # never started: nothing owed
    )
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        r.run(p)
    assert hook_hosts(t, "STOP-JOB") == ["master", "worker1"]
    assert hook_hosts(t, "STOP-SLOW") == ["worker1"]
    assert hook_hosts(t, "STOP-NEVER") == [] and not [c for c in t.runs() if c.script == "never-run"]
    hook = next(c for c in t.runs() if c.script == "STOP-JOB")
    assert hook.sudo and hook.timeout == pytest.approx(5.0)  # the step's sudo, a short timeout
    log = (tmp_path / "run.log").read_text()
    assert "pull.start on master: on_interrupt: exit 0" in log and "stopped the job (pid 42)" in log
    assert "master: pull.start on interrupt: stopped the job (pid 42)" in out.getvalue()
    assert t.closed


def test_a_failed_run_leaves_the_steps_work_running(tmp_path, scripted):
    t = scripted().on("kubeadm init", exit_code=3, stderr="port 6443 in use\n")
    r, _ = make_runner(t, tmp_path)
    with pytest.raises(StepFailed):
        r.run(plan(step("pull.start", "start-job", on_interrupt="STOP-JOB"), step("cp.init", "kubeadm init", hosts=("master",))))
    assert hook_hosts(t, "STOP-JOB") == []
    assert "on_interrupt" not in (tmp_path / "run.log").read_text()
    r.run_interrupt_hooks()  # what lifecycle.create calls on a Ctrl-C after a finished run: owed there
    assert hook_hosts(t, "STOP-JOB") == ["master", "nfs", "worker1"]


def test_a_dead_host_does_not_hold_up_ctrl_c(tmp_path, scripted):
    """A host that never answers its hook is given up after the hook's bound; the others still run."""
    t = scripted().on("STOP-JOB", host="worker1", delay=30.0)
    r, out = make_runner(t, tmp_path)
    r.run(plan(step("pull.start", "start-job", on_interrupt="STOP-JOB")))
    began = time.monotonic()
    results = r.on_interrupt.run_all(t, r._logw, lambda text, style: r._say(text, style), seconds=0.5)
    assert time.monotonic() - began < 0.5 + 1.0 + 1.0
    assert results[("pull.start", "worker1")] is None
    assert isinstance(results[("pull.start", "master")], Result) and results[("pull.start", "master")].ok
    assert "worker1: pull.start on interrupt: no answer within 1.5s" in out.getvalue()
