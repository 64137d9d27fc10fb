"""`labctl destroy` against the fake `vagrant` (tests/doubles/fakevagrant/vagrant, a TEST DOUBLE):
it always finishes the clean-up and leaves nothing of the lab behind (issue #19 item 4, #15 item 2),
with a hostile environment around it (item 2), and removes the merged kubeconfig context from the
file it was merged into, whatever KUBECONFIG says by then (item 7)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from fake_vagrant import fake_vagrant  # noqa: F401  (fixture)

from labctl.cli import cli
from labctl.kubeconfig import merge_kubeconfig_file, rewrite_kubeconfig, user_kubeconfig_path
from labctl.lab import Lab
from labctl.spec import LabSpec
from labctl.state import write_private

ADMIN_CONF = """\
apiVersion: v1
clusters: [{name: kubernetes, cluster: {server: "https://10.0.2.15:6443", certificate-authority-data: Q0E=}}]
users: [{name: kubernetes-admin, user: {client-key-data: S0VZ}}]
contexts: [{name: kubernetes-admin@kubernetes, context: {cluster: kubernetes, user: kubernetes-admin}}]
current-context: kubernetes-admin@kubernetes
kind: Config
"""
MINE = "apiVersion: v1\nkind: Config\ncurrent-context: work\nclusters: [{name: work, cluster: {server: https://w}}]\nusers: [{name: me, user: {}}]\ncontexts: [{name: work, context: {cluster: work, user: me}}]\n"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_vagrant) -> Path:  # noqa: F811
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "labs"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kube" / "config"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def made_lab(home: Path) -> Lab:
    """A lab as `create` leaves it: VMs up, secrets, kubeconfig merged into the user's file."""
    lab = Lab.of(LabSpec.default())
    provider = lab.provider(lab.new_log("create"))
    provider.render(lab.source)
    provider.up()
    write_private(lab.state_dir / "secrets.json", "{}")
    write_private(lab.kubeconfig, rewrite_kubeconfig(ADMIN_CONF, "llm-lab", "https://192.168.33.100:6443"))
    (home / "kube").mkdir(exist_ok=True)
    (home / "kube" / "config").write_text(MINE)
    merge_kubeconfig_file(lab, user_kubeconfig_path())
    return lab


def contexts(path: Path) -> list[str]:
    return [c["name"] for c in yaml.safe_load(path.read_text())["contexts"]]


def assert_nothing_left(home: Path) -> None:
    assert not (home / "labs" / "llm-lab").exists()
    assert contexts(home / "kube" / "config") == ["work"]
    assert not list((home / "kube").glob("config.*"))  # no lock file, no temporary file


def test_destroy_removes_vms_and_every_trace(home, fake_vagrant):  # noqa: F811
    made_lab(home)
    result = CliRunner().invoke(cli, ["destroy", "--yes"])
    assert result.exit_code == 0, result.output
    assert ["destroy", "-f", "nfs", "master", "worker1"] in fake_vagrant.commands()
    assert_nothing_left(home)
    again = CliRunner().invoke(cli, ["destroy", "--yes"])  # twice is fine
    assert again.exit_code == 0 and "nothing to destroy" in again.output


def test_destroy_finishes_when_the_vms_are_already_gone(home, fake_vagrant):  # noqa: F811
    """VMs deleted by hand (or an earlier destroy interrupted right after `vagrant destroy`)."""
    lab = made_lab(home)
    shutil.rmtree(lab.state_dir / ".vagrant")
    result = CliRunner().invoke(cli, ["destroy", "--yes"])
    assert result.exit_code == 0, result.output
    assert "no VM left to destroy" in result.output
    assert not any(c[0] == "destroy" for c in fake_vagrant.commands())
    assert_nothing_left(home)


def test_destroy_renders_the_vagrantfile_again_for_recorded_machines(home, fake_vagrant):  # noqa: F811
    lab = made_lab(home)
    (lab.state_dir / "Vagrantfile").unlink()
    result = CliRunner().invoke(cli, ["destroy", "--yes"])
    assert result.exit_code == 0, result.output
    assert "rendered it again" in result.output
    assert ["destroy", "-f", "nfs", "master", "worker1"] in fake_vagrant.commands()
    assert_nothing_left(home)


def test_destroy_names_a_vm_lab_yaml_no_longer_has_and_keeps_its_record(home, fake_vagrant):  # noqa: F811
    lab = made_lab(home)
    ghost = lab.state_dir / ".vagrant" / "machines" / "worker9" / "virtualbox"
    ghost.mkdir(parents=True)
    (ghost / "id").write_text("4f1d-uuid")
    result = CliRunner().invoke(cli, ["destroy", "--yes"])
    assert result.exit_code != 0
    assert "VBoxManage unregistervm 4f1d-uuid --delete" in result.output
    assert (ghost / "id").exists()  # not forgotten: the user can still find it
    assert not (lab.state_dir / "secrets.json").exists()


def test_destroy_edits_the_file_the_merge_went_to_not_the_current_kubeconfig(home, monkeypatch):
    """After `export KUBECONFIG=$(labctl kubeconfig)`, destroy still cleans the file it merged into."""
    lab = made_lab(home)
    monkeypatch.setenv("KUBECONFIG", str(lab.kubeconfig))
    result = CliRunner().invoke(cli, ["destroy", "--yes"])
    assert result.exit_code == 0, result.output
    assert_nothing_left(home)


def test_destroy_ignores_a_hostile_environment(home, fake_vagrant, monkeypatch):  # noqa: F811
    made_lab(home)
    other = home / "other"
    (other / ".vagrant" / "machines" / "db" / "virtualbox").mkdir(parents=True)
    (other / ".vagrant" / "machines" / "db" / "virtualbox" / "id").write_text("precious")
    (other / "Vagrantfile").write_text('config.vm.define "db"\n')
    monkeypatch.setenv("VAGRANT_CWD", str(other))
    monkeypatch.setenv("VAGRANT_DOTFILE_PATH", str(other / ".vagrant"))
    monkeypatch.setenv("VAGRANT_VAGRANTFILE", "Vagrantfile")
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "qemu:///session")
    result = CliRunner().invoke(cli, ["destroy", "--yes"])
    assert result.exit_code == 0, result.output
    assert (other / ".vagrant" / "machines" / "db" / "virtualbox" / "id").read_text() == "precious"
    for call in fake_vagrant.calls():
        assert not {"VAGRANT_CWD", "VAGRANT_DOTFILE_PATH", "VAGRANT_VAGRANTFILE", "LIBVIRT_DEFAULT_URI"} & set(call["env"])
    assert_nothing_left(home)


def test_destroy_keep_data_keeps_the_nfs_vm_and_secrets(home, fake_vagrant):  # noqa: F811
    lab = made_lab(home)
    result = CliRunner().invoke(cli, ["destroy", "--yes", "--keep-data"])
    assert result.exit_code == 0, result.output
    assert ["destroy", "-f", "master", "worker1"] in fake_vagrant.commands()
    assert (lab.state_dir / "secrets.json").exists() and not lab.kubeconfig.exists()
    assert (lab.state_dir / ".vagrant" / "machines" / "nfs" / "virtualbox" / "id").exists()
    assert contexts(home / "kube" / "config") == ["work"]
