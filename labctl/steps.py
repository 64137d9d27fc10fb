"""What a plan is made of: a step with its rendered commands per host. Data only: the plan builds
them (labctl.plan), the provider describes its own step (labctl.providers), the runner runs them.
Split from labctl/plan.py so that the providers need not import the plan that imports them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class HostCommands:
    host: str
    check: str
    run: str
    # Run on this host when labctl is interrupted (Ctrl-C, SIGTERM) after this step's run started
    # here: stops what the run left behind on purpose, e.g. a detached job (labctl.interrupt_hooks).
    on_interrupt: str = ""


@dataclass(frozen=True)
class PlannedStep:
    id: str  # "<playbook>.<step>", unique in a plan
    playbook: str
    title: str
    purpose: str
    kind: Literal["provider", "remote"]
    commands: tuple[HostCommands, ...]
    sudo: bool = True
    timeout: int = 300
    retries: int = 0
    network: bool = False
    capture: str = ""
    capture_check: bool = False
    secret: bool = False
    uses: tuple[str, ...] = ()
    upload: tuple[str, ...] = ()
    done_reason: str = "already done"
    skip_reason: str = ""  # set when the whole step is skipped by the profile (offline)
    reboot: bool = False  # the runner reboots each host after its run and waits for it (runner.reboot_and_wait)

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(c.host for c in self.commands)
