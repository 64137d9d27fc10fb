"""Overlapping playbooks: the Runner's steps started as soon as what they wait for has finished.

``labctl.plan_graph.step_dependencies`` says what each step waits for (its playbook's previous
step, the playbooks it is ``after``, the previous step on each of its hosts). Here those steps run:
every step whose dependencies are done starts at once, in its own thread, and runs exactly as in a
serial run (``Runner._run_step``: checks, retries, captures, log). Since a step waits for the last
earlier step on each of its hosts, two steps never run on one host at the same time, and each host
sees its steps in file order.

A failed step stops the run cleanly: nothing new starts, the steps already running on other hosts
finish and report (their outcomes are in the ``RunReport`` of the ``StepFailed``), and the steps that
never started are named in the log and on the console. Re-running resumes: every step's check skips
what finished. Provider steps (``vagrant up``) run in the calling thread, as they always did: Vagrant
is driven with signal handlers only the main thread may install, and they are barriers anyway.

``serial``: ``Runner(serial=True)`` or ``LABCTL_SERIAL_PLAYBOOKS=1`` runs the file order, one step
at a time, exactly as before the graph existed (benchmarks compare the two; a fallback for users).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

from labctl.durations import format_duration
from labctl.plan_graph import beside, step_dependencies

if TYPE_CHECKING:
    from labctl.plan import Plan
    from labctl.runner import Runner, RunReport

SERIAL_ENV = "LABCTL_SERIAL_PLAYBOOKS"


def serial_from_env() -> bool:
    return os.environ.get(SERIAL_ENV, "").strip().lower() not in ("", "0", "false", "no")


def overlaps(plan: Plan) -> bool:
    """Whether any two playbooks of ``plan`` may run at the same time (else the serial walk is the same)."""
    return any(beside(plan).values())


def run_ready(
    deps: list[frozenset[int]],
    run_step: Callable[[int], bool],
    *,
    inline: frozenset[int] = frozenset(),
    poll: float = 0.5,
) -> list[int]:
    """Run every step once its ``deps`` are done; ``run_step(i)`` returns True when step i failed.

    After a failure nothing new starts; the running steps finish. Returns the failed steps in the
    order they failed (empty: all ran). Steps in ``inline`` run in this thread (nothing else runs
    then: they are barriers). An exception in a step stops the run the same way, then is raised."""
    done: set[int] = set()
    started: set[int] = set()
    failed: list[int] = []
    running: dict[Future[bool], int] = {}
    error: BaseException | None = None
    pool = ThreadPoolExecutor(max_workers=max(1, len(deps)), thread_name_prefix="labctl-step")

    def ready() -> list[int]:
        return [i for i, need in enumerate(deps) if i not in started and need <= done]

    try:
        while True:
            if not failed and error is None:
                for i in ready():
                    if i not in inline:
                        started.add(i)
                        running[pool.submit(run_step, i)] = i
                if not running:
                    barrier = next(iter(ready()), None)  # only an inline step can be left
                    if barrier is None:
                        break  # all done
                    started.add(barrier)
                    if run_step(barrier):
                        failed.append(barrier)
                    else:
                        done.add(barrier)
                    continue
            elif not running:
                break
            # A timeout, so that Ctrl-C reaches this (the main) thread while steps run.
            finished, _ = wait(running, timeout=poll, return_when=FIRST_COMPLETED)
            for future in finished:
                i = running.pop(future)
                if future.exception() is not None:
                    error = error or future.exception()
                elif future.result():
                    failed.append(i)
                else:
                    done.add(i)
        if error is not None:
            raise error
        return failed
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


class PrefixedConsole:
    """The runner's console while playbooks overlap: each line starts with the playbook it belongs
    to (aligned), and the steps running at once share one spinner line (rich allows one live display
    at a time; a spinner per step would fail)."""

    def __init__(self, console: Any, width: int) -> None:
        self._console = console
        self._width = width
        self.local = threading.local()
        self._running: list[str] = []
        self._spinner: Any = None
        self._spinner_lock = threading.Lock()

    def label(self, playbook: str) -> None:
        """Lines printed from this thread from now on belong to ``playbook``."""
        self.local.prefix = f"{playbook:<{self._width}} | "

    def print(self, renderable: Any = "", *args: Any, **kwargs: Any) -> None:
        from rich.text import Text

        prefix = getattr(self.local, "prefix", "")
        if prefix:
            renderable = Text.assemble(Text(prefix, style="dim"), renderable if isinstance(renderable, Text) else str(renderable))
        self._console.print(renderable, *args, **kwargs)

    @contextlib.contextmanager
    def status(self, text: str, **_: Any) -> Iterator[None]:
        with self._spinner_lock:
            self._running.append(text)
            self._show()
        try:
            yield
        finally:
            with self._spinner_lock:
                self._running.remove(text)
                self._show()

    def _show(self) -> None:
        if not self._running:
            if self._spinner is not None:
                self._spinner.stop()
                self._spinner = None
            return
        text = "  ·  ".join(self._running)
        if self._spinner is None:
            self._spinner = self._console.status(text)
            self._spinner.start()
        else:
            self._spinner.update(text)

    def __getattr__(self, name: str) -> Any:  # is_terminal, file, width, ...: the real console's
        return getattr(self._console, name)


def run_overlapping(runner: Runner, plan: Plan, facts: dict[str, str], report: RunReport, started: float) -> None:
    """The Runner's walk of ``plan`` with overlapping playbooks (see the module docstring). Raises
    the first ``StepFailed`` (or RunnerError) after the steps already running have finished."""
    deps = step_dependencies(plan)
    names = {s.playbook for s in plan.steps}
    console = PrefixedConsole(runner.console, max(len(n) for n in names))
    pools: dict[str, ThreadPoolExecutor] = {}
    results: dict[int, tuple[Any, list[Any]]] = {}
    validated = threading.Lock()
    hosts_checked = False

    def pool_for(playbook: str) -> ThreadPoolExecutor:
        # One host pool per playbook, its threads labelled with it: the host lines they print carry
        # the playbook's name without the runner passing it along.
        if playbook not in pools:
            width = runner.max_workers or min(64, max(len(s.commands) for s in plan.steps if s.playbook == playbook))
            pools[playbook] = ThreadPoolExecutor(
                max_workers=width, thread_name_prefix=f"labctl-{playbook}", initializer=console.label, initargs=(playbook,)
            )
        return pools[playbook]

    def run_step(i: int) -> bool:
        nonlocal hosts_checked
        step = plan.steps[i]
        if step.kind != "provider":
            with validated:
                if not hosts_checked:  # after the provider steps (they bring the hosts), before any host is touched
                    runner._validate_hosts(plan)
                    hosts_checked = True
            console.label(step.playbook)
        outcome, failures = runner._run_step(pool_for(step.playbook), step, i + 1, len(plan.steps), facts)
        results[i] = (outcome, failures)
        report.steps.append(outcome)
        return bool(failures)

    runner.console = console
    try:
        failed = run_ready(deps, run_step, inline=frozenset(i for i, s in enumerate(plan.steps) if s.kind == "provider"))
    finally:
        runner.console = console._console
        for pool in pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
    # Only here, once no step thread is left to append (an interrupt leaves the list as it is).
    order = {s.id: n for n, s in enumerate(plan.steps)}
    report.steps.sort(key=lambda o: order.get(o.step_id, len(order)))  # completion order → plan order
    if not failed:
        return
    first = failed[0]
    outcome, failures = results[first]
    report.duration = time.monotonic() - started
    err = runner._step_failed(plan.steps[first], outcome, failures, report)
    ran = {o.step_id for o in report.steps}
    left = [s.id for s in plan.steps if s.id not in ran]
    runner._logw(f"RUN FAILED after {format_duration(report.duration)}\n{err}\nnot started: {', '.join(left) or 'nothing'}")
    # The other branches finished what they had started: the summary shows each step's hosts.
    runner._say(report.summary())
    if len(failed) > 1:  # another branch failed too, while the first failure waited for it
        also = ", ".join(plan.steps[i].id for i in failed[1:])
        runner._logw(f"also failed: {also}")
        runner._say(f"==> Also failed in another branch: {also} (details in the log)", "bold red")
    if left:
        runner._say(f"==> {len(left)} step(s) not started because {plan.steps[first].id} failed", "bold red")
    runner._say(f"==> Failed after {format_duration(report.duration)} (log: {runner.log_path})", "bold red")
    raise err

