"""What a run reports: each host's outcome per step, the run's summary, and the errors that end a run
(StepFailed: a complete diagnosis of the failed step; RunnerError: the plan cannot run as given).
Apart from the runner so that the schedule, the CLI and tests read them without the runner's machinery."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from labctl.durations import format_duration
from labctl.errors import ExitCode, LabctlError, exit_code_for_cause
from labctl.transport.base import Host

COMMAND_PREVIEW_LINES = 8


@dataclass
class HostOutcome:
    host: str
    status: Literal["done", "skipped", "failed"]
    reason: str = ""
    duration: float = 0.0


@dataclass
class StepOutcome:
    step_id: str
    title: str
    outcomes: list[HostOutcome]
    duration: float

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


@dataclass
class RunReport:
    steps: list[StepOutcome]
    duration: float
    log_path: Path
    facts: dict[str, str] = field(default_factory=dict, repr=False)  # may hold secrets: never print it

    def summary(self) -> str:
        done = sum(s.count("done") for s in self.steps)
        skipped = sum(s.count("skipped") for s in self.steps)
        failed = sum(s.count("failed") for s in self.steps)
        lines = [
            f"Summary: {len(self.steps)} steps in {format_duration(self.duration)} — "
            f"{done} host runs done, {skipped} skipped, {failed} failed"
        ]
        width = max((len(s.step_id) for s in self.steps), default=0)
        for s in self.steps:
            counts = ", ".join(f"{s.count(k)} {k}" for k in ("done", "skipped", "failed") if s.count(k))
            lines.append(f"  {s.step_id:<{width}}  {format_duration(s.duration):>7}  {counts or 'no hosts'}")
        lines.append(f"Log: {self.log_path}")
        return "\n".join(lines)


class StepFailed(LabctlError):
    """A step failed on at least one host. ``str()`` is a complete diagnosis: no need to re-run.

    ``exit_code`` is labctl's, from the cause (errors.CAUSE_EXIT_CODES: step failed, unreachable,
    login refused, timeout, interrupted); the remote command's own code is ``remote_exit_code`` and
    appears in the message only."""

    exit_code: int = ExitCode.STEP_FAILED

    def __init__(
        self,
        *,
        step_id: str,
        title: str,
        host: str,
        command: str,
        exit_code: int | None,
        stderr_tail: str,
        log_path: Path,
        succeeded_hosts: tuple[str, ...] = (),
        failed_hosts: tuple[str, ...] = (),
        timed_out: bool = False,
        timeout: float | None = None,
        error: str = "",
        cause: str = "",
        report: RunReport | None = None,
    ) -> None:
        self.step_id = step_id
        self.title = title
        self.host = host
        self.command = command
        self.remote_exit_code = exit_code
        self.cause = "timeout" if timed_out else cause
        self.exit_code = exit_code_for_cause(self.cause)
        self.stderr_tail = stderr_tail
        self.log_path = log_path
        self.succeeded_hosts = succeeded_hosts
        self.failed_hosts = failed_hosts or (host,)
        self.timed_out = timed_out
        self.timeout = timeout
        self.error = error
        self.report = report
        super().__init__(self._message())

    def _message(self) -> str:
        if self.timed_out:
            what = f"timed out after {self.timeout:g}s" if self.timeout else "timed out"
        elif self.error:
            what = self.error
        else:
            what = f"exit code {self.remote_exit_code}"
        lines = [f"step {self.step_id} ({self.title}) failed on {self.host}: {what}"]
        others = [h for h in self.failed_hosts if h != self.host]
        if others:
            lines.append(f"  also failed on: {', '.join(others)}")
        if self.command:
            cmd = self.command.rstrip().splitlines()
            lines.append("  command:")
            lines += ["    " + line for line in cmd[:COMMAND_PREVIEW_LINES]]
            if len(cmd) > COMMAND_PREVIEW_LINES:
                lines.append(f"    … ({len(cmd) - COMMAND_PREVIEW_LINES} more lines in the log)")
        if self.stderr_tail.strip():
            lines.append("  last lines of stderr:")
            lines += ["    " + line for line in self.stderr_tail.rstrip().splitlines()]
        lines.append(f"  succeeded on: {', '.join(self.succeeded_hosts) or 'no host'}")
        lines.append(f"  full log: {self.log_path}")
        lines.append("  fix the cause and run the same command again: finished steps are skipped by their checks")
        return "\n".join(lines)


@dataclass(frozen=True)
class ProviderResult:
    """What ``on_provider_step`` may return: the hosts the provider brought up (name → Host), and
    the reason when it had nothing to do (printed as the step's "skipped (...)")."""

    hosts: Mapping[str, Host] = field(default_factory=dict)
    skipped_reason: str = ""


class RunnerError(LabctlError):
    """The plan cannot run with what the runner was given (a host or artefact is missing)."""

    exit_code = 2
