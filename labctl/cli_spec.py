"""`labctl init/validate/versions/render/plan/handout/lock/schema`: the commands that read lab.yaml and
write text or files. No host, VM or cluster is touched. Click only: each command is one library call."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from labctl.cli_common import (
    DEFAULT_FILE,
    classroom_plan,
    fail,
    lab_file_option,
    load_spec,
    print_plan,
)


@click.command()
@click.option(
    "-o",
    "--output",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path(DEFAULT_FILE),
    show_default=True,
)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(out: Path, force: bool) -> None:
    """Write a commented lab.yaml with the seed lab's values, and lab.schema.json beside it.

    The first line of lab.yaml points editors (VS Code's YAML extension, any YAML language server)
    at lab.schema.json, so keys complete and mistakes show while typing — offline.

    \b
    Example:
      labctl init && $EDITOR lab.yaml && labctl validate
    """
    from labctl.schema import MODELINE, SCHEMA_FILE, schema_json
    from labctl.specfile import commented_lab_yaml

    if out.exists() and not force:
        fail(f"{out} already exists — pass --force to overwrite it, or -o to write elsewhere")
    out.write_text(commented_lab_yaml(modeline=MODELINE), encoding="utf-8")
    # Generated, never edited by hand: refreshed on every init so it matches this labctl.
    schema_file = out.parent / SCHEMA_FILE
    schema_file.write_text(schema_json(), encoding="utf-8")
    click.echo(f"wrote {out} and {schema_file} (for editors) — edit {out}, then `labctl validate -f {out}`")


@click.command()
@lab_file_option
def validate(lab_file: Path | None) -> None:
    """Check lab.yaml and print what it describes; exit 2 with one line per problem.

    \b
    Example:
      labctl validate -f classroom.yaml
    """
    spec = load_spec(lab_file)
    nodes = ", ".join(f"{n.name} {n.ip} ({n.cpus} CPU/{n.memory_mib} MiB)" for _, n in spec.all_nodes())
    click.echo(f"ok: lab {spec.name!r}, provider {spec.provider.type}: {nodes}; {spec.memory_mib()} MiB in all")
    if spec.apps.options.autoscaling:
        from labctl.capacity import autoscaling_fit

        click.echo(autoscaling_fit(spec).summary())


@click.command()
@lab_file_option
@click.option("--check", is_flag=True, help="Look every pinned download up upstream (needs internet).")
@click.option(
    "--upstream",
    envvar="LABCTL_UPSTREAM",
    metavar="URL",
    help="Send every --check lookup to this server instead (a mirror, or the tests' fake upstream).",
)
def versions(lab_file: Path | None, check: bool, upstream: str | None) -> None:
    """Print every pinned upstream version (one place: labctl/versions.py).

    With --check, look each pinned download up where the lab fetches it (manifest URLs, image tags,
    the box version, apt package versions) and print one table; exit 1 when one is missing or
    moved, 3 when no upstream answered (offline). Run it a week before class.

    \b
    Example:
      labctl versions
      labctl versions --check
    """
    if check:
        from labctl import upstream_check
        from labctl.registries import docker_hub_warning

        spec = load_spec(lab_file)
        rows = upstream_check.check(spec, base=upstream)
        code = upstream_check.exit_code(rows)
        if code != upstream_check.EXIT_OFFLINE:
            click.echo(upstream_check.table(rows))
        click.echo(upstream_check.summary(rows), err=code != 0)
        # The pins may all exist and a room still be refused them: Docker Hub's anonymous pull limit.
        if (hub := docker_hub_warning(spec)) is not None:
            click.echo(f"warning: {hub}", err=True)
        sys.exit(code)
    from labctl.versions import all_pins, expiry_note

    pins = all_pins()
    width = max(len(p.key) for p in pins)
    vwidth = max(len(p.version) for p in pins)
    for p in pins:
        expiry = expiry_note(p)
        click.echo(f"{p.key:<{width}}  {p.version:<{vwidth}}  checked {p.checked}  {p.what}" + (f" — {expiry}" if expiry else ""))


@click.command()
@lab_file_option
@click.option(
    "-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("rendered"), show_default=True
)
@click.option(
    "--with-secrets",
    is_flag=True,
    help="Put the lab's real secrets into apps.yaml (read from the lab's state folder, created there if the lab "
    "has none yet). Without it apps.yaml holds a visible placeholder and the state folder is not touched.",
)
def render(lab_file: Path | None, output_dir: Path, with_secrets: bool) -> None:
    """Render the Vagrantfile and the Kubernetes manifests into a folder to read or diff.

    Writes only into --output-dir (files 0600). The Open WebUI Secret in manifests/apps.yaml is a
    placeholder unless --with-secrets; `create` renders its own copy and never reads this folder.

    \b
    Example:
      labctl render -o /tmp/lab && less /tmp/lab/Vagrantfile
    """
    from labctl.render import PLACEHOLDER_SECRETS, render_all

    spec = load_spec(lab_file)
    if lab_file is None and Path(DEFAULT_FILE).exists():
        lab_file = Path(DEFAULT_FILE)
    source = str(lab_file) if lab_file is not None else "the built-in default lab"  # named in the file headers
    state_note = ""
    if with_secrets:
        # Real secrets are the lab's (a later `create` applies the same ones): the state folder is
        # the only place they live, so asking for them may have to create it.
        from labctl.secrets import secrets_path
        from labctl.state import lab_dir

        stored = secrets_path(lab_dir(spec.name))
        state_note = f"{stored} ({'read' if stored.exists() else 'created'})"
    written = render_all(spec, output_dir, source=source, secrets=None if with_secrets else PLACEHOLDER_SECRETS)
    for path in written:
        click.echo(f"wrote {path}")
    apps = output_dir / "manifests" / "apps.yaml"
    if with_secrets:
        click.echo(
            f"warning: {apps} holds this lab's real Open WebUI secret key (from {state_note}); the file is 0600 — "
            "do not commit it or hand it out",
            err=True,
        )
    else:
        click.echo(
            f"note: {apps} holds a placeholder secret key, not the lab's (no lab state was read or created); "
            "pass --with-secrets for the real one",
            err=True,
        )


@click.command()
@lab_file_option
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def plan(lab_file: Path | None, output: str) -> None:
    """Print every step of `create` and, per host, the exact commands it would run.

    \b
    Example:
      labctl plan --output json | jq '.steps[].id'
    """
    print_plan(lab_file, output)


@click.command()
@lab_file_option
@click.option("--format", "fmt", type=click.Choice(["md", "html"]), default="md", show_default=True)
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of stdout.")
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Include the warm-cache steps, as `create --cache DIR` would run them.")
def handout(lab_file: Path | None, fmt: str, out: Path | None, cache_dir: Path | None) -> None:
    """Write the workshop handout: every step of `create` with its exact commands per machine.

    \b
    Example:
      labctl handout --format html -o handout.html   # one file, prints well
    """
    from labctl.handout import render

    spec, plan_ = classroom_plan(lab_file, cache_dir)
    text = render(spec, plan_, fmt, cache_dir=cache_dir)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {out} ({len(plan_.steps)} steps)")


@click.command()
@lab_file_option
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also record the digests of what this warm cache holds.")
def lock(lab_file: Path | None, cache_dir: Path | None) -> None:
    """Write lab.lock.yaml next to lab.yaml: every resolved version, so every student gets the same lab.

    `create`, `plan` and `handout` refuse to run when the lock and the spec/pins disagree.

    \b
    Example:
      labctl lock -f lab.yaml && git add lab.yaml lab.lock.yaml
    """
    from labctl.lock import lock_path, write_lock

    spec = load_spec(lab_file)
    path = write_lock(spec, lock_path(lab_file), cache_dir=cache_dir)
    click.echo(f"wrote {path}")


@click.command()
def schema() -> None:
    """Print the JSON Schema of lab.yaml (generated from the models, with descriptions and examples).

    `labctl init` writes it beside lab.yaml as lab.schema.json; refresh that copy after upgrading.

    \b
    Example:
      labctl schema > lab.schema.json
    """
    from labctl.schema import schema_json

    click.echo(schema_json(), nl=False)
