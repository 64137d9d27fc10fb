"""The ssh provider: machines that already exist (bring your own hosts). Nothing is created or destroyed;
labctl only logs in to them with the user, port and key that lab.yaml names for each node."""

from __future__ import annotations

from pathlib import Path

from labctl.spec import LabSpec
from labctl.transport.base import Host


def hosts_from_spec(spec: LabSpec) -> dict[str, Host]:
    """Each node of ``spec`` as a Host reached at its lab address. Host keys are checked against
    known_hosts unless provider.verify_host_keys is false: these machines live longer than a lab."""
    hosts: dict[str, Host] = {}
    for _, node in spec.all_nodes():
        hosts[node.name] = Host(
            name=node.name,
            address=str(node.ip),
            roles=spec.roles_of(node),
            port=node.ssh_port,
            user=node.ssh_user or "root",  # the spec requires ssh_user with provider ssh; root never happens
            key_file=Path(node.ssh_key).expanduser() if node.ssh_key else None,
            verify_host_key=spec.provider.verify_host_keys,
            lab_ip=str(node.ip),
        )
    return hosts
