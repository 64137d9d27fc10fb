"""Shell completion of values (Click's ``shell_complete`` callbacks): the lab's node names for
`labctl ssh`, its step ids for `labctl create --only`. `labctl completion SHELL` prints the script
that calls these back; snapshot names for `labctl snapshot restore|delete`.

Completion runs on every Tab press: nothing here may print, fail loudly or touch a host. A lab.yaml
that does not load (half typed, broken) completes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from labctl.spec import LabSpec

DEFAULT_FILE = "lab.yaml"  # as labctl.cli: -f, else ./lab.yaml, else the built-in seed lab


def completion_spec(ctx: click.Context) -> LabSpec | None:
    """The lab the command line being completed refers to; None when it does not load."""
    from labctl.spec import LabSpec

    lab_file = ctx.params.get("lab_file")
    if lab_file is None and Path(DEFAULT_FILE).exists():
        lab_file = Path(DEFAULT_FILE)
    try:
        return LabSpec.load(lab_file) if lab_file is not None else LabSpec.default()
    except Exception:  # a half-typed or broken lab.yaml must not break the shell
        return None


def complete_node(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    spec = completion_spec(ctx)
    return [n.name for _, n in spec.all_nodes() if n.name.startswith(incomplete)] if spec else []


def complete_step(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """Step ids of the lab's plan, and one 'playbook.*' glob per playbook (what --only accepts)."""
    spec = completion_spec(ctx)
    if spec is None:
        return []
    from labctl.plan import build_plan

    try:
        steps = build_plan(spec, include_provider=False).steps
    except Exception:  # a playbook error shows on the real run, not on Tab
        return []
    ids = [f"{book}.*" for book in dict.fromkeys(s.playbook for s in steps)] + [s.id for s in steps]
    return [i for i in ids if i.startswith(incomplete)]


def complete_snapshot(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """The lab's snapshot names. Asks Vagrant (a second or two); logs nowhere; nothing without VMs."""
    spec = completion_spec(ctx)
    if spec is None or spec.provider.type == "ssh":
        return []
    from labctl.lab import Lab

    try:
        provider = Lab.of(spec).provider(Path(os.devnull))
        if not provider.vagrantfile.exists():
            return []
        names = {name for listed in provider.snapshot_list().values() for name in listed}
    except Exception:  # completion never breaks the shell
        return []
    return sorted(n for n in names if n.startswith(incomplete))
