"""`labctl create` / `status` with provider ssh (bring-your-own hosts) on real OpenSSH nodes in
network namespaces: hosts from lab.yaml, host keys checked against known_hosts, the selected steps
run, a second create skips them, status reports honestly what it cannot see."""

from __future__ import annotations

import ipaddress

import pytest

from labctl import lifecycle
from labctl.lab import Console, Lab
from labctl.lablock import LabBusy, LabLock
from labctl.runner import StepFailed
from labctl.spec import LabSpec
from labctl.status import lab_status
from labctl.transport.ssh import SSHTransport


def _spec(nodes) -> LabSpec:
    master, nfs = nodes["master"], nodes["nfs"]
    subnet = ipaddress.ip_network(f"{master.address}/24", strict=False)
    base = str(subnet.network_address).rsplit(".", 1)[0]

    def node(n, cpus=1):
        return {
            "name": n.name, "ip": n.address, "cpus": cpus, "memory_mib": 1024,
            "ssh_user": n.user, "ssh_port": n.port, "ssh_key": str(n.key_file),
        }

    return LabSpec.from_dict(
        {
            "name": "byo",
            "offline": True,
            "provider": {"type": "ssh", "verify_host_keys": True},
            "network": {"subnet": str(subnet), "metallb_pool": f"{base}.2-{base}.5"},
            "nodes": {"master": node(master, 2), "workers": [], "nfs": node(nfs)},
        }
    )


class Quiet(Console):
    def __init__(self) -> None:
        from rich.console import Console as RichConsole

        super().__init__(RichConsole(record=True, width=200, force_terminal=False))

    @property
    def text(self) -> str:
        return self.rich.export_text(clear=False)


def test_create_and_status_on_existing_hosts(ssh_nodes, tmp_path):
    nodes = ssh_nodes(["master", "nfs"])
    spec = _spec(nodes)
    lab = Lab.of(spec, source="byo.yaml", state_dir=tmp_path / "state")

    def transport():
        return SSHTransport(known_hosts=nodes.known_hosts)

    console = Quiet()
    result = lifecycle.create(lab, console, only=["node-prep.write-hosts-file"], transport_factory=transport)
    text = console.text
    assert "doctor: 1 checks, 0 failed" in text
    assert "SKIPPED on every host: not selected by --only node-prep.write-hosts-file" in text
    assert "kubeconfig:  not fetched" in text
    assert result.vm_seconds == 0.0 and result.kubeconfig is None
    hosts = nodes.read("master", "/etc/hosts").decode()
    assert f"{nodes['nfs'].address} nfs" in hosts and f"{nodes['master'].address} master" in hosts

    # Re-running finishes nothing new: the step's check skips it on both hosts.
    console = Quiet()
    lifecycle.create(lab, console, only=["node-prep.write-hosts-file"], transport_factory=transport)
    assert console.text.count("skipped (/etc/hosts already lists every lab node)") == 2

    # While another labctl holds the lab, create refuses before touching anything.
    with LabLock(lab.state_dir, "byo", "labctl destroy"), pytest.raises(LabBusy, match="labctl destroy"):
        lifecycle.create(lab, Quiet(), only=["node-prep.write-hosts-file"], transport_factory=transport)

    status = lab_status(lab, transport_factory=transport)
    assert status.vms == [{"name": "nfs", "state": "existing host"}, {"name": "master", "state": "existing host"}]
    assert status.cluster_error == "kubectl is not installed on the master"
    checks = {c.name: c for c in status.checks(spec)}
    assert not checks["nodes-ready"].ok
    assert not checks["ollama-version"].ok and checks["ollama-version"].detail.startswith("unreachable")


def test_unknown_host_key_stops_create_with_the_fix(ssh_nodes, tmp_path):
    nodes = ssh_nodes(["master", "nfs"])
    lab = Lab.of(_spec(nodes), state_dir=tmp_path / "state")
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(StepFailed) as err:
        lifecycle.create(
            lab, Quiet(), only=["node-prep.write-hosts-file"], transport_factory=lambda: SSHTransport(known_hosts=empty)
        )
    # The runner reports the host-key refusal as the step's failure on every host; the message names the fix.
    assert "host key not found" in str(err.value) and "ssh-keyscan" in str(err.value)
    assert set(err.value.failed_hosts) == {"master", "nfs"}
    assert not (lab.state_dir / "kubeconfig").exists()
