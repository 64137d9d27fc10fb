"""`labctl completion bash|zsh|fish` is Click's own completion, and it completes what the user has:
node names for `labctl ssh`, step ids (and 'playbook.*' globs) for `create --only` — from the lab
the command line names with -f, else ./lab.yaml, else the default lab; snapshot names for
`snapshot restore|delete` (tests/test_snapshots.py, with the fake vagrant)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from labctl.cli import cli

REPO = Path(__file__).resolve().parents[1]


def complete(words: str, cwd: Path) -> list[str]:
    """What bash would offer for the last word of ``words`` — through Click's real protocol, in a
    separate process, exactly as the installed script calls labctl back."""
    parts = words.split(" ")
    env = {**os.environ, "PYTHONPATH": str(REPO), "_LABCTL_COMPLETE": "bash_complete",
           "COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1)}
    out = subprocess.run([sys.executable, "-m", "labctl.cli"], env=env, cwd=cwd, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    return [line.split(",", 1)[1] for line in out.splitlines() if line.startswith("plain,")]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_clicks_script(shell: str) -> None:
    res = CliRunner().invoke(cli, ["completion", shell])
    assert res.exit_code == 0, res.output
    assert "_LABCTL_COMPLETE" in res.output
    assert f"{shell}_complete" in res.output


def test_unknown_shell_is_refused() -> None:
    res = CliRunner().invoke(cli, ["completion", "powershell"])
    assert res.exit_code == 2 and "powershell" in res.output


def test_ssh_completes_the_default_labs_nodes(tmp_path: Path) -> None:
    assert sorted(complete("labctl ssh ", tmp_path)) == ["master", "nfs", "worker1"]
    assert complete("labctl ssh w", tmp_path) == ["worker1"]


def test_ssh_completes_the_nodes_of_the_lab_named_by_f(tmp_path: Path) -> None:
    (tmp_path / "three.yaml").write_text(
        "nodes:\n  workers:\n"
        + "".join(f"    - {{name: w{i}, ip: 192.168.33.{110 + i}, cpus: 2, memory_mib: 4096}}\n" for i in (1, 2, 3)),
        encoding="utf-8",
    )
    assert complete("labctl ssh -f three.yaml w", tmp_path) == ["w1", "w2", "w3"]


def test_a_broken_lab_yaml_completes_nothing_and_does_not_fail(tmp_path: Path) -> None:
    (tmp_path / "lab.yaml").write_text("nodes: [\n", encoding="utf-8")
    assert complete("labctl ssh ", tmp_path) == []


def test_only_completes_step_ids_and_playbook_globs(tmp_path: Path) -> None:
    offered = complete("labctl create --only nfs-server", tmp_path)
    assert offered[0] == "nfs-server.*"
    assert "nfs-server.install-nfs-server" in offered
    assert all(o.startswith("nfs-server") for o in offered)
    # no workers, no worker steps
    (tmp_path / "lab.yaml").write_text("nodes:\n  workers: []\n", encoding="utf-8")
    assert complete("labctl create --only workers.", tmp_path) == []


def test_the_bash_script_completes_in_a_real_bash(tmp_path: Path) -> None:
    """The printed script, eval'd by bash, fills COMPREPLY by calling labctl back (a shim on PATH
    that runs this checkout)."""
    import shutil

    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "labctl"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m labctl.cli "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    script = 'eval "$(labctl completion bash)"; COMP_WORDS=(labctl ssh ma); COMP_CWORD=2; ' \
             '_labctl_completion labctl; echo "${COMPREPLY[@]}"'
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    out = subprocess.run([bash, "--norc", "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert out.split() == ["master"]
