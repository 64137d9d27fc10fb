"""Secrets never reach the log, the console, an error message or a ``repr``.

A secret reaches the runner three ways: captured by a ``secret`` step in this run, handed in as a
fact captured by an earlier run (the step that captured it is now skipped by its check), or as the
content of a secret artefact. Each must read ``<redacted:NAME>`` everywhere labctl writes.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from labctl.artefacts import Artefact
from labctl.plan import HostCommands, Plan, PlannedStep
from labctl.runner import Runner, RunReport, StepFailed
from labctl.secrets import LabSecrets
from labctl.transport.base import Host
from labctl.transport.scripted import ScriptedGuardedTransport, ScriptedTransport

HOSTS = {n: Host(name=n, address=f"10.251.202.{i}") for i, n in enumerate(("master", "worker1"), 10)}
TOKEN = "q7w8e9.r4t5y6u7i8o9p0a1"
JOIN = f"kubeadm join 10.251.202.10:6443 --token {TOKEN} --discovery-token-ca-cert-hash sha256:{'ab12' * 16}"


@pytest.fixture(params=[ScriptedTransport, ScriptedGuardedTransport], ids=["two-round-trips", "one-round-trip"])
def scripted(request):
    return request.param


def step(step_id: str, run: str, *, hosts=("master", "worker1"), check: str = "", **kw) -> PlannedStep:
    return PlannedStep(
        id=step_id, playbook=step_id.split(".")[0], title=f"Title of {step_id}", purpose="", kind="remote",
        commands=tuple(HostCommands(h, check, run) for h in hosts), **kw,
    )  # fmt: skip


def run(transport, tmp_path: Path, p: Plan, facts: dict[str, str] | None = None, **kw):
    out = io.StringIO()
    r = Runner(transport, HOSTS, log_path=tmp_path / "run.log", console=Console(file=out, width=300), **kw)
    error: StepFailed | None = None
    report = None
    try:
        report = r.run(p, facts)
    except StepFailed as err:
        error = err
    return report, error, out.getvalue(), (tmp_path / "run.log").read_text()


def everything(report, error, console: str, log: str) -> str:
    return "\n".join([console, log, str(error or ""), repr(error), repr(report), str(report.summary() if report else "")])


def test_a_secret_fact_from_an_earlier_run_is_redacted_in_this_run(tmp_path, scripted):
    """The capturing step is skipped by its check (done last time); the fact comes in from the earlier
    run, and a later step leaks it on stdout and stderr: neither the log nor the console shows it."""
    t = (
        scripted()
        .on("test -f /etc/kubernetes/admin.conf", exit_code=0)
        .on("join-node", host="worker1", exit_code=1, stdout=f"running {JOIN}\n", stderr=f"failed: token {TOKEN}\n")
    )
    p = Plan(lab="t", provider="ssh", hosts=(), steps=(
        step("cp.join", "print-join", hosts=("master",), check="test -f /etc/kubernetes/admin.conf",
             capture="join_command", secret=True),
        step("w.join", "join-node", hosts=("worker1",), uses=("join_command",)),
    ))  # fmt: skip
    report, error, console, log = run(t, tmp_path, p, facts={"join_command": JOIN})
    assert error is not None and error.host == "worker1"
    assert next(c for c in t.runs() if c.script == "join-node").env == {"LABCTL_JOIN_COMMAND": JOIN}
    text = everything(report, error, console, log)
    assert TOKEN not in text and JOIN not in text and "ab12" * 16 not in text
    assert "<redacted:join_command>" in log and "<redacted:join_command>" in str(error)


def test_a_fact_that_is_not_secret_is_logged_as_is(tmp_path, scripted):
    """The redactor only hides secrets: an ordinary fact stays readable (else logs would be useless)."""
    t = scripted().on("use-it", stdout="cluster-id 9f8e7d6c5b4a39281706\n")
    p = Plan(lab="t", provider="ssh", hosts=(), steps=(
        step("a.id", "read-id", hosts=("master",), check="true", capture="cluster_id"),
        step("b.use", "use-it", hosts=("worker1",), uses=("cluster_id",)),
    ))  # fmt: skip
    _, _, _, log = run(t, tmp_path, p, facts={"cluster_id": "9f8e7d6c5b4a39281706"})
    assert "cluster-id 9f8e7d6c5b4a39281706" in log


def test_a_secret_captured_from_a_check_is_never_logged(tmp_path, scripted):
    key = "3c1f5e7a9b2d4c6e8f0a1b3c5d7e9f1a2b4c6d8e0f1a3b5c7d9e1f3a5b7c9d1e"
    t = scripted().on("cat /etc/labctl/cert-key", stdout=key + "\n").on("echo-key", stderr=f"key is {key}\n", exit_code=1)
    p = Plan(lab="t", provider="ssh", hosts=(), steps=(
        step("cp.key", "make-key", hosts=("master",), check="cat /etc/labctl/cert-key", capture="certificate_key",
             capture_check=True, secret=True),
        step("cp.use", "echo-key", hosts=("master",), uses=("certificate_key",)),
    ))  # fmt: skip
    facts: dict[str, str] = {}
    report, error, console, log = run(t, tmp_path, p, facts=facts)
    assert facts == {"certificate_key": key}
    assert key not in everything(report, error, console, log)
    assert "stdout: <secret capture certificate_key: not logged>" in log


def test_run_report_repr_never_shows_facts(tmp_path, scripted):
    t = scripted().on("print-join", stdout=JOIN + "\n")
    p = Plan(lab="t", provider="ssh", hosts=(),
             steps=(step("cp.join", "print-join", hosts=("master",), capture="join_command", secret=True),))  # fmt: skip
    report, error, console, log = run(t, tmp_path, p)
    assert error is None and report is not None
    assert report.facts == {"join_command": JOIN}
    assert TOKEN not in repr(report) and TOKEN not in str(report)
    assert "facts" not in repr(report)
    assert TOKEN not in console and TOKEN not in log


def test_run_report_repr_hides_facts_even_when_built_by_hand(tmp_path):
    report = RunReport(steps=[], duration=1.0, log_path=tmp_path / "x.log", facts={"join_command": JOIN})
    assert TOKEN not in repr(report)


def test_secret_artefact_content_is_redacted_everywhere(tmp_path, scripted):
    key = "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe"
    art = Artefact("webui-env", "/etc/labctl/webui.env", f"WEBUI_SECRET_KEY={key}\n".encode(), 0o600, True)
    t = scripted().on("apply-env", exit_code=1, stderr=f"bad env: WEBUI_SECRET_KEY={key}\n")
    p = Plan(lab="t", provider="ssh", hosts=(),
             steps=(step("apps.env", "apply-env", hosts=("master",), upload=("webui-env",)),))  # fmt: skip
    report, error, console, log = run(t, tmp_path, p, artefacts={"webui-env": art})
    assert error is not None
    assert key not in everything(report, error, console, log)
    assert "<redacted:webui-env>" in str(error)


def test_a_non_secret_artefact_is_not_redacted(tmp_path, scripted):
    art = Artefact("calico", "/etc/labctl/calico.yaml", b"cidr: 10.10.0.0/16 name-abc123def456ghi789\n", 0o644, False)
    t = scripted().on("apply", exit_code=1, stderr="rejected name-abc123def456ghi789\n")
    p = Plan(lab="t", provider="ssh", hosts=(),
             steps=(step("cni.apply", "apply", hosts=("master",), upload=("calico",)),))  # fmt: skip
    _, error, _, _ = run(t, tmp_path, p, artefacts={"calico": art})
    assert "rejected name-abc123def456ghi789" in str(error)


def test_lab_secrets_repr_and_str_hide_values():
    s = LabSecrets(webui_secret_key="wk-5f4e3d2c1b0a", grafana_admin_password="gp-0a1b2c3d4e5f")
    for text in (repr(s), str(s), f"{s}", repr([s])):
        assert "wk-5f4e3d2c1b0a" not in text and "gp-0a1b2c3d4e5f" not in text
    assert "webui_secret_key=<hidden>" in repr(s)
