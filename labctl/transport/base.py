"""The transport contract shared by the SSH (Fabric), local and scripted test transports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Host:
    """A machine a playbook runs on, however it came to exist (Vagrant VM or existing host)."""

    name: str
    address: str
    roles: tuple[str, ...] = ()
    port: int = 22
    user: str = "vagrant"
    key_file: Path | None = None
    # Vagrant VMs get fresh host keys on every rebuild, so checking them only trains users to
    # ignore warnings; existing hosts (provider ssh) are checked against known_hosts.
    verify_host_key: bool = False
    lab_ip: str = ""  # the node's address on the lab network (address may be a forwarded port)
    # Every key `vagrant ssh-config` lists (one IdentityFile line each; key_file is the first), and
    # its ProxyCommand (vagrant-libvirt on a remote libvirt host), with OpenSSH's %h %p %r tokens.
    key_files: tuple[Path, ...] = ()
    proxy_command: str = ""


@dataclass(frozen=True)
class Result:
    host: str
    exit_code: int
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    timed_out: bool = False
    error: str = ""  # transport-level failure (connection refused, auth), empty when the command ran
    # Why the command did not finish, when it did not: "refused", "unreachable", "auth", "host-key",
    # "lost", "interrupted" (or "timeout", which ``timed_out`` also says). errors.CAUSE_EXIT_CODES
    # maps it to labctl's exit code; "" is a command that ran to its exit code.
    cause: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.error

    @property
    def failure_cause(self) -> str:
        return "timeout" if self.timed_out else self.cause

    def stderr_tail(self, lines: int = 12) -> str:
        return "\n".join(self.stderr.rstrip().splitlines()[-lines:])


class Transport(Protocol):
    def run(
        self,
        host: Host,
        script: str,
        *,
        sudo: bool = True,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        """Run ``script`` with bash on ``host``. ``env`` values (captured facts, possibly secret)
        reach the script through its standard input, never through a command line or a log."""
        ...

    def put(self, host: Host, content: bytes, remote_path: str, *, mode: int = 0o644, sudo: bool = True) -> None:
        """Write ``content`` to ``remote_path`` on ``host`` with ``mode``."""
        ...

    def close(self) -> None: ...
