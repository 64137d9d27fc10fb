"""``labctl halt`` and ``labctl resume``: stop a lab's VMs and bring them back (Vagrant providers)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from labctl.durations import format_duration
from labctl.errors import LifecycleError
from labctl.lab import Console, Lab, ssh_transport

# Steps `labctl resume` re-runs after `vagrant up`: swap comes back after a halt on some boxes.
RESUME_STEPS = ("node-prep.disable-swap",)


def halt(lab: Lab, console: Console) -> float:
    from labctl.lablock import LabLock

    if lab.spec.provider.type == "ssh":
        raise LifecycleError("provider ssh: the machines are not labctl's to stop — shut them down yourself")
    log_path = lab.new_log("halt")
    with LabLock(lab.state_dir, lab.spec.name, "labctl halt"):
        provider = lab.provider(log_path, console)
        if not provider.vagrantfile.exists():
            raise LifecycleError(f"lab {lab.spec.name!r} has no VMs ({provider.vagrantfile} is missing) — nothing to halt")
        console.say(f"==> Halting the VMs of lab {lab.spec.name!r}", "bold")
        seconds = provider.halt()
    console.say(f"==> Halted in {format_duration(seconds)} — `labctl resume` brings the lab back", "bold green")
    return seconds


def resume(lab: Lab, console: Console, *, transport_factory: Callable[[], Any] | None = None) -> float:
    """`vagrant up` again, then re-run the steps a reboot can undo (swap comes back on some boxes)."""
    from labctl import lifecycle
    from labctl.lablock import LabLock
    from labctl.plan import build_plan
    from labctl.runner import Runner

    if lab.spec.provider.type == "ssh":
        raise LifecycleError("provider ssh: the machines are not labctl's to start — boot them yourself")
    started = time.monotonic()
    log_path = lab.new_log("resume")
    with LabLock(lab.state_dir, lab.spec.name, "labctl resume"):
        provider = lab.provider(log_path, console)
        if not provider.vagrantfile.exists():
            raise LifecycleError(f"lab {lab.spec.name!r} was never created ({provider.vagrantfile} is missing) — run `labctl create`")
        plan = build_plan(lab.spec, state_dir=lab.state_dir)
        again = replace(plan, steps=tuple(s for s in plan.steps if s.kind == "provider" or s.id in RESUME_STEPS))
        transport = transport_factory() if transport_factory else ssh_transport()
        try:
            Runner(
                transport, {}, log_path=log_path, console=console.rich,
                on_provider_step=lambda step: lifecycle.bring_up_hosts(lab, provider, console, step)[0],
            ).run(again)
        finally:
            transport.close()
    total = time.monotonic() - started
    console.say(f"==> Lab {lab.spec.name!r} resumed in {format_duration(total)} — `labctl status` shows its health", "bold green")
    return total
