"""Plans built by hand for the runner's unit tests (tests/test_runner*.py): one step on some hosts."""

from __future__ import annotations

from labctl.plan import HostCommands, Plan, PlannedStep


def step(
    step_id: str, run: str, *, hosts=("master", "worker1", "nfs"), check: str = "", on_interrupt: str = "", **kw
) -> PlannedStep:
    return PlannedStep(
        id=step_id,
        playbook=step_id.split(".")[0],
        title=kw.pop("title", f"Title of {step_id}"),
        purpose="",
        kind=kw.pop("kind", "remote"),
        commands=tuple(HostCommands(h, check, run, on_interrupt) for h in hosts),
        **kw,
    )


def plan(*steps: PlannedStep) -> Plan:
    return Plan(lab="t", provider="ssh", hosts=(), steps=steps)
