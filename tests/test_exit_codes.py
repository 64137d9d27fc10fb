"""The exit-code contract (labctl/errors.py): one table, the same in README and docs/exit-codes.md,
distinct codes per class, applied by the CLI's error handler — through the real CLI where a class
can be provoked without hosts (the host-side classes run in tests/ssh/test_faults.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from labctl.cli import cli
from labctl.errors import CAUSE_EXIT_CODES, EXIT_CODES, ExitCode, LabctlError, exit_code_table

ROOT = Path(__file__).resolve().parent.parent


def test_the_table_is_documented_in_readme_and_docs() -> None:
    table = exit_code_table()
    assert table in (ROOT / "README.md").read_text(encoding="utf-8")
    assert table in (ROOT / "docs" / "exit-codes.md").read_text(encoding="utf-8")


def test_codes_are_distinct_and_every_cause_has_a_documented_nonzero_code() -> None:
    assert len(set(EXIT_CODES)) == len(ExitCode) and set(EXIT_CODES) == set(ExitCode)
    assert ExitCode.INTERRUPTED == 130 and ExitCode.OK == 0
    for cause, code in CAUSE_EXIT_CODES.items():
        assert code != 0 and code in EXIT_CODES, cause


def test_an_error_never_exits_0_even_if_a_class_says_so() -> None:
    class Confused(LabctlError):
        exit_code = 0

    @cli.command("confused-test-command", hidden=True)
    def confused() -> None:
        raise Confused("boom")

    try:
        result = CliRunner().invoke(cli, ["confused-test-command"])
    finally:
        cli.commands.pop("confused-test-command", None)
    assert result.exit_code == ExitCode.FAILED and "error: boom" in result.output


def test_invalid_input_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "lab.yaml"
    bad.write_text("nodes: {master: {cpus: -3}}\n")
    result = CliRunner().invoke(cli, ["create", "--dry-run", "-f", str(bad)])
    assert result.exit_code == ExitCode.INVALID_INPUT, result.output
    assert "cpus" in result.output


def test_preflight_exits_4(tmp_path: Path) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text(
        "name: pre\nprovider: {type: ssh}\nnetwork: {subnet: 10.251.249.0/24, metallb_pool: 10.251.249.2-10.251.249.5}\n"
        "nodes:\n  master: {name: master, ip: 10.251.249.10, cpus: 1, memory_mib: 1024, ssh_user: u, ssh_key: /nonexistent/key}\n"
        "  workers: []\n  nfs: {name: nfs, ip: 10.251.249.11, cpus: 1, memory_mib: 1024, ssh_user: u, ssh_key: /nonexistent/key}\n"
    )
    env = {"LABCTL_HOME": str(tmp_path / "home")}
    result = CliRunner().invoke(cli, ["create", "-f", str(lab)], env=env)
    assert result.exit_code == ExitCode.PREFLIGHT, result.output
    assert "preflight failed" in result.output and "/nonexistent/key does not exist" in result.output


def test_sigterm_is_an_interrupt_exit_130(tmp_path: Path) -> None:
    """SIGTERM goes through the same path as Ctrl-C (the runner stops remote work, the CLI exits 130):
    here during a command added for the test that sleeps (tests/ssh/test_faults.py sends it mid-step)."""
    code = (
        "import sys, time; from labctl.cli import cli\n"
        "@cli.command('sleep-test-command')\n"
        "def s():\n    time.sleep(30)\n"
        "sys.argv = ['labctl', 'sleep-test-command']; cli()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert "interrupted — re-run the same command to resume" in err


@pytest.mark.parametrize("code", list(ExitCode))
def test_every_code_has_a_line_in_the_docs(code: ExitCode) -> None:
    assert f"| {int(code)} | " in (ROOT / "docs" / "exit-codes.md").read_text(encoding="utf-8")
