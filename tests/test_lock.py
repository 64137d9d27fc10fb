"""The version lock: round trip, stable content, and a drift is a one-line error naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import labctl.versions as versions
from labctl.cli import cli
from labctl.lock import FORMAT, LockDrift, build_lock, check_lock, dump_lock, lock_path, read_lock, write_lock
from labctl.spec import LabSpec
from labctl.specfile import commented_lab_yaml


@pytest.fixture
def lab(tmp_path: Path) -> Path:
    path = tmp_path / "lab.yaml"
    path.write_text(commented_lab_yaml(), encoding="utf-8")
    return path


def test_lock_path_sits_next_to_the_lab_file(tmp_path: Path) -> None:
    assert lock_path(tmp_path / "lab.yaml") == tmp_path / "lab.lock.yaml"
    assert lock_path(tmp_path / "classroom.yaml") == tmp_path / "classroom.lock.yaml"
    assert lock_path(None) == Path("lab.lock.yaml")


def test_round_trip(lab: Path) -> None:
    spec = LabSpec.load(lab)
    path = write_lock(spec, lock_path(lab))
    data = read_lock(path)
    assert data == build_lock(spec)
    assert check_lock(spec, lab) == data


def test_lock_records_every_resolved_version() -> None:
    locked = build_lock(LabSpec.default())["locked"]
    assert locked["box.name"] == "bento/ubuntu-24.04"
    assert locked["box.version"] == versions.PINS["box_virtualbox_version"]
    assert locked["packages.kubeadm"] == f"{versions.PINS['kubernetes']}-*"
    c = versions.PINS["containerd"]
    assert locked["releases.containerd"].endswith(f"/v{c}/containerd-{c}-linux-{{arch}}.tar.gz")  # one lock, every laptop
    assert locked["releases.runc"].endswith(f"/v{versions.PINS['runc']}/runc.{{arch}}")
    assert "packages.containerd" not in locked
    assert locked["manifests.calico.url"].endswith(f"/v{versions.PINS['calico']}/manifests/calico.yaml")
    for name in ("metallb", "csi-driver-nfs", "metrics-server"):
        assert f"manifests.{name}.version" in locked and f"manifests.{name}.url" in locked
    assert locked["images.ollama"] == f"docker.io/ollama/ollama:{versions.PINS['ollama']}"
    assert locked["images.open-webui"] == f"ghcr.io/open-webui/open-webui:v{versions.PINS['open_webui']}"
    assert locked["models.llama3.2:1b"] == "llama3.2:1b"


def test_unknown_digests_are_null_with_a_note() -> None:
    data = build_lock(LabSpec.default())
    assert data["digests"]["models.llama3.2:1b"] is None
    assert data["digests"]["images.ollama"] is None
    assert "null" in data["notes"]["digests"]


def test_lock_file_is_stable_sorted_and_versioned(lab: Path) -> None:
    spec = LabSpec.load(lab)
    first = dump_lock(build_lock(spec))
    assert first == dump_lock(build_lock(LabSpec.load(lab)))  # same input, same bytes
    data = yaml.safe_load(first)
    assert data["format"] == FORMAT == "labctl-lock/v1"
    assert list(data["locked"]) == sorted(data["locked"])
    assert list(data["digests"]) == sorted(data["digests"])
    assert first.startswith("# Written by `labctl lock`")


def test_cli_lock_then_plan_succeeds(lab: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli, ["lock", "-f", str(lab)])
    assert res.exit_code == 0, res.output
    assert (lab.parent / "lab.lock.yaml").exists()
    res = runner.invoke(cli, ["plan", "-f", str(lab)])
    assert res.exit_code == 0, res.output


def test_spec_drift_is_a_one_line_error_via_cli(lab: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["lock", "-f", str(lab)]).exit_code == 0
    lab.write_text(lab.read_text().replace('["llama3.2:1b"]', '["llama3.2:1b", "qwen2.5:0.5b"]'), encoding="utf-8")
    for command in (["plan"], ["handout"], ["create", "--dry-run"], ["create"]):
        res = runner.invoke(cli, [*command, "-f", str(lab)])
        assert res.exit_code == 2, (command, res.output)
        errors = [line for line in res.output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, res.output
        assert "models.qwen2.5:0.5b is locked to absent" in errors[0]
        assert "'qwen2.5:0.5b'" in errors[0] and "labctl lock" in errors[0]


def test_pin_drift_names_key_locked_and_current_value(lab: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["lock", "-f", str(lab)]).exit_code == 0
    locked_tag = versions.PINS["ollama"]
    monkeypatch.setitem(versions.PINS, "ollama", "0.99.0")  # labctl upgraded: its pin moved
    res = runner.invoke(cli, ["plan", "-f", str(lab)])
    assert res.exit_code == 2
    assert (
        f"images.ollama is locked to 'docker.io/ollama/ollama:{locked_tag}' "
        "but the lab spec and labctl's pins now give 'docker.io/ollama/ollama:0.99.0'" in res.output
    )
    assert "run `labctl lock` to re-lock" in res.output
    # re-locking accepts the new pin
    assert runner.invoke(cli, ["lock", "-f", str(lab)]).exit_code == 0
    assert runner.invoke(cli, ["plan", "-f", str(lab)]).exit_code == 0


def test_edited_lock_is_caught_and_a_malformed_one_explained(lab: Path) -> None:
    spec = LabSpec.load(lab)
    path = write_lock(spec, lock_path(lab))
    data = yaml.safe_load(path.read_text())
    data["locked"]["box.version"] = "202401.01.0"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(LockDrift, match=r"box.version is locked to '202401.01.0'"):
        check_lock(spec, lab)
    path.write_text("format: something-else\n")
    res = CliRunner().invoke(cli, ["plan", "-f", str(lab)])
    assert res.exit_code == 2 and "run `labctl lock` to write it again" in res.output


def test_no_lock_no_check(lab: Path) -> None:
    assert check_lock(LabSpec.load(lab), lab) is None
