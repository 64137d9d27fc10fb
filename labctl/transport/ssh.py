"""SSH transport: one Fabric ``Connection`` per host, opened on first use and reused for every step.

Commands run on a channel of that connection: the fixed command line from ``script.session_command``
with the script and its facts on standard input (``script.stdin_payload``). Output is read without
polling threads, which keeps a guarded step that has nothing to do at the cost of one round trip.

Step timeouts are enforced here, not by a ``timeout`` program on the host: at the deadline the
script's process group is stopped over a second channel of the same connection (SIGTERM, SIGKILL
2 s later), the same way Ctrl-C stops it, and the result is a timeout (exit 124, or 137 when SIGKILL
was needed — coreutils timeout's codes). One program fewer per step on the host
(``script.session_command`` says why that matters).

Host keys: Vagrant VMs (``Host.verify_host_key`` False) are accepted without being checked or
remembered, since every rebuild gives them new keys. Existing machines (provider ``ssh``) are
checked against known_hosts with paramiko's RejectPolicy: an unknown or changed key stops the run
with an error naming the host and the fix. The opt-out is explicit: ``provider.verify_host_keys:
false`` in lab.yaml.
"""

from __future__ import annotations

import contextlib
import select
import shlex
import socket
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import paramiko
from fabric import Config, Connection

from labctl.transport.base import Host, Result
from labctl.transport.script import (
    guarded_payload,
    kill_group_command,
    session_command,
    split_guarded,
    split_pgid,
    stdin_payload,
)
from labctl.transport.ssh_connect import (
    HostKeyError,
    TransportError,
    _AcceptWithoutRecording,
    _connect_cause,
    _connect_error,
    _known_name,
    _load_known_hosts,
    _proxy_sock,
    expand_proxy_command,
)

__all__ = ["HostKeyError", "SSHTransport", "TransportError", "expand_proxy_command"]

DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts")
# After stopping a step at its deadline, how long to keep reading its last output before giving up
# on the channel (a host that cannot even close it is reported as timed out all the same).
LOCAL_TIMEOUT_SLACK = 15.0
# After the exit status, how long to keep reading for the rest of the output: a process the script
# left in the background may hold stdout open for as long as it lives (issue 19 item 6).
DRAIN_AFTER_EXIT = 0.5
# Keepalives that expect an answer (OpenSSH's ServerAliveInterval × ServerAliveCountMax): paramiko's
# own keepalive asks for no reply (paramiko 5.1.0 transport.py set_keepalive: want_reply False), so
# a frozen VM behind a live TCP peer (VirtualBox's NAT on loopback) would go unnoticed.
KEEPALIVE_INTERVAL = 15.0
KEEPALIVE_DEADLINE = 45.0
# Ctrl-C: how long ``interrupt`` waits for the hosts to confirm their commands were stopped.
INTERRUPT_WAIT = 5.0


@dataclass
class _Running:
    """A command in flight, so that ``interrupt`` can stop its process group on the host."""

    host: Host
    sudo: bool
    pgid: int | None = None


class SSHTransport:
    def __init__(
        self,
        *,
        known_hosts: Path | None = None,
        connect_timeout: float = 15.0,
        keepalive_interval: float = KEEPALIVE_INTERVAL,
        keepalive_deadline: float = KEEPALIVE_DEADLINE,
        local_timeout_slack: float = LOCAL_TIMEOUT_SLACK,
    ) -> None:
        self.known_hosts = (known_hosts or DEFAULT_KNOWN_HOSTS).expanduser()
        self.connect_timeout = connect_timeout
        self.keepalive_interval = keepalive_interval
        self.keepalive_deadline = keepalive_deadline
        self.local_timeout_slack = local_timeout_slack
        self._connections: dict[str, Connection] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._running: dict[int, _Running] = {}
        self._interrupted = threading.Event()

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
                config=_config(),
                connect_timeout=int(self.connect_timeout),
                connect_kwargs={
                    # No key named: the agent and the default keys (look_for_keys); fabric 3.2 iterates
                    # key_filename, so it must be a list, never None (fabric/connection.py).
                    "key_filename": [str(k) for k in host.key_files or ([host.key_file] if host.key_file else [])],
                    **({"sock": _proxy_sock(host)} if host.proxy_command else {}),
                    "look_for_keys": not (host.key_files or host.key_file),
                    "allow_agent": not (host.key_files or host.key_file),
                    "banner_timeout": self.connect_timeout,
                    "auth_timeout": self.connect_timeout,
                },
            )
            if host.verify_host_key:
                _load_known_hosts(conn.client.get_host_keys(), self.known_hosts)
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
                raise TransportError(_connect_error(host, err), _connect_cause(err)) from None
            except (OSError, EOFError) as err:
                conn.close()
                raise TransportError(_connect_error(host, err), _connect_cause(err)) from None
            # paramiko writes small packets; with Nagle's algorithm and the peer's delayed ACK each
            # command then waits ~40 ms for nothing. OpenSSH's own client sets TCP_NODELAY too.
            with contextlib.suppress(OSError, AttributeError):
                conn.client.get_transport().sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Traffic on an idle connection between steps keeps NAT and firewall state alive; the
            # keepalives that expect an answer are sent while a command runs (``_exec``).
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
        return self._run_payload(host, stdin_payload(script, env, announce_pgid=True), sudo=sudo, timeout=timeout)

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
        payload = guarded_payload(check, script, marker, env, announce_pgid=True)
        whole = self._run_payload(host, payload, sudo=sudo, timeout=timeout)
        check_out, check_code, run_out = split_guarded(whole.stdout, marker)
        check_err, _, run_err = split_guarded(whole.stderr, marker)
        if check_code is None:  # the check itself timed out or the connection dropped during it
            return Result(host.name, whole.exit_code, check_out, check_err, whole.duration,
                          timed_out=whole.timed_out, error=whole.error, cause=whole.cause), None  # fmt: skip
        check = Result(host.name, check_code, check_out, check_err, whole.duration if check_code == 0 else 0.0)
        if check_code == 0:
            return check, None
        return check, Result(
            host.name, whole.exit_code, run_out, run_err, whole.duration, timed_out=whole.timed_out, error=whole.error,
            cause=whole.cause,
        )

    def _run_payload(self, host: Host, payload: bytes, *, sudo: bool, timeout: float | None) -> Result:
        started = time.monotonic()
        if self._interrupted.is_set():
            return Result(host.name, -1, error=_INTERRUPTED, cause="interrupted")
        try:
            conn = self.connection(host)
        except TransportError as err:
            return Result(host.name, -1, duration=time.monotonic() - started, error=str(err), cause=err.cause)
        try:
            return self._exec(host, conn, sudo, payload, timeout, started)
        except (OSError, paramiko.SSHException, EOFError) as err:
            self._drop(host)
            if self._interrupted.is_set():
                return Result(host.name, -1, duration=time.monotonic() - started, error=_INTERRUPTED, cause="interrupted")
            return Result(
                host.name, -1, duration=time.monotonic() - started, cause="lost",
                error=f"connection to {host.name} ({host.address}) lost during the command: {err or type(err).__name__}"
                " — check that the host is up and sshd runs, then run the same command again",
            )  # fmt: skip

    def _exec(
        self, host: Host, conn: Connection, sudo: bool, payload: bytes, timeout: float | None, started: float
    ) -> Result:
        transport = conn.client.get_transport()
        if transport is None or not transport.is_active():
            raise EOFError("the SSH transport is closed")
        chan = transport.open_session(timeout=self.connect_timeout)
        out: list[bytes] = []
        err: list[bytes] = []
        running = _Running(host, sudo)
        deadline: float | None = None
        stopped_at: float | None = None  # when the step was stopped at its deadline
        stopped_code = -1  # kill_group_command's exit status: 124 after SIGTERM, 137 after SIGKILL
        heard = time.monotonic()  # when the host last showed it is alive
        probe: threading.Event | None = None  # a keepalive waiting for its answer
        probe_sent = 0.0
        status_at: float | None = None

        def timed_out() -> Result:
            return result(stopped_code, timed_out=True, cause="timeout")

        def result(code: int, **kw) -> Result:
            stderr = _text(err)
            _, stderr = split_pgid(stderr)
            return Result(host.name, code, _text(out), stderr, time.monotonic() - started, **kw)

        def lost(why: str = "sshd stopped or the host went down") -> Result:
            self._drop(host)
            if self._interrupted.is_set():
                return result(-1, error=_INTERRUPTED, cause="interrupted")
            return result(
                -1, cause="lost",
                error=f"connection to {host.name} ({host.address}) lost during the command ({why}) — check that the "
                "host is up and sshd runs, then run the same command again",
            )  # fmt: skip

        def drain() -> bool:
            got = False
            while chan.recv_ready():
                out.append(chan.recv(65536))
                got = True
            while chan.recv_stderr_ready():
                err.append(chan.recv_stderr(65536))
                got = True
            if got and running.pgid is None:
                running.pgid, _ = split_pgid(_text(err))
            return got

        key = id(chan)
        with self._guard:
            self._running[key] = running
        try:
            chan.exec_command(session_command(sudo=sudo))
            deadline = self._step_deadline(timeout) if timeout else None
            chan.sendall(payload)
            chan.shutdown_write()
            while True:
                now = time.monotonic()
                if drain():
                    heard = now
                if chan.exit_status_ready():
                    if stopped_at is not None:
                        drain()
                        return timed_out()
                    if chan.exit_status == -1:  # closed without an exit status
                        if not self._interrupted.is_set() and chan.eof_received and _answers(transport):
                            # The connection is fine (sshd sent EOF and answers a keepalive): the
                            # script (bash, exec'd by the login shell) died of a signal, and sshd sent
                            # only exit-signal, which paramiko 5.1.0 drops (channel.py
                            # ``_handle_request`` knows "exit-status" only).
                            return result(-1, error=f"the command on {host.name} was killed by a signal (no exit status)")
                        return lost()
                    # Stop at the exit status; read what is still on its way, briefly (a process left
                    # in the background keeps stdout open, and must not hold the step until its timeout).
                    status_at = status_at or now
                    if chan.eof_received or now - status_at >= DRAIN_AFTER_EXIT:
                        drain()
                        break
                    select.select([chan], [], [], 0.05)
                    continue
                if chan.closed or not transport.is_active():
                    return lost()
                if stopped_at is not None and now - stopped_at >= self.local_timeout_slack:
                    return timed_out()  # stopped, but the channel never closed: a timeout all the same
                if deadline is not None and stopped_at is None and now >= deadline:
                    # Past the step's timeout: stop its process group on the host, then read what
                    # it printed last until the channel closes.
                    stopped_code = self._kill_group(host, transport, running)
                    stopped_at = time.monotonic()
                    continue
                if probe is not None and probe.is_set():
                    heard, probe = now, None
                elif probe is not None and now - probe_sent >= self.keepalive_deadline:
                    return lost(f"it stopped answering keepalives for {self.keepalive_deadline:g}s: host frozen or paused?")
                elif probe is None and now - heard >= self.keepalive_interval:
                    probe, probe_sent = _send_keepalive(transport), now
                if chan.eof_received:
                    chan.status_event.wait(0.1)  # EOF came first; the exit status is on its way
                else:
                    select.select([chan], [], [], 0.25)
        finally:
            with self._guard:
                self._running.pop(key, None)
            chan.close()
        code = chan.exit_status
        if self._interrupted.is_set() and code != 0:
            return result(code, error=_INTERRUPTED, cause="interrupted")
        return result(code)

    def _step_deadline(self, timeout: float) -> float:
        """When a step that starts now has overrun ``timeout`` (the fault tests make this clock run fast)."""
        return time.monotonic() + timeout

    def interrupt(self) -> list[str]:
        """Stop every command in flight: kill its process group on its host over a second channel
        of the same connection (SIGTERM, then SIGKILL after 2 s). Returns the hosts it stopped.
        Commands started afterwards are refused; their hosts report "interrupted"."""
        self._interrupted.set()
        deadline = time.monotonic() + 1.0
        while True:  # a command that just started may not have announced its group yet
            with self._guard:
                pending = list(self._running.values())
            if all(r.pgid is not None for r in pending) or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        stoppers = []
        for running in pending:
            with self._guard:
                conn = self._connections.get(running.host.name)
            transport = conn.client.get_transport() if conn is not None else None
            if running.pgid is None or transport is None or not transport.is_active():
                continue
            thread = threading.Thread(target=self._kill_group, args=(running.host, transport, running), daemon=True)
            thread.start()
            stoppers.append((running.host.name, thread))
        # One deadline for all of them (they run at once): a host gone dark cannot hold Ctrl-C for
        # the whole connect timeout; its stopper thread is a daemon and dies with labctl.
        until = time.monotonic() + INTERRUPT_WAIT
        for _, thread in stoppers:
            thread.join(timeout=max(0.0, until - time.monotonic()))
        return [name for name, _ in stoppers]

    def run_after_interrupt(self, host: Host, script: str, *, sudo: bool = True, timeout: float = 8.0) -> Result:
        """Once interrupted, ``run`` refuses new commands; this runs one clean-up script (a step's
        ``on_interrupt``). Stopping a command drops its connection (``_exec``), so this reconnects
        when it must; a dead host can take the connect timeout, which is why the caller
        (labctl.interrupt_hooks) runs it in a thread and stops waiting after its own bound."""
        started = time.monotonic()
        try:
            conn = self.connection(host)
        except TransportError as err:
            return Result(host.name, -1, duration=time.monotonic() - started, error=str(err), cause=err.cause)
        try:
            return self._exec(host, conn, sudo, stdin_payload(script, None, announce_pgid=True), timeout, started)
        except (OSError, paramiko.SSHException, EOFError) as err:
            return Result(host.name, -1, duration=time.monotonic() - started, error=str(err) or type(err).__name__, cause="lost")

    def _kill_group(self, host: Host, transport: paramiko.Transport, running: _Running) -> int:
        """Stop ``running``'s process group; its exit status (124 SIGTERM was enough, 137 SIGKILL was
        needed), or -1 when it could not be stopped (no group announced yet, connection gone)."""
        if running.pgid is None:
            return -1
        with contextlib.suppress(OSError, paramiko.SSHException, EOFError):
            chan = transport.open_session(timeout=self.connect_timeout)
            try:
                chan.exec_command(kill_group_command(running.pgid, sudo=running.sudo))
                chan.shutdown_write()
                if chan.status_event.wait(self.connect_timeout):
                    return chan.exit_status
            finally:
                chan.close()
        return -1

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
            message = (
                f"{host.name}: could not install the upload at {remote_path}: "
                f"{result.error or result.stderr_tail(3) or f'exit {result.exit_code}'}"
            )
            if result.failure_cause:  # the host, not the file, is the problem: keep the cause's exit code
                raise TransportError(message, result.failure_cause)
            raise OSError(message)

    def close(self) -> None:
        with self._guard:
            conns = list(self._connections.values())
            self._connections.clear()
        for conn in conns:
            conn.close()


def _config() -> Config:
    """A Fabric config of the connection's own. Not one shared by every connection: fabric 3.2.3's
    ``Connection.__init__`` assigns ``self.inline_ssh_env``, which is no attribute of the class and
    so lands in the config and makes invoke 2.2 rebuild its merged data (invoke/config.py
    ``_modify`` → ``merge``); another thread opening a connection at that moment read an empty
    config ("No attribute or config key found for 'gateway'", seen on the 20-host benchmark)."""
    # Do not let ~/.ssh/config rewrite addresses, users or keys behind the lab spec's back.
    return Config(overrides={"load_ssh_configs": False, "run": {"hide": True, "warn": True}})


def _text(chunks: list[bytes]) -> str:
    return b"".join(chunks).decode("utf-8", "replace")


def _sh_quote(value: str) -> str:

    return shlex.quote(value)


_INTERRUPTED = "interrupted: labctl stopped its command on the host (Ctrl-C or SIGTERM)"


def _answers(transport: paramiko.Transport, within: float = 2.0) -> bool:
    """The connection is alive: the host answers a keepalive (a dying transport may still look
    active for a moment: paramiko closes its channels before it marks itself inactive)."""
    return transport.is_active() and _send_keepalive(transport).wait(within)


def _send_keepalive(transport: paramiko.Transport) -> threading.Event:
    """Ask the host for an answer (any answer: OpenSSH refuses unknown requests, and a refusal is an
    answer); the event is set when it comes. paramiko's global_request waits without a deadline, so
    it waits in its own thread and the caller applies the deadline."""
    answered = threading.Event()

    def ask() -> None:
        with contextlib.suppress(Exception):
            transport.global_request("keepalive@openssh.com", wait=True)
            if transport.is_active():
                answered.set()

    threading.Thread(target=ask, name="labctl-keepalive", daemon=True).start()
    return answered
