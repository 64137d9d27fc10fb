"""Lab snapshots through the real CLI, against a `vagrant` TEST DOUBLE on PATH
(tests/doubles/vagrant_snapshot_double.py); the clock re-set against the scripted transport.
The real thing (libvirt VMs: save, damage, restore) is in tests/e2e/test_vm_lifecycle.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fake_vagrant import fake_vagrant  # noqa: F401  (fixture)

from labctl import lifecycle, snapshots
from labctl.cli import cli
from labctl.destroy import destroy
from labctl.lab import Console, Lab
from labctl.providers.vagrant import parse_snapshot_list
from labctl.spec import LabSpec
from labctl.transport.base import Host
from labctl.transport.scripted import ScriptedTransport

VMS = ("master", "worker1", "nfs")


class Vms:
    """The seed lab's VMs, made by the fake `vagrant` (tests/doubles/fakevagrant/vagrant) on PATH."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake: Any) -> None:
        monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "home"))
        monkeypatch.chdir(tmp_path)
        self.fake = fake
        self.lab = Lab.of(LabSpec.default())
        provider = self.lab.provider(tmp_path / "setup.log", Console())
        provider.render(self.lab.source)
        provider.up()
        self.machines = self.lab.state_dir / ".vagrant" / "machines"

    def snapshots(self, machine: str) -> list[str]:
        f = self.machines / machine / "virtualbox" / "snapshots.json"
        return list(json.loads(f.read_text())) if f.exists() else []

    def uncreate(self, machine: str) -> None:
        for f in (self.machines / machine / "virtualbox").iterdir():
            f.unlink()

    def mutating(self) -> list[list[str]]:
        return [c for c in self.fake.commands() if c[:2] in (["snapshot", "save"], ["snapshot", "restore"], ["snapshot", "delete"])]


@pytest.fixture
def vms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_vagrant: Any) -> Vms:  # noqa: F811
    return Vms(tmp_path, monkeypatch, fake_vagrant)


def run(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def test_parse_snapshot_list_tells_names_from_the_none_hint() -> None:
    text = (
        "1,master,ui,output,==> master: \n1,master,ui,detail,ready\n1,master,ui,detail,before-lab-3\n"
        "1,nfs,ui,output,No snapshots have been taken yet!\n1,nfs,ui,detail,You can take a snapshot using ...\n"
        "1,worker1,ui,output,==> worker1: \n1,worker1,ui,detail,with%!(VAGRANT_COMMA)comma\n"
    )
    assert parse_snapshot_list(text) == {"master": ["ready", "before-lab-3"], "nfs": [], "worker1": ["with,comma"]}


def test_save_list_restore_delete(vms: Vms, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = run("snapshot", "save", "before-lab-3")
    assert saved.exit_code == 0, saved.output
    assert "Snapshot 'before-lab-3' saved" in saved.output and "17 GiB" in saved.output  # 8 + 8 + 1 GiB of memory
    assert all(vms.snapshots(m) == ["before-lab-3"] for m in VMS)

    listed = run("snapshot", "list", "--output", "json")
    assert json.loads(listed.output) == {"before-lab-3": ["master", "nfs", "worker1"]}
    assert "before-lab-3                   all VMs" in run("snapshot", "list").output

    # Restore: the VMs go back, then the clocks, then create's re-check (recorded here; run for real in e2e).
    recheck: list[dict[str, Any]] = []
    monkeypatch.setattr(lifecycle, "create", lambda lab, console, **kw: recheck.append(kw))
    clocks: list[list[str]] = []
    monkeypatch.setattr(snapshots, "sync_clocks", lambda transport, hosts, console: clocks.append([h.name for h in hosts]))
    restored = run("snapshot", "restore", "before-lab-3", "--only", "nfs-server.*")
    assert restored.exit_code == 0, restored.output
    assert ["snapshot", "restore", "--no-provision", "before-lab-3"] in vms.fake.commands()
    assert sorted(clocks[0]) == sorted(VMS) and recheck[0]["only"] == ("nfs-server.*",)
    assert recheck[0]["host_checks"] is False  # the host ran this lab a moment ago: no doctor

    deleted = run("snapshot", "delete", "before-lab-3")
    assert deleted.exit_code == 0, deleted.output
    assert all(vms.snapshots(m) == [] for m in VMS)
    assert "has no snapshots" in run("snapshot", "list").output


def test_restore_of_a_name_that_is_not_there_changes_nothing(vms: Vms) -> None:
    for machine in ("master", "worker1"):
        (vms.machines / machine / "virtualbox" / "snapshots.json").write_text('{"ready": "running"}')
    result = run("snapshot", "restore", "ready")
    assert result.exit_code == 1
    assert "snapshot 'ready' does not exist on nfs — nothing was restored; snapshots of this lab: ready" in result.output
    assert vms.mutating() == []


def test_save_refuses_to_overwrite_without_force(vms: Vms) -> None:
    assert run("snapshot", "save", "x").exit_code == 0
    again = run("snapshot", "save", "x")
    assert again.exit_code == 1 and "already exists on master, nfs, worker1 — pass --force" in again.output
    assert len(vms.mutating()) == 1
    assert run("snapshot", "save", "x", "--force").exit_code == 0


@pytest.mark.parametrize(
    "setup,args,needle",
    [
        ("not-created", ("save", "x"), "is not created yet — run `labctl create` first"),
        ("half", ("save", "x"), "is not complete: nfs not created"),
        ("created", ("save", "Bad Name"), "snapshot name 'Bad Name'"),
        ("created", ("save", "../x"), "snapshot name '../x'"),
        ("created", ("delete", "nope"), "snapshot 'nope' does not exist in lab 'llm-lab'"),
    ],
)
def test_clear_errors(vms: Vms, setup: str, args: tuple, needle: str) -> None:
    if setup == "not-created":
        (vms.lab.state_dir / "Vagrantfile").unlink()
    if setup == "half":
        vms.uncreate("nfs")
    result = run("snapshot", *args)
    assert result.exit_code != 0
    assert needle in result.output, result.output
    assert vms.mutating() == []


def test_provider_ssh_cannot_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text(
        "apiVersion: labctl.dev/v1alpha1\nkind: Lab\nname: byo\nprovider: {type: ssh}\nnodes:\n"
        "  master: {name: master, ip: 192.168.33.100, cpus: 4, memory_mib: 8192, ssh_user: ubuntu}\n"
        "  workers: []\n  nfs: {name: nfs, ip: 192.168.33.11, cpus: 1, memory_mib: 1024, ssh_user: ubuntu}\n"
    )
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "home"))
    result = run("snapshot", "save", "x", "-f", str(lab))
    assert result.exit_code == 1 and "provider ssh: the machines are not labctl's VMs" in result.output


def test_destroy_keep_data_leaves_no_snapshot_on_the_kept_vm(vms: Vms) -> None:
    assert run("snapshot", "save", "ready").exit_code == 0
    assert run("snapshot", "save", "before-lab-3").exit_code == 0
    assert vms.snapshots("nfs") == ["ready", "before-lab-3"]
    destroy(vms.lab, Console(), keep_data=True)
    assert ["destroy", "-f", "master", "worker1"] in vms.fake.commands()
    assert vms.snapshots("nfs") == []


def test_clocks_are_set_from_this_host_and_checked() -> None:
    hosts = [Host("master", "10.0.0.1"), Host("nfs", "10.0.0.2")]
    now = str(int(time.time()))
    transport = ScriptedTransport().on("date -u -s", stdout=now + "\n")
    snapshots.sync_clocks(transport, hosts, Console())
    scripts = [c.script for c in transport.calls]
    assert len(scripts) == 2 and all("date -u -s \"@" in s for s in scripts)
    assert all(c.sudo for c in transport.calls)

    stale = ScriptedTransport().on("date -u -s", host="nfs", stdout="1700000000\n").on("date -u -s", stdout=now)
    with pytest.raises(snapshots.SnapshotError, match=r"nfs: clock still \d+ s off"):
        snapshots.sync_clocks(stale, hosts, Console())
    down = ScriptedTransport().on("date -u -s", host="master", error="connection refused")
    with pytest.raises(snapshots.SnapshotError, match="master: could not set the clock: connection refused"):
        snapshots.sync_clocks(down, hosts, Console())


def test_create_saves_ready_only_for_a_whole_vm_lab(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    saved: list[tuple[str, bool]] = []
    monkeypatch.setattr(lifecycle, "create", lambda *a, **kw: None)
    monkeypatch.setattr(snapshots, "save", lambda lab, console, name, force=False: saved.append((name, force)))
    monkeypatch.setattr("labctl.cli_lab.classroom_plan", lambda lab_file, cache_dir=None: (LabSpec.default(), None))
    assert run("create").exit_code == 0 and saved == [("ready", True)]
    assert run("create", "--no-snapshot").exit_code == 0 and len(saved) == 1
    assert run("create", "--only", "nfs-server.*").exit_code == 0 and len(saved) == 1


def test_handout_tells_students_how_to_reset_their_lab(tmp_path: Path) -> None:
    from labctl.handout import render
    from labctl.plan import build_plan

    spec = LabSpec.default()
    md = render(spec, build_plan(spec), "md")
    assert "## 6. Reset your lab" in md and "labctl snapshot restore ready" in md and "## 7. Troubleshooting" in md
    html = render(spec, build_plan(spec), "html")
    assert "<h2>6. Reset your lab</h2>" in html and "labctl snapshot restore ready" in html
    byo = tmp_path / "lab.yaml"
    byo.write_text(
        "apiVersion: labctl.dev/v1alpha1\nkind: Lab\nname: byo\nprovider: {type: ssh}\nnodes:\n"
        "  master: {name: master, ip: 192.168.33.100, cpus: 4, memory_mib: 8192, ssh_user: ubuntu}\n"
        "  workers: []\n  nfs: {name: nfs, ip: 192.168.33.11, cpus: 1, memory_mib: 1024, ssh_user: ubuntu}\n"
    )
    ssh_spec = LabSpec.load(byo)
    md = render(ssh_spec, build_plan(ssh_spec), "md")
    assert "Reset your lab" not in md and "## 6. Troubleshooting" in md


def test_a_slow_round_trip_is_not_a_clock_error() -> None:
    """On a loaded host the answer can take seconds: a guest clock read inside the round trip is right."""
    hosts = [Host("master", "10.0.0.1")]
    slow = ScriptedTransport().on("date -u -s", stdout=str(int(time.time()) + 1), delay=3.0)
    snapshots.sync_clocks(slow, hosts, Console(), tolerance_s=1)
    ahead = ScriptedTransport().on("date -u -s", stdout=str(int(time.time()) + 3600))
    with pytest.raises(snapshots.SnapshotError, match=r"clock still 3\d\d\d s off"):
        snapshots.sync_clocks(ahead, hosts, Console())


def test_restore_and_delete_complete_the_labs_snapshot_names(vms: Vms) -> None:
    import os
    import subprocess
    import sys

    assert run("snapshot", "save", "before-lab-3").exit_code == 0
    assert run("snapshot", "save", "ready").exit_code == 0

    def complete(words: str) -> list[str]:
        env = {**os.environ, "_LABCTL_COMPLETE": "bash_complete", "COMP_WORDS": words,
               "COMP_CWORD": str(len(words.split(" ")) - 1)}
        out = subprocess.run([sys.executable, "-m", "labctl.cli"], env=env, capture_output=True, text=True,
                             check=True, timeout=60).stdout
        return [line.split(",", 1)[1] for line in out.splitlines() if line.startswith("plain,")]

    assert complete("labctl snapshot restore ") == ["before-lab-3", "ready"]
    assert complete("labctl snapshot delete be") == ["before-lab-3"]


@pytest.mark.parametrize("offset,ok", [(-5, True), (-6, False), (6, True), (7, False)])
def test_the_clock_tolerance_is_five_seconds_either_side_of_the_round_trip(
    monkeypatch: pytest.MonkeyPatch, offset: int, ok: bool
) -> None:
    """With the host clock frozen at T the window is [T - 5, T + 1 + 5]: the edges pass, one second
    past them is an error naming the seconds off."""
    frozen = 1_800_000_000
    monkeypatch.setattr(snapshots.time, "time", lambda: frozen)
    guest = frozen + offset
    transport = ScriptedTransport().on("date -u -s", stdout=f"{guest}\n")
    if ok:
        snapshots.sync_clocks(transport, [Host("master", "10.0.0.1")], Console())
        return
    with pytest.raises(snapshots.SnapshotError, match=r"master: clock still 6 s off"):
        snapshots.sync_clocks(transport, [Host("master", "10.0.0.1")], Console())


@pytest.mark.parametrize("command", ["restore", "delete"])
def test_a_bad_name_is_refused_before_vagrant_is_asked(vms: Vms, command: str) -> None:
    result = run("snapshot", command, "Not/A name")
    assert result.exit_code == 1 and "snapshot name 'Not/A name'" in result.output
    assert not [c for c in vms.fake.commands() if c[:1] == ["snapshot"]]


def test_library_results_and_logs(vms: Vms, monkeypatch: pytest.MonkeyPatch) -> None:
    """save/restore log under their own names; restore returns its wall time, delete the VMs it cleared."""
    lab, console = vms.lab, Console()
    assert snapshots.save(lab, console, "x") >= 0
    monkeypatch.setattr(lifecycle, "create", lambda *a, **kw: None)
    monkeypatch.setattr(snapshots, "sync_clocks", lambda *a, **kw: None)
    seconds = snapshots.restore(lab, console, "x")
    assert isinstance(seconds, float) and seconds > 0
    assert snapshots.delete(lab, console, "x") == ["master", "nfs", "worker1"]
    logs = sorted(p.name for p in (lab.state_dir / "logs").iterdir())
    assert any(n.startswith("snapshot-save-") for n in logs) and any(n.startswith("snapshot-restore-") for n in logs)
