"""Local transport (invoke): steps that run on the machine labctl runs on, such as the provider's.

Same contract as the SSH transport: bash with the script and its facts on standard input, the
step timeout enforced, and ``sudo`` honoured only when labctl is not already root.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Mapping

from invoke import Context
from invoke.exceptions import CommandTimedOut

from labctl.transport.base import Host, Result
from labctl.transport.script import is_timeout, remote_command, stdin_payload


class LocalTransport:
    def __init__(self) -> None:
        self._context = Context()

    def run(
        self,
        host: Host,
        script: str,
        *,
        sudo: bool = True,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        started = time.monotonic()
        command = remote_command(sudo=sudo and os.geteuid() != 0, timeout=timeout)
        try:
            res = self._context.run(
                command,
                in_stream=io.StringIO(stdin_payload(script, env).decode("utf-8")),
                hide=True,
                warn=True,
                pty=False,
                echo_stdin=False,
                # invoke's own timeout is a safety net; coreutils `timeout` in the command ends the script first.
                timeout=timeout + 15 if timeout else None,
            )
        except CommandTimedOut as err:
            return Result(host.name, -1, err.result.stdout, err.result.stderr, time.monotonic() - started, timed_out=True)
        duration = time.monotonic() - started
        timed_out = bool(timeout) and is_timeout(res.exited, res.stderr)
        return Result(host.name, res.exited, res.stdout, res.stderr, duration, timed_out=timed_out)

    def put(self, host: Host, content: bytes, remote_path: str, *, mode: int = 0o644, sudo: bool = True) -> None:
        directory = os.path.dirname(remote_path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        fd = os.open(remote_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, mode)
            os.write(fd, content)
        finally:
            os.close(fd)

    def close(self) -> None:
        return None
