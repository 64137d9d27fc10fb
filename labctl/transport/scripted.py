"""TEST DOUBLE: a scripted fake Transport for the runner's unit tests (no SSH, no processes).

Rules say what a script answers: the first rule whose ``match`` text occurs in the script (and
whose host, if given, is the host) and that has uses left produces the Result. A script no rule
matches exits 0 with no output. Every call is recorded, so tests assert what ran, where, with
which facts and in what order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from labctl.transport.base import Host, Result


@dataclass
class Rule:
    match: str
    host: str | None = None
    exit_code: int = 0
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    error: str = ""
    cause: str = ""
    delay: float = 0.0
    times: int | None = None  # None: unlimited


@dataclass
class Call:
    kind: str  # "run" or "put"
    host: str
    script: str = ""
    sudo: bool = True
    timeout: float | None = None
    env: dict[str, str] = field(default_factory=dict)
    path: str = ""
    content: bytes = b""
    mode: int = 0


class ScriptedTransport:
    """Fake transport for unit tests. Not for real use: it never touches a host."""

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.calls: list[Call] = []
        self.closed = False
        self._lock = threading.Lock()

    def on(self, match: str, **answer) -> ScriptedTransport:
        self.rules.append(Rule(match, **answer))
        return self

    def run(
        self,
        host: Host,
        script: str,
        *,
        sudo: bool = True,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Result:
        with self._lock:
            self.calls.append(Call("run", host.name, script, sudo, timeout, dict(env or {})))
            rule = self._match(host.name, script)
        if rule is None:
            return Result(host.name, 0)
        if rule.delay:
            time.sleep(rule.delay)
        return Result(
            host.name, rule.exit_code, rule.stdout, rule.stderr, rule.delay, timed_out=rule.timed_out, error=rule.error,
            cause=rule.cause,
        )

    def _match(self, host: str, script: str) -> Rule | None:
        for rule in self.rules:
            if rule.match in script and rule.host in (None, host) and rule.times != 0:
                if rule.times is not None:
                    rule.times -= 1
                return rule
        return None

    def put(self, host: Host, content: bytes, remote_path: str, *, mode: int = 0o644, sudo: bool = True) -> None:
        with self._lock:
            self.calls.append(Call("put", host.name, sudo=sudo, path=remote_path, content=content, mode=mode))

    def close(self) -> None:
        self.closed = True

    def runs(self, host: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.kind == "run" and host in (None, c.host)]


class ScriptedGuardedTransport(ScriptedTransport):
    """TEST DOUBLE like ScriptedTransport, also offering ``run_guarded`` (check-then-run in one call)
    the way SSHTransport does, so the runner's one-round-trip path is unit tested too."""

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
        checked = self.run(host, check, sudo=sudo, timeout=timeout, env=env)
        if checked.ok or checked.error or checked.timed_out:
            return checked, None
        return checked, self.run(host, script, sudo=sudo, timeout=timeout, env=env)
