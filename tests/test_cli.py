"""The command line: help with examples everywhere, light start-up, and the spec commands.

Commands other areas fill in (create/destroy/status, ...) are only checked for what holds whether or
not they are built: help, examples, and that a bad lab.yaml stops them before anything happens.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from labctl import __version__
from labctl.cli import cli
from labctl.spec import LabSpec

REPO = Path(__file__).resolve().parents[1]
# Libraries `labctl --help` must not load: they cost start-up time and are only needed by commands.
HEAVY_MODULES = ("pydantic", "jinja2", "fabric", "paramiko", "invoke", "rich", "httpx", "yaml")


def walk(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    """Every command and sub-command, found from the Click tree (including ones added later)."""
    found: list[tuple[tuple[str, ...], click.Command]] = []
    for name, command in sorted(group.commands.items()):
        found.append(((*prefix, name), command))
        if isinstance(command, click.Group):
            found += walk(command, (*prefix, name))
    return found


COMMANDS = walk(cli)


def run_labctl(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "labctl.cli", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_walk_finds_the_core_commands() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"init", "validate", "versions", "render", "plan", "create", "destroy", "status"} <= names


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    command = dict(COMMANDS)[path]
    doc = command.help or ""
    assert doc.strip(), f"`labctl {' '.join(path)}` has no help text"
    assert "Example:" in doc, f"`labctl {' '.join(path)}` help lacks an 'Example:' block"
    # Click re-wraps paragraphs unless a \b line precedes them, which would mangle the example.
    before = doc.split("Example:", 1)[0].rstrip(" ")
    assert before.endswith("\b\n"), f"`labctl {' '.join(path)}`: put a '\\b' line right before 'Example:'"
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    block = doc.split("Example:", 1)[1].strip()
    assert "labctl " in block, f"the example of `labctl {' '.join(path)}` should show a labctl command line"
    first = block.splitlines()[0].strip()
    assert first in result.output  # shown verbatim, not re-wrapped


def test_top_level_help_has_an_example() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert "labctl create --dry-run" in result.output


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"labctl, version {__version__}\n"


def test_help_does_not_import_heavy_libraries(tmp_path: Path) -> None:
    probe = (
        "import sys\n"
        "sys.argv = ['labctl', '--help']\n"
        "from labctl.cli import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = {HEAVY_MODULES!r}\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & set(heavy))\n"
        "print('LOADED:' + ','.join(loaded), file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "Usage: labctl" in proc.stdout
    loaded = proc.stderr.strip().splitlines()[-1]
    assert loaded == "LOADED:", f"`labctl --help` imported {loaded.removeprefix('LOADED:')}"


def test_help_in_a_real_process(tmp_path: Path) -> None:
    proc = run_labctl("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for name in ("init", "validate", "versions", "render", "plan", "create", "destroy", "status"):
        assert f"  {name} " in proc.stdout


# ---- init ------------------------------------------------------------------------------------------
def test_init_writes_a_file_that_validates_and_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["init"])
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "wrote lab.yaml and lab.schema.json (for editors) — edit lab.yaml, then `labctl validate -f lab.yaml`\n"
    )
    text = (tmp_path / "lab.yaml").read_text(encoding="utf-8")
    assert text.startswith("# yaml-language-server: $schema=lab.schema.json\n")  # tests/test_schema.py: the rest
    assert "\n# lab.yaml — " in text
    assert LabSpec.load(tmp_path / "lab.yaml") == LabSpec.default()
    checked = runner.invoke(cli, ["validate"])  # picks up ./lab.yaml
    assert checked.exit_code == 0
    assert checked.stderr == ""
    assert checked.stdout.startswith("ok: lab 'llm-lab', provider virtualbox: nfs 192.168.33.11 (1 CPU/1024 MiB)")


def test_init_refuses_to_overwrite_without_force(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    mine = "# my lab\nname: mine\n"
    (tmp_path / "lab.yaml").write_text(mine, encoding="utf-8")
    runner = CliRunner()
    refused = runner.invoke(cli, ["init"])
    assert refused.exit_code == 1
    assert refused.stderr == "error: lab.yaml already exists — pass --force to overwrite it, or -o to write elsewhere\n"
    assert (tmp_path / "lab.yaml").read_text(encoding="utf-8") == mine
    elsewhere = runner.invoke(cli, ["init", "-o", "other.yaml"])
    assert elsewhere.exit_code == 0
    forced = runner.invoke(cli, ["init", "--force"])
    assert forced.exit_code == 0
    assert LabSpec.load(tmp_path / "lab.yaml") == LabSpec.default()


# ---- render, versions ------------------------------------------------------------------------------
def test_render_writes_the_vagrantfile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from labctl.render import render_vagrantfile

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "home"))
    (tmp_path / "classroom.yaml").write_text(
        "name: classroom\nnodes:\n  workers:\n"
        "    - {name: worker1, ip: 192.168.33.101, cpus: 2, memory_mib: 4096}\n"
        "    - {name: worker2, ip: 192.168.33.102, cpus: 2, memory_mib: 4096}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(cli, ["render", "-f", "classroom.yaml", "-o", "out"])
    assert result.exit_code == 0, result.output
    vagrantfile = tmp_path / "out" / "Vagrantfile"
    assert f"wrote {vagrantfile.relative_to(tmp_path)}\n" in result.stdout
    text = vagrantfile.read_text(encoding="utf-8")
    assert text == render_vagrantfile(LabSpec.load(tmp_path / "classroom.yaml"), source="classroom.yaml")
    assert "from classroom.yaml by vagrant/Vagrantfile.j2" in text
    assert 'config.vm.define "worker2" do |node|' in text


def test_versions_lists_every_pin() -> None:
    from labctl.versions import all_pins

    result = CliRunner().invoke(cli, ["versions"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == len(all_pins())
    for pin, line in zip(all_pins(), lines, strict=True):
        assert line.split()[:2] == [pin.key, pin.version]


# ---- lifecycle entry points --------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["create"], ["destroy", "--yes"], ["status"]])
def test_lifecycle_commands_check_the_spec_first(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever create/destroy/status become, a broken lab.yaml stops them before they act."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "home"))
    (tmp_path / "lab.yaml").write_text("nodes:\n  master: {name: master, ip: 10.1.1.1}\n", encoding="utf-8")
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: lab.yaml: nodes.master.cpus: required")
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("command", [["create"], ["destroy", "--yes"], ["status"]])
def test_lifecycle_commands_never_fake_success(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """They must not claim a lab that is not there: here the state folder is empty and no VM exists, so
    exit 0 with a success message would be a lie. The message is one line per problem, never a traceback."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no vagrant, no VBoxManage: nothing to run
    result = CliRunner().invoke(cli, command)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    if command[0] == "create":
        # No vagrant on PATH: creating a lab cannot have succeeded.
        assert result.exit_code != 0, f"`labctl create` claimed success without Vagrant:\n{result.output}"
        assert result.stderr.startswith("error: ") or "error" in result.stderr.lower()
    # destroy (nothing to destroy) and status (nothing running) may honestly exit 0; no traceback either way.
    assert "Traceback" not in result.output
