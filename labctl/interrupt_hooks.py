"""A step's ``on_interrupt:`` script: what Ctrl-C (or SIGTERM) must also stop on a host.

Killing the running step's process group (the transport's ``interrupt``) stops what a step is
doing in the foreground. Some steps start work that is meant to outlive them — 26-image-pull's
detached ``setsid`` job keeps downloading images while the cluster is built — and that work would
otherwise go on after the user pressed Ctrl-C. Such a step declares an ``on_interrupt`` script; the
runner records each host where the step's run started (not where its check said "already done"),
and when the run is interrupted it runs the script there: on every such host at once, each bounded
by ``HOOK_SECONDS``, so a dead host cannot hold up Ctrl-C.

Only an interrupt runs them. A run that fails (StepFailed) leaves that work alone on purpose: the
re-run after the fix picks it up (the image pull's start step finds its job still running).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from labctl.steps import PlannedStep
from labctl.transport.base import Host, Result

# Each hook's own timeout on the host, and how long the runner waits for all of them together
# (they run in parallel) before it gives up on the hosts that have not answered.
HOOK_SECONDS = 5.0
WAIT_SLACK = 1.0


@dataclass(frozen=True)
class _Pending:
    step: PlannedStep
    host: Host
    script: str


class InterruptHooks:
    """The ``on_interrupt`` scripts owed, per (step, host) in the order their runs started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[tuple[str, str], _Pending] = {}

    def started(self, step: PlannedStep, host: Host, script: str) -> None:
        with self._lock:
            self._pending[(step.id, host.name)] = _Pending(step, host, script)

    def not_started(self, step: PlannedStep, host: Host) -> None:
        """The step's check said "already done" on ``host``: its run did not start there."""
        with self._lock:
            self._pending.pop((step.id, host.name), None)

    def pending(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._pending)

    def run_all(
        self,
        transport: object,
        log: Callable[[str], None],
        say: Callable[[str, str], None],
        *,
        seconds: float = HOOK_SECONDS,
    ) -> dict[tuple[str, str], Result | None]:
        """Run every owed hook once (in parallel, bounded); None for a host that did not answer in
        time. The transport's ``run_after_interrupt`` (SSHTransport: it refuses new commands once
        interrupted) when it has one, else its ``run``."""
        with self._lock:
            owed = list(self._pending.values())
            self._pending.clear()
        if not owed:
            return {}
        run = getattr(transport, "run_after_interrupt", None) or transport.run  # type: ignore[attr-defined]
        results: dict[tuple[str, str], Result | None] = {(p.step.id, p.host.name): None for p in owed}

        def one(p: _Pending) -> None:
            try:
                results[(p.step.id, p.host.name)] = run(p.host, p.script, sudo=p.step.sudo, timeout=seconds)
            except Exception as err:  # one host's failure must not hide the others
                results[(p.step.id, p.host.name)] = Result(p.host.name, -1, error=str(err) or type(err).__name__)

        threads = [threading.Thread(target=one, args=(p,), daemon=True, name="labctl-on-interrupt") for p in owed]
        for t in threads:
            t.start()
        deadline = time.monotonic() + seconds + WAIT_SLACK
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        for p in owed:
            res = results[(p.step.id, p.host.name)]
            with contextlib.suppress(Exception):
                log(_log_line(p, res, seconds))
            with contextlib.suppress(Exception):
                say(_console_line(p, res, seconds), "bold red" if res is None or not res.ok else "yellow")
        return results


def _log_line(p: _Pending, res: Result | None, seconds: float) -> str:
    head = f"--- {p.step.id} on {p.host.name}: on_interrupt"
    if res is None:
        return f"{head}: no answer within {seconds + WAIT_SLACK:g}s"
    status = f"ERROR: {res.error}" if res.error else f"exit {res.exit_code}"
    body = "".join(f"\n{name}:\n  " + text.rstrip().replace("\n", "\n  ") for name, text in (("stdout", res.stdout), ("stderr", res.stderr)) if text)
    return f"{head}: {status} in {res.duration:.2f}s{body}"


def _console_line(p: _Pending, res: Result | None, seconds: float) -> str:
    where = f"    {p.host.name}: {p.step.id} on interrupt"
    if res is None:
        return f"{where}: no answer within {seconds + WAIT_SLACK:g}s (it may still be running there)"
    if not res.ok:
        return f"{where}: FAILED ({res.error or f'exit {res.exit_code}'}; see the log)"
    first = next((line for line in res.stdout.splitlines() if line.strip()), "done")
    return f"{where}: {first}"
