"""Logs do not pile up (issue #19 item 8): the last N per command, and read-only commands keep a
log only when something failed."""

from __future__ import annotations

import os
import time

from labctl.logs import new_log_path


def test_only_the_last_logs_of_a_command_are_kept(tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    for i in range(12):
        old = folder / f"create-20260101-0000{i:02d}.log"
        old.write_text("x")
        os.utime(old, (time.time() - 100 + i, time.time() - 100 + i))
    (folder / "destroy-20260101-000000.log").write_text("x")
    (folder / "notes.txt").write_text("mine")
    new = new_log_path(folder, "create", keep=5)
    new.write_text("new")
    kept = sorted(p.name for p in folder.glob("create-*.log"))
    assert len(kept) == 5 and new.name in kept
    assert "create-20260101-000011.log" in kept and "create-20260101-000007.log" not in kept
    assert (folder / "destroy-20260101-000000.log").exists() and (folder / "notes.txt").exists()


def test_a_new_log_is_not_created_until_written_and_never_reuses_a_name(tmp_path):
    first = new_log_path(tmp_path, "status")
    assert not first.exists()
    first.write_text("x")
    assert new_log_path(tmp_path, "status") != first


def test_a_healthy_status_keeps_no_log_and_a_failing_one_does(tmp_path, default_spec, monkeypatch):
    from labctl import status as status_module
    from labctl.lab import Lab
    from labctl.status import EndpointCheck, LabStatus, lab_status

    lab = Lab.of(default_spec, state_dir=tmp_path / "lab")
    checks: list[EndpointCheck] = []

    def probe(lab_, status, log_path, factory):
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text("vagrant status output\n")
        status.endpoints = checks
        return status

    monkeypatch.setattr(status_module, "lab_exists", lambda lab_: True)
    monkeypatch.setattr(status_module, "_probe_status", probe)
    monkeypatch.setattr(LabStatus, "checks", lambda self, spec: list(self.endpoints))
    checks[:] = [EndpointCheck("x", True, "fine")]
    lab_status(lab)
    assert list((lab.state_dir / "logs").glob("status-*.log")) == []
    checks[:] = [EndpointCheck("x", False, "broken")]
    lab_status(lab)
    assert len(list((lab.state_dir / "logs").glob("status-*.log"))) == 1


def test_a_create_stopped_by_preflight_announces_no_log(tmp_path, default_spec, monkeypatch):
    """Issue #15 item 4: the log path is printed once preflight passed; before, no file is written."""
    import io

    import pytest
    from rich.console import Console as RichConsole

    from labctl import doctor, lifecycle
    from labctl.lab import Console, Lab

    monkeypatch.setattr(doctor, "run_doctor", lambda *a, **k: [doctor.Check("vagrant", "fail", "not installed")])
    out = io.StringIO()
    lab = Lab.of(default_spec, state_dir=tmp_path / "lab")
    with pytest.raises(doctor.PreflightFailed):
        lifecycle.create(lab, Console(RichConsole(file=out, width=200)))
    text = out.getvalue()
    assert "state in" in text and "log:" not in text and ".log" not in text
    assert not list((tmp_path / "lab").glob("logs/*.log"))
