"""`labctl snapshot ...`: save and restore the whole lab. Click only; the work is in labctl/snapshots.py."""

from __future__ import annotations

import json
from pathlib import Path

import click

from labctl.cli_common import lab_file_option as _file_option
from labctl.cli_common import lab_of as _lab
from labctl.completion import complete_snapshot


@click.group("snapshot")
def snapshot_group() -> None:
    """Save the whole lab (every VM) under one name and put it back in about a minute.

    `labctl create` saves a snapshot named `ready` after its final check (unless --no-snapshot).

    \b
    Example:
      labctl snapshot save before-lab-3
      labctl snapshot restore before-lab-3   # a student's broken lab, back as it was
      labctl snapshot restore ready          # back to the freshly created lab
    """


@snapshot_group.command("save")
@_file_option
@click.argument("name")
@click.option("--force", is_flag=True, help="Replace a snapshot of the same name.")
def snapshot_save(lab_file: Path | None, name: str, force: bool) -> None:
    """Save every VM of the lab as snapshot NAME (VMs keep running).

    \b
    Example:
      labctl snapshot save before-lab-3
    """
    from labctl import lifecycle, snapshots

    snapshots.save(_lab(lab_file), lifecycle.Console(), name, force=force)


@snapshot_group.command("restore")
@_file_option
@click.argument("name", shell_complete=complete_snapshot)
@click.option("--only", "only", multiple=True, metavar="STEP_GLOB",
              help="After the restore, run these `create` steps (instead of the final verification), as "
                   "`labctl create --only` would.")
def snapshot_restore(lab_file: Path | None, name: str, only: tuple[str, ...]) -> None:
    """Put every VM back to snapshot NAME, set the clocks, wait for the kubelet and etcd, then verify
    the lab from this machine and print `create`'s summary.

    \b
    Example:
      labctl snapshot restore ready
    """
    from labctl import lifecycle, snapshots

    snapshots.restore(_lab(lab_file), lifecycle.Console(), name, only=only)


@snapshot_group.command("list")
@_file_option
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def snapshot_list(lab_file: Path | None, output: str) -> None:
    """List the lab's snapshots and the VMs that have each.

    \b
    Example:
      labctl snapshot list --output json
    """
    from labctl import lifecycle, snapshots

    lab = _lab(lab_file, quiet=output == "json")
    listed = snapshots.list_snapshots(lab, lifecycle.Console())
    if output == "json":
        click.echo(json.dumps(listed, indent=2))
        return
    if not listed:
        click.echo(f"lab {lab.spec.name!r} has no snapshots — `labctl snapshot save NAME` makes one")
        return
    vms = sorted({n.name for _, n in lab.spec.all_nodes()})
    for name, machines in listed.items():
        whole = "all VMs" if sorted(machines) == vms else f"only {', '.join(machines)} (incomplete)"
        click.echo(f"{name:<30} {whole}")


@snapshot_group.command("delete")
@_file_option
@click.argument("name", shell_complete=complete_snapshot)
def snapshot_delete(lab_file: Path | None, name: str) -> None:
    """Delete snapshot NAME from every VM that has it (frees its disk space).

    \b
    Example:
      labctl snapshot delete before-lab-3
    """
    from labctl import lifecycle, snapshots

    snapshots.delete(_lab(lab_file), lifecycle.Console(), name)
