"""`labctl render` writes only into its output folder unless asked for the lab's secrets (issue #15
item 3): by default apps.yaml carries a visible placeholder and no lab state is read or created; with
--with-secrets it carries the lab's real key, says where that key lives, and warns that the file must
not be committed or handed out."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from labctl.cli import cli
from labctl.render import PLACEHOLDER_SECRETS
from labctl.secrets import load_or_create


def webui_key(apps: Path) -> str:
    for doc in yaml.safe_load_all(apps.read_text(encoding="utf-8")):
        if doc and doc.get("kind") == "Secret" and "WEBUI_SECRET_KEY" in doc.get("data", {}):
            return base64.b64decode(doc["data"]["WEBUI_SECRET_KEY"]).decode()
    raise AssertionError(f"{apps} has no Secret with WEBUI_SECRET_KEY")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def test_render_touches_nothing_outside_its_folder(home: Path, tmp_path: Path) -> None:
    before = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(cli, ["render", "-o", "out"])
    assert result.exit_code == 0, result.output
    assert not home.exists(), "render created the lab's state folder (secrets.json) without --with-secrets"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "out"])
    apps = tmp_path / "out" / "manifests" / "apps.yaml"
    assert webui_key(apps) == PLACEHOLDER_SECRETS.webui_secret_key
    assert "placeholder" in result.stderr and "--with-secrets" in result.stderr


def test_render_with_secrets_uses_the_labs_key_and_warns(home: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["render", "--with-secrets", "-o", "out"])
    assert result.exit_code == 0, result.output
    stored_file = home / "llm-lab" / "secrets.json"
    assert stat.S_IMODE(stored_file.stat().st_mode) == 0o600
    stored = load_or_create(home / "llm-lab")
    apps = tmp_path / "out" / "manifests" / "apps.yaml"
    assert webui_key(apps) == stored.webui_secret_key
    assert stat.S_IMODE(apps.stat().st_mode) == 0o600
    assert "real Open WebUI secret key" in result.stderr and "(created)" in result.stderr
    assert str(stored_file) in result.stderr
    assert stored.webui_secret_key not in result.output
    # a second render reads the same key, and says so
    again = CliRunner().invoke(cli, ["render", "--with-secrets", "-o", "out2"])
    assert "(read)" in again.stderr
    assert webui_key(tmp_path / "out2" / "manifests" / "apps.yaml") == stored.webui_secret_key


def test_render_help_says_what_it_writes() -> None:
    text = CliRunner().invoke(cli, ["render", "--help"]).output
    assert "touching nothing else" not in text  # the old claim, false since secrets existed
    assert "--with-secrets" in text and "placeholder" in text
