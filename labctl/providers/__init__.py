"""Providers bring hosts into being and remove them: ``vagrant`` (virtualbox, libvirt) and ``ssh``.

This module only describes the provider step of a plan (pure); the providers themselves live in
``labctl.providers.vagrant`` and ``labctl.providers.ssh`` and are imported when a lab is created.
"""

from __future__ import annotations

from pathlib import Path

from labctl.spec import LabSpec
from labctl.steps import HostCommands, PlannedStep


def provider_step(spec: LabSpec, state_dir: Path | None) -> PlannedStep:
    from labctl.state import lab_dir

    folder = state_dir or lab_dir(spec.name)
    kind = spec.provider.type
    if kind == "ssh":
        names = ", ".join(n.name for _, n in spec.all_nodes())
        return PlannedStep(
            id="provider.connect",
            playbook="provider",
            title=f"Connect to the existing hosts ({names})",
            purpose="provider ssh: the machines already exist; labctl checks it can log in to each.",
            kind="provider",
            commands=(
                HostCommands(host="localhost", check="", run="ssh -o BatchMode=yes USER@HOST true  # for each host"),
            ),
            timeout=60,
        )
    vms = [n.name for _, n in spec.all_nodes()]
    return PlannedStep(
        id="provider.up",
        playbook="provider",
        title=f"Bring up {len(vms)} VMs with Vagrant ({kind})",
        purpose=(
            "Vagrant creates the VMs from the rendered Vagrantfile in the lab's state folder; "
            "`vagrant ssh-config` then tells labctl how to reach each one."
        ),
        kind="provider",
        commands=(
            HostCommands(
                host="localhost",
                check="vagrant status --machine-readable  # skip VMs already running",
                run=f"cd {_as_typed(folder)} && vagrant up --provider {kind} {' '.join(vms)}",
            ),
        ),
        timeout=spec.provider.boot_timeout * max(1, len(vms)),
    )


def _as_typed(folder: Path) -> str:
    """The folder as a person types it: ``~/...`` under the home folder, so a handout made on the
    instructor's machine reads right on every student's."""
    try:
        return "~/" + folder.relative_to(Path.home()).as_posix()
    except ValueError:
        return str(folder)
