"""Lab snapshots through the real CLI, against a `vagrant` TEST DOUBLE on PATH
(tests/doubles/vagrant_snapshot_double.py); the clock re-set against the scripted transport.
The real thing (libvirt VMs: save, damage, restore) is in tests/e2e/test_vm_lifecycle.py."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fake_vagrant import fake_vagrant  # noqa: F401  (fixture)
from rich.console import Console as RichConsole

from labctl import lifecycle, snapshots
from labctl.cli import cli
from labctl.destroy import destroy
from labctl.lab import Console, Lab
from labctl.providers.vagrant import parse_snapshot_list
from labctl.spec import LabSpec
from labctl.transport.base import Host
from labctl.transport.scripted import ScriptedTransport

VMS = ("master", "worker1", "nfs")
NO_KUBELET = "kubelet absent\netcd absent\n"  # the answer of a VM without Kubernetes to the after-restore check


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
        "1,worker2,ui,info,VM not created. Moving on...\n"
    )
    # worker2 is not created (Vagrant 2.3.4 list.rb prints only `vm_not_created` as ui info): not a key.
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
    clock = ScriptedTransport().on("date -u -s", stdout=f"{int(time.time())}\n").on("systemctl cat kubelet", stdout=NO_KUBELET)
    monkeypatch.setattr(lifecycle, "_ssh_transport", lambda: clock)
    restored = run("snapshot", "restore", "before-lab-3", "--only", "nfs-server.*")
    assert restored.exit_code == 0, restored.output
    assert ["snapshot", "restore", "--no-provision", "before-lab-3"] in vms.fake.commands()
    assert sorted(c.host for c in clock.runs() if "date -u -s" in c.script) == sorted(VMS)
    assert recheck[0]["only"] == ("nfs-server.*",)
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
    monkeypatch.setattr(lifecycle, "verify_from_host", lambda *a, **kw: None)  # it would ask the lab's network
    monkeypatch.setattr(snapshots, "clock_outcomes", lambda transport, hosts: [(h.name, "", "") for h in hosts])
    monkeypatch.setattr(snapshots, "check_cluster_back", lambda *a, **kw: None)
    seconds = snapshots.restore(lab, console, "x", transport_factory=ScriptedTransport)
    assert isinstance(seconds, float) and seconds > 0
    assert snapshots.delete(lab, console, "x") == ["master", "nfs", "worker1"]
    logs = sorted(p.name for p in (lab.state_dir / "logs").iterdir())
    assert any(n.startswith("snapshot-save-") for n in logs) and any(n.startswith("snapshot-restore-") for n in logs)


def _created_with_ssh_config(vms: Vms) -> None:
    """What `labctl create` leaves: the lab's ssh-config from Vagrant (written by bring_up_hosts)."""
    from labctl.providers.vagrant import format_ssh_config
    from labctl.state import write_private

    provider = vms.lab.provider(vms.lab.state_dir / "create.log", Console())
    write_private(vms.lab.ssh_config, format_ssh_config(provider.ssh_config()))


def test_restore_asks_vagrant_twice_then_rechecks_without_it(vms: Vms) -> None:
    """The whole restore, create's re-check included (the NFS steps, on a scripted transport), costs
    two Vagrant calls: `snapshot list` (which VMs exist, which snapshots each has) and one `snapshot
    restore` for all VMs. Before, it made seven (status, snapshot list, snapshot restore, status,
    ssh-config, then create's status and ssh-config), each seconds of Ruby start-up."""
    _created_with_ssh_config(vms)
    lab, console = vms.lab, Console()
    snapshots.save(lab, console, "base")
    assert (lab.state_dir / "snapshots" / "base.ssh-config").stat().st_mode & 0o777 == 0o600
    before = len(vms.fake.commands())
    transport = ScriptedTransport().on("date -u -s", stdout=f"{int(time.time())}\n").on("systemctl cat kubelet", stdout=NO_KUBELET)
    made: list[ScriptedTransport] = []
    snapshots.restore(lab, console, "base", only=("nfs-server.*",), transport_factory=lambda: made.append(transport) or transport)
    assert vms.fake.commands()[before:] == [
        ["snapshot", "list", "--machine-readable"],
        ["snapshot", "restore", "--no-provision", "base"],
    ]
    # One transport for the clocks and create's re-check (its connections reused), closed at the end.
    assert len(made) == 1 and transport.closed
    clock_hosts = [c.host for c in transport.runs() if "date -u -s" in c.script]
    assert sorted(clock_hosts) == sorted(VMS)
    # create's re-check really ran, on the hosts from the saved ssh-config, after the clocks were set.
    scripts = [c.script for c in transport.runs()]
    first_step = next(i for i, s in enumerate(scripts) if "date -u -s" not in s)
    assert first_step >= len(VMS) and any("exportfs" in s for s in scripts[first_step:])
    timings = json.loads((lab.state_dir / "last-restore.json").read_text())
    assert [what for what, _ in timings["vagrant_calls"]] == ["snapshot list --machine-readable", "snapshot restore --no-provision base"]
    assert timings["total_seconds"] >= timings["vms_restored_seconds"] > 0
    last_create = json.loads((lab.state_dir / "last-create.json").read_text())
    assert last_create["vm_seconds"] >= 0  # create ran to its end, summary included


def test_restore_falls_back_to_vagrant_when_the_saved_ssh_config_does_not_reach_a_vm(vms: Vms) -> None:
    """A VM that does not answer at the saved address (rebooted by hand since, a port re-assigned):
    Vagrant is asked as create would (status, ssh-config), the clocks are set through its answer and
    the lab's ssh-config is written again."""
    _created_with_ssh_config(vms)
    lab, console = vms.lab, Console()
    snapshots.save(lab, console, "base")
    saved = lab.state_dir / "snapshots" / "base.ssh-config"
    saved.write_text(saved.read_text().replace("Port 2201", "Port 2299"))
    before = len(vms.fake.commands())
    transport = (
        ScriptedTransport()
        .on("date -u -s", host="master", error="cannot reach master (vagrant@127.0.0.1:2299): connection refused",
            cause="refused", times=1)
        .on("date -u -s", stdout=f"{int(time.time())}\n")
        .on("systemctl cat kubelet", stdout=NO_KUBELET)
    )
    out = io.StringIO()
    snapshots.restore(lab, Console(RichConsole(file=out, width=200)), "base", only=("nfs-server.*",),
                      transport_factory=lambda: transport)
    assert vms.fake.commands()[before:] == [
        ["snapshot", "list", "--machine-readable"],
        ["snapshot", "restore", "--no-provision", "base"],
        ["status", "--machine-readable"],
        ["ssh-config", "nfs", "master", "worker1"],
    ]
    assert "does not reach every VM (master: could not set the clock: cannot reach master" in out.getvalue()
    assert "Port 2201" in lab.ssh_config.read_text()  # Vagrant's answer, written for `labctl ssh`
    assert sorted(c.host for c in transport.runs() if "date -u -s" in c.script) == sorted([*VMS, *VMS])


def test_restore_refuses_a_half_created_lab_from_the_snapshot_list_alone(vms: Vms) -> None:
    """`vagrant snapshot list` says "VM not created" for a VM that is not there: that one call is
    enough to refuse, and nothing is restored."""
    assert run("snapshot", "save", "base").exit_code == 0
    vms.uncreate("nfs")
    before = len(vms.fake.commands())
    result = run("snapshot", "restore", "base")
    assert result.exit_code == 1 and "is not complete: nfs not created" in result.output
    assert vms.fake.commands()[before:] == [["snapshot", "list", "--machine-readable"]]


def test_restore_refuses_vms_that_lab_yaml_no_longer_matches_before_restoring(vms: Vms) -> None:
    lab = vms.lab
    provider = lab.provider(lab.state_dir / "t.log")
    provider.record_applied(list(VMS))
    (lab.state_dir / "machines.json").write_text(
        (lab.state_dir / "machines.json").read_text().replace('"cpus": 4', '"cpus": 2', 1)
    )
    assert run("snapshot", "save", "base").exit_code == 0
    result = run("snapshot", "restore", "base")
    assert result.exit_code == 1 and "no longer matches VMs that exist — nothing was restored" in result.output
    assert not [c for c in vms.fake.commands() if c[:2] == ["snapshot", "restore"]]


def test_known_answers_stand_in_for_status_and_ssh_config_until_a_command_changes_the_vms(vms: Vms) -> None:
    from labctl.providers.vagrant import MachineState, known_answers

    provider = vms.lab.provider(vms.lab.state_dir / "t.log")
    config = {m: {"HostName": "127.0.0.9", "Port": "22"} for m in VMS}
    before = len(vms.fake.commands())
    with known_answers(provider.root, [MachineState(m, "running", "virtualbox") for m in VMS], config):
        assert [s.name for s in provider.status()] == list(VMS)
        assert provider.ssh_config(running=["nfs"]) == {"nfs": config["nfs"]}
        assert len(vms.fake.commands()) == before
        provider.halt()  # changes the VMs: Vagrant is asked again from now on
        assert {s.state for s in provider.status()} == {"shutoff"}
    assert provider.status()[0].state == "shutoff" and len(vms.fake.commands()) == before + 3


def test_a_vm_that_does_not_answer_yet_is_tried_again_before_vagrant_is_asked(vms: Vms) -> None:
    """A reverted VM can take seconds to answer on a loaded host: the saved address is tried again
    (no Vagrant call), and the restore goes on once it answers."""
    _created_with_ssh_config(vms)
    lab, console = vms.lab, Console()
    snapshots.save(lab, console, "base")
    before = len(vms.fake.commands())
    transport = (
        ScriptedTransport()
        .on("date -u -s", host="nfs", error="cannot reach nfs: no route to host", cause="unreachable", times=2)
        .on("date -u -s", stdout=f"{int(time.time())}\n")
        .on("systemctl cat kubelet", stdout=NO_KUBELET)
    )
    snapshots.restore(lab, console, "base", only=("nfs-server.*",), transport_factory=lambda: transport)
    assert vms.fake.commands()[before:] == [
        ["snapshot", "list", "--machine-readable"],
        ["snapshot", "restore", "--no-provision", "base"],
    ]
    assert [c.host for c in transport.runs() if "date -u -s" in c.script].count("nfs") == 3


def test_libvirt_restores_each_vm_in_its_own_vagrant_process(tmp_path: Path, fake_vagrant: Any) -> None:  # noqa: F811
    from labctl.providers.vagrant import VagrantProvider

    data = LabSpec.default().model_dump(mode="json", exclude_none=True)
    data["provider"]["type"] = "libvirt"
    p = VagrantProvider(LabSpec.from_dict(data), tmp_path, log_path=tmp_path / "t.log")
    p.render()
    p.up()
    p.snapshot_save("base")
    machines = tmp_path / ".vagrant" / "machines"
    for m in VMS:
        (machines / m / "libvirt" / "state").write_text("shutoff")
    assert p.snapshot_restore("base", list(VMS)) >= 0
    assert sorted(c for c in fake_vagrant.commands() if c[:2] == ["snapshot", "restore"]) == [
        ["snapshot", "restore", "--no-provision", m, "base"] for m in sorted(VMS)
    ]
    assert {(machines / m / "libvirt" / "state").read_text() for m in VMS} == {"running"}


def test_restore_without_only_checks_kubelet_and_etcd_then_verifies_and_prints_create_summary(
    vms: Vms, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13: after the restore, the clocks, the kubelet and etcd coming back (on every VM at
    once), then `create`'s final verification (Open WebUI endpoint among it) and its summary —
    still two Vagrant calls: the verification is told what Vagrant would answer."""
    _created_with_ssh_config(vms)
    lab = vms.lab
    snapshots.save(lab, Console(), "ready")
    before = len(vms.fake.commands())
    transport = (
        ScriptedTransport()
        .on("date -u -s", stdout=f"{int(time.time())}\n")
        .on("systemctl cat kubelet", host="nfs", stdout="kubelet absent\netcd absent\n")
        .on("systemctl cat kubelet", host="master", stdout="kubelet active\netcd ok\n")
        .on("systemctl cat kubelet", stdout="kubelet active\netcd absent\n")
    )
    verified: list[Any] = []

    def verify_from_host(lab: Any, console: Any, *, transport_factory: Any) -> None:
        provider = lab.provider(lab.state_dir / "v.log")
        running = [s.name for s in provider.status() if s.running]
        verified.append((running, sorted(provider.ssh_config(running=running)), transport_factory()))

    monkeypatch.setattr(lifecycle, "verify_from_host", verify_from_host)
    out = io.StringIO()
    snapshots.restore(lab, Console(RichConsole(file=out, width=200)), "ready", transport_factory=lambda: transport)
    text = out.getvalue()
    assert vms.fake.commands()[before:] == [
        ["snapshot", "list", "--machine-readable"],
        ["snapshot", "restore", "--no-provision", "ready"],
    ]
    running, configured, kept = verified[0]
    assert sorted(running) == sorted(VMS) and configured == sorted(VMS) and kept._transport is transport
    checks = [c for c in transport.runs() if "systemctl cat kubelet" in c.script]
    assert sorted(c.host for c in checks) == sorted(VMS) and all(c.sudo for c in checks)
    assert "kubelet and etcd: " in text and "master (kubelet active, etcd ok)" in text and "nfs (kubelet absent)" in text
    assert "==> Lab 'llm-lab' created in" in text and "Open WebUI:  http://192.168.33.2:8080" in text
    assert not any("node-prep" in c.script for c in transport.runs())  # create's steps did not run again


@pytest.mark.parametrize(
    "answer,needle",
    [
        ("kubelet failed\netcd absent\n", "worker1: kubelet is 'failed' after the restore"),
        ("kubelet active\netcd Unable to connect to the server\n", "worker1: etcd is not ready after the restore: Unable"),
    ],
)
def test_a_kubelet_or_etcd_that_does_not_come_back_is_named(answer: str, needle: str) -> None:
    hosts = [Host("master", "10.0.0.1"), Host("worker1", "10.0.0.2")]
    transport = ScriptedTransport().on("systemctl cat kubelet", host="worker1", stdout=answer).on(
        "systemctl cat kubelet", stdout="kubelet active\netcd ok\n"
    )
    with pytest.raises(snapshots.SnapshotError, match=needle):
        snapshots.check_cluster_back(transport, hosts, Console(), wait_s=1)
