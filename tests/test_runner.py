"""Runner unit tests over the scripted fake transport (fast, no SSH): order, skips, facts, failure."""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console
from runner_cases import plan, step

from labctl.artefacts import Artefact
from labctl.runner import ProviderResult, Runner, RunnerError, StepFailed, format_duration
from labctl.transport.base import Host
from labctl.transport.scripted import ScriptedGuardedTransport, ScriptedTransport

HOSTS = {n: Host(name=n, address=f"10.251.200.{i}") for i, n in enumerate(("master", "worker1", "nfs"), 10)}


@pytest.fixture(params=[ScriptedTransport, ScriptedGuardedTransport], ids=["two-round-trips", "one-round-trip"])
def scripted(request):
    """Every test runs against both ways a transport may offer check-then-run."""
    return request.param


def runner(transport, tmp_path: Path, **kw) -> tuple[Runner, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200, highlight=False)
    return Runner(transport, HOSTS, log_path=tmp_path / "run.log", console=console, **kw), out


def test_check_success_skips_with_reason_and_failure_runs(tmp_path, scripted):
    t = scripted().on("swap-check", host="master", exit_code=0).on("swap-check", exit_code=1)
    r, out = runner(t, tmp_path)
    report = r.run(plan(step("prep.swap-off", "swapoff -a", check="swap-check", done_reason="swap already off")))
    by_host = {o.host: o for o in report.steps[0].outcomes}
    assert by_host["master"].status == "skipped" and by_host["master"].reason == "swap already off"
    assert by_host["worker1"].status == by_host["nfs"].status == "done"
    assert {c.host for c in t.runs() if c.script == "swapoff -a"} == {"worker1", "nfs"}
    text = out.getvalue()
    assert "==> Step: Title of prep.swap-off" in text
    assert "master: skipped (swap already off)" in text
    assert "worker1: done" in text
    assert "==> Finished in" in text
    assert "\x1b[" not in text  # plain text when not a terminal


def test_failure_stops_after_step_and_names_everything(tmp_path, scripted):
    t = scripted().on("kubeadm init", exit_code=3, stderr="line1\npreflight error: port 6443 in use\n")
    r, _out = runner(t, tmp_path)
    p = plan(
        step("cp.ok", "true"),
        step("cp.init", "kubeadm init --config x", hosts=("master",)),
        step("cp.after", "echo never"),
    )
    with pytest.raises(StepFailed) as info:
        r.run(p)
    err = info.value
    assert (err.step_id, err.host, err.remote_exit_code, err.timed_out) == ("cp.init", "master", 3, False)
    assert err.exit_code == 5  # labctl's own code for a failed step, never the remote one
    assert "port 6443 in use" in err.stderr_tail
    assert err.command == "kubeadm init --config x"
    assert err.log_path == tmp_path / "run.log"
    message = str(err)
    for needed in ("cp.init", "master", "exit code 3", "kubeadm init --config x", "port 6443 in use", str(tmp_path / "run.log")):
        assert needed in message
    assert not any("echo never" in c.script for c in t.calls)  # later steps not run
    assert err.report is not None and [s.step_id for s in err.report.steps] == ["cp.ok", "cp.init"]


def test_one_host_failing_reports_the_others_done(tmp_path, scripted):
    t = scripted().on("install-thing", host="worker1", exit_code=1, stderr="E: boom")
    r, out = runner(t, tmp_path)
    with pytest.raises(StepFailed) as info:
        r.run(plan(step("prep.install", "install-thing")))
    err = info.value
    assert err.host == "worker1"
    assert set(err.succeeded_hosts) == {"master", "nfs"}
    assert "succeeded on: master, nfs" in str(err)
    text = out.getvalue()
    assert "master: done" in text and "nfs: done" in text and "worker1: FAILED" in text


def test_timeout_is_named_as_a_timeout(tmp_path, scripted):
    t = scripted().on("wait-for-ready", exit_code=124, timed_out=True)
    r, _ = runner(t, tmp_path)
    with pytest.raises(StepFailed) as info:
        r.run(plan(step("w.wait", "wait-for-ready", hosts=("worker1",), timeout=7)))
    assert info.value.timed_out
    assert "timed out after 7s" in str(info.value)
    assert t.runs()[0].timeout == 7


def test_connection_error_names_host_and_step(tmp_path, scripted):
    t = scripted().on(
        "x", host="nfs", exit_code=-1, cause="refused", error="cannot reach nfs (vagrant@10.251.200.12:22): connection refused"
    )
    r, _ = runner(t, tmp_path)
    with pytest.raises(StepFailed) as info:
        r.run(plan(step("nfs.export", "x")))
    assert "step nfs.export" in str(info.value) and "cannot reach nfs" in str(info.value)
    # The bug this pins: a transport failure has no remote exit code, and that None became exit 0.
    assert info.value.remote_exit_code is None and info.value.exit_code == 3


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"exit_code": 3}, 5),  # the remote 3 is reported, never used as labctl's code
        ({"exit_code": 0, "cause": "", "error": "upload refused"}, 5),
        ({"exit_code": -1, "cause": "unreachable", "error": "no route"}, 3),
        ({"exit_code": -1, "cause": "lost", "error": "connection lost"}, 3),
        ({"exit_code": -1, "cause": "auth", "error": "authentication refused"}, 8),
        ({"exit_code": -1, "cause": "host-key", "error": "host key CHANGED"}, 8),
        ({"exit_code": 124, "timed_out": True}, 9),
        ({"exit_code": 143, "cause": "interrupted", "error": "interrupted"}, 130),
    ],
)
def test_exit_code_comes_from_the_cause_never_from_the_remote_command(tmp_path, scripted, answer, expected):
    t = scripted().on("x", host="nfs", **answer)
    r, _ = runner(t, tmp_path)
    with pytest.raises(StepFailed) as info:
        r.run(plan(step("nfs.export", "x")))
    assert info.value.exit_code == expected


def test_facts_are_captured_and_handed_over_as_env(tmp_path, scripted):
    t = scripted().on("print-join", stdout="kubeadm join 10.0.0.1:6443 --token abcdef.0123456789abcdef\n")
    r, _ = runner(t, tmp_path)
    facts: dict[str, str] = {}
    p = plan(
        step("cp.join-cmd", "print-join", hosts=("master",), capture="join_command", secret=True),
        step("w.join", 'eval "$LABCTL_JOIN_COMMAND"', hosts=("worker1",), uses=("join_command",)),
    )
    report = r.run(p, facts)
    assert facts["join_command"] == "kubeadm join 10.0.0.1:6443 --token abcdef.0123456789abcdef"
    join = next(c for c in t.runs() if c.host == "worker1")
    assert join.env == {"LABCTL_JOIN_COMMAND": facts["join_command"]}
    assert report.facts is facts


def test_capture_check_takes_the_fact_from_a_successful_check(tmp_path, scripted):
    t = scripted().on("cat /etc/labctl/token", stdout="tok-from-check\n")
    r, _ = runner(t, tmp_path)
    facts: dict[str, str] = {}
    p = plan(step("cp.token", "make-token", check="cat /etc/labctl/token", hosts=("master",), capture="token", capture_check=True))
    r.run(p, facts)
    assert facts == {"token": "tok-from-check"}
    assert [c.script for c in t.runs()] == ["cat /etc/labctl/token"]


def test_missing_fact_fails_the_step_with_the_fix(tmp_path, scripted):
    t = scripted()
    r, _ = runner(t, tmp_path)
    with pytest.raises(StepFailed) as info:
        r.run(plan(step("w.join", "join", hosts=("worker1",), uses=("join_command",))))
    assert "join_command" in str(info.value) and "capture_check" in str(info.value)
    assert t.runs() == []


def test_secrets_never_reach_console_or_log(tmp_path, scripted):
    token = "abcdef.0123456789abcdef"
    join = f"kubeadm join 10.0.0.1:6443 --token {token} --discovery-token-ca-cert-hash sha256:{'f' * 64}"
    webui_key = "webui-secret-key-7f3a9c1e2b4d"
    t = (
        scripted()
        .on("print-join", stdout=join + "\n")
        # A careless script echoes the secret on stderr and fails: the error output must still be clean.
        .on("use-join", exit_code=1, stderr=f"error: {token} rejected\nkey was {webui_key}\n")
    )
    arts = {"webui-env": Artefact("webui-env", "/etc/labctl/webui.env", f"WEBUI_SECRET_KEY={webui_key}\n".encode(), 0o600, True)}
    r, out = runner(t, tmp_path, artefacts=arts)
    p = plan(
        step("cp.join", "print-join", hosts=("master",), capture="join_command", secret=True),
        step("w.join", "use-join", hosts=("worker1",), uses=("join_command",), upload=("webui-env",)),
    )
    with pytest.raises(StepFailed) as info:
        r.run(p)
    log = (tmp_path / "run.log").read_text()
    for text in (out.getvalue(), log, str(info.value)):
        assert token not in text and webui_key not in text and "f" * 64 not in text
    assert "<redacted:join_command>" in str(info.value)
    assert "<redacted:webui-env>" in log
    assert "secret capture join_command: not logged" in log
    assert os.stat(tmp_path / "run.log").st_mode & 0o777 == 0o600
    put = next(c for c in t.calls if c.kind == "put")
    assert (put.host, put.path, put.mode) == ("worker1", "/etc/labctl/webui.env", 0o600)


def test_log_has_every_command_exit_code_and_output(tmp_path, scripted):
    t = scripted().on("echo hello", stdout="hello\n").on("grep -q x", exit_code=1)
    r, _ = runner(t, tmp_path)
    r.run(plan(step("a.b", "echo hello", check="grep -q x /etc/f", hosts=("nfs",))))
    log = (tmp_path / "run.log").read_text()
    assert "a.b on nfs: check" in log and "$ grep -q x /etc/f" in log and "exit 1" in log
    assert "a.b on nfs: run" in log and "$ echo hello" in log and "exit 0" in log and "hello" in log


def test_retries_with_backoff_then_success(tmp_path, scripted):
    t = scripted().on("curl -fsSL", exit_code=56, stderr="reset", times=2)
    r, out = runner(t, tmp_path, retry_backoff=0.01, retry_max_wait=0.02)
    report = r.run(plan(step("net.fetch", "curl -fsSL https://example.invalid/x", hosts=("master",), retries=3)))
    assert report.steps[0].outcomes[0].status == "done"
    assert len(t.runs()) == 3
    assert "attempt 1/4 failed (exit 56" in out.getvalue()


def test_every_retry_checks_first(tmp_path, scripted):
    t = scripted().on("probe", exit_code=1, times=1).on("apt-get install", exit_code=100, stderr="E: lock", times=1)
    r, _ = runner(t, tmp_path, retry_backoff=0.01, retry_max_wait=0.01)
    report = r.run(plan(step("p.install", "apt-get install -y x", check="probe", hosts=("master",), retries=2)))
    # attempt 1: check fails, install fails; attempt 2: the check now passes → skipped, not re-installed
    assert [c.script for c in t.runs()] == ["probe", "apt-get install -y x", "probe"]
    assert report.steps[0].outcomes[0].status == "skipped"


def test_retries_exhausted_fail_with_last_result(tmp_path, scripted):
    t = scripted().on("curl", exit_code=22, stderr="404")
    r, _ = runner(t, tmp_path, retry_backoff=0.01, retry_max_wait=0.01)
    with pytest.raises(StepFailed) as info:
        r.run(plan(step("net.fetch", "curl x", hosts=("master",), retries=2)))
    assert info.value.remote_exit_code == 22 and len(t.runs()) == 3


def test_hosts_run_in_parallel(tmp_path, scripted):
    t = scripted().on("slow", delay=0.4)
    r, _ = runner(t, tmp_path)
    started = time.monotonic()
    r.run(plan(step("s.slow", "slow")))
    assert time.monotonic() - started < 1.0  # three hosts × 0.4 s, in parallel


def test_profile_skips_and_provider_steps(tmp_path, scripted):
    t = scripted()
    seen = []
    r, out = runner(t, tmp_path, on_provider_step=seen.append)
    p = plan(
        step("provider.up", "vagrant up", hosts=("localhost",), kind="provider"),
        step("net.pull", "ctr pull", skip_reason="needs the internet and the lab is offline"),
    )
    report = r.run(p)
    assert [s.id for s in seen] == ["provider.up"]
    assert all(o.status == "skipped" for o in report.steps[1].outcomes)
    assert "SKIPPED on every host: needs the internet" in out.getvalue()
    assert t.calls == []
    r2, _out2 = runner(scripted(), tmp_path)
    report2 = r2.run(plan(step("provider.up", "vagrant up", hosts=("localhost",), kind="provider")))
    assert report2.steps[0].outcomes[0].reason == "handled by the provider"


def test_hosts_from_the_provider_step_are_used_and_checked_before_the_first_remote_step(tmp_path, scripted):
    """Only the provider knows the addresses: the runner starts without hosts and takes the provider's."""
    t = scripted()
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200, highlight=False)
    calls = []

    def bring_up(step):
        calls.append(step.id)
        return ProviderResult({n: HOSTS[n] for n in ("master", "nfs")}, skipped_reason="every VM is already running")

    r = Runner(t, {}, log_path=tmp_path / "run.log", console=console, on_provider_step=bring_up)
    p = plan(step("provider.up", "vagrant up", hosts=("localhost",), kind="provider"), step("a.x", "true", hosts=("master", "nfs")))
    report = r.run(p)
    assert calls == ["provider.up"]
    assert [(o.host, o.status) for o in report.steps[0].outcomes] == [("localhost", "skipped")]
    assert "    skipped (every VM is already running)" in out.getvalue()
    assert {(c.host, c.script) for c in t.runs()} == {("master", "true"), ("nfs", "true")}
    assert f"host master: {HOSTS['master'].user}@{HOSTS['master'].address}" in (tmp_path / "run.log").read_text()

    # A host the provider did not hand back: refused after the provider step, before any remote step.
    t2 = scripted()
    r2 = Runner(t2, {}, log_path=tmp_path / "run2.log", console=console, on_provider_step=bring_up)
    with pytest.raises(RunnerError, match="worker1"):
        r2.run(plan(p.steps[0], step("a.x", "true", hosts=("master",)), step("b.y", "true", hosts=("worker1",))))
    assert calls == ["provider.up", "provider.up"] and t2.calls == []


def test_unknown_host_or_artefact_refused_before_anything_runs(tmp_path, scripted):
    t = scripted()
    r, _ = runner(t, tmp_path)
    with pytest.raises(RunnerError, match="gpu1"):
        r.run(plan(step("a.ok", "true"), step("g.x", "true", hosts=("gpu1",))))
    with pytest.raises(RunnerError, match="artefact 'missing'"):
        r.run(plan(step("a.ok", "true"), step("u.x", "true", upload=("missing",))))
    assert t.calls == []


def test_ctrl_c_closes_connections_writes_log_and_reraises(tmp_path, scripted):
    t = scripted().on("slow", delay=0.5)
    r, _out = runner(t, tmp_path)
    timer = threading.Timer(0.1, lambda: os.kill(os.getpid(), 2))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        r.run(plan(step("s.slow", "slow"), step("s.next", "never")))
    assert t.closed
    assert "INTERRUPTED" in (tmp_path / "run.log").read_text()
    assert not any(c.script == "never" for c in t.calls)


def test_summary_and_durations(tmp_path, scripted):
    r, _ = runner(scripted(), tmp_path)
    report = r.run(plan(step("a.one", "true"), step("a.two", "true", hosts=("nfs",))))
    summary = report.summary()
    assert "2 steps" in summary and "4 host runs done" in summary and "a.two" in summary
    assert format_duration(62) == "1m02s" and format_duration(3.25) == "3.2s"


def test_uploads_happen_before_the_check(tmp_path, scripted):
    """An apply step checks with `kubectl diff -f <artefact>`: the check must see this run's file,
    so the upload comes first even when the check then says the step is done."""
    t = scripted().on("kubectl diff", exit_code=0)
    arts = {"apps": Artefact("apps", "/etc/labctl/apps.yaml", b"kind: List\n", 0o600, True)}
    r, _ = runner(t, tmp_path, artefacts=arts)
    report = r.run(
        plan(step("apps.apply", "kubectl apply --server-side -f /etc/labctl/apps.yaml", hosts=("master",),
                  check="kubectl diff --server-side -f /etc/labctl/apps.yaml", upload=("apps",)))
    )
    assert report.steps[0].outcomes[0].status == "skipped"
    kinds = [c.kind for c in t.calls if c.host == "master"]
    assert kinds[0] == "put", kinds
    assert not any("kubectl apply" in c.script for c in t.runs())
