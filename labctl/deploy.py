"""`labctl deploy`: the apps layer onto a Kubernetes cluster that already exists.

minikube, k3s, a university cluster with one namespace per student: labctl renders the ``apps``
bundle for the chosen namespace and hands it to ``kubectl apply`` on stdin (the bundle holds a
Secret; it never touches a command line or a world-readable file). A preflight first checks, with
read-only kubectl queries, everything the bundle relies on, and stops with one line naming what is
missing and how to fix it — before anything is created.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from labctl.deploy_preflight import DeployError, Kubectl, Preflight, last_line, preflight
from labctl.spec import LabSpec

__all__ = ["DeployError", "DeployResult", "Kubectl", "Preflight", "deploy", "preflight"]

NAMESPACE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# `kubectl apply` prints one line per object it handled: "<resource>[.<group>]/<name> <verb>[ (dry run)]".
APPLIED_LINE = re.compile(r"^(?P<resource>[a-z0-9]+)(\.[a-z0-9.-]+)?/(?P<name>[^ ]+) (?P<verb>\S+)")


def _objects(bundle: str) -> list[tuple[str, str]]:
    """(kind, name) of every object in the bundle, in order."""
    import yaml

    return [(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(bundle) if d]


def pod_security_probe(kubectl: Kubectl, bundle: str, namespace: str) -> None:
    """When the namespace's Pod Security label cannot be read: a server-side dry run of one bare Pod
    per workload of the bundle. Pod Security admission enforces on Pods only (a Deployment it
    refuses is still created, and its pods never are), so the Pods are what must be asked about."""
    import yaml

    pods = []
    for doc in yaml.safe_load_all(bundle):
        if doc and doc["kind"] in ("Deployment", "Job"):
            spec = dict(doc["spec"]["template"]["spec"])
            if doc["kind"] == "Job":
                spec["restartPolicy"] = "Never"
            name = f"labctl-probe-{doc['metadata']['name']}"[:63].rstrip("-")
            pods.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace}, "spec": spec})
    if not pods:
        return
    result = kubectl.run("create", "--dry-run=server", "-n", namespace, "-f", "-", stdin=yaml.safe_dump_all(pods))
    refused = [line.strip() for line in result.stderr.splitlines() if "violates PodSecurity" in line]
    if refused:
        raise DeployError(
            f"--namespace: namespace {namespace} enforces a Pod Security level its pods do not meet "
            f"({last_line(refused[-1])}) — the Ollama and Open WebUI images run as root: deploy into a namespace with "
            "pod-security.kubernetes.io/enforce=baseline (ask the cluster's administrator)"
        )


def _not_applied(bundle: str, stdout: str) -> list[str]:
    """Objects of the bundle that kubectl apply did not report as handled (created, configured,
    unchanged...): kubectl applies each object on its own and goes on after one fails."""
    done = set()
    for line in stdout.splitlines():
        m = APPLIED_LINE.match(line.strip())
        if m:
            done.add((m["resource"], m["name"]))
    return [f"{kind}/{name}" for kind, name in _objects(bundle) if (kind.lower(), name) not in done]


@dataclass
class DeployResult:
    namespace: str
    created_namespace: bool
    applied: list[str]
    preflight: Preflight
    dry_run: bool


def deploy(
    spec: LabSpec,
    *,
    kubeconfig: Path,
    context: str | None = None,
    namespace: str = "llm",
    storage_class: str | None = None,
    data_storage_class: str | None = None,
    gpu: bool = False,
    webui_service_type: str = "ClusterIP",
    cluster_rbac: bool = False,
    dry_run: bool = False,
    state_dir: Path | None = None,
    echo: Callable[[str], None] = print,
) -> DeployResult:
    """Preflight, create the namespace if needed, then `kubectl apply` the apps bundle (stdin)."""
    from labctl.manifests import deploy_target, render_bundles
    from labctl.secrets import LabSecrets, load_or_create, secrets_path
    from labctl.state import lab_dir

    if not NAMESPACE_NAME.match(namespace):
        raise DeployError(
            f"--namespace: {namespace!r} is not a namespace name — use lower-case letters, digits and '-' (max 63)"
        )
    kubectl = Kubectl(Path(kubeconfig).expanduser(), context)
    report = preflight(
        kubectl,
        spec,
        namespace=namespace,
        storage_class=storage_class,
        data_storage_class=data_storage_class,
        gpu=gpu,
        cluster_rbac=cluster_rbac,
    )
    if report.storage_class:
        echo(f"ok: storage class {report.storage_class} for models, {report.data_storage_class} for databases")
    if gpu and report.gpus:
        echo(f"ok: {report.gpus} allocatable nvidia.com/gpu")
    for note in report.notes:
        echo(f"note: {note}")

    # One signing key per (lab, cluster context, namespace), kept 0600 with the lab's state: re-running
    # deploy keeps every student logged in.
    base = state_dir if state_dir is not None else lab_dir(spec.name)
    secrets_dir = Path(base) / "deploy" / f"{context or 'current-context'}--{namespace}"
    if dry_run and not secrets_path(secrets_dir).exists():
        secrets = LabSecrets.generate()  # a dry run leaves no trace, here or in the cluster
    else:
        secrets = load_or_create(secrets_dir)
    target = deploy_target(
        namespace,
        storage_class=report.storage_class,
        data_storage_class=report.data_storage_class,
        gpu=gpu,
        gpu_runtime_class=report.runtime_class_nvidia,
        webui_service_type=webui_service_type,
        cluster_rbac=cluster_rbac,
        ingress_controller=report.ingress_controller,
    )
    bundle = render_bundles(spec, secrets, target)["apps"]
    if report.namespace_exists and not report.pod_security_read:
        pod_security_probe(kubectl, bundle, namespace)

    created = False
    if not report.namespace_exists:
        if dry_run:
            echo(f"would create namespace {namespace}")
        else:
            result = kubectl.run("create", "namespace", namespace)
            if result.returncode != 0:
                raise DeployError(
                    f"--namespace: cannot create namespace {namespace}: {last_line(result.stderr)} — ask the cluster's "
                    "administrator for a namespace and pass it with --namespace"
                )
            created = True
            echo(f"created namespace {namespace}")

    apply_args = ["apply", "-n", namespace, "-f", "-"]
    if dry_run:
        # The server checks admission too, but only inside a namespace that exists.
        apply_args.insert(1, "--dry-run=server" if report.namespace_exists else "--dry-run=client")
    result = kubectl.run(*apply_args, stdin=bundle)
    applied = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    for line in applied:
        echo(line)
    if result.returncode != 0:
        failed = _not_applied(bundle, result.stdout)
        errors = [line.strip() for line in result.stderr.splitlines() if line.strip().startswith("Error")]
        for line in errors:
            echo(f"  {line}")
        if failed and len(failed) < len(_objects(bundle)):
            raise DeployError(
                f"kubectl apply into {namespace} was partial: {len(failed)} object(s) failed — {', '.join(failed)} "
                f"({last_line(result.stderr)}); the rest was applied — fix the cause and run deploy again"
            )
        raise DeployError(f"kubectl apply into {namespace} failed: {last_line(result.stderr)}")
    return DeployResult(namespace, created, applied, report, dry_run)
