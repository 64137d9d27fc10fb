"""The runner: walks a Plan over a Transport — guarded, parallel across hosts, logged, resumable.

For each step, in plan order (or, when playbooks do not depend on each other, as soon as the steps
it waits for have finished: labctl.schedule, labctl.plan_graph):

1. a provider step goes to ``on_provider_step`` (the Vagrant/ssh provider brings hosts up); the
   hosts it hands back (a ``ProviderResult``) join the runner's, since only the provider knows their
   addresses. Every host the remote steps target must have one before the first remote step runs;
2. a step the profile skips (``skip_reason``, e.g. offline) is reported skipped, loudly;
3. on every host the step targets, at the same time (a thread pool; one SSH connection per host,
   reused): upload the step's artefacts (first, so that a ``kubectl diff`` check compares against
   this run's file), then run the ``check``; exit 0 means already done → skipped with the step's
   done reason. Otherwise run its script (sudo when declared, the step's timeout, retries with
   exponential backoff when the step has ``retries``);
4. ``capture`` stores the script's stdout as a fact (with ``capture_check``, the check's stdout when
   the check said "done"); later steps that list it in ``uses`` get it as ``LABCTL_<NAME>`` on stdin.

A failure lets the step finish on its other hosts, then stops the run with ``StepFailed``: step,
host, command, exit code (or timeout / lost connection), the last lines of stderr, the hosts that
succeeded and the log path. Re-running resumes: finished steps are skipped by their checks.

Everything a host prints goes to the run log (one 0600 file per run); secrets — facts captured by
``secret`` steps and the contents of secret artefacts — read ``<redacted:NAME>`` there and on the
console. Ctrl-C closes the connections, writes the log and re-raises KeyboardInterrupt.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from labctl.artefacts import Artefact
from labctl.context import fact_variable
from labctl.durations import format_duration
from labctl.interrupt_hooks import InterruptHooks
from labctl.logs import Redactor, RunLog, indent
from labctl.plan import HostCommands, Plan, PlannedStep
from labctl.run_report import HostOutcome, ProviderResult, RunnerError, RunReport, StepFailed, StepOutcome
from labctl.schedule import overlaps, run_overlapping, serial_from_env
from labctl.transport.base import Host, Result, Transport

STDERR_TAIL_LINES = 12



@dataclass
class _HostRun:
    outcome: HostOutcome
    command: str = ""  # the script that failed (for StepFailed)
    result: Result | None = None
    fact: str | None = None
    timeout: float | None = None


class Runner:
    def __init__(
        self,
        transport: Transport,
        hosts: Mapping[str, Host],
        *,
        log_path: Path,
        artefacts: Mapping[str, Artefact] | None = None,
        console=None,
        on_provider_step: Callable[[PlannedStep], ProviderResult | None] | None = None,
        max_workers: int | None = None,
        retry_backoff: float = 2.0,
        retry_max_wait: float = 30.0,
        serial: bool | None = None,
    ) -> None:
        self.transport = transport
        self.hosts = dict(hosts)
        self.log_path = Path(log_path)
        self.artefacts = dict(artefacts or {})
        self.on_provider_step = on_provider_step
        self.max_workers = max_workers
        self.retry_backoff = retry_backoff
        self.retry_max_wait = retry_max_wait
        # Playbooks on disjoint hosts overlap (labctl.schedule); serial: the file order, one step at a time.
        self.serial = serial_from_env() if serial is None else serial
        if console is None:
            from rich.console import Console

            console = Console(highlight=False)
        self.console = console
        self.redact = Redactor()
        self._print_lock = threading.Lock()
        self._log: RunLog | None = None
        self._in_flight_by_thread: dict[int, list[Future[_HostRun]]] = {}
        self.on_interrupt = InterruptHooks()  # the steps' on_interrupt scripts owed after a Ctrl-C

    @property
    def _in_flight(self) -> list[Future[_HostRun]]:
        """The host runs not yet finished. Overlapping playbooks run steps in several threads at once:
        each step's thread keeps its own list, and an interrupt sees them all."""
        return [f for futures in list(self._in_flight_by_thread.values()) for f in futures]

    @_in_flight.setter
    def _in_flight(self, futures: list[Future[_HostRun]]) -> None:
        self._in_flight_by_thread[threading.get_ident()] = futures

    # ---- output
    def _say(self, text: str, style: str | None = None) -> None:
        from rich.text import Text

        with self._print_lock:
            self.console.print(Text(self.redact(text), style=style or ""), highlight=False, soft_wrap=True)

    def _logw(self, text: str) -> None:
        if self._log is not None:
            self._log.write(text)

    # ---- the run
    def run(self, plan: Plan, facts: dict[str, str] | None = None) -> RunReport:
        """Run every step of ``plan``. ``facts`` (captured by earlier runs or steps) is updated in place."""
        facts = facts if facts is not None else {}
        self._validate_artefacts(plan)
        if not any(s.kind == "provider" for s in plan.steps):
            self._validate_hosts(plan)  # nothing can add a host later: refuse before anything runs
        secret_facts = {s.capture for s in plan.steps if s.secret and s.capture}
        for name in secret_facts & facts.keys():
            self.redact.add(name, facts[name])
        for step in plan.steps:
            for name in step.upload:
                if self.artefacts[name].secret:
                    self.redact.add(name, self.artefacts[name].content)

        self._log = RunLog(self.log_path, self.redact)
        started = time.monotonic()
        report = RunReport(steps=[], duration=0.0, log_path=self.log_path, facts=facts)
        self._logw(
            f"labctl run: lab {plan.lab!r}, provider {plan.provider}, {len(plan.steps)} steps\n"
            + self._host_lines(self.hosts.values())
        )
        workers = self.max_workers or min(64, max([len(s.commands) for s in plan.steps] + [1]))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="labctl-host")
        try:
            hosts_validated = False
            overlapping = not self.serial and overlaps(plan)
            if overlapping:  # ready steps of independent playbooks at the same time (labctl.schedule)
                run_overlapping(self, plan, facts, report, started)
            for number, step in enumerate(() if overlapping else plan.steps, 1):
                if step.kind != "provider" and not hosts_validated:
                    # After the provider steps (they bring the hosts), before any host is touched.
                    self._validate_hosts(plan)
                    hosts_validated = True
                outcome, failures = self._run_step(pool, step, number, len(plan.steps), facts)
                report.steps.append(outcome)
                if failures:
                    report.duration = time.monotonic() - started
                    err = self._step_failed(step, outcome, failures, report)
                    self._logw(f"RUN FAILED after {format_duration(report.duration)}\n{err}")
                    self._say(f"==> Failed after {format_duration(report.duration)} (log: {self.log_path})", "bold red")
                    raise err
            report.duration = time.monotonic() - started
            self._logw(f"run finished in {format_duration(report.duration)}\n{report.summary()}")
            self._say(report.summary())
            self._say(f"==> Finished in {format_duration(report.duration)}", "bold green")
            return report
        except KeyboardInterrupt:
            report.duration = time.monotonic() - started
            self._logw(f"INTERRUPTED (Ctrl-C or SIGTERM) after {format_duration(report.duration)}")
            self._stop_remote_work()
            with contextlib.suppress(Exception):
                self._say(f"==> Interrupted after {format_duration(report.duration)} (log: {self.log_path})", "bold red")
            with contextlib.suppress(Exception):
                self.transport.close()
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            self._log.close()

    def _stop_remote_work(self) -> None:
        """Interrupted: stop the command running on each host (the transport kills its process group
        there), wait a little for the hosts to report, and log each one as interrupted."""
        interrupt = getattr(self.transport, "interrupt", None)
        stopped: list[str] = []
        if interrupt is not None:
            with contextlib.suppress(Exception):
                stopped = interrupt()
        self._logw(f"stopped the running command on: {', '.join(stopped) or 'no host (nothing was running)'}")
        self.run_interrupt_hooks()  # right after the kill: the step that started the work is dead
        until = time.monotonic() + 3  # one bound for all: a host gone dark must not hold up Ctrl-C
        for future in self._in_flight:
            with contextlib.suppress(Exception):
                run = future.result(timeout=max(0.0, until - time.monotonic()))
                self._logw(f"{run.outcome.host}: {run.outcome.status} ({run.outcome.reason or 'finished'})")

    def run_interrupt_hooks(self) -> None:
        """Interrupted: run each started step's ``on_interrupt`` where its run started (in parallel,
        bounded; labctl.interrupt_hooks). Also for a Ctrl-C after ``run`` returned (lifecycle.create)."""
        if not self.on_interrupt.pending():
            return
        log = self._log
        reopened = log is None or log._file.closed  # after run() returned: append to the same log
        if reopened:
            log = RunLog(self.log_path, self.redact)
        try:
            with contextlib.suppress(Exception):
                self.on_interrupt.run_all(self.transport, log.write, lambda text, style: self._say(text, style))
        finally:
            if reopened:
                log.close()

    @staticmethod
    def _host_lines(hosts) -> str:  # type: ignore[no-untyped-def]
        return "".join(f"host {h.name}: {h.user}@{h.address}:{h.port}\n" for h in hosts)

    def _validate_hosts(self, plan: Plan) -> None:
        """Refuse before any remote step runs (nothing half-done) when a host has no address."""
        missing_hosts = sorted({c.host for s in plan.steps if s.kind == "remote" for c in s.commands} - self.hosts.keys())
        if missing_hosts:
            raise RunnerError(
                f"the plan targets {', '.join(missing_hosts)} but the provider gave no address for "
                f"{'it' if len(missing_hosts) == 1 else 'them'} — check the node names in lab.yaml and `labctl status`"
            )

    def _validate_artefacts(self, plan: Plan) -> None:
        """Refuse before anything runs when a step uploads an artefact that was not rendered."""
        for step in plan.steps:
            for name in step.upload:
                if name not in self.artefacts:
                    raise RunnerError(f"step {step.id} uploads artefact {name!r}, which was not rendered for this run")

    def _run_step(
        self, pool: ThreadPoolExecutor, step: PlannedStep, number: int, total: int, facts: dict[str, str]
    ) -> tuple[StepOutcome, list[_HostRun]]:
        started = time.monotonic()
        self._say(f"==> Step: {step.title}", "bold")
        self._logw(f"=== step {number}/{total} {step.id}: {step.title}")

        if step.kind == "provider":
            if self.on_provider_step is None:
                reason = "handled by the provider"
                self._say(f"    skipped ({reason})", "yellow")
                outcomes = [HostOutcome(c.host, "skipped", reason) for c in step.commands]
            else:
                given = self.on_provider_step(step) or ProviderResult()
                self.hosts.update(given.hosts)
                if given.hosts:
                    self._logw(self._host_lines(given.hosts.values()))
                if given.skipped_reason:
                    self._say(f"    skipped ({given.skipped_reason})", "yellow")
                    outcomes = [HostOutcome(c.host, "skipped", given.skipped_reason) for c in step.commands]
                else:
                    outcomes = [HostOutcome(c.host, "done", "", time.monotonic() - started) for c in step.commands]
                    self._say(f"    done ({format_duration(time.monotonic() - started)})", "green")
            self._logw(f"provider step {step.id}: {outcomes[0].status if outcomes else 'no hosts'}")
            return StepOutcome(step.id, step.title, outcomes, time.monotonic() - started), []

        if step.skip_reason:
            self._say(f"    SKIPPED on every host: {step.skip_reason}", "bold yellow")
            self._logw(f"skipped by the profile: {step.skip_reason}")
            outcomes = [HostOutcome(c.host, "skipped", step.skip_reason) for c in step.commands]
            return StepOutcome(step.id, step.title, outcomes, time.monotonic() - started), []

        missing = [f for f in step.uses if f not in facts]
        if missing:
            runs = [
                _HostRun(
                    HostOutcome(c.host, "failed", f"fact {missing[0]} unknown"),
                    command="",
                    result=Result(c.host, -1, error=self._missing_fact_message(step, missing)),
                )
                for c in step.commands
            ]
            for r in runs:
                self._say(f"    {r.outcome.host}: FAILED ({r.outcome.reason})", "bold red")
            return StepOutcome(step.id, step.title, [r.outcome for r in runs], time.monotonic() - started), runs

        env = {fact_variable(f): facts[f] for f in step.uses}
        futures: list[Future[_HostRun]] = [
            pool.submit(self._run_on_host, step, cmd, self.hosts[cmd.host], env) for cmd in step.commands
        ]
        self._in_flight = futures
        if getattr(self.console, "is_terminal", False):
            # A live spinner on a terminal; host lines print above it as each host finishes.
            with self.console.status(f"{step.title} — {len(futures)} host(s)"):
                runs = [f.result() for f in futures]
        else:
            runs = [f.result() for f in futures]
        self._in_flight = []
        for run in runs:
            if run.fact is not None and step.capture:
                facts[step.capture] = run.fact
                break  # several hosts capturing one fact: the first host in plan order wins
        outcome = StepOutcome(step.id, step.title, [r.outcome for r in runs], time.monotonic() - started)
        return outcome, [r for r in runs if r.outcome.status == "failed"]

    def _missing_fact_message(self, step: PlannedStep, missing: list[str]) -> str:
        return (
            f"it uses fact {missing[0]!r}, which no step captured in this run (the step that captures it was "
            "skipped by its check and does not print the fact from its check: give it `capture_check: true`)"
        )

    # ---- one host
    def _run_on_host(self, step: PlannedStep, cmd: HostCommands, host: Host, env: dict[str, str]) -> _HostRun:
        started = time.monotonic()
        if cmd.on_interrupt:  # owed from now on, unless the check says the step was already done
            self.on_interrupt.started(step, host, cmd.on_interrupt)
        try:
            run = self._host_steps(step, cmd, host, env, started)
            if cmd.on_interrupt and run.outcome.status == "skipped":
                self.on_interrupt.not_started(step, host)
            return run
        except Exception as err:  # a transport or upload failure on one host must not hide the others
            reason = str(err) or type(err).__name__
            self._logw(f"{host.name}: {step.id}: error: {reason}")
            self._say(f"    {host.name}: FAILED ({reason})", "bold red")
            return _HostRun(
                HostOutcome(host.name, "failed", reason, time.monotonic() - started),
                command=cmd.run,
                result=Result(host.name, -1, error=reason, cause=getattr(err, "cause", "")),
            )

    def _host_steps(
        self, step: PlannedStep, cmd: HostCommands, host: Host, env: dict[str, str], started: float
    ) -> _HostRun:
        guarded = getattr(self.transport, "run_guarded", None)

        def upload() -> None:
            # Before the check, not after it: apply steps check with `kubectl diff` against the
            # uploaded file, so the check must see this run's artefact, not the previous run's.
            for name in step.upload:
                art = self.artefacts[name]
                t0 = time.monotonic()
                self.transport.put(host, art.content, art.dest, mode=art.mode, sudo=step.sudo)
                self._logw(f"{host.name}: upload {art.describe()} in {time.monotonic() - t0:.2f}s")

        if cmd.check and guarded is not None:
            # One round trip for check-then-run.
            def attempt() -> tuple[Result | None, Result | None]:
                upload()
                return self._guarded(guarded, step, host, cmd, env)
        else:
            def attempt() -> tuple[Result | None, Result | None]:
                upload()
                check = self._exec(step, host, cmd.check, env, "check") if cmd.check else None
                if check is not None and (check.ok or check.error or check.timed_out):
                    return check, None
                return check, self._exec(step, host, cmd.run, env, "run")

        # Every attempt checks first, so a retry never redoes what a failed attempt managed to finish.
        check, result = self._with_retries(step, host, attempt)
        if check is not None and check.ok:
            fact = check.stdout.strip() if step.capture and step.capture_check else None
            outcome = HostOutcome(host.name, "skipped", step.done_reason, time.monotonic() - started)
            self._say(f"    {host.name}: skipped ({step.done_reason})", "yellow")
            return _HostRun(outcome, fact=fact)
        if result is None:  # the check could not even run (timeout, lost connection): a failure, not "not done"
            assert check is not None
            return self._failed(step, host, cmd.check, check, started)
        if not result.ok:
            return self._failed(step, host, cmd.run, result, started)
        if step.reboot:  # e.g. the NVIDIA driver: labctl.reboot reboots, waits, and the check must then pass
            from labctl.reboot import reboot_and_wait

            back = reboot_and_wait(self.transport, host, deadline_s=step.timeout, say=self._say)
            if back is None and cmd.check:
                back = self._exec(step, host, cmd.check, env, "check after the reboot")
                back = None if back.ok else back
            if back is not None:
                return self._failed(step, host, cmd.check or "reboot", back, started)
        duration = time.monotonic() - started
        self._say(f"    {host.name}: done ({format_duration(duration)})", "green")
        fact = result.stdout.strip() if step.capture else None
        return _HostRun(HostOutcome(host.name, "done", "", duration), fact=fact)

    def _guarded(self, guarded, step: PlannedStep, host: Host, cmd: HostCommands, env: dict[str, str]):
        check, result = guarded(host, cmd.check, cmd.run, sudo=step.sudo, timeout=step.timeout, env=env)
        self._record(step, host, cmd.check, env, "check", check)
        if result is not None:
            self._record(step, host, cmd.run, env, "run (same round trip as the check)", result)
        return check, result

    def _with_retries(self, step: PlannedStep, host: Host, attempt: Callable[[], tuple[Result | None, Result | None]]):
        """``attempt`` returns (check, run); it succeeded when the check passed or the run did."""

        def succeeded(pair: tuple[Result | None, Result | None]) -> bool:
            check, run = pair
            return bool((check is not None and check.ok) or (run is not None and run.ok))

        def interrupted(pair: tuple[Result | None, Result | None]) -> bool:
            return any(r is not None and r.cause == "interrupted" for r in pair)

        attempts = step.retries + 1
        if attempts <= 1:
            return attempt()
        from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt, wait_exponential

        def announce(state: RetryCallState) -> None:
            check, run = state.outcome.result()
            res = run or check
            wait = state.next_action.sleep if state.next_action else 0
            why = _failure_reason(res, step.timeout) if res is not None else "failed"
            self._say(
                f"    {host.name}: attempt {state.attempt_number}/{attempts} failed ({why}); retrying in {wait:.0f}s",
                "yellow",
            )

        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=self.retry_backoff, max=self.retry_max_wait),
            # An interrupted attempt is not retried: labctl is stopping.
            retry=retry_if_result(lambda pair: not succeeded(pair) and not interrupted(pair)),
            before_sleep=announce,
            retry_error_callback=lambda state: state.outcome.result(),
            reraise=False,
        )
        return retrying(attempt)

    def _exec(self, step: PlannedStep, host: Host, script: str, env: dict[str, str], phase: str) -> Result:
        result = self.transport.run(host, script, sudo=step.sudo, timeout=step.timeout, env=env)
        self._record(step, host, script, env, phase, result)
        return result

    def _record(self, step: PlannedStep, host: Host, script: str, env: dict[str, str], phase: str, result: Result) -> None:
        is_check = phase == "check"
        secret_output = step.secret and bool(step.capture) and (not is_check or step.capture_check)
        if secret_output and result.ok:
            # Registered before anything is logged, so the value never reaches the log or console.
            self.redact.add(step.capture, result.stdout.strip())
        head = (
            f"--- {step.id} on {host.name}: {phase}"
            f" [{'sudo' if step.sudo else 'login user'}, timeout {step.timeout}s"
            + (f", facts {', '.join(sorted(env))}" if env else "")
            + "]"
        )
        status = f"exit {result.exit_code}"
        if result.timed_out:
            status = f"TIMED OUT after {step.timeout}s (exit {result.exit_code})"
        if result.error:
            status = f"ERROR: {result.error}"
        parts = [head, "$ " + script.rstrip().replace("\n", "\n  "), f"{status} in {result.duration:.2f}s"]
        if result.stdout:
            if secret_output:
                parts.append(f"stdout: <secret capture {step.capture}: not logged>")
            else:
                parts.append("stdout:\n" + indent(result.stdout))
        if result.stderr:
            parts.append("stderr:\n" + indent(result.stderr))
        self._logw("\n".join(parts))

    def _failed(self, step: PlannedStep, host: Host, script: str, result: Result, started: float) -> _HostRun:
        reason = _failure_reason(result, step.timeout)
        if result.cause == "interrupted":
            self._say(f"    {host.name}: interrupted (its command was stopped on the host)", "bold red")
        else:
            self._say(f"    {host.name}: FAILED ({reason})", "bold red")
        return _HostRun(
            HostOutcome(host.name, "failed", reason, time.monotonic() - started),
            command=script,
            result=result,
            timeout=step.timeout,
        )

    def _step_failed(self, step: PlannedStep, outcome: StepOutcome, failures: list[_HostRun], report: RunReport):
        first = failures[0]
        result = first.result or Result(first.outcome.host, -1, error=first.outcome.reason)
        return StepFailed(
            step_id=step.id,
            title=step.title,
            host=first.outcome.host,
            command=self.redact(first.command),
            exit_code=None if result.error or result.timed_out else result.exit_code,
            stderr_tail=self.redact(result.stderr_tail(STDERR_TAIL_LINES)),
            log_path=self.log_path,
            succeeded_hosts=tuple(o.host for o in outcome.outcomes if o.status != "failed"),
            failed_hosts=tuple(f.outcome.host for f in failures),
            timed_out=result.timed_out,
            timeout=float(step.timeout),
            error=self.redact(result.error),
            cause=result.failure_cause,
            report=report,
        )


def _failure_reason(result: Result, timeout: float) -> str:
    if result.timed_out:
        return f"timed out after {timeout:g}s"
    if result.error:
        return result.error
    return f"exit {result.exit_code} after {format_duration(result.duration)}"
