"""The command line. Click only: each command turns flags into one library call.

Imports of the library (pydantic, jinja2, fabric, ...) happen inside the commands so that
``labctl --help`` starts fast; tests/test_cli.py holds that line.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import NoReturn

import click

from labctl import __version__
from labctl.cli_common import DEFAULT_FILE, lab_file_option, load_spec
from labctl.cli_common import lab_of as _lab
from labctl.cli_common import lab_source as _lab_source
from labctl.completion import complete_node, complete_step


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class LabctlGroup(click.Group):
    """Turns every LabctlError into its one-line message and exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        """The one place where labctl's exit code is chosen: from the error's class (errors.EXIT_CODES)."""
        import signal

        from labctl.errors import ExitCode, LabctlError

        # SIGTERM (a CI job cancelled, `timeout labctl create`) ends labctl like Ctrl-C does: the
        # runner stops the commands on the hosts before labctl exits.
        with contextlib.suppress(ValueError):  # not the main thread (tests calling invoke from a thread)
            signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            return super().invoke(ctx)
        except LabctlError as err:
            lines = str(err).splitlines() or [type(err).__name__]
            for line in lines:
                click.echo(f"error: {line}", err=True)
            sys.exit(int(err.exit_code) or ExitCode.FAILED)
        except KeyboardInterrupt:
            click.echo("\ninterrupted — re-run the same command to resume; finished steps are skipped", err=True)
            sys.exit(ExitCode.INTERRUPTED)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@click.group(cls=LabctlGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="labctl")
def cli() -> None:
    """Turn a laptop into a self-hosted LLM lab: Vagrant VMs, kubeadm, Calico, MetalLB, NFS,
    Ollama and Open WebUI — in one command.

    \b
    Example:
      labctl init            # write lab.yaml (the seed lab, every key commented)
      labctl create --dry-run
      labctl create
    """


# ---- spec ---------------------------------------------------------------------------------------
@cli.command()
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


@cli.command()
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


@cli.command()
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


@cli.command()
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


def _print_plan(lab_file: Path | None, output: str, cache_dir: Path | None = None) -> None:
    _, plan = _classroom_plan(lab_file, cache_dir)  # checks lab.lock.yaml when there is one
    click.echo(plan.to_json() if output == "json" else plan.to_text(), nl=False)


@cli.command()
@lab_file_option
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def plan(lab_file: Path | None, output: str) -> None:
    """Print every step of `create` and, per host, the exact commands it would run.

    \b
    Example:
      labctl plan --output json | jq '.steps[].id'
    """
    _print_plan(lab_file, output)


# ---- lifecycle -----------------------------------------------------------------------------------
@cli.command()
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
        _print_plan(lab_file, output, cache_dir)
        return
    from labctl import lifecycle
    from labctl.kubeconfig import user_kubeconfig_path
    from labctl.lab import Console, Lab

    spec, _plan = _classroom_plan(lab_file, cache_dir)  # the lock and the cache are checked before anything starts
    cache = None
    if cache_dir is not None:
        from labctl.cache import inspect_cache

        cache = inspect_cache(cache_dir, spec)
    lab = Lab.of(spec, _lab_source(lab_file))
    merge_into = user_kubeconfig_path() if merge_kubeconfig else None
    console = Console()
    lifecycle.create(lab, console, only=only, merge_kubeconfig_into=merge_into, cache=cache)
    # A known-good state to go back to (`labctl snapshot restore ready`), only of a whole, checked lab.
    if not no_snapshot and not only and spec.provider.type != "ssh":
        from labctl import snapshots

        snapshots.save(lab, console, snapshots.READY, force=True)


@cli.command()
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

    lab = _lab(lab_file)
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


@cli.command()
@lab_file_option
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status(lab_file: Path | None, output: str) -> None:
    """Show VMs, nodes, pods and endpoints in one table.

    \b
    Example:
      labctl status --output json
    """
    from labctl.status import format_status, lab_status

    lab = _lab(lab_file, quiet=output == "json")
    report = lab_status(lab)
    if output == "json":
        import json

        click.echo(json.dumps(report.to_dict(lab.spec), indent=2))
    else:
        click.echo(format_status(report, lab.spec), nl=False)


# ---- classroom: handout, lock, warm cache ----------------------------------------------------------
def _classroom_plan(lab_file: Path | None, cache_dir: Path | None = None):  # type: ignore[no-untyped-def]
    """The spec (checked against its lock, if one exists) and the plan `create` would run."""
    from labctl.lock import check_lock
    from labctl.plan import build_plan

    spec = load_spec(lab_file)
    check_lock(spec, lab_file)
    cache = None
    if cache_dir is not None:
        from labctl.cache import inspect_cache  # only with --cache: a dry run without one never needs it

        cache = inspect_cache(cache_dir, spec)
    return spec, build_plan(spec, cache=cache)


@cli.command()
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

    spec, plan_ = _classroom_plan(lab_file, cache_dir)
    text = render(spec, plan_, fmt, cache_dir=cache_dir)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {out} ({len(plan_.steps)} steps)")


@cli.command()
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


@cli.group(cls=LabctlGroup)
def cache() -> None:
    """Warm cache for rooms with poor Wi-Fi: fill it once, create every lab from it.

    \b
    Example:
      labctl cache fill ~/labcache && labctl cache status ~/labcache
      labctl create --cache ~/labcache
    """


@cache.command("fill")
@lab_file_option
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=Path("labctl-cache"))
@click.option("--mirror", default=None, metavar="URL",
              help="Fetch every item from this base URL (http://, https:// or file://) laid out like a cache, "
                   "instead of from upstream — e.g. another instructor's cache served over HTTP.")
@click.option("--only", type=click.Choice(["box", "deb", "image", "model", "manifest", "release"]), multiple=True,
              help="Fetch only these kinds of item (repeatable).")
@click.option("--arch", "arches", type=click.Choice(["amd64", "arm64", "all"]), multiple=True,
              help="Fill for these architectures (repeatable; all = amd64 and arm64). Default: the lab's.")
def cache_fill(
    lab_file: Path | None, directory: Path, mirror: str | None, only: tuple[str, ...], arches: tuple[str, ...]
) -> None:
    """Download everything the lab needs into DIRECTORY (box, .debs, image tarballs, models).

    Items already present with the right size and digest are not fetched again.

    \b
    Example:
      labctl cache fill ~/labcache
      labctl cache fill --mirror http://instructor.local:8000 ~/labcache
      labctl cache fill --arch all ~/labcache     # a room of Intel laptops and Apple Silicon Macs
    """
    from labctl.arch import ARCHES, with_arch
    from labctl.cache import fill_cache
    from labctl.lock import check_lock

    spec = load_spec(lab_file)
    check_lock(spec, lab_file)
    wanted = [a for a in ARCHES if a in arches or "all" in arches] or [spec.arch]
    failed = False
    for arch in wanted:
        if len(wanted) > 1:
            click.echo(f"==> {arch}")
        report = fill_cache(with_arch(spec, arch), directory, mirror=mirror, kinds=set(only) or None, echo=click.echo)
        click.echo(report.summary())
        failed |= bool(report.failed)
    if failed:
        sys.exit(1)


@cache.command("status")
@lab_file_option
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=Path("labctl-cache"))
def cache_status(lab_file: Path | None, directory: Path) -> None:
    """Show each item the lab needs: present or missing in DIRECTORY, with its size, and which
    architectures (amd64, arm64) the cache can serve.

    Exits 1 when something the lab's own architecture needs is missing, so scripts can test a cache
    before class.

    \b
    Example:
      labctl cache status ~/labcache
    """
    from labctl.cache import status_table

    spec = load_spec(lab_file)
    text, complete = status_table(spec, directory)
    click.echo(text, nl=False)
    if not complete:
        sys.exit(1)


# ---- apps layer on any cluster, load test -----------------------------------------------------
@cli.command()
@lab_file_option
@click.option(
    "--kubeconfig",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Kubeconfig of the cluster (its content is never printed).",
)
@click.option("--context", default=None, help="Context in the kubeconfig. Default: its current context.")
@click.option("--namespace", default="llm", show_default=True, help="Namespace of this deployment (one per student).")
@click.option("--storage-class", default=None, help="Class for the models volume. Default: the cluster's default.")
@click.option(
    "--data-storage-class",
    default=None,
    help="Class for databases (Open WebUI, Prometheus, Grafana); prefer block/local, not NFS. Default: --storage-class.",
)
@click.option("--gpu", is_flag=True, help="Run Ollama on a GPU node (checks allocatable nvidia.com/gpu).")
@click.option(
    "--webui-service",
    type=click.Choice(["ClusterIP", "LoadBalancer"]),
    default="ClusterIP",
    show_default=True,
    help="How Open WebUI is reached: port-forward (ClusterIP) or the cluster's load balancer.",
)
@click.option(
    "--cluster-rbac",
    is_flag=True,
    help="Also create Prometheus' ClusterRole (nodes/metrics) for pod CPU/memory; checks you may first.",
)
@click.option("--dry-run", is_flag=True, help="Preflight, then `kubectl apply --dry-run`; create nothing.")
def deploy(
    lab_file: Path | None,
    kubeconfig: Path,
    context: str | None,
    namespace: str,
    storage_class: str | None,
    data_storage_class: str | None,
    gpu: bool,
    webui_service: str,
    cluster_rbac: bool,
    dry_run: bool,
) -> None:
    """Deploy only the apps layer (Ollama, Open WebUI, enabled options) to a cluster that exists.

    Checks first that kubectl, the namespace (created if missing), the storage class and, with
    --gpu, allocatable GPUs are there; models and options come from lab.yaml's apps section.
    Rights only in your own namespace are enough: what you may not look up is reported as
    "cannot check", and nothing cluster-wide is created unless you pass --cluster-rbac.

    \b
    Example:
      labctl deploy --kubeconfig ~/.kube/config --namespace alice --dry-run
      labctl deploy --kubeconfig ~/.kube/config --namespace alice
      kubectl -n alice port-forward svc/open-webui 8080:8080
    """
    from labctl.deploy import deploy as deploy_apps

    spec = load_spec(lab_file)
    result = deploy_apps(
        spec,
        kubeconfig=kubeconfig,
        context=context,
        namespace=namespace,
        storage_class=storage_class,
        data_storage_class=data_storage_class,
        gpu=gpu,
        webui_service_type=webui_service,
        cluster_rbac=cluster_rbac,
        dry_run=dry_run,
        echo=click.echo,
    )
    if dry_run:
        click.echo(f"dry run: nothing was created in namespace {namespace}")
        return
    port = spec.apps.openwebui.port
    click.echo(
        f"deployed into {namespace} — open Open WebUI with: kubectl --kubeconfig {kubeconfig} -n {result.namespace} "
        f"port-forward svc/open-webui {port}:{port}  (then http://127.0.0.1:{port})"
    )


def _concurrency_levels(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} — write levels like 1,2,4,8") from None
    if not levels or any(level < 1 for level in levels):
        raise click.BadParameter(f"{value!r} — write positive levels like 1,2,4,8")
    return levels


@cli.command()
@lab_file_option
@click.option("--url", required=True, help="Ollama base URL, e.g. http://127.0.0.1:11434 (a port-forward).")
@click.option("--model", default=None, help="Model to load. Default: the first of apps.ollama.models.")
@click.option(
    "--concurrency", default="1,2,4,8", show_default=True, callback=_concurrency_levels, help="Levels to sweep."
)
@click.option("--rounds", default=2, show_default=True, type=click.IntRange(1, 1000), help="Requests per worker.")
@click.option("--num-predict", default=64, show_default=True, type=click.IntRange(1, 8192), help="Tokens per answer.")
@click.option("--prompt", default=None, help="Prompt sent with every request.")
@click.option(
    "--timeout", default=300.0, show_default=True, type=click.FloatRange(0, 86400, min_open=True), help="Seconds per request."
)
@click.option("--no-warmup", is_flag=True, help="Do not send the (uncounted) request that loads the model.")
@click.option("--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
def bench(
    lab_file: Path | None,
    url: str,
    model: str | None,
    concurrency: tuple[int, ...],
    rounds: int,
    num_predict: int,
    prompt: str | None,
    timeout: float,
    no_warmup: bool,
    output: str,
) -> None:
    """Load-test Ollama: requests/s, latency p50/p95, time to first token and tokens/s per concurrency level.

    Exits 1 when any request failed (the table counts them; the first error is shown).

    \b
    Example:
      labctl bench --url http://127.0.0.1:11434 --concurrency 1,2,4,8
      # with, in another terminal: kubectl -n llm port-forward svc/ollama 11434
      labctl bench --url http://127.0.0.1:11434 --output json | jq '.levels[].tokens_per_s_total'
    """
    from labctl.bench import DEFAULT_PROMPT, report_table, run_bench

    spec = load_spec(lab_file, quiet=output == "json")
    if model is None:
        if not spec.apps.ollama.models:
            fail("--model: lab.yaml lists no apps.ollama.models — pass --model NAME")
        model = spec.apps.ollama.models[0]
    report = run_bench(
        url,
        model,
        concurrency=concurrency,
        rounds=rounds,
        prompt=prompt or DEFAULT_PROMPT,
        num_predict=num_predict,
        timeout=timeout,
        warmup=not no_warmup,
        progress=None if output == "json" else (lambda line: click.echo(line, err=True)),
    )
    if output == "json":
        click.echo(report.to_json(), nl=False)
    else:
        from rich.console import Console

        Console().print(report_table(report))
    if report.failure():  # the table or JSON is printed first: it shows what did work
        from labctl.bench import BenchFailed

        raise BenchFailed(report.failure())


# ---- lab lifecycle on the host: doctor, verify, ssh, kubeconfig, halt, resume ------------------------
@cli.command()
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

    lab = _lab(lab_file, quiet=output == "json")
    checks = preflight.run_doctor(lab.spec, lab.state_dir)
    click.echo(preflight.report_json(checks) if output == "json" else preflight.format_report(checks), nl=output == "json")
    failed = [c for c in checks if c.failed]
    if failed:  # the CLI's error handler turns it into exit 4
        raise preflight.PreflightFailed(f"{len(failed)} of {len(checks)} checks failed — fix the FAIL lines above")


@cli.command()
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

    lab = _lab(lab_file, quiet=output == "json")
    report, checks = verify_lab(lab)
    if output == "json":
        click.echo(json.dumps(report.to_dict(lab.spec), indent=2))
    else:
        for c in checks:
            click.echo(f"{'ok  ' if c.ok else 'FAIL'}  {c.name:<18} {c.detail}")
    failed = [c.name for c in checks if not c.ok]
    if failed:  # the CLI's error handler turns it into exit 7
        raise VerifyFailed(f"verify: {len(failed)} of {len(checks)} checks failed: {', '.join(failed)}")


@cli.command(context_settings={"ignore_unknown_options": True})
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

    argv = ssh_argv(_lab(lab_file, quiet=True), node, command)
    os.execvp(argv[0], argv)


@cli.command()
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

    lab = _lab(lab_file, quiet=True)
    if not lab.kubeconfig.exists():
        fail(f"{lab.kubeconfig} does not exist yet — run `labctl create` (it fetches the kubeconfig at the end)")
    if merge:
        target = merge_kubeconfig_file(lab, user_kubeconfig_path())
        click.echo(f"merged into {target} as context {lab.context}", err=True)
    click.echo(str(lab.kubeconfig))


@cli.command()
@lab_file_option
def halt(lab_file: Path | None) -> None:
    """Shut the lab's VMs down (laptop battery); `labctl resume` brings them back.

    \b
    Example:
      labctl halt && labctl resume
    """
    from labctl import power
    from labctl.lab import Console

    power.halt(_lab(lab_file), Console())


@cli.command()
@lab_file_option
def resume(lab_file: Path | None) -> None:
    """Start a halted lab again and re-check what a reboot can undo (swap stays off).

    \b
    Example:
      labctl resume && labctl status
    """
    from labctl import power
    from labctl.lab import Console

    power.resume(_lab(lab_file), Console())


# ---- editors and shells --------------------------------------------------------------------------
@cli.command()
def schema() -> None:
    """Print the JSON Schema of lab.yaml (generated from the models, with descriptions and examples).

    `labctl init` writes it beside lab.yaml as lab.schema.json; refresh that copy after upgrading.

    \b
    Example:
      labctl schema > lab.schema.json
    """
    from labctl.schema import schema_json

    click.echo(schema_json(), nl=False)


@cli.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script (commands, options, node names for `ssh`, step ids for `--only`).

    \b
    Example:
      eval "$(labctl completion bash)"        # in ~/.bashrc
      labctl completion fish > ~/.config/fish/completions/labctl.fish
    """
    from click.shell_completion import get_completion_class

    # Click's own mechanism: the script calls labctl back with _LABCTL_COMPLETE set.
    completer = get_completion_class(shell)
    assert completer is not None  # the Choice above only offers shells Click knows
    click.echo(completer(cli, {}, "labctl", "_LABCTL_COMPLETE").source())


def _register_groups() -> None:
    # Command groups that live in their own module (each Click only, like this one).
    from labctl.cli_class import class_group
    from labctl.cli_snapshot import snapshot_group

    cli.add_command(class_group)
    cli.add_command(snapshot_group)


_register_groups()


def main() -> None:
    cli(prog_name="labctl")


if __name__ == "__main__":
    main()
