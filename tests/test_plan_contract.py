"""The dry-run contract: `labctl create --dry-run` on the default lab (README "Plan output").

Text form, in this order:

    Plan for lab '<name>' (provider <type>): <N> steps
    <blank>
    ==> Step <i>/<N>: <step id> — <title>          one header per step, i = 1..N
        [<how it runs: sudo; timeout; retries; needs internet; captures; uploads>]
        <host>[, <host>...]: check (skip if it succeeds):    optional, then the script, indented 8
        <host>[, <host>...]: run:                            then the script, indented 8

JSON form (`--output json`): {"format": "labctl-plan/v1", "lab", "provider", "hosts": [...],
"steps": [{"id", "title", "kind", "commands": [{"host", "check", "run"}], ...}]}, steps in the
same order as the text.

The expected steps are not written down here (the playbooks change): they come from the playbook
files via load_playbooks(), so this test breaks when the printing breaks, not when a step is added.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from labctl.cli import cli
from labctl.plan import build_plan, load_playbooks
from labctl.spec import LabSpec

REPO = Path(__file__).resolve().parents[1]
HEADER = re.compile(r"^==> Step (\d+)/(\d+): (\S+) — (.+)$")
HOST_LINE = re.compile(r"^    (\S.*): (check \(skip if it succeeds\)|run):$")


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder (so no ./lab.yaml: the built-in default lab) and an empty LABCTL_HOME."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "labctl-home"))
    return tmp_path


def dry_run(*extra: str) -> str:
    result = CliRunner().invoke(cli, ["create", "--dry-run", *extra])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # the default lab has no warnings
    return result.stdout


def expected_step_ids(spec: LabSpec) -> list[str]:
    """Provider step first, then every playbook step in file order, as the playbooks define them."""
    plan = build_plan(spec)
    from_books = [f"{book.name}.{step.name}" for book in load_playbooks() for step in book.spec.steps]
    planned = [s.id for s in plan.steps]
    assert planned[0].startswith("provider.")
    remote = planned[1:]
    # The plan keeps the playbooks' order and only leaves out steps whose `when` is false for this lab.
    positions = [from_books.index(step_id) for step_id in remote]
    assert positions == sorted(positions), "the plan reorders playbook steps"
    return planned


def sections(text: str) -> list[list[str]]:
    """The text split at each step header (the header is each section's first line)."""
    out: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("==> "):
            out.append([line])
        elif out:
            out[-1].append(line)
    return out


def test_dry_run_prints_every_step_in_order(isolated: Path) -> None:
    spec = LabSpec.default()
    plan = build_plan(spec)
    ids = expected_step_ids(spec)
    text = dry_run()
    lines = text.splitlines()
    assert lines[0] == f"Plan for lab 'llm-lab' (provider virtualbox): {len(ids)} steps"
    assert lines[1] == ""
    headers = [HEADER.match(line) for line in lines if line.startswith("==> ")]
    assert all(headers), [line for line in lines if line.startswith("==> ")]
    assert [(int(m[1]), int(m[2])) for m in headers] == [(i, len(ids)) for i in range(1, len(ids) + 1)]  # type: ignore[index]
    assert [m[3] for m in headers] == ids  # type: ignore[index]
    assert [m[4] for m in headers] == [s.title for s in plan.steps]  # type: ignore[index]


def test_dry_run_names_every_host_of_every_step(isolated: Path) -> None:
    spec = LabSpec.default()
    plan = build_plan(spec)
    text = dry_run()
    for step, section in zip(plan.steps, sections(text), strict=True):
        named: set[str] = set()
        runs = 0
        for line in section:
            m = HOST_LINE.match(line)
            if m:
                named |= set(m[1].split(", "))
                runs += m[2] == "run"
        assert named == set(step.hosts), f"{step.id}: hosts printed {sorted(named)} != targeted {list(step.hosts)}"
        assert runs >= 1, f"{step.id}: no 'run:' block"
        body = "\n".join(section)
        for command in step.commands:
            for script_line in command.run.splitlines():
                assert f"        {script_line}".rstrip() in body, f"{step.id}: missing script line {script_line!r}"
    # Every VM of the lab is named somewhere: the provider step brings them all up by name.
    provider_section = "\n".join(sections(text)[0])
    for _, node in spec.all_nodes():
        assert re.search(rf"\b{re.escape(node.name)}\b", provider_section), node.name
    all_remote_hosts = {h for s in plan.steps[1:] for h in s.hosts}
    assert all_remote_hosts == {n.name for _, n in spec.all_nodes()}


def test_dry_run_json_has_the_same_steps_in_the_same_order(isolated: Path) -> None:
    spec = LabSpec.default()
    text_ids = [HEADER.match(line)[3] for line in dry_run().splitlines() if line.startswith("==> ")]  # type: ignore[index]
    data = json.loads(dry_run("--output", "json"))
    assert data["format"] == "labctl-plan/v1"
    assert (data["lab"], data["provider"]) == ("llm-lab", "virtualbox")
    assert [s["id"] for s in data["steps"]] == text_ids == expected_step_ids(spec)
    assert [h["name"] for h in data["hosts"]] == ["nfs", "master", "worker1"]
    assert [h["ip"] for h in data["hosts"]] == ["192.168.33.11", "192.168.33.100", "192.168.33.101"]
    for step in data["steps"]:
        assert step["commands"], step["id"]
        assert all({"host", "check", "run"} <= set(c) for c in step["commands"])


def test_plan_and_dry_run_print_the_same(isolated: Path) -> None:
    plan_out = CliRunner().invoke(cli, ["plan"])
    assert plan_out.exit_code == 0
    assert plan_out.stdout == dry_run()


def test_dry_run_touches_nothing(isolated: Path) -> None:
    dry_run()
    dry_run("--output", "json")
    assert sorted(p.name for p in isolated.iterdir()) == [], "the dry run wrote files"


def test_dry_run_in_a_real_process_uses_the_default_lab(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "LABCTL_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-m", "labctl.cli", "create", "--dry-run"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Plan for lab 'llm-lab' (provider virtualbox): ")
    assert "==> Step 1/" in proc.stdout
    assert f"cd {tmp_path / 'home' / 'llm-lab'} && vagrant up --provider virtualbox nfs master worker1" in proc.stdout
    assert not (tmp_path / "home").exists()


def test_provider_step_names_the_state_folder_as_a_person_types_it(tmp_path, monkeypatch):
    """Handouts are made on the instructor's machine: the home folder shows as ~, other paths as they are."""
    from labctl.plan import build_plan
    from labctl.spec import LabSpec

    monkeypatch.delenv("LABCTL_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    step = build_plan(LabSpec.default()).steps[0]
    assert step.commands[0].run.startswith("cd ~/.local/share/labctl/llm-lab && vagrant up ")
    monkeypatch.setenv("LABCTL_HOME", "/srv/labs")
    assert build_plan(LabSpec.default()).steps[0].commands[0].run.startswith("cd /srv/labs/llm-lab && ")
