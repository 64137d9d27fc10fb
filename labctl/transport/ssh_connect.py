"""How the SSH transport connects: its errors (one line naming the cause and the fix), the host-key
policies, known_hosts reading and ProxyCommand. Split from ``ssh`` (which re-exports the public names)."""

from __future__ import annotations

import errno
import re
import shlex
import socket
from pathlib import Path

import paramiko

from labctl.errors import LabctlError, exit_code_for_cause
from labctl.transport.base import Host


class TransportError(LabctlError):
    """A host could not be reached or refused labctl; ``cause`` picks the exit code (errors.CAUSE_EXIT_CODES)."""

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        self.cause = cause
        self.exit_code = exit_code_for_cause(cause)


class HostKeyError(TransportError):
    """A provider-ssh host's key is not in known_hosts, or has changed."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "host-key")


class _AcceptWithoutRecording(paramiko.MissingHostKeyPolicy):
    """Vagrant VMs: accept the key for this connection only; nothing is written to known_hosts."""

    def missing_host_key(self, client, hostname, key) -> None:
        return None


def expand_proxy_command(host: Host) -> str:
    """``ProxyCommand`` with OpenSSH's tokens filled in (ssh_config(5) TOKENS: %h host, %p port,
    %r user, %% a percent sign); paramiko's ProxyCommand runs the string as it is given."""
    values = {"h": host.address, "p": str(host.port), "r": host.user, "%": "%"}
    return re.sub(r"%([hpr%])", lambda m: values[m.group(1)], host.proxy_command)


def _proxy_sock(host: Host) -> paramiko.ProxyCommand:
    # OpenSSH runs `exec <ProxyCommand>` with a shell (sshconnect.c); paramiko 5.1.0
    # (paramiko/proxy.py) shlex-splits the string and runs it without one, so give it `sh -c`.
    return paramiko.ProxyCommand(shlex.join(["/bin/sh", "-c", "exec " + expand_proxy_command(host)]))


def _known_name(host: Host) -> str:
    return host.address if host.port == 22 else f"[{host.address}]:{host.port}"


def _load_known_hosts(keys: paramiko.HostKeys, path: Path) -> int:
    """Add the keys of known_hosts to ``keys``, skipping lines that do not parse, as OpenSSH does
    (paramiko 5.1.0 hostkeys.py ``HostKeys.load`` raises InvalidHostKey on one bad base64 line, which
    would fail every host). Read-only: nothing is written back. Returns the number of lines skipped."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return 0
    skipped = 0
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line, number)
        except Exception:  # InvalidHostKey, SSHException, a key type paramiko cannot read
            entry = None
        if entry is None:
            skipped += 1
            continue
        for name in entry.hostnames:
            keys.add(name, entry.key.get_name(), entry.key)
    return skipped


def _connect_cause(err: BaseException) -> str:
    if isinstance(err, paramiko.AuthenticationException | FileNotFoundError):
        return "auth"
    if isinstance(err, paramiko.ssh_exception.NoValidConnectionsError):
        errnos = {getattr(e, "errno", None) for e in err.errors.values()}
        return "refused" if errnos <= {errno.ECONNREFUSED} else "unreachable"
    if isinstance(err, ConnectionRefusedError):
        return "refused"
    return "unreachable"


def _connect_error(host: Host, err: BaseException) -> str:
    """One line naming the cause and its fix (fabric/paramiko give a raw repr otherwise)."""
    where = f"{host.user}@{host.address}:{host.port}"
    if isinstance(err, FileNotFoundError):
        return f"cannot log in to {host.name} ({where}): key file {host.key_file} does not exist — fix ssh_key in lab.yaml"
    if isinstance(err, paramiko.AuthenticationException):
        return (
            f"cannot log in to {host.name} ({where}): authentication refused — check the user and that the key "
            f"({host.key_file or 'ssh agent'}) is in ~{host.user}/.ssh/authorized_keys on the host"
        )
    refused = isinstance(err, ConnectionRefusedError)
    codes: set[int | None] = {getattr(err, "errno", None)}
    if isinstance(err, paramiko.ssh_exception.NoValidConnectionsError):
        codes = {getattr(e, "errno", None) for e in err.errors.values()}
        refused = codes <= {errno.ECONNREFUSED}
    if refused:
        return (
            f"cannot reach {host.name} ({where}): connection refused — the host answers but nothing listens on "
            f"port {host.port}: start sshd there, or fix the address/port in lab.yaml"
        )
    if codes & {errno.EHOSTUNREACH, errno.ENETUNREACH}:
        return (
            f"cannot reach {host.name} ({where}): no route to host — it is down or not on this network; "
            "check that it is running and its address in lab.yaml"
        )
    if isinstance(err, socket.timeout | TimeoutError) or codes & {errno.ETIMEDOUT}:
        return (
            f"cannot reach {host.name} ({where}): timed out while connecting — nothing answered; check that "
            "the host is up, its address in lab.yaml, and no firewall drops port " + str(host.port)
        )
    if isinstance(err, paramiko.SSHException | EOFError):
        return f"cannot reach {host.name} ({where}): the SSH handshake failed ({err or type(err).__name__}) — is it an SSH server?"
    return f"cannot reach {host.name} ({where}): {err.strerror if isinstance(err, OSError) and err.strerror else err}"
