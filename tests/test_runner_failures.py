"""Every way one host can fail, and what the user reads about it (fast, scripted transport).

The runner's promise (fabric/invoke style): one host's failure — a non-zero exit, a timeout, a lost
connection, a transport that raises, an upload that raises — is reported for that host, by name and
cause, while the step finishes on the other hosts; then the run stops with a ``StepFailed`` that
names them all. These tests pin that promise through the public ``Runner.run`` and its output only.
"""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console
from runner_cases import plan, step

from labctl.artefacts import Artefact
from labctl.errors import ExitCode
from labctl.plan import PlannedStep
from labctl.runner import ProviderResult, Runner, StepFailed, format_duration
from labctl.transport.base import Host, Result
from labctl.transport.scripted import Call, ScriptedGuardedTransport, ScriptedTransport

NAMES = ("master", "worker1", "nfs")
HOSTS = {n: Host(name=n, address=f"10.251.201.{i}") for i, n in enumerate(NAMES, 10)}


@pytest.fixture(params=[ScriptedTransport, ScriptedGuardedTransport], ids=["two-round-trips", "one-round-trip"])
def scripted(request):
    return request.param


def make_runner(transport, tmp_path: Path, **kw) -> tuple[Runner, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=300, highlight=False)
    return Runner(transport, HOSTS, log_path=tmp_path / "run.log", console=console, **kw), out


def raising(base: type, *, on_host: str, method: str, error: Exception) -> ScriptedTransport:
    """A scripted transport whose ``run`` (or ``put``) raises ``error`` for one host only."""

    class Raising(base):  # type: ignore[misc, valid-type]
        def run(self, host, script, **kw):  # type: ignore[no-untyped-def, override]
            if method == "run" and host.name == on_host:
                raise error
            return super().run(host, script, **kw)

        def run_guarded(self, host, check, script, **kw):  # type: ignore[no-untyped-def]
            if method == "run" and host.name == on_host:
                raise error
            return super().run_guarded(host, check, script, **kw)  # type: ignore[misc]

        def put(self, host, content, remote_path, **kw):  # type: ignore[no-untyped-def, override]
            if method == "put" and host.name == on_host:
                raise error
            return super().put(host, content, remote_path, **kw)

    return Raising()


def host_lines(text: str) -> dict[str, str]:
    """``    worker1: FAILED (...)`` lines of the console, by host."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, rest = line.strip().partition(": ")
        if sep and name in NAMES:
            out[name] = rest
    return out


@pytest.mark.parametrize(
    "error, reason",
    [
        (ConnectionResetError("connection to worker1 lost mid-command"), "connection to worker1 lost mid-command"),
        (OSError(), "OSError"),  # no message: the exception's type still says what happened
    ],
)
def test_transport_raising_on_one_host_is_reported_for_it_while_the_others_finish(tmp_path, scripted, error, reason):
    t = raising(scripted, on_host="worker1", method="run", error=error)
    r, out = make_runner(t, tmp_path)
    with pytest.raises(StepFailed) as info:
        r.run(plan(step("prep.pkgs", "install-pkgs"), step("prep.after", "never-runs")))
    err = info.value
    # No remote exit code; an exception that names no cause is a failed step (exit 5), never exit 0.
    assert (err.host, err.remote_exit_code, err.error, err.timed_out) == ("worker1", None, reason, False)
    assert err.exit_code == ExitCode.STEP_FAILED
    assert err.succeeded_hosts == ("master", "nfs")
    assert err.failed_hosts == ("worker1",)
    assert err.command == "install-pkgs"
    assert f"failed on worker1: {reason}" in str(err)
    lines = host_lines(out.getvalue())
    assert lines["worker1"] == f"FAILED ({reason})"
    assert lines["master"].startswith("done (") and lines["nfs"].startswith("done (")
    assert {c.host for c in t.runs() if c.script == "install-pkgs"} == {"master", "nfs"}
    assert not any(c.script == "never-runs" for c in t.runs())
    assert f"worker1: prep.pkgs: error: {reason}" in (tmp_path / "run.log").read_text()
    outcomes = {o.host: (o.status, o.reason) for o in err.report.steps[0].outcomes}
    assert outcomes["worker1"] == ("failed", reason)
    assert outcomes["master"][0] == outcomes["nfs"][0] == "done"


def test_upload_raising_on_one_host_fails_that_host_only(tmp_path, scripted):
    art = Artefact("calico", "/etc/labctl/calico.yaml", b"kind: Installation\n", 0o644, False)
    t = raising(scripted, on_host="nfs", method="put", error=PermissionError("/etc/labctl: permission denied"))
    r, out = make_runner(t, tmp_path, artefacts={"calico": art})
    with pytest.raises(StepFailed) as info:
        r.run(plan(step("cni.apply", "kubectl apply -f /etc/labctl/calico.yaml", upload=("calico",))))
    err = info.value
    assert err.host == "nfs" and err.error == "/etc/labctl: permission denied" and err.remote_exit_code is None
    assert err.exit_code == ExitCode.STEP_FAILED
    assert err.succeeded_hosts == ("master", "worker1")
    assert host_lines(out.getvalue())["nfs"] == "FAILED (/etc/labctl: permission denied)"
    # The upload failed before anything ran there: no check, no script on nfs.
    assert [c.host for c in t.runs()] == ["master", "worker1"] or sorted(c.host for c in t.runs()) == ["master", "worker1"]
    assert sorted(c.host for c in t.calls if c.kind == "put") == ["master", "worker1"]


def test_timed_out_host_reads_timed_out_never_none(tmp_path, scripted):
    t = scripted().on("wait-ready", host="worker1", exit_code=-1, timed_out=True)
    r, out = make_runner(t, tmp_path)
    with pytest.raises(StepFailed) as info:
        r.run(plan(step("apps.wait", "wait-ready", timeout=45)))
    text = out.getvalue()
    assert "None" not in text
    assert host_lines(text)["worker1"] == "FAILED (timed out after 45s)"
    assert host_lines(text)["master"].startswith("done")
    err = info.value
    assert err.timed_out and err.remote_exit_code is None and err.timeout == 45.0
    assert err.exit_code == ExitCode.TIMEOUT
    assert "failed on worker1: timed out after 45s" in str(err)
    assert err.succeeded_hosts == ("master", "nfs")
    assert "TIMED OUT after 45s" in (tmp_path / "run.log").read_text()


def test_timeout_without_a_step_timeout_still_says_timed_out(tmp_path):
    err = StepFailed(step_id="a.b", title="T", host="m", command="", exit_code=None, stderr_tail="",
                     log_path=tmp_path / "l", timed_out=True, timeout=None)  # fmt: skip
    assert "failed on m: timed out\n" in str(err)
    assert "None" not in str(err)


def test_lost_connection_is_a_failure_with_its_cause_not_an_exit_code(tmp_path, scripted):
    t = scripted().on("kubeadm join", host="worker1", exit_code=-1, cause="lost", error="connection to worker1 lost")
    r, out = make_runner(t, tmp_path)
    with pytest.raises(StepFailed) as info:
        r.run(plan(step("w.join", "kubeadm join x", hosts=("master", "worker1"))))
    assert host_lines(out.getvalue())["worker1"] == "FAILED (connection to worker1 lost)"
    err = info.value
    assert err.remote_exit_code is None and not err.timed_out and err.error == "connection to worker1 lost"
    assert err.exit_code == ExitCode.UNREACHABLE  # labctl's code by cause, not a remote one
    assert "exit code" not in str(err).splitlines()[0]
    assert "ERROR: connection to worker1 lost" in (tmp_path / "run.log").read_text()


@pytest.mark.parametrize("answer", [{"timed_out": True, "exit_code": -1}, {"error": "connection lost", "exit_code": -1}])
def test_a_check_that_cannot_run_fails_the_host_and_its_script_never_runs(tmp_path, scripted, answer):
    t = scripted().on("is-done", host="master", **answer).on("is-done", exit_code=1)
    r, out = make_runner(t, tmp_path)
    with pytest.raises(StepFailed) as info:
        r.run(plan(step("cp.x", "do-it", check="is-done", timeout=9)))
    err = info.value
    assert err.host == "master" and err.command == "is-done"
    assert not any(c.host == "master" and c.script == "do-it" for c in t.runs())
    assert {c.host for c in t.runs() if c.script == "do-it"} == {"worker1", "nfs"}
    assert host_lines(out.getvalue())["master"].startswith("FAILED (")
    assert "None" not in out.getvalue()


def test_exit_code_failure_reason_has_code_and_duration(tmp_path, scripted):
    t = scripted().on("apt-get", host="nfs", exit_code=100, stderr="E: Unable to locate package\n")
    r, out = make_runner(t, tmp_path)
    with pytest.raises(StepFailed) as info:
        r.run(plan(step("nfs.pkgs", "apt-get install -y nfs-kernel-server")))
    assert host_lines(out.getvalue())["nfs"] == "FAILED (exit 100 after 0.0s)"
    err = info.value
    assert err.remote_exit_code == 100 and err.error == "" and not err.timed_out
    assert err.exit_code == ExitCode.STEP_FAILED  # the remote 100 is reported, never labctl's code
    assert "failed on nfs: exit code 100" in str(err)
    assert "  last lines of stderr:\n    E: Unable to locate package" in str(err)


def test_several_hosts_failing_are_all_named(tmp_path, scripted):
    t = scripted().on("swapoff", host="master", exit_code=2).on("swapoff", host="nfs", exit_code=3)
    r, out = make_runner(t, tmp_path)
    with pytest.raises(StepFailed) as info:
        r.run(plan(step("prep.swap", "swapoff -a")))
    err = info.value
    assert err.host == "master" and err.failed_hosts == ("master", "nfs") and err.succeeded_hosts == ("worker1",)
    assert "  also failed on: nfs" in str(err)
    assert "succeeded on: worker1" in str(err)
    assert "==> Failed after" in out.getvalue()
    assert "RUN FAILED after" in (tmp_path / "run.log").read_text()


def test_no_host_succeeding_says_so(tmp_path, scripted):
    t = scripted().on("boom", exit_code=1)
    r, _ = make_runner(t, tmp_path)
    with pytest.raises(StepFailed) as info:
        r.run(plan(step("a.b", "boom", hosts=("master",))))
    assert "succeeded on: no host" in str(info.value)
    assert "also failed on" not in str(info.value)


def test_long_command_is_shortened_in_the_message_but_kept_whole_in_the_log(tmp_path, scripted):
    script = "\n".join(f"echo line{i}" for i in range(12)) + "\nfalse-at-the-end"
    t = scripted().on("false-at-the-end", exit_code=1)
    r, _ = make_runner(t, tmp_path)
    with pytest.raises(StepFailed) as info:
        r.run(plan(step("a.long", script, hosts=("master",))))
    msg = str(info.value)
    assert "    echo line7" in msg and "echo line8" not in msg
    assert "    … (5 more lines in the log)" in msg
    assert "false-at-the-end" in (tmp_path / "run.log").read_text()


def test_first_host_in_plan_order_wins_when_two_capture_the_same_fact(tmp_path, scripted):
    # worker1 answers first (master is slowed down): the fact must still be master's — plan order, not timing.
    t = scripted().on("read-id", host="master", stdout="from-master\n", delay=0.2).on("read-id", stdout="from-worker1\n")
    r, _ = make_runner(t, tmp_path)
    facts: dict[str, str] = {}
    report = r.run(
        plan(
            step("a.id", "read-id", hosts=("master", "worker1"), capture="cluster_id"),
            step("b.use", "use-id", hosts=("nfs",), uses=("cluster_id",)),
        ),
        facts,
    )
    assert facts == {"cluster_id": "from-master"} and report.facts["cluster_id"] == "from-master"
    use = next(c for c in t.runs() if c.script == "use-id")
    assert use.env == {"LABCTL_CLUSTER_ID": "from-master"}


def test_a_check_that_says_done_captures_nothing_without_capture_check(tmp_path, scripted):
    t = scripted().on("is-done", stdout="old-value\n")
    r, _ = make_runner(t, tmp_path)
    facts: dict[str, str] = {}
    r.run(plan(step("a.x", "make", check="is-done", hosts=("master",), capture="x")), facts)
    assert facts == {}


def test_retry_announces_the_attempt_and_the_wait(tmp_path, scripted):
    t = scripted().on("flaky", exit_code=1, times=1, stderr="temporary failure")
    r, out = make_runner(t, tmp_path, retry_backoff=0.01, retry_max_wait=0.01)
    r.run(plan(step("a.flaky", "flaky", hosts=("worker1",), retries=2, timeout=5)))
    text = out.getvalue()
    assert "worker1: attempt 1/3 failed (exit 1 after 0.0s); retrying in 0s" in text
    assert host_lines(text)["worker1"].startswith("done")
    assert len([c for c in t.runs() if c.script == "flaky"]) == 2


def test_a_step_without_retries_runs_once(tmp_path, scripted):
    t = scripted().on("once", exit_code=1)
    r, out = make_runner(t, tmp_path, retry_backoff=0.01, retry_max_wait=0.01)
    with pytest.raises(StepFailed):
        r.run(plan(step("a.once", "once", hosts=("worker1",))))
    assert len(t.runs()) == 1 and "attempt" not in out.getvalue()


def test_provider_step_outcomes_and_skip_reason(tmp_path, scripted):
    t = scripted()
    seen: list[str] = []

    def provider(s: PlannedStep) -> ProviderResult:
        seen.append(s.id)
        return ProviderResult(skipped_reason="every VM already running") if s.id == "vm.up" else ProviderResult()

    r, out = make_runner(t, tmp_path, on_provider_step=provider)
    report = r.run(
        plan(
            step("vm.up", "vagrant up", kind="provider", hosts=("master", "worker1")),
            step("vm.other", "x", kind="provider", hosts=("master",)),
            step("a.b", "true", hosts=("master",)),
        )
    )
    assert seen == ["vm.up", "vm.other"]
    up, other, _ = report.steps
    assert [(o.host, o.status, o.reason) for o in up.outcomes] == [
        ("master", "skipped", "every VM already running"),
        ("worker1", "skipped", "every VM already running"),
    ]
    assert [o.status for o in other.outcomes] == ["done"]
    assert "    skipped (every VM already running)" in out.getvalue()
    log = (tmp_path / "run.log").read_text()
    assert "provider step vm.up: skipped" in log and "provider step vm.other: done" in log
    assert t.runs()[0].script == "true"


def test_provider_step_hosts_are_written_to_the_log(tmp_path, scripted):
    new = Host(name="worker9", address="10.251.201.99", user="vagrant", port=2222)
    r, _ = make_runner(scripted(), tmp_path, on_provider_step=lambda s: ProviderResult(hosts={"worker9": new}))
    r.run(plan(step("vm.up", "up", kind="provider", hosts=("worker9",)), step("a.b", "true", hosts=("worker9",))))
    assert "host worker9: vagrant@10.251.201.99:2222" in (tmp_path / "run.log").read_text()


def test_summary_counts_every_status(tmp_path, scripted):
    t = scripted().on("is-done", host="master", exit_code=0).on("is-done", exit_code=1)
    r, out = make_runner(t, tmp_path)
    report = r.run(plan(step("a.one", "x", check="is-done"), step("b.none", "y", hosts=())))
    summary = report.summary()
    assert "Summary: 2 steps in" in summary
    assert "2 host runs done, 1 skipped, 0 failed" in summary
    assert "a.one" in summary and "2 done, 1 skipped" in summary
    assert "no hosts" in summary
    assert summary.splitlines()[-1] == f"Log: {tmp_path / 'run.log'}"
    assert summary in out.getvalue()


@pytest.mark.parametrize(
    "seconds, text",
    [(0.04, "0.0s"), (59.94, "59.9s"), (60, "1m00s"), (61.4, "1m01s"), (3599, "59m59s"), (3600, "1h00m00s"),
     (3725, "1h02m05s")],
)  # fmt: skip
def test_format_duration_boundaries(seconds, text):
    assert format_duration(seconds) == text


def test_summary_of_a_failed_run_counts_the_failure(tmp_path, scripted):
    t = scripted().on("bad", host="worker1", exit_code=1)
    r, _ = make_runner(t, tmp_path)
    with pytest.raises(StepFailed) as info:
        r.run(plan(step("a.ok", "true"), step("b.bad", "bad")))
    summary = info.value.report.summary()
    assert "Summary: 2 steps in" in summary
    assert "— 5 host runs done, 0 skipped, 1 failed" in summary
    step_lines = summary.splitlines()[1:3]
    assert step_lines[0].split()[0] == "a.ok" and step_lines[0].endswith("3 done")
    assert step_lines[1].split()[0] == "b.bad" and step_lines[1].endswith("2 done, 1 failed")


def test_the_log_heads_each_command_with_how_it_ran(tmp_path, scripted):
    t = scripted()
    r, _ = make_runner(t, tmp_path)
    r.run(
        plan(
            step("a.cap", "print", hosts=("master",), capture="x"),
            step("b.use", "use", hosts=("nfs",), uses=("x",), sudo=False, timeout=12),
        )
    )
    # Each log line is "[elapsed] text": compare the texts.
    log = [line.split("] ", 1)[1] for line in (tmp_path / "run.log").read_text().splitlines()]
    at = log.index("--- a.cap on master: run [sudo, timeout 300s]")
    assert log[at + 1 : at + 3] == ["$ print", "exit 0 in 0.00s"]
    at = log.index("--- b.use on nfs: run [login user, timeout 12s, facts LABCTL_X]")
    assert log[at + 1] == "$ use"


def test_on_a_terminal_lines_are_coloured_by_outcome_and_a_spinner_runs(tmp_path, scripted):
    t = (
        scripted()
        .on("chk", host="master", exit_code=0)
        .on("chk", exit_code=1)
        .on("flaky", host="nfs", exit_code=1, times=1)
        .on("bad", host="worker1", exit_code=1)
    )
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system="standard", width=300)
    r = Runner(t, HOSTS, log_path=tmp_path / "run.log", console=console, retry_backoff=0.01, retry_max_wait=0.01)
    with pytest.raises(StepFailed):
        r.run(plan(step("a.b", "flaky", check="chk", retries=1), step("c.d", "bad")))
    text = out.getvalue()
    assert "\x1b[1m==> Step: Title of a.b\x1b[0m" in text
    assert "\x1b[33m    master: skipped (already done)\x1b[0m" in text
    assert "\x1b[32m    worker1: done (" in text
    assert "\x1b[33m    nfs: attempt 1/2 failed (exit 1 after 0.0s); retrying in 0s\x1b[0m" in text
    assert "\x1b[1;31m    worker1: FAILED (exit 1 after 0.0s)\x1b[0m" in text
    assert "\x1b[1;31m==> Failed after" in text
    assert "Title of c.d — 3 host(s)" in text  # the live spinner, only on a terminal


def test_no_spinner_when_not_a_terminal(tmp_path, scripted):
    r, out = make_runner(scripted(), tmp_path)
    r.run(plan(step("a.b", "true")))
    assert "host(s)" not in out.getvalue()
    assert "\x1b[" not in out.getvalue()


def test_profile_skip_and_provider_outcomes_are_coloured(tmp_path, scripted):
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system="standard", width=300)
    r = Runner(scripted(), HOSTS, log_path=tmp_path / "run.log", console=console,
               on_provider_step=lambda s: ProviderResult(skipped_reason="all up"))  # fmt: skip
    r.run(plan(step("vm.up", "up", kind="provider", hosts=("master",)), step("a.b", "x", skip_reason="offline")))
    text = out.getvalue()
    assert "\x1b[33m    skipped (all up)\x1b[0m" in text
    assert "\x1b[1;33m    SKIPPED on every host: offline\x1b[0m" in text
    assert "\x1b[1;32m==> Finished in" in text


def test_a_provider_step_without_a_provider_is_skipped_and_counted(tmp_path, scripted):
    r, out = make_runner(scripted(), tmp_path)
    report = r.run(plan(step("vm.up", "up", kind="provider", hosts=("master", "nfs")), step("a.b", "true", hosts=("nfs",))))
    assert [(o.host, o.status, o.reason) for o in report.steps[0].outcomes] == [
        ("master", "skipped", "handled by the provider"),
        ("nfs", "skipped", "handled by the provider"),
    ]
    assert "    skipped (handled by the provider)" in out.getvalue()
    assert "1 host runs done, 2 skipped, 0 failed" in report.summary()


def test_ctrl_c_does_not_wait_for_the_hosts_to_finish(tmp_path, scripted):
    """Interrupting returns at once: the runner stops the long command on the host (the transport's
    ``interrupt``) instead of sitting it out before re-raising."""
    import os

    stop = threading.Event()

    class Interruptible(scripted):  # type: ignore[misc, valid-type]
        """The slow command ends as soon as ``interrupt`` kills it, as SSHTransport's does."""

        def run(self, host, script, **kw):  # type: ignore[no-untyped-def, override]
            if "very-slow" in script:
                self.calls.append(Call("run", host.name, script))
                stop.wait(3.0)
                return Result(host.name, 143, cause="interrupted", error="interrupted")
            return super().run(host, script, **kw)

        def interrupt(self) -> list[str]:
            stop.set()
            return ["master"]

    t = Interruptible()
    r, out = make_runner(t, tmp_path)
    timer = threading.Timer(0.2, lambda: os.kill(os.getpid(), 2))
    started = time.monotonic()
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        r.run(plan(step("a.slow", "very-slow", hosts=("master",))))
    assert time.monotonic() - started < 2.0
    assert t.closed
    log = (tmp_path / "run.log").read_text()
    assert "INTERRUPTED (Ctrl-C" in log and "stopped the running command on: master" in log
    assert "==> Interrupted after" in out.getvalue() and f"(log: {tmp_path / 'run.log'})" in out.getvalue()


def test_hosts_without_an_address_are_named_before_anything_runs(tmp_path, scripted):
    from labctl.runner import RunnerError

    t = scripted()
    r, _ = make_runner(t, tmp_path)
    with pytest.raises(RunnerError) as one:
        r.run(plan(step("a.ok", "true"), step("g.x", "true", hosts=("gpu1",))))
    assert str(one.value) == (
        "the plan targets gpu1 but the provider gave no address for it — check the node names in lab.yaml and `labctl status`"
    )
    with pytest.raises(RunnerError) as two:
        r.run(plan(step("g.x", "true", hosts=("gpu2", "gpu1", "master"))))
    assert str(two.value).startswith("the plan targets gpu1, gpu2 but the provider gave no address for them — ")
    with pytest.raises(RunnerError) as art:
        r.run(plan(step("u.x", "true", upload=("missing",))))
    assert str(art.value) == "step u.x uploads artefact 'missing', which was not rendered for this run"
    assert t.calls == [] and two.value.exit_code == 2


def test_at_most_64_hosts_run_at_once(tmp_path, scripted):
    names = [f"node{i}" for i in range(70)]
    hosts = {n: Host(name=n, address="10.251.201.1") for n in names}
    running, peak = [0], [0]
    lock = threading.Lock()

    class Counting(scripted):  # type: ignore[misc, valid-type]
        def run(self, host, script, **kw):  # type: ignore[no-untyped-def, override]
            with lock:
                running[0] += 1
                peak[0] = max(peak[0], running[0])
            time.sleep(0.3)
            with lock:
                running[0] -= 1
            return super().run(host, script, **kw)

    out = io.StringIO()
    r = Runner(Counting(), hosts, log_path=tmp_path / "run.log", console=Console(file=out, width=200))
    r.run(plan(step("a.many", "true", hosts=tuple(names))))
    assert peak[0] == 64


def test_the_log_labels_output_streams(tmp_path, scripted):
    t = scripted().on("noisy", stdout="out-line\n", stderr="err-line\n")
    r, _ = make_runner(t, tmp_path)
    r.run(plan(step("a.noisy", "noisy", hosts=("master",))))
    log = [line.split("] ", 1)[1] for line in (tmp_path / "run.log").read_text().splitlines()]
    at = log.index("stdout:")
    assert "out-line" in log[at + 1] and log[at + 2] == "stderr:" and "err-line" in log[at + 3]
