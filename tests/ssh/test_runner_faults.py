"""The runner against real sshd nodes (netns): faults, timeouts, partial failure, secrets, host keys."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path

import pytest
from rich.console import Console

from labctl.artefacts import Artefact
from labctl.plan import HostCommands, Plan, PlannedStep
from labctl.runner import Runner, StepFailed
from labctl.transport.ssh import SSHTransport

NAMES = ["master", "worker1", "nfs"]


def step(step_id: str, run: str, hosts=tuple(NAMES), check: str = "", **kw) -> PlannedStep:
    return PlannedStep(
        id=step_id, playbook=step_id.split(".")[0], title=kw.pop("title", step_id), purpose="", kind="remote",
        commands=tuple(HostCommands(h, check, run) for h in hosts), **kw,
    )  # fmt: skip


def plan(*steps: PlannedStep) -> Plan:
    return Plan(lab="faults", provider="ssh", hosts=(), steps=steps)


@pytest.fixture
def lab(ssh_nodes, tmp_path):
    nodes = ssh_nodes(NAMES)
    transport = SSHTransport()
    yield nodes, transport
    transport.close()


def make_runner(nodes, transport, log: Path, **kw) -> tuple[Runner, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=200)
    return Runner(transport, nodes.hosts(), log_path=log, console=console, **kw), out


def test_sshd_killed_mid_step_names_host_and_step_and_rerun_finishes(lab, tmp_path):
    nodes, transport = lab
    p = plan(
        step(
            "prep.slow-write",
            "sleep 2\ntouch /var/tmp/slow-write-done",
            check="test -f /var/tmp/slow-write-done",
            done_reason="already written",
        ),
        step("prep.after", "touch /var/tmp/after-done", check="test -f /var/tmp/after-done"),
    )
    runner, _ = make_runner(nodes, transport, tmp_path / "run1.log")
    killer = threading.Timer(1.0, nodes.kill, args=("worker1",))
    killer.start()
    with pytest.raises(StepFailed) as info:
        runner.run(p)
    killer.join()
    err = info.value
    assert (err.step_id, err.host) == ("prep.slow-write", "worker1")
    assert "connection to worker1" in str(err) and "lost during the command" in str(err)
    assert "step prep.slow-write" in str(err)
    assert set(err.succeeded_hosts) == {"master", "nfs"}
    assert not nodes.path("master", "/var/tmp/after-done").exists()  # the run stopped after the step

    nodes.start("worker1")
    runner2, out2 = make_runner(nodes, transport, tmp_path / "run2.log")
    report = runner2.run(p)
    first = {o.host: o.status for o in report.steps[0].outcomes}
    assert first == {"master": "skipped", "worker1": "done", "nfs": "skipped"}
    assert all(o.status == "done" for o in report.steps[1].outcomes)
    assert "master: skipped (already written)" in out2.getvalue()
    for name in NAMES:
        assert nodes.path(name, "/var/tmp/after-done").exists()


def test_failing_command_stops_with_stderr_tail_later_steps_not_run(lab, tmp_path):
    nodes, transport = lab
    p = plan(
        step("cp.init", "echo starting\necho 'fatal: port 6443 is in use' >&2\nexit 3", hosts=("master",)),
        step("cp.after", "touch /var/tmp/after"),
    )
    runner, _ = make_runner(nodes, transport, tmp_path / "run.log")
    with pytest.raises(StepFailed) as info:
        runner.run(p)
    err = info.value
    assert (err.step_id, err.host, err.remote_exit_code, err.timed_out) == ("cp.init", "master", 3, False)
    assert err.exit_code == 5  # labctl's own code for a failed step, never the remote one
    assert err.stderr_tail.strip() == "fatal: port 6443 is in use"
    assert "exit code 3" in str(err) and str(tmp_path / "run.log") in str(err)
    log = (tmp_path / "run.log").read_text()
    assert "exit 3" in log and "starting" in log
    for name in NAMES:
        assert not nodes.path(name, "/var/tmp/after").exists()


def test_errexit_a_failing_line_fails_the_step(lab, tmp_path):
    nodes, transport = lab
    runner, _ = make_runner(nodes, transport, tmp_path / "run.log")
    with pytest.raises(StepFailed) as info:
        runner.run(plan(step("a.two-lines", "false\ntouch /var/tmp/should-not-exist", hosts=("nfs",))))
    assert info.value.remote_exit_code == 1
    assert not nodes.path("nfs", "/var/tmp/should-not-exist").exists()


def test_one_of_three_hosts_failing_reports_the_other_two_done(lab, tmp_path):
    nodes, transport = lab
    script = 'if [ "$(hostname)" = worker1 ]; then echo "E: no space left" >&2; exit 100; fi\ntouch /var/tmp/ok'
    runner, out = make_runner(nodes, transport, tmp_path / "run.log")
    with pytest.raises(StepFailed) as info:
        runner.run(plan(step("prep.partial", script)))
    err = info.value
    assert err.host == "worker1" and err.remote_exit_code == 100 and "no space left" in err.stderr_tail
    assert set(err.succeeded_hosts) == {"master", "nfs"}
    statuses = {o.host: o.status for o in err.report.steps[0].outcomes}
    assert statuses == {"master": "done", "worker1": "failed", "nfs": "done"}
    assert "master: done" in out.getvalue() and "nfs: done" in out.getvalue()
    assert nodes.path("master", "/var/tmp/ok").exists() and not nodes.path("worker1", "/var/tmp/ok").exists()


def test_timeout_is_named_and_the_remote_command_is_killed(lab, tmp_path):
    nodes, transport = lab
    runner, _ = make_runner(nodes, transport, tmp_path / "run.log")
    started = time.monotonic()
    with pytest.raises(StepFailed) as info:
        runner.run(plan(step("w.wait-ready", "sleep 600", hosts=("worker1",), timeout=2)))
    assert time.monotonic() - started < 10
    err = info.value
    assert err.timed_out and "timed out after 2s" in str(err)
    assert "TIMED OUT" in (tmp_path / "run.log").read_text()
    ps = nodes.exec("worker1", "ps -eo args").stdout
    assert "sleep 600" not in ps  # coreutils timeout took the script's process group with it


def test_secrets_stay_out_of_stdout_log_and_command_lines(lab, tmp_path, capsys):
    nodes, transport = lab
    token = "abcdef.0123456789abcdef"
    key = "webui-secret-2b4d7f3a9c1e5a6b"
    ca_hash = "e" * 64
    secret_env = Artefact("webui-env", "/etc/labctl/webui.env", f"WEBUI_SECRET_KEY={key}\n".encode(), 0o600, secret=True)
    p = plan(
        step(
            "cp.join-command", f"echo 'kubeadm join 10.251.0.1:6443 --token {token} --discovery-token-ca-cert-hash sha256:{ca_hash}'",
            hosts=("master",), capture="join_command", secret=True,
        ),
        step(
            "w.join",
            # Records the processes' command lines while the fact is in use, then (carelessly) echoes it.
            'ps -eo args > /var/tmp/ps.txt\necho "joining with $LABCTL_JOIN_COMMAND"\n'
            'echo "warning: $LABCTL_JOIN_COMMAND" >&2\ncat /etc/labctl/webui.env',
            hosts=("worker1",), uses=("join_command",), upload=("webui-env",),
        ),
    )  # fmt: skip
    runner, _ = make_runner(nodes, transport, tmp_path / "run.log", artefacts={"webui-env": secret_env})
    runner.console = Console(force_terminal=False, width=200)  # real stdout, captured by capsys
    facts: dict[str, str] = {}
    runner.run(p, facts)
    assert token in facts["join_command"]  # the runner did hand the fact over
    printed = capsys.readouterr()
    log = (tmp_path / "run.log").read_text()
    for text in (printed.out, printed.err, log):
        assert token not in text and key not in text and ca_hash not in text
    assert "<redacted:join_command>" in log and "<redacted:webui-env>" in log
    assert token not in nodes.read("worker1", "/var/tmp/ps.txt").decode()  # never on a command line
    stat = nodes.exec("worker1", "stat -c '%a %U' /etc/labctl/webui.env", check=True).stdout.split()
    assert stat == ["600", "root"]
    assert nodes.read("worker1", "/etc/labctl/webui.env") == secret_env.content
    assert (tmp_path / "run.log").stat().st_mode & 0o777 == 0o600


def test_connections_are_reused_across_steps(lab, tmp_path):
    nodes, transport = lab
    runner, _ = make_runner(nodes, transport, tmp_path / "run.log")
    runner.run(plan(step("a.one", "true"), step("a.two", "true")))
    first = {name: id(transport.connection(h)) for name, h in nodes.hosts().items()}
    runner.run(plan(step("a.three", "true")))
    assert {name: id(transport.connection(h)) for name, h in nodes.hosts().items()} == first
    sessions = nodes.exec("master", "ps -eo args | grep -c '^sshd: vagrant@notty'").stdout.strip()
    assert sessions == "1"  # one login for every step


def test_provider_ssh_host_keys_are_verified(lab, tmp_path):
    nodes, _ = lab
    p = plan(step("a.hello", "true", hosts=("master",)))
    strict = nodes.hosts(verify_host_key=True)
    empty = tmp_path / "known_hosts_empty"
    empty.write_text("")
    runner = Runner(SSHTransport(known_hosts=empty), strict, log_path=tmp_path / "r1.log", console=Console(file=io.StringIO()))
    with pytest.raises(StepFailed) as info:
        runner.run(p)
    message = str(info.value)
    assert "master" in message and "host key not found" in message
    assert "ssh-keyscan" in message and "verify_host_keys: false" in message
    # With the right known_hosts the same host is accepted...
    ok = Runner(SSHTransport(known_hosts=nodes.known_hosts), strict, log_path=tmp_path / "r2.log", console=Console(file=io.StringIO()))
    ok.run(p)
    # ...and a changed key is refused, naming the fix.
    wrong = tmp_path / "known_hosts_wrong"
    wrong.write_text(f"{nodes['master'].address} {nodes['worker1'].host_key}\n")
    bad = Runner(SSHTransport(known_hosts=wrong), strict, log_path=tmp_path / "r3.log", console=Console(file=io.StringIO()))
    with pytest.raises(StepFailed, match="CHANGED"):
        bad.run(p)
