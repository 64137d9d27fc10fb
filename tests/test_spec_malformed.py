"""The malformed-spec suite: every file in tests/malformed/ is a lab.yaml with one mistake.

The first line of each file says what `labctl validate -f FILE` must answer, exactly:

    # expect-error: <field>: <what is wrong> — <the fix>     → exit 2, that one line on stderr
    # expect-warning: <field>: <finding with the number>     → exit 0, that warning on stderr

Lines are compared whole (after the ``error: FILE: `` / ``warning: `` prefix), so a message that
loses its field name or its fix fails here. Every run happens in an empty working folder that must
stay empty apart from the spec itself: validation never writes anything. To add a case, add a file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from labctl.cli import cli

MALFORMED = Path(__file__).parent / "malformed"
FILES = sorted(MALFORMED.glob("*.yaml"))
REPO = Path(__file__).resolve().parents[1]


def expectation(path: Path) -> tuple[str, str]:
    """("error" | "warning", message) from the file's first line."""
    first = path.read_text(encoding="utf-8").splitlines()[0]
    for kind in ("error", "warning"):
        prefix = f"# expect-{kind}: "
        if first.startswith(prefix):
            return kind, first.removeprefix(prefix)
    raise AssertionError(f"{path.name}: the first line must be '# expect-error: ...' or '# expect-warning: ...'")


def test_the_suite_is_large_enough() -> None:
    errors = [f for f in FILES if expectation(f)[0] == "error"]
    assert len(errors) >= 20, f"only {len(errors)} malformed specs in {MALFORMED}"


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_validate_names_field_and_fix(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kind, message = expectation(path)
    shutil.copy(path, tmp_path / path.name)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["validate", "-f", path.name])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    stderr_lines = result.stderr.splitlines()
    if kind == "error":
        assert result.exit_code == 2, result.output
        assert stderr_lines == [f"error: {path.name}: {message}"]
        assert result.stdout == ""
        assert " — " in message, "every error says how to fix it after ' — '"
    else:
        assert result.exit_code == 0, result.output
        assert stderr_lines == [f"warning: {message}"]
        assert result.stdout.startswith("ok: lab ")
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name], "validate wrote something"


def test_memory_warning_carries_the_numbers() -> None:
    kind, message = expectation(MALFORMED / "memory-above-budget.yaml")
    assert kind == "warning"
    assert "25600 MiB" in message and "24576 MiB" in message


@pytest.mark.parametrize("command", [["plan"], ["create", "--dry-run"], ["render", "-o", "out"]])
def test_other_commands_refuse_a_malformed_spec_before_doing_anything(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(MALFORMED / "duplicate-addresses.yaml", tmp_path / "lab.yaml")
    monkeypatch.chdir(tmp_path)  # ./lab.yaml is picked up without -f
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 2
    assert result.stdout == ""  # not half a plan
    assert result.stderr.splitlines() == [
        "error: lab.yaml: nodes.workers[1].ip: 192.168.33.101 is already used by nodes.workers[0] — give each node "
        "its own address"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab.yaml"]


def test_validate_in_a_real_process(tmp_path: Path) -> None:
    """The same contract through a real `labctl` process (exit status, stderr, no traceback)."""
    bad = tmp_path / "lab.yaml"
    shutil.copy(MALFORMED / "gpu-worker-on-virtualbox.yaml", bad)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "labctl.cli", "validate", "-f", str(bad)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr == (
        f"error: {bad}: nodes.gpu_worker: VirtualBox cannot pass a PCI device through on Linux/macOS hosts — "
        "set provider.type: libvirt (or remove gpu_worker)\n"
    )


def test_several_problems_are_reported_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lab.yaml").write_text(
        "nodes:\n"
        "  master: {name: master, ip: 192.168.34.100, cpus: 4, memory_mib: 8192}\n"
        "network:\n"
        "  pod_cidr: 10.96.0.0/16\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("error: lab.yaml: nodes.master.ip: 192.168.34.100 is outside the lab subnet")
    assert lines[1].startswith("error: lab.yaml: network.pod_cidr: 10.96.0.0/16 overlaps network.service_cidr")


def test_missing_file_says_how_to_get_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["validate", "-f", "nope.yaml"])
    assert result.exit_code == 2
    assert result.stderr == "error: nope.yaml: file not found — run `labctl init` to write one, or pass --file\n"


def test_every_problem_is_reported_in_one_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #15 item 5: a duplicate or out-of-subnet address is reported together with unknown and
    missing keys and bad values, not only after they are fixed; findings about a node whose own
    fields failed are left out (they would be about a stand-in, not about what was written)."""
    (tmp_path / "lab.yaml").write_text(
        "colour: blue\n"
        "nodes:\n"
        "  master: {name: master, ip: 192.168.33.100, cpus: 4, memory_mib: 8192, memroy: 1}\n"
        "  workers:\n"
        "    - {name: worker1, ip: 192.168.33.100, cpus: 4, memory_mib: 8192}\n"
        "    - {name: worker2, ip: 192.168.34.7, cpus: 4, memory_mib: 8192}\n"
        "    - {name: Worker3, ip: 192.168.33.7, cpus: 4}\n"
        "storage: {models_size: 20GB}\n",
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "error: lab.yaml: nodes.master.memroy: unknown key — did you mean 'memory_mib'?",
        "error: lab.yaml: nodes.workers[2].name: 'Worker3' is not a valid name — use lower-case letters, digits and '-' "
        "(max 63), starting and ending with a letter or digit",
        "error: lab.yaml: nodes.workers[2].memory_mib: required — add it (see `labctl init` for an example)",
        "error: lab.yaml: storage.models_size: '20GB' is not a size — write it like 20Gi or 512Mi",
        "error: lab.yaml: colour: unknown key — known keys here: apiVersion, kind, name, offline, provider, network, "
        "nodes, storage, apps",
        "error: lab.yaml: nodes.workers[0].ip: 192.168.33.100 is already used by nodes.master — give each node its own "
        "address",
        "error: lab.yaml: nodes.workers[1].ip: 192.168.34.7 is outside the lab subnet 192.168.33.0/24 — use an address "
        "in 192.168.33.0/24",
    ]


def test_a_flood_of_problems_fits_on_a_screen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lab.yaml").write_text("".join(f"key{i}: {'x' * 300}\n" for i in range(500)), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 2
    assert len(result.stderr) < 1500
    assert result.stderr.splitlines()[-1].startswith("error: lab.yaml: ... and ")
