"""`labctl create/destroy/status/doctor/verify/ssh/kubeconfig/halt/resume`: the lab's life on this
machine. Click only: each command is one call into labctl.lifecycle, status, power, destroy or lab."""

from __future__ import annotations

from pathlib import Path

import click

from labctl.cli_common import (
    classroom_plan,
    fail,
    lab_file_option,
    lab_of,
    lab_source,
    print_plan,
)
from labctl.completion import complete_node, complete_step


@click.command()
@lab_file_option
@click.option("--dry-run", is_flag=True, help="Print the plan (same as `labctl plan`) and touch nothing.")
@click.option(
    "--output", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Format of --dry-run."
)
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A warm cache (`labctl cache fill DIR`): packages, images and models come from it.")
@click.option("--only", "only", multiple=True, metavar="STEP_GLOB", shell_complete=complete_step,
              help="Run only the steps whose id matches (repeatable; globs like 'nfs-server.*'); the others are "
                   "reported SKIPPED. The VMs are always brought up. See `labctl plan` for the ids.")
@click.option("--merge-kubeconfig", is_flag=True,
              help="Also merge the lab's kubeconfig into ~/.kube/config (or $KUBECONFIG) as context labctl-NAME.")
@click.option("--no-snapshot", is_flag=True,
              help="Do not save the `ready` snapshot at the end (it takes up to the VMs' memory in disk space).")
def create(lab_file: Path | None, dry_run: bool, output: str, cache_dir: Path | None, only: tuple[str, ...],
           merge_kubeconfig: bool, no_snapshot: bool) -> None:
    """Create the lab: preflight, Vagrantfile, VMs, SSH steps, manifests, verify, summary.

    Re-running finishes a half-built lab: every finished step is skipped by its check.
    The kubeconfig lands in the lab's state folder (0600), its server at the master's lab address.

    \b
    Example:
      labctl create --dry-run   # works on any machine
      labctl create --merge-kubeconfig
      labctl create -f tiny.yaml --only 'node-prep.write-hosts-file' --only 'nfs-server.*'
    """
    if dry_run:
        print_plan(lab_file, output, cache_dir)
        return
    from labctl import lifecycle
    from labctl.kubeconfig import user_kubeconfig_path
    from labctl.lab import Console, Lab

    spec, _plan = classroom_plan(lab_file, cache_dir)  # the lock and the cache are checked before anything starts
    cache = None
    if cache_dir is not None:
        from labctl.cache import inspect_cache

        cache = inspect_cache(cache_dir, spec)
    lab = Lab.of(spec, lab_source(lab_file))
    merge_into = user_kubeconfig_path() if merge_kubeconfig else None
    console = Console()
    lifecycle.create(lab, console, only=only, merge_kubeconfig_into=merge_into, cache=cache)
    # A known-good state to go back to (`labctl snapshot restore ready`), only of a whole, checked lab.
    if not no_snapshot and not only and spec.provider.type != "ssh":
        from labctl import snapshots

        snapshots.save(lab, console, snapshots.READY, force=True)


@click.command()
@lab_file_option
@click.option("--keep-data", is_flag=True, help="Keep the NFS VM and its export: the downloaded models survive (chats live on a worker: see README).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def destroy(lab_file: Path | None, keep_data: bool, yes: bool) -> None:
    """Tear the lab down; safe to run twice.

    \b
    Example:
      labctl destroy --keep-data --yes
    """
    from labctl import destroy as destroying
    from labctl.lab import Console, lab_exists

    lab = lab_of(lab_file)
    # Only a lab with VMs (or, for provider ssh, a kubeconfig) is worth a question; a lab that never
    # existed is cleaned up (a state folder `render` left) without asking anything.
    if not yes and lab_exists(lab):
        what = "every VM except the NFS VM" if keep_data else "every VM, the lab's state folder and its secrets"
        try:
            sure = click.confirm(f"Destroy lab {lab.spec.name!r} ({what})?")
        except click.Abort:  # end of input: no terminal, nobody to answer
            fail(f"destroy lab {lab.spec.name!r}: nobody answered the question (no terminal) — run `labctl destroy --yes`")
        if not sure:
            raise click.Abort()
    destroying.destroy(lab, Console(), keep_data=keep_data)


@click.command()
@lab_file_option
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(lab_file: Path | None, output: str) -> None:
    """Show VMs, nodes, pods and endpoints in one table.

    \b
    Example:
      labctl status --output json
    """
    from labctl.status import format_status, lab_status

    lab = lab_of(lab_file, quiet=output == "json")
    report = lab_status(lab)
    if output == "json":
        import json

        click.echo(json.dumps(report.to_dict(lab.spec), indent=2))
    else:
        click.echo(format_status(report, lab.spec), nl=False)


@click.command()
@lab_file_option
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def doctor(lab_file: Path | None, output: str) -> None:
    """Check that this host can run the lab (create runs the same checks first); exit 4 on a failure.

    Vagrant, the provider (VirtualBox or libvirt/KVM), /etc/vbox/networks.conf, the lab subnet not
    already routed, free memory and disk, CPU virtualization. Each failure says why and how to fix it.

    \b
    Example:
      labctl doctor -f lab.yaml
    """
    from labctl import doctor as preflight

    lab = lab_of(lab_file, quiet=output == "json")
    checks = preflight.run_doctor(lab.spec, lab.state_dir)
    click.echo(preflight.report_json(checks) if output == "json" else preflight.format_report(checks), nl=output == "json")
    failed = [c for c in checks if c.failed]
    if failed:  # the CLI's error handler turns it into exit 4
        raise preflight.PreflightFailed(f"{len(failed)} of {len(checks)} checks failed — fix the FAIL lines above")


@click.command()
@lab_file_option
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def verify(lab_file: Path | None, output: str) -> None:
    """Check the running lab end to end; exit 7 when any check fails.

    VMs running, nodes Ready, key pods ready, Open WebUI /health on its LoadBalancer address, MetalLB
    address assigned, Ollama's version and the models lab.yaml asks for.

    \b
    Example:
      labctl verify && echo "lab healthy"
    """
    import json

    from labctl.status import VerifyFailed
    from labctl.status import verify as verify_lab

    lab = lab_of(lab_file, quiet=output == "json")
    report, checks = verify_lab(lab)
    if output == "json":
        click.echo(json.dumps(report.to_dict(lab.spec), indent=2))
    else:
        for c in checks:
            click.echo(f"{'ok  ' if c.ok else 'FAIL'}  {c.name:<18} {c.detail}")
    failed = [c.name for c in checks if not c.ok]
    if failed:  # the CLI's error handler turns it into exit 7
        raise VerifyFailed(f"verify: {len(failed)} of {len(checks)} checks failed: {', '.join(failed)}")


@click.command(context_settings={"ignore_unknown_options": True})
@lab_file_option
@click.argument("node", shell_complete=complete_node)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def ssh(lab_file: Path | None, node: str, command: tuple[str, ...]) -> None:
    """Log in to a node (or run COMMAND there) with the lab's SSH settings.

    \b
    Example:
      labctl ssh master
      labctl ssh master -- sudo kubectl --kubeconfig /etc/kubernetes/admin.conf get pods -A
    """
    import os

    from labctl.lab import ssh_argv

    argv = ssh_argv(lab_of(lab_file, quiet=True), node, command)
    os.execvp(argv[0], argv)


@click.command()
@lab_file_option
@click.option("--merge", is_flag=True, help="Merge it into ~/.kube/config (or $KUBECONFIG) as context labctl-NAME.")
def kubeconfig(lab_file: Path | None, merge: bool) -> None:
    """Print the path of the lab's kubeconfig (never its content: it holds the admin key).

    \b
    Example:
      export KUBECONFIG=$(labctl kubeconfig)
      labctl kubeconfig --merge && kubectl --context labctl-llm-lab get nodes
    """
    from labctl.kubeconfig import merge_kubeconfig_file, user_kubeconfig_path

    lab = lab_of(lab_file, quiet=True)
    if not lab.kubeconfig.exists():
        fail(f"{lab.kubeconfig} does not exist yet — run `labctl create` (it fetches the kubeconfig at the end)")
    if merge:
        target = merge_kubeconfig_file(lab, user_kubeconfig_path())
        click.echo(f"merged into {target} as context {lab.context}", err=True)
    click.echo(str(lab.kubeconfig))


@click.command()
@lab_file_option
def halt(lab_file: Path | None) -> None:
    """Shut the lab's VMs down (laptop battery); `labctl resume` brings them back.

    \b
    Example:
      labctl halt && labctl resume
    """
    from labctl import power
    from labctl.lab import Console

    power.halt(lab_of(lab_file), Console())


@click.command()
@lab_file_option
def resume(lab_file: Path | None) -> None:
    """Start a halted lab again and re-check what a reboot can undo (swap stays off).

    \b
    Example:
      labctl resume && labctl status
    """
    from labctl import power
    from labctl.lab import Console

    power.resume(lab_of(lab_file), Console())
