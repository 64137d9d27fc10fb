"""`labctl deploy` (the apps layer on any cluster) and `labctl bench` (a load test of Ollama).
Click only: each command is one library call."""

from __future__ import annotations

from pathlib import Path

import click

from labctl.cli_common import (
    fail,
    lab_file_option,
    load_spec,
)


@click.command()
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


@click.command()
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
