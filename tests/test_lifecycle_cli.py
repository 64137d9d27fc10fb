"""The lifecycle commands' CLI contract without VMs: prompts, refusals, exit codes, secrets."""

from __future__ import annotations

import stat

import pytest
from click.testing import CliRunner

from labctl.cli import cli
from labctl.kubeconfig import rewrite_kubeconfig
from tests.test_lifecycle import ADMIN_CONF


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "labs"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kube" / "config"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_destroy_asks_first_and_does_nothing_on_no(home):
    state = home / "labs" / "llm-lab"
    (state / ".vagrant" / "machines" / "master" / "libvirt").mkdir(parents=True)
    (state / ".vagrant" / "machines" / "master" / "libvirt" / "id").write_text("0b1c")  # a VM exists
    (state / "secrets.json").write_text("{}")
    result = CliRunner().invoke(cli, ["destroy"], input="n\n")
    assert result.exit_code == 1
    assert "Destroy lab 'llm-lab'" in result.output
    assert (state / "secrets.json").exists()
    # Without a terminal (no answer at all): a clear one-line refusal, not click's bare "Aborted!".
    result = CliRunner().invoke(cli, ["destroy"], input="")
    assert result.exit_code == 1 and "run `labctl destroy --yes`" in result.output
    assert (state / "secrets.json").exists()


def test_destroy_of_a_lab_that_only_render_touched_asks_nothing_and_leaves_nothing(home):
    """Issue #15 item 2: no VM, so no question (and no "Aborted!" without a terminal); the state
    folder and secrets.json that `render` made are gone afterwards."""
    state = home / "labs" / "llm-lab"
    state.mkdir(parents=True)
    (state / "secrets.json").write_text("{}")
    result = CliRunner().invoke(cli, ["destroy"], input="")
    assert result.exit_code == 0, result.output
    assert "Destroy lab" not in result.output
    assert not state.exists()


def test_destroy_of_a_lab_that_never_existed_is_a_no_op(home):
    result = CliRunner().invoke(cli, ["destroy", "--yes"])
    assert result.exit_code == 0, result.output
    assert "nothing to destroy" in result.output


def test_kubeconfig_prints_only_the_path_and_merges_on_request(home):
    runner = CliRunner()
    missing = runner.invoke(cli, ["kubeconfig"])
    assert missing.exit_code == 1 and "run `labctl create`" in missing.output
    state = home / "labs" / "llm-lab"
    state.mkdir(parents=True)
    (state / "kubeconfig").write_text(rewrite_kubeconfig(ADMIN_CONF, "llm-lab", "https://192.168.33.100:6443"))
    shown = runner.invoke(cli, ["kubeconfig"])
    assert shown.exit_code == 0 and shown.output.strip() == str(state / "kubeconfig")
    assert "S0VZ" not in shown.output  # the client key never reaches the terminal
    merged = runner.invoke(cli, ["kubeconfig", "--merge"])
    assert merged.exit_code == 0, merged.output
    target = home / "kube" / "config"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and "labctl-llm-lab" in target.read_text()
    # destroy removes the merged context again (no VMs here: the lab was never brought up).
    gone = runner.invoke(cli, ["destroy", "--yes"])
    assert gone.exit_code == 0, gone.output
    assert "labctl-llm-lab" not in target.read_text()


def test_ssh_to_an_unknown_node_names_the_nodes(home):
    result = CliRunner().invoke(cli, ["ssh", "db"])
    assert result.exit_code == 1
    assert "no node 'db'" in result.output and "master" in result.output


def test_halt_of_a_lab_that_was_never_created(home):
    result = CliRunner().invoke(cli, ["halt"])
    assert result.exit_code == 1 and "nothing to halt" in result.output


def test_create_with_an_unknown_only_pattern_touches_nothing(home):
    result = CliRunner().invoke(cli, ["create", "--only", "no-such.step"])
    assert result.exit_code == 1
    assert "error: --only 'no-such.step' matches no step" in result.output
    assert "doctor:" not in result.output  # refused before the preflight ran
    assert not (home / "labs" / "llm-lab").exists()


def test_status_of_a_lab_that_was_never_created_is_honest_and_offline(home):
    """Issue #15 item 4: one line saying what to do, not a wall of FAIL lines; and no log file."""
    import json

    result = CliRunner().invoke(cli, ["status", "--output", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["created"] is False
    assert {v["state"] for v in report["vms"]} == {"not_created"}
    assert [c["name"] for c in report["checks"]] == ["lab-created"]
    text = CliRunner().invoke(cli, ["status"])
    assert text.exit_code == 0
    assert text.output == "Lab llm-lab (provider virtualbox): not created yet — run `labctl create`\n"
    verify = CliRunner().invoke(cli, ["verify"])
    assert verify.exit_code == 7 and "not created yet — run `labctl create`" in verify.output
    assert not (home / "labs" / "llm-lab" / "logs").exists()
