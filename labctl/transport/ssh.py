"""SSH transport: one Fabric ``Connection`` per host, opened on first use and reused for every step.

Commands run on a channel of that connection: the fixed command line from ``script.remote_command``
with the script and its facts on standard input (``script.stdin_payload``). Output is read without
polling threads, which keeps a guarded step that has nothing to do at the cost of one round trip.

Host keys: Vagrant VMs (``Host.verify_host_key`` False) are accepted without being checked or
remembered, since every rebuild gives them new keys. Existing machines (provider ``ssh``) are
checked against known_hosts with paramiko's RejectPolicy: an unknown or changed key stops the run
with an error naming the host and the fix. The opt-out is explicit: ``provider.verify_host_keys:
false`` in lab.yaml.
"""

from __future__ import annotations

import contextlib
import re
import select
import shlex
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import paramiko
from fabric import Config, Connection

from labctl.errors import LabctlError
from labctl.transport.base import Host, Result
from labctl.transport.script import (
    TIMEOUT_EXIT_CODES,
    guarded_payload,
    remote_command,
    split_guarded,
    stdin_payload,
)

DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
# Slack on top of the step timeout before labctl gives up on the channel itself: the host's own
# `timeout` normally ends the script first, and its exit code says so.
LOCAL_TIMEOUT_SLACK = 15.0


class HostKeyError(LabctlError):
    """A provider-ssh host's key is not in known_hosts, or has changed."""

    exit_code = 4


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


class SSHTransport:
    def __init__(
        self,
        *,
        known_hosts: Path | None = None,
        connect_timeout: float = 15.0,
    ) -> None:
        self.known_hosts = (known_hosts or DEFAULT_KNOWN_HOSTS).expanduser()
        self.connect_timeout = connect_timeout
        self._connections: dict[str, Connection] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        # Do not let ~/.ssh/config rewrite addresses, users or keys behind the lab spec's back.
        self._config = Config(overrides={"load_ssh_configs": False, "run": {"hide": True, "warn": True}})

    # ---- connections
    def _lock_for(self, host: Host) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(host.name, threading.Lock())

    def connection(self, host: Host) -> Connection:
        """The open connection to ``host``, (re)connecting when there is none or it has dropped."""
        with self._lock_for(host):
            conn = self._connections.get(host.name)
            if conn is not None and conn.is_connected:
                return conn
            if conn is not None:
                conn.close()
            conn = Connection(
                host=host.address,
                user=host.user,
                port=host.port,
                config=self._config,
                connect_timeout=int(self.connect_timeout),
                connect_kwargs={
                    "key_filename": [str(k) for k in host.key_files or ([host.key_file] if host.key_file else [])] or None,
                    **({"sock": _proxy_sock(host)} if host.proxy_command else {}),
                    "look_for_keys": host.key_file is None,
                    "allow_agent": host.key_file is None,
                    "banner_timeout": self.connect_timeout,
                    "auth_timeout": self.connect_timeout,
                },
            )
            if host.verify_host_key:
                # Read-only: load_system_host_keys never writes the file back.
                if self.known_hosts.exists():
                    conn.client.load_system_host_keys(str(self.known_hosts))
                conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
            else:
                conn.client.set_missing_host_key_policy(_AcceptWithoutRecording())
            try:
                conn.open()
            except paramiko.BadHostKeyException as err:
                conn.close()
                raise HostKeyError(
                    f"{host.name} ({host.address}:{host.port}): its host key has CHANGED since it was recorded in "
                    f"{self.known_hosts} (got {err.key.get_name()} {err.key.fingerprint}). If the machine was "
                    f"reinstalled, remove the old line with `ssh-keygen -R {_known_name(host)} -f {self.known_hosts}` "
                    "and add the new key after checking it; otherwise someone may be intercepting the connection."
                ) from None
            except paramiko.SSHException as err:
                conn.close()
                if "not found in known_hosts" in str(err):
                    raise HostKeyError(
                        f"{host.name} ({host.address}:{host.port}): host key not found in {self.known_hosts}. "
                        f"Check the key's fingerprint on the machine, then add it with "
                        f"`ssh-keyscan -p {host.port} {host.address} >> {self.known_hosts}` — or, for a throwaway "
                        "lab only, set `provider: {verify_host_keys: false}` in lab.yaml to skip the check."
                    ) from None
                raise
            # paramiko writes small packets; with Nagle's algorithm and the peer's delayed ACK each
            # command then waits ~40 ms for nothing. OpenSSH's own client sets TCP_NODELAY too.
            with contextlib.suppress(OSError, AttributeError):
                conn.client.get_transport().sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # A host that vanishes without closing the TCP connection (VM paused, cable pulled) is
            # noticed by the keepalive instead of hanging a step until its timeout.
            conn.client.get_transport().set_keepalive(15)
            self._connections[host.name] = conn
            return conn

    def _drop(self, host: Host) -> None:
        with self._lock_for(host):
            conn = self._connections.pop(host.name, None)
        if conn is not None:
            conn.close()

    # ---- the Transport protocol
    def run(
        self,
        host: Host,
        script: str,
        *,
        sudo: bool = True,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        return self._run_payload(host, stdin_payload(script, env), sudo=sudo, timeout=timeout)

    def run_guarded(
        self,
        host: Host,
        check: str,
        script: str,
        *,
        sudo: bool = True,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> tuple[Result, Result | None]:
        """The check, then the script only if the check failed — in one round trip instead of two.

        Returns (check result, script result or None when the check passed or never finished).
        The step timeout covers both. A guarded step that is already done costs one exec."""
        marker = f"LABCTL-CHECK-{uuid.uuid4().hex}"
        whole = self._run_payload(host, guarded_payload(check, script, marker, env), sudo=sudo, timeout=timeout)
        check_out, check_code, run_out = split_guarded(whole.stdout, marker)
        check_err, _, run_err = split_guarded(whole.stderr, marker)
        if check_code is None:  # the check itself timed out or the connection dropped during it
            return Result(host.name, whole.exit_code, check_out, check_err, whole.duration,
                          timed_out=whole.timed_out, error=whole.error), None  # fmt: skip
        check = Result(host.name, check_code, check_out, check_err, whole.duration if check_code == 0 else 0.0)
        if check_code == 0:
            return check, None
        return check, Result(
            host.name, whole.exit_code, run_out, run_err, whole.duration, timed_out=whole.timed_out, error=whole.error
        )

    def _run_payload(self, host: Host, payload: bytes, *, sudo: bool, timeout: float | None) -> Result:
        started = time.monotonic()
        command = remote_command(sudo=sudo, timeout=timeout)
        try:
            conn = self.connection(host)
        except HostKeyError:
            raise
        except (OSError, paramiko.SSHException, EOFError) as err:
            return Result(host.name, -1, duration=time.monotonic() - started, error=_connect_error(host, err))
        try:
            return self._exec(host, conn, command, payload, timeout, started)
        except (OSError, paramiko.SSHException, EOFError) as err:
            self._drop(host)
            return Result(
                host.name, -1, duration=time.monotonic() - started,
                error=f"connection to {host.name} ({host.address}) lost during the command: {err or type(err).__name__}",
            )  # fmt: skip

    def _exec(
        self, host: Host, conn: Connection, command: str, payload: bytes, timeout: float | None, started: float
    ) -> Result:
        transport = conn.client.get_transport()
        if transport is None or not transport.is_active():
            raise EOFError("the SSH transport is closed")
        chan = transport.open_session(timeout=self.connect_timeout)
        out: list[bytes] = []
        err: list[bytes] = []
        deadline = started + timeout + LOCAL_TIMEOUT_SLACK if timeout else None

        def remaining(cap: float = 1.0) -> float:
            return cap if deadline is None else min(cap, deadline - time.monotonic())

        def lost() -> Result:
            self._drop(host)
            return Result(
                host.name, -1, _text(out), _text(err), time.monotonic() - started,
                error=f"connection to {host.name} ({host.address}) lost during the command "
                "(sshd stopped or the host went down)",
            )  # fmt: skip

        try:
            chan.exec_command(command)
            chan.sendall(payload)
            chan.shutdown_write()
            # Read until the host closes its end of the output...
            while not chan.eof_received:
                while chan.recv_ready():
                    out.append(chan.recv(65536))
                while chan.recv_stderr_ready():
                    err.append(chan.recv_stderr(65536))
                if chan.eof_received:
                    break
                if chan.closed or not transport.is_active():
                    return lost()
                wait = remaining()
                if wait <= 0:
                    return Result(host.name, -1, _text(out), _text(err), time.monotonic() - started, timed_out=True)
                select.select([chan], [], [], wait)
            while chan.recv_ready():
                out.append(chan.recv(65536))
            while chan.recv_stderr_ready():
                err.append(chan.recv_stderr(65536))
            # ...then wait for the exit status (it may arrive just before or after the EOF).
            while not chan.status_event.wait(remaining()):
                if not transport.is_active():
                    return lost()
                if remaining() <= 0:
                    return Result(host.name, -1, _text(out), _text(err), time.monotonic() - started, timed_out=True)
            code = chan.recv_exit_status()
        finally:
            chan.close()
        if code == -1:  # paramiko's status when the channel closed without an exit status
            return lost()
        duration = time.monotonic() - started
        # The host's `timeout` ended the script: say so instead of reporting a bare exit code 124.
        timed_out = bool(timeout) and code in TIMEOUT_EXIT_CODES and duration >= timeout - 1
        return Result(host.name, code, _text(out), _text(err), duration, timed_out=timed_out)

    def put(self, host: Host, content: bytes, remote_path: str, *, mode: int = 0o644, sudo: bool = True) -> None:
        """SFTP to a private temporary file in the login user's home, then ``install`` it into place."""
        conn = self.connection(host)
        tmp = f".labctl-upload-{uuid.uuid4().hex}"
        sftp = conn.sftp()
        with sftp.open(tmp, "wb") as handle:
            handle.chmod(0o600)  # before the first byte: the content may be a secret
            handle.write(content)
        result = self.run(
            host,
            f'install -D -m {mode:04o} "$HOME_TMP" {_sh_quote(remote_path)}; rm -f "$HOME_TMP"',
            sudo=sudo,
            timeout=60,
            env={"HOME_TMP": f"{sftp.normalize('.')}/{tmp}"},
        )
        if not result.ok:
            raise OSError(
                f"{host.name}: could not install the upload at {remote_path}: "
                f"{result.error or result.stderr_tail(3) or f'exit {result.exit_code}'}"
            )

    def close(self) -> None:
        with self._guard:
            conns = list(self._connections.values())
            self._connections.clear()
        for conn in conns:
            conn.close()


def _text(chunks: list[bytes]) -> str:
    return b"".join(chunks).decode("utf-8", "replace")


def _sh_quote(value: str) -> str:
    import shlex

    return shlex.quote(value)


def _known_name(host: Host) -> str:
    return host.address if host.port == 22 else f"[{host.address}]:{host.port}"


def _connect_error(host: Host, err: BaseException) -> str:
    where = f"{host.user}@{host.address}:{host.port}"
    if isinstance(err, FileNotFoundError):
        return f"cannot log in to {host.name} ({where}): key file {host.key_file} does not exist"
    if isinstance(err, paramiko.AuthenticationException):
        return f"cannot log in to {host.name} ({where}): {err} — check the user and key ({host.key_file or 'ssh agent'})"
    if isinstance(err, socket.timeout | TimeoutError):
        return f"cannot reach {host.name} ({where}): connection timed out"
    if isinstance(err, paramiko.ssh_exception.NoValidConnectionsError | ConnectionRefusedError):
        return f"cannot reach {host.name} ({where}): connection refused (is sshd running?)"
    return f"cannot reach {host.name} ({where}): {err or type(err).__name__}"
