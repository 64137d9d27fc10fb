"""`vagrant ssh-config`: parsed, written back for OpenSSH, and turned into the lab's Hosts."""

from __future__ import annotations

from pathlib import Path

from labctl.providers.vagrant_run import VagrantError
from labctl.spec import LabSpec
from labctl.transport.base import Host


def parse_ssh_config(text: str) -> dict[str, dict[str, str]]:
    """`vagrant ssh-config` output (one ``Host <machine>`` block each) → machine → {Key: value}.

    The first value of a key wins, as in OpenSSH, except ``IdentityFile``: Vagrant prints one line per
    private key it may use (Vagrant 2.3.4 ``templates/commands/ssh_config/config.erb`` loops over
    ``private_key_path``) and OpenSSH tries each, so all are kept, joined by newlines in file order."""
    machines: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        value = value.strip()
        if key == "Host":
            current = machines.setdefault(value, {})
        elif current is not None:
            if value.startswith('"') and value.endswith('"') and len(value) >= 2:
                value = value[1:-1]
            if key == "IdentityFile" and key in current:
                current[key] += "\n" + value
            else:
                current.setdefault(key, value)
    return machines


def format_ssh_config(config: dict[str, dict[str, str]]) -> str:
    """The parsed ssh-config written back for OpenSSH (`ssh -F`), as Vagrant writes it: one
    ``IdentityFile`` line per key, paths with spaces in double quotes, and ``ProxyCommand`` as it is
    (OpenSSH hands the rest of that line to the shell, so quotes around it would be taken literally)."""
    lines = []
    for machine, keys in config.items():
        lines.append(f"Host {machine}")
        for k, v in keys.items():
            for value in v.split("\n") if k == "IdentityFile" else [v]:
                quote = " " in value and k != "ProxyCommand"
                lines.append(f'  {k} "{value}"' if quote else f"  {k} {value}")
    return "\n".join(lines) + "\n"


def hosts_from_ssh_config(spec: LabSpec, config: dict[str, dict[str, str]]) -> dict[str, Host]:
    hosts: dict[str, Host] = {}
    missing = []
    for _, node in spec.all_nodes():
        keys = config.get(node.name)
        if keys is None:
            missing.append(node.name)
            continue
        identities = tuple(Path(p) for p in keys.get("IdentityFile", "").split("\n") if p)
        hosts[node.name] = Host(
            name=node.name,
            address=keys.get("HostName", ""),
            roles=spec.roles_of(node),
            port=int(keys.get("Port", "22")),
            user=keys.get("User", "vagrant"),
            key_file=identities[0] if identities else None,
            key_files=identities,
            proxy_command=keys.get("ProxyCommand", ""),
            verify_host_key=False,  # fresh host keys on every rebuild; see Host
            lab_ip=str(node.ip),
        )
    if missing:
        raise VagrantError(
            f"`vagrant ssh-config` knows nothing of {', '.join(missing)} — the VM is not running; "
            "run `labctl create` (or `labctl resume`) again"
        )
    return hosts
