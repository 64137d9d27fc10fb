"""`labctl class ...`: roster mode on a shared cluster. Click only; the work is in labctl/classroom.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from labctl.cli_common import load_spec

KUBECONFIG_HELP = "The cluster's admin kubeconfig (its content is never printed or copied)."


def _folder(name: str, folder: Path | None) -> Path:
    return folder if folder is not None else Path(f"class-{name}")


def _expiry(epoch: int | None) -> str:
    if epoch is None:
        return "-"
    left = epoch - time.time()
    stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))
    return f"{stamp} (expired)" if left <= 0 else f"{stamp} ({left / 3600:.0f} h left)"


def _existing_class_options(f):  # type: ignore[no-untyped-def]
    """The options that find a class `class create` made (status and delete share them)."""
    for option in reversed([
        click.option("--name", "class_name", required=True, help="Class name given to `class create`."),
        click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="The class folder. Default: ./class-NAME"),
        click.option("--kubeconfig", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="Admin kubeconfig. Default: the one `class create` used."),
        click.option("--context", default=None, help="Context in the kubeconfig."),
    ]):
        f = option(f)
    return f


@click.group("class")
def class_group() -> None:
    """Give every student of a roster a namespace, quota and kubeconfig on a shared cluster.

    \b
    Example:
      labctl class create --roster students.txt --name cs101 --kubeconfig admin.conf
      labctl class status --name cs101
      labctl class delete --name cs101
    """


@class_group.command("create")
@click.option("--roster", required=True, type=click.Path(path_type=Path), help="One student id per line ('#' comments).")
@click.option("--kubeconfig", required=True, type=click.Path(dir_okay=False, path_type=Path), help=KUBECONFIG_HELP)
@click.option("--context", default=None, help="Context in the kubeconfig. Default: its current context.")
@click.option("--name", "class_name", required=True, help="Class name; namespaces are NAME-<student>.")
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the students' kubeconfigs go (0700 folder, 0600 files). Default: ./class-NAME")
@click.option("--cpu", default=None, help="CPU per student (e.g. 2 or 1500m). Default: the cluster's share.")
@click.option("--memory", default=None, help="Memory per student (e.g. 4Gi). Default: the cluster's share.")
@click.option("--storage", default="50Gi", show_default=True, help="Volume storage per student.")
@click.option("--token-hours", default=72, show_default=True, type=int, help="Life of each student's token.")
@click.option("--renew-tokens", is_flag=True, help="Issue new tokens even where the current ones are still valid.")
@click.option("--with-apps", is_flag=True, help="Also deploy the apps layer of lab.yaml into every namespace.")
@click.option("-f", "--file", "lab_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="lab.yaml for --with-apps. Default: ./lab.yaml if it exists, else the seed lab.")
@click.option("--dry-run", is_flag=True, help="Print every object and file it would make; create nothing.")
def class_create(
    roster: Path,
    kubeconfig: Path,
    context: str | None,
    class_name: str,
    folder: Path | None,
    cpu: str | None,
    memory: str | None,
    storage: str,
    token_hours: int,
    renew_tokens: bool,
    with_apps: bool,
    lab_file: Path | None,
    dry_run: bool,
) -> None:
    """Create (or extend) a class: per student a namespace, ResourceQuota, LimitRange, Role and kubeconfig.

    Re-running is safe: existing students keep their objects and valid tokens, new roster lines are added.

    \b
    Example:
      labctl class create --roster students.txt --name cs101 --kubeconfig admin.conf --dry-run
      labctl class create --roster students.txt --name cs101 --kubeconfig admin.conf --token-hours 48
    """
    from labctl import classroom

    spec = load_spec(lab_file) if with_apps else None
    result = classroom.create(
        roster,
        kubeconfig=kubeconfig,
        context=context,
        class_name=class_name,
        folder=_folder(class_name, folder),
        cpu=cpu,
        memory=memory,
        storage=storage,
        token_hours=token_hours,
        renew_tokens=renew_tokens,
        apps_spec=spec,
        dry_run=dry_run,
        echo=click.echo,
    )
    if result.others:
        click.echo(f"note: {len(result.others)} namespaces of this class are not in the roster: {', '.join(result.others)}"
                   " (kept; `labctl class delete` removes the whole class)")
    if dry_run:
        click.echo("dry run: nothing was created")
        return
    click.echo(
        f"class {class_name}: {len(result.students)} students ready; {len(result.new_tokens)} new kubeconfigs in "
        f"{result.folder}/ (0600) — hand each student their own file"
    )


@class_group.command("status")
@_existing_class_options
@click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def class_status(class_name: str, folder: Path | None, kubeconfig: Path | None, context: str | None, output: str) -> None:
    """One line per student: namespace, quota used, apps ready, token expiry.

    \b
    Example:
      labctl class status --name cs101
      labctl class status --name cs101 --output json | jq '.[] | select(.exists == false)'
    """
    from labctl import classroom

    rows = classroom.status(class_name, _folder(class_name, folder), kubeconfig=kubeconfig, context=context)
    if output == "json":
        click.echo(json.dumps([r.to_dict() for r in rows], indent=2))
        return
    header = f"{'STUDENT':<20} {'NAMESPACE':<30} {'CPU (req)':<14} {'MEMORY (req)':<18} {'APPS':<6} TOKEN EXPIRES"
    click.echo(header)
    for r in rows:
        ns = r.namespace if r.exists else f"{r.namespace} (missing)"
        click.echo(f"{r.student:<20} {ns:<30} {r.cpu:<14} {r.memory:<18} {r.apps:<6} {_expiry(r.token_expires)}")


@class_group.command("delete")
@_existing_class_options
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
def class_delete(class_name: str, folder: Path | None, kubeconfig: Path | None, context: str | None, dry_run: bool) -> None:
    """Remove what `class create` made: the class's labelled namespaces and its kubeconfig files. Nothing else.

    \b
    Example:
      labctl class delete --name cs101 --dry-run
      labctl class delete --name cs101
    """
    from labctl import classroom

    result = classroom.delete(class_name, _folder(class_name, folder), kubeconfig=kubeconfig, context=context,
                              dry_run=dry_run)
    verb = "would delete" if dry_run else "deleted"
    for ns in result.namespaces:
        click.echo(f"{verb} namespace {ns}")
    for f in result.files:
        click.echo(f"{verb} {f}")
    if not result.namespaces and not result.files:
        click.echo(f"class {class_name}: nothing to delete")
