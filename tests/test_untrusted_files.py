"""lab.yaml and the files labctl writes, against a hostile environment (docs/untrusted-input.md):
`-f` pointing at something that is not a file, symlinks planted where secrets go, output folders
that cannot exist, model names that climb out of the cache."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from labctl.cli import cli
from labctl.errors import LabctlError
from labctl.spec import LabSpec
from labctl.spec_load import MAX_BYTES

REPO = Path(__file__).resolve().parents[1]
EXTRA_ARGS = {
    "deploy": ["--kubeconfig", "kc"],
    "bench": ["--url", "http://127.0.0.1:9"],
    "ssh": ["master"],
    # class create reads -f only for --with-apps, and before the roster or the cluster
    "class create": ["--roster", "r.txt", "--name", "cs101", "--kubeconfig", "kc", "--with-apps"],
    "versions": ["--check", "--upstream", "http://127.0.0.1:9"],  # -f is read only to check its pins
    "snapshot save": ["x"],
    "snapshot restore": ["x"],
    "snapshot delete": ["x"],
}


def _commands_with_file_option() -> list[list[str]]:
    out: list[list[str]] = []

    def walk(group: click.Group, prefix: list[str]) -> None:
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                walk(command, [*prefix, name])
            elif any(p.name == "lab_file" for p in command.params):
                out.append([*prefix, name])

    walk(cli, [])
    return out


COMMANDS = _commands_with_file_option()


@contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail instead of hanging: a read that blocks (a FIFO without a writer) is interrupted."""

    def expired(*_: object) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def not_files(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "lab.fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    return {"fifo": fifo, "dev-zero": Path("/dev/zero"), "dev-urandom": Path("/dev/urandom"), "folder": folder}


def test_every_command_with_a_file_option_is_covered() -> None:
    assert {"validate", "render", "plan", "create", "destroy", "status"} <= {c[-1] for c in COMMANDS}


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_file_option_on_a_fifo_a_device_or_a_folder_is_a_clean_error(
    command: list[str], not_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "home"))
    for kind, path in not_files.items():
        with deadline(10):
            result = CliRunner().invoke(cli, [*command, "-f", str(path), *EXTRA_ARGS.get(" ".join(command), [])], input="")
        assert isinstance(result.exception, SystemExit), f"{kind}: {result.exception!r}"
        assert result.exit_code == 2, f"{kind}: {result.output}"
        assert len(result.output) < 500 and "Traceback" not in result.output
        assert str(path) in result.output or "is a directory" in result.output, result.output
    assert not (tmp_path / "home").exists(), "nothing may be created for a spec that could not be read"


def test_a_fifo_in_a_real_process_does_not_hang(not_files: dict[str, Path]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "labctl.cli", "validate", "-f", str(not_files["fifo"])],
        env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=30, check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == f"error: {not_files['fifo']}: is a FIFO (named pipe), not a regular file — save the lab spec to a file and pass that\n"


def test_a_file_above_one_mebibyte_is_refused_by_its_size(tmp_path: Path) -> None:
    big = tmp_path / "lab.yaml"
    big.write_text("name: x\n" + "#" * MAX_BYTES, encoding="utf-8")
    with pytest.raises(LabctlError, match=r"above the limit of 1048576 \(1 MiB\)"):
        LabSpec.load(big)


def test_a_symlink_planted_at_a_secret_bundle_is_replaced_not_followed(tmp_path: Path) -> None:
    from labctl.render import render_all

    victim = tmp_path / "victim"
    victim.write_text("keep me\n", encoding="utf-8")
    (tmp_path / "out" / "manifests").mkdir(parents=True)
    (tmp_path / "out" / "manifests" / "apps.yaml").symlink_to(victim)
    (tmp_path / "out" / "Vagrantfile").symlink_to(victim)
    render_all(LabSpec.default(), tmp_path / "out", state_dir=tmp_path / "state")
    assert victim.read_text(encoding="utf-8") == "keep me\n"
    apps = tmp_path / "out" / "manifests" / "apps.yaml"
    assert not apps.is_symlink() and stat.S_IMODE(apps.stat().st_mode) == 0o600
    assert "WEBUI_SECRET_KEY" in apps.read_text(encoding="utf-8")
    assert not (tmp_path / "out" / "Vagrantfile").is_symlink()
    assert stat.S_IMODE((tmp_path / "state" / "secrets.json").stat().st_mode) == 0o600


def test_a_symlink_planted_at_the_secrets_file_is_refused(tmp_path: Path) -> None:
    from labctl.secrets import SecretsError, load_or_create

    victim = tmp_path / "victim"
    victim.write_text("keep me\n", encoding="utf-8")
    os.chmod(victim, 0o644)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "secrets.json").symlink_to(victim)
    with pytest.raises(SecretsError, match="is a symbolic link — remove it"):
        load_or_create(tmp_path / "state")
    assert victim.read_text(encoding="utf-8") == "keep me\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644  # not chmod-ed through the link either


@pytest.mark.parametrize("where", ["/proc/labctl-x", "a-file/sub"])
def test_render_into_an_impossible_place_is_a_clean_error(where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "home"))
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    result = CliRunner().invoke(cli, ["render", "-o", where])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.stderr.startswith(f"error: cannot write {where}: ")
    assert result.stderr.rstrip().endswith("— choose an output folder you can write to (-o DIR)")


def test_the_cache_never_writes_outside_its_folder(tmp_path: Path) -> None:
    from labctl.cache_needs import CacheError, inside, model_manifest_path

    assert inside(tmp_path, model_manifest_path("llama3.2:1b")).is_relative_to(tmp_path)
    for rel in (model_manifest_path("a/../../../../tmp/x:latest"), "models/blobs/sha256-/../../../x", "/etc/passwd"):
        with pytest.raises(CacheError, match="outside the cache folder"):
            inside(tmp_path, rel)
