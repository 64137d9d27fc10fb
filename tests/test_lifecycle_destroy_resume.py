"""destroy, halt, resume and create's preflight without VMs: a recording fake provider stands in for
Vagrant (handed out by ``Lab.provider``), the scripted transport stands in for SSH.

What is pinned: destroy's exact clean-up of the state folder (everything but the held ``.lock``;
with ``--keep-data`` only the kubeconfig and ssh-config go), the merged kubeconfig context dropped,
resume's refusals and its end-to-end run (VMs up, then only the steps a reboot can undo), and
create printing doctor's FAIL lines before it refuses.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from rich.console import Console as RichConsole

from labctl import lifecycle
from labctl.destroy import destroy
from labctl.errors import LifecycleError
from labctl.kubeconfig import merge_kubeconfig, rewrite_kubeconfig
from labctl.lab import Console, Lab
from labctl.lablock import LabBusy, LabLock
from labctl.power import halt, resume
from labctl.providers.vagrant import MachineState
from labctl.spec import LabSpec
from labctl.transport.scripted import ScriptedTransport

NODES = ("master", "worker1", "nfs")
SWAP_CHECK = "swapon --show"


@dataclass
class FakeProvider:
    """Records what the lifecycle asks of Vagrant; answers like a lab whose VMs are in ``states``."""

    state_dir: Path
    states: dict[str, str]
    calls: list[tuple] = field(default_factory=list)

    @property
    def vagrantfile(self) -> Path:
        return self.state_dir / "Vagrantfile"

    def status(self) -> list[MachineState]:
        self.calls.append(("status",))
        return [MachineState(n, s, "libvirt") for n, s in self.states.items()]

    def up(self, machines=None) -> float:  # type: ignore[no-untyped-def]
        self.calls.append(("up", machines))
        for n in machines or list(self.states):
            self.states[n] = "running"
        return 1.0

    def ssh_config(self, running=None) -> dict[str, dict[str, str]]:  # type: ignore[no-untyped-def]
        self.calls.append(("ssh_config", tuple(running or ())))
        return {n: {"HostName": f"10.251.203.{i}", "User": "vagrant", "Port": "22"} for i, n in enumerate(NODES, 10)}

    def destroy(self, keep=None) -> float:  # type: ignore[no-untyped-def]
        self.calls.append(("destroy", tuple(keep or ())))
        for n in self.states:
            if n not in (keep or ()):
                self.states[n] = "not_created"
        return 2.5

    def halt(self) -> float:
        self.calls.append(("halt",))
        return 3.0

    def render(self, source, cache_dir=None):  # type: ignore[no-untyped-def]
        self.calls.append(("render", source))
        self.vagrantfile.write_text("# rendered\n")
        return self.vagrantfile

    def machine_ids(self) -> dict[str, str]:
        """Vagrant's own record (.vagrant/machines/*/*/id): every VM that exists, whatever its state."""
        return {n: f"id-{n}" for n, s in self.states.items() if s != "not_created"}

    def stale_machines(self, existing: list[str]) -> list[str]:
        return []  # every VM was made with what lab.yaml says

    def record_applied(self, machines: list[str]) -> None:
        self.calls.append(("record_applied", tuple(machines)))

    def forget_applied(self, machines: list[str]) -> None:
        self.calls.append(("forget_applied", tuple(machines)))

    def delete_snapshots_of(self, machines: list[str]) -> None:
        self.calls.append(("delete_snapshots_of", tuple(machines)))


class FakeLab(Lab):
    fake: FakeProvider

    def provider(self, log_path, console=None):  # type: ignore[no-untyped-def, override]
        return self.fake


def make_lab(tmp_path: Path, spec: LabSpec | None = None, states: dict[str, str] | None = None) -> FakeLab:
    spec = spec or LabSpec.default()
    lab = FakeLab(spec, tmp_path / "state")
    lab.state_dir.mkdir(parents=True, exist_ok=True)
    lab.fake = FakeProvider(lab.state_dir, dict(states or dict.fromkeys(NODES, "running")))
    return lab


def console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(RichConsole(file=out, width=300, highlight=False)), out


def fill_state(lab: Lab) -> None:
    """What a created lab leaves in its folder."""
    d = lab.state_dir
    (d / "Vagrantfile").write_text("# rendered\n")
    (d / "secrets.json").write_text('{"webui_secret_key": "k"}\n')
    (d / "kubeconfig").write_text("apiVersion: v1\n")
    (d / "ssh-config").write_text("Host master\n")
    (d / "last-create.json").write_text("{}\n")
    (d / "logs").mkdir()
    (d / "logs" / "create-1.log").write_text("log\n")
    (d / ".lock").write_text("")


def ssh_spec() -> LabSpec:
    return LabSpec.from_dict(
        {
            "provider": {"type": "ssh"},
            "nodes": {
                "master": {"name": "master", "ip": "192.168.33.100", "cpus": 2, "memory_mib": 2048, "ssh_user": "ubuntu"},
                "workers": [],
                "nfs": {"name": "nfs", "ip": "192.168.33.11", "cpus": 1, "memory_mib": 1024, "ssh_user": "ubuntu"},
            },
        }
    )


@pytest.fixture
def kubeconfig_env(tmp_path, monkeypatch):
    path = tmp_path / "kube" / "config"
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


def merged_kubeconfig(path: Path, lab: Lab) -> None:
    other = rewrite_kubeconfig(ADMIN, "other-lab", "https://10.251.203.50:6443")
    mine = rewrite_kubeconfig(ADMIN, lab.spec.name, "https://10.251.203.10:6443")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(merge_kubeconfig(merge_kubeconfig(None, other), mine))


ADMIN = yaml.safe_dump({
    "apiVersion": "v1", "kind": "Config",
    "clusters": [{"name": "kubernetes", "cluster": {"server": "https://10.0.2.15:6443"}}],
    "users": [{"name": "kubernetes-admin", "user": {"client-key-data": "S0VZ"}}],
    "contexts": [{"name": "k", "context": {"cluster": "kubernetes", "user": "kubernetes-admin"}}],
})  # fmt: skip


# ---- destroy ------------------------------------------------------------------------------------
def test_destroy_removes_every_vm_and_the_whole_state_folder(tmp_path, kubeconfig_env):
    lab = make_lab(tmp_path)
    fill_state(lab)
    merged_kubeconfig(kubeconfig_env, lab)
    c, out = console()
    destroy(lab, c)
    assert ("destroy", ()) in lab.fake.calls
    assert ("forget_applied", tuple(NODES)) in lab.fake.calls
    # Everything is gone, secrets and the lock file included: the folder itself is removed.
    assert not lab.state_dir.exists()
    text = out.getvalue()
    assert "==> Destroying lab 'llm-lab'" in text and "keeping" not in text
    assert f"==> Lab 'llm-lab' destroyed in 2.5s; nothing of it is left in {tmp_path}" in text and "data kept" not in text
    assert f"removed context labctl-llm-lab from {kubeconfig_env}" in text
    contexts = [c["name"] for c in yaml.safe_load(kubeconfig_env.read_text())["contexts"]]
    assert contexts == ["labctl-other-lab"]


def test_destroy_keeps_the_lock_usable_for_the_next_command(tmp_path, kubeconfig_env):
    lab = make_lab(tmp_path)
    fill_state(lab)
    destroy(lab, console()[0])
    with LabLock(lab.state_dir, lab.spec.name, "labctl create"), pytest.raises(LabBusy):
        LabLock(lab.state_dir, lab.spec.name, "labctl destroy").acquire()


def test_destroy_keep_data_keeps_the_nfs_vm_secrets_and_vagrantfile(tmp_path, kubeconfig_env):
    lab = make_lab(tmp_path)
    fill_state(lab)
    c, out = console()
    destroy(lab, c, keep_data=True)
    assert ("destroy", ("nfs",)) in lab.fake.calls
    # The kept NFS VM's snapshots go: they would bring back a server whose clients are gone.
    assert ("delete_snapshots_of", ("nfs",)) in lab.fake.calls
    left = sorted(p.name for p in lab.state_dir.iterdir())
    assert left == [".lock", "Vagrantfile", "last-create.json", "logs", "secrets.json"]
    assert (lab.state_dir / "secrets.json").read_text() == '{"webui_secret_key": "k"}\n'
    text = out.getvalue()
    assert "==> Destroying lab 'llm-lab' (keeping nfs and its exports)" in text
    assert "— data kept: `labctl create` reuses it" in text


def test_destroy_with_only_the_kept_nfs_vm_left_destroys_none_and_finishes_the_clean_up(tmp_path, kubeconfig_env):
    lab = make_lab(tmp_path, states={"master": "not_created", "worker1": "not_created", "nfs": "running"})
    fill_state(lab)
    c, out = console()
    destroy(lab, c, keep_data=True)
    assert not any(call[0] == "destroy" for call in lab.fake.calls)
    assert "lab 'llm-lab': no VM left to destroy besides nfs; cleaning up" in out.getvalue()
    assert "==> Lab 'llm-lab' cleaned up — data kept: `labctl create` reuses it" in out.getvalue()
    # An earlier destroy interrupted after `vagrant destroy` is finished: access goes, data stays.
    assert sorted(p.name for p in lab.state_dir.iterdir()) == [".lock", "Vagrantfile", "last-create.json", "logs", "secrets.json"]


def test_destroy_with_no_vm_left_has_nothing_to_do(tmp_path, kubeconfig_env):
    lab = make_lab(tmp_path, states=dict.fromkeys(NODES, "not_created"))
    fill_state(lab)
    c, out = console()
    destroy(lab, c)
    assert "lab 'llm-lab': no VM left to destroy; cleaning up" in out.getvalue()
    assert not any(call[0] == "destroy" for call in lab.fake.calls)
    # A lab with no VMs leaves nothing behind.
    assert not lab.state_dir.exists()
    assert f"==> Lab 'llm-lab' cleaned up; nothing of it is left in {tmp_path}" in out.getvalue()


def test_destroy_counts_a_halted_vm_as_one_to_destroy(tmp_path, kubeconfig_env):
    lab = make_lab(tmp_path, states={"master": "shutoff", "worker1": "not_created", "nfs": "not_created"})
    fill_state(lab)
    destroy(lab, console()[0])
    assert ("destroy", ()) in lab.fake.calls


def test_destroy_without_a_vagrantfile_or_a_vm_drops_the_merged_context_and_the_state(tmp_path, kubeconfig_env):
    lab = make_lab(tmp_path, states=dict.fromkeys(NODES, "not_created"))
    (lab.state_dir / "secrets.json").write_text("{}")
    merged_kubeconfig(kubeconfig_env, lab)
    c, out = console()
    destroy(lab, c)
    assert lab.fake.calls == []
    assert "lab 'llm-lab': no VM to destroy (no Vagrantfile, no VM recorded)" in out.getvalue()
    assert "removed context labctl-llm-lab" in out.getvalue()
    assert not lab.state_dir.exists()


def test_destroy_without_a_vagrantfile_renders_it_again_to_remove_the_recorded_vms(tmp_path, kubeconfig_env):
    lab = make_lab(tmp_path)
    (lab.state_dir / "secrets.json").write_text("{}")
    c, out = console()
    destroy(lab, c)
    assert lab.fake.calls[0][0] == "render" and ("destroy", ()) in lab.fake.calls
    assert f"{lab.state_dir / 'Vagrantfile'} was missing; rendered it again to remove master, nfs, worker1" in out.getvalue()
    assert not lab.state_dir.exists()


def test_destroy_leaves_a_kubeconfig_without_the_lab_untouched(tmp_path, kubeconfig_env):
    lab = make_lab(tmp_path)
    fill_state(lab)
    kubeconfig_env.parent.mkdir(parents=True)
    original = rewrite_kubeconfig(ADMIN, "other-lab", "https://10.251.203.50:6443")
    kubeconfig_env.write_text(original)
    c, out = console()
    destroy(lab, c)
    assert kubeconfig_env.read_text() == original
    assert "removed context" not in out.getvalue()


def test_destroy_of_an_ssh_lab_forgets_the_whole_state(tmp_path, kubeconfig_env):
    lab = make_lab(tmp_path, spec=ssh_spec())
    fill_state(lab)
    c, out = console()
    destroy(lab, c)
    assert lab.fake.calls == []
    assert not lab.state_dir.exists()
    assert "provider ssh: the machines are yours and stay as they are" in out.getvalue()


def test_destroy_keep_data_of_an_ssh_lab_keeps_every_file_but_the_access(tmp_path, kubeconfig_env):
    lab = make_lab(tmp_path, spec=ssh_spec())
    fill_state(lab)
    before = sorted(p.name for p in lab.state_dir.iterdir())
    destroy(lab, console()[0], keep_data=True)
    assert lab.fake.calls == []
    # As for Vagrant labs: the kubeconfig and ssh-config go, secrets, logs and records stay.
    assert sorted(p.name for p in lab.state_dir.iterdir()) == [n for n in before if n not in ("kubeconfig", "ssh-config")]


def test_destroy_of_an_ssh_lab_without_a_state_folder_is_fine(tmp_path, kubeconfig_env):
    lab = FakeLab(ssh_spec(), tmp_path / "never")
    destroy(lab, console()[0])
    assert not lab.state_dir.exists()


def test_destroy_removes_a_symlink_without_following_it(tmp_path, kubeconfig_env):
    lab = make_lab(tmp_path, spec=ssh_spec())
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    (lab.state_dir / "cache").symlink_to(outside, target_is_directory=True)
    destroy(lab, console()[0])
    assert not (lab.state_dir / "cache").exists() and (outside / "keep.txt").read_text() == "mine"


# ---- halt / resume ------------------------------------------------------------------------------
def test_halt_and_resume_refuse_provider_ssh(tmp_path):
    lab = make_lab(tmp_path, spec=ssh_spec())
    with pytest.raises(LifecycleError, match="provider ssh: the machines are not labctl's to stop"):
        halt(lab, console()[0])
    t = ScriptedTransport()
    with pytest.raises(LifecycleError, match="provider ssh: the machines are not labctl's to start"):
        resume(lab, console()[0], transport_factory=lambda: t)
    assert t.calls == [] and lab.fake.calls == []


def test_halt_and_resume_of_a_lab_never_created_say_so(tmp_path):
    lab = make_lab(tmp_path)
    with pytest.raises(LifecycleError, match=r"has no VMs .* nothing to halt"):
        halt(lab, console()[0])
    with pytest.raises(LifecycleError, match=r"was never created .* run `labctl create`"):
        resume(lab, console()[0], transport_factory=ScriptedTransport)
    assert ("halt",) not in lab.fake.calls and not any(c[0] == "up" for c in lab.fake.calls)


def test_halt_stops_the_vms(tmp_path):
    lab = make_lab(tmp_path)
    fill_state(lab)
    c, out = console()
    assert halt(lab, c) == 3.0
    assert ("halt",) in lab.fake.calls
    assert "==> Halting the VMs of lab 'llm-lab'" in out.getvalue()
    assert "==> Halted in 3.0s — `labctl resume` brings the lab back" in out.getvalue()


def test_resume_brings_the_vms_up_then_reruns_only_the_reboot_steps(tmp_path):
    lab = make_lab(tmp_path, states=dict.fromkeys(NODES, "shutoff"))
    fill_state(lab)
    # Swap came back on worker1 only: the check says "not done" there.
    t = ScriptedTransport().on(SWAP_CHECK, host="worker1", exit_code=1).on(SWAP_CHECK, exit_code=0)
    c, out = console()
    seconds = resume(lab, c, transport_factory=lambda: t)
    assert seconds >= 0
    assert ("up", None) in lab.fake.calls  # every VM was down: one `vagrant up` for all
    assert t.closed
    ran = t.runs()
    assert ran, "resume ran no step on the hosts"
    assert {c.host for c in ran} == {"master", "worker1"}  # k8s nodes only (the step's hosts)
    assert all(SWAP_CHECK in c.script or "swapoff" in c.script for c in ran)
    assert any(c.host == "worker1" and "swapoff" in c.script for c in ran)
    assert not any(c.host == "master" and "swapoff" in c.script for c in ran)
    assert {c.host: c.env for c in ran} == {"master": {}, "worker1": {}}
    text = out.getvalue()
    assert "==> Step: Turn swap off, now and after every reboot" in text
    assert "==> Lab 'llm-lab' resumed in" in text
    assert (lab.state_dir / "ssh-config").read_text().startswith("Host master")
    logs = sorted((lab.state_dir / "logs").glob("resume-*.log"))
    assert logs and "node-prep.disable-swap" in logs[-1].read_text()


def test_resume_of_a_running_lab_only_checks(tmp_path):
    lab = make_lab(tmp_path, states={"master": "running", "worker1": "shutoff", "nfs": "running"})
    fill_state(lab)
    t = ScriptedTransport().on(SWAP_CHECK, exit_code=0)
    resume(lab, console()[0], transport_factory=lambda: t)
    assert ("up", ["worker1"]) in lab.fake.calls  # only the VM that was down
    assert not any("swapoff" in c.script for c in t.runs())


def test_resume_failing_on_a_host_raises_and_closes_the_transport(tmp_path):
    from labctl.runner import StepFailed

    lab = make_lab(tmp_path)
    fill_state(lab)
    t = ScriptedTransport().on(SWAP_CHECK, exit_code=1).on("swapoff", host="master", exit_code=1, stderr="E")
    with pytest.raises(StepFailed) as info:
        resume(lab, console()[0], transport_factory=lambda: t)
    assert info.value.host == "master" and t.closed


# ---- create's preflight ------------------------------------------------------------------------
def test_create_prints_the_doctor_report_before_refusing(tmp_path, monkeypatch):
    """A lab bigger than any laptop fails doctor's memory check: the FAIL line is shown, then the refusal."""
    from labctl.doctor import PreflightFailed
    from tests.test_doctor_boundaries import VAGRANT, fake_tools

    fake_tools(tmp_path, monkeypatch, vagrant=VAGRANT)  # a quick stand-in: the real one takes seconds to answer
    data = json.loads(LabSpec.default().model_dump_json())
    data["nodes"]["master"]["memory_mib"] = 262144  # 256 GiB, the most a node may ask for: no test host has it
    big = LabSpec.from_dict({k: v for k, v in data.items() if k in ("name", "nodes")})
    lab = make_lab(tmp_path, spec=big)
    t = ScriptedTransport()
    c, out = console()
    with pytest.raises(PreflightFailed, match="fix the FAIL lines above"):
        lifecycle.create(lab, c, transport_factory=lambda: t)
    text = out.getvalue()
    fail_lines = [line for line in text.splitlines() if line.lstrip().startswith("FAIL")]
    assert any("memory" in line.lower() for line in fail_lines), text
    assert t.calls == [] and not any(call[0] in ("up", "render") for call in lab.fake.calls)


def test_labctl_create_shows_the_fail_lines_it_refers_to(tmp_path, monkeypatch):
    """Through the CLI: the refusal says "fix the FAIL lines above" — they must be above."""
    from click.testing import CliRunner

    from labctl.cli import cli
    from tests.test_doctor_boundaries import VAGRANT, fake_tools

    fake_tools(tmp_path, monkeypatch, vagrant=VAGRANT)
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "labs"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kube" / "config"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lab.yaml").write_text(
        "nodes:\n  master: {name: master, ip: 192.168.33.100, cpus: 4, memory_mib: 262144}\n"
    )
    result = CliRunner().invoke(cli, ["create", "-f", "lab.yaml"])
    assert result.exit_code != 0
    out = result.output
    assert "fix the FAIL lines above" in out
    fail_lines = [line for line in out.splitlines() if line.lstrip().startswith("FAIL")]
    assert any("memory" in line for line in fail_lines), out
    assert out.index(fail_lines[0]) < out.index("fix the FAIL lines above")
    assert "Traceback" not in out
    assert not (tmp_path / "labs" / "llm-lab" / "Vagrantfile").exists()  # nothing half-done


def test_on_a_terminal_headlines_are_bold_and_endings_green(tmp_path, kubeconfig_env):
    out = io.StringIO()
    c = Console(RichConsole(file=out, force_terminal=True, color_system="standard", width=300))
    lab = make_lab(tmp_path)
    fill_state(lab)
    halt(lab, c)
    destroy(lab, c)
    text = out.getvalue()
    assert "\x1b[1m==> Halting the VMs of lab 'llm-lab'\x1b[0m" in text
    assert "\x1b[1;32m==> Halted in 3.0s" in text
    assert "\x1b[1m==> Destroying lab 'llm-lab'\x1b[0m" in text
    assert "\x1b[1;32m==> Lab 'llm-lab' destroyed in 2.5s" in text
