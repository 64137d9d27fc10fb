"""`labctl deploy`: the apps layer onto a Kubernetes cluster that already exists.

minikube, k3s, a university cluster with one namespace per student: labctl renders the ``apps``
bundle for the chosen namespace and hands it to ``kubectl apply`` on stdin (the bundle holds a
Secret; it never touches a command line or a world-readable file). A preflight first checks, with
read-only kubectl queries, everything the bundle relies on, and stops with one line naming what is
missing and how to fix it — before anything is created.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.errors import LabctlError
from labctl.spec import LabSpec

NAMESPACE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


class DeployError(LabctlError):
    exit_code = 1


@dataclass(frozen=True)
class Kubectl:
    """kubectl with the user's kubeconfig and context on every call."""

    kubeconfig: Path
    context: str | None = None
    binary: str = "kubectl"
    timeout: int = 120

    def base(self) -> list[str]:
        cmd = [self.binary, "--kubeconfig", str(self.kubeconfig)]
        if self.context:
            cmd += ["--context", self.context]
        return cmd

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [*self.base(), *args],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise DeployError(
                f"kubectl {' '.join(args)}: no answer within {self.timeout} s — is the cluster in {self.kubeconfig} reachable?"
            ) from None

    def query(self, *args: str) -> str:
        """stdout of a read-only query; a failure (other than not-found) stops the deploy."""
        result = self.run(*args)
        if result.returncode != 0:
            raise DeployError(f"kubectl {' '.join(args)} failed: {_last_line(result.stderr)}")
        return result.stdout

    def exists(self, *args: str) -> bool:
        result = self.run(*args)
        if result.returncode == 0:
            return True
        if "NotFound" in result.stderr or "not found" in result.stderr:
            return False
        raise DeployError(f"kubectl {' '.join(args)} failed: {_last_line(result.stderr)}")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error message"


@dataclass
class Preflight:
    namespace_exists: bool
    storage_class: str
    data_storage_class: str
    gpus: int = 0
    runtime_class_nvidia: bool = False
    notes: list[str] = field(default_factory=list)


def _storage_classes(kubectl: Kubectl) -> list[dict[str, Any]]:
    try:
        return json.loads(kubectl.query("get", "storageclass", "-o", "json")).get("items", [])
    except json.JSONDecodeError:
        raise DeployError("kubectl get storageclass -o json did not return JSON — check the kubectl on PATH") from None


def _resolve_class(classes: list[dict[str, Any]], wanted: str | None, flag: str) -> str:
    names = [c.get("metadata", {}).get("name", "") for c in classes]
    if wanted:
        if wanted not in names:
            known = ", ".join(names) or "none"
            raise DeployError(
                f"{flag}: storage class {wanted!r} does not exist in this cluster (it has: {known}) — pass one of those"
            )
        return wanted
    defaults = [
        c["metadata"]["name"]
        for c in classes
        if c.get("metadata", {}).get("annotations", {}).get(DEFAULT_CLASS_ANNOTATION) == "true"
    ]
    if not defaults:
        known = ", ".join(names) or "none"
        raise DeployError(f"{flag}: the cluster has no default storage class (it has: {known}) — pass {flag} NAME")
    return defaults[0]


def _allocatable_gpus(kubectl: Kubectl) -> int:
    try:
        nodes = json.loads(kubectl.query("get", "nodes", "-o", "json")).get("items", [])
    except json.JSONDecodeError:
        raise DeployError("kubectl get nodes -o json did not return JSON — check the kubectl on PATH") from None
    total = 0
    for node in nodes:
        value = node.get("status", {}).get("allocatable", {}).get("nvidia.com/gpu", "0")
        try:
            total += int(value)
        except ValueError:
            continue
    return total


def preflight(
    kubectl: Kubectl,
    spec: LabSpec,
    *,
    namespace: str,
    storage_class: str | None,
    data_storage_class: str | None,
    gpu: bool,
) -> Preflight:
    """Read-only checks; raises DeployError with one line on the first thing that is missing."""
    if shutil.which(kubectl.binary) is None:
        raise DeployError(
            f"{kubectl.binary} not found on PATH — install it (https://kubernetes.io/docs/tasks/tools/) and retry"
        )
    if not kubectl.kubeconfig.is_file():
        raise DeployError(f"--kubeconfig: {kubectl.kubeconfig} does not exist — pass the path of your cluster's kubeconfig")
    namespace_exists = kubectl.exists("get", "namespace", namespace, "-o", "name")
    classes = _storage_classes(kubectl)
    models_class = _resolve_class(classes, storage_class, "--storage-class")
    data_class = _resolve_class(classes, data_storage_class, "--data-storage-class") if data_storage_class else models_class
    report = Preflight(namespace_exists, models_class, data_class)
    for c in classes:
        if c.get("metadata", {}).get("name") == data_class and c.get("provisioner") == "nfs.csi.k8s.io":
            report.notes.append(
                f"storage class {data_class} is NFS: Open WebUI's SQLite is slow or locks up on NFS (open-webui#23939) "
                "— prefer --data-storage-class with block or local storage"
            )
    if gpu:
        report.gpus = _allocatable_gpus(kubectl)
        if report.gpus < 1:
            raise DeployError(
                "--gpu: no node has allocatable nvidia.com/gpu — install the NVIDIA device plugin on the GPU nodes "
                "(or deploy without --gpu)"
            )
        report.runtime_class_nvidia = kubectl.exists("get", "runtimeclass", "nvidia", "-o", "name")
        if not report.runtime_class_nvidia:
            report.notes.append("no RuntimeClass nvidia: Ollama uses the node's default runtime (fine if it is nvidia)")
    if spec.apps.options.autoscaling and not kubectl.exists("get", "apiservice", "v1beta1.metrics.k8s.io", "-o", "name"):
        raise DeployError(
            "apps.options.autoscaling: the cluster has no metrics API (metrics-server) — install metrics-server "
            "or set autoscaling: false"
        )
    secret = spec.apps.options.openai_secret
    if secret and not (namespace_exists and kubectl.exists("get", "secret", secret, "-n", namespace, "-o", "name")):
        raise DeployError(
            f"apps.options.openai_secret: Secret {secret!r} is missing in namespace {namespace} — create it with "
            f"kubectl -n {namespace} create secret generic {secret} --from-literal=OPENAI_API_BASE_URL=... "
            "--from-literal=OPENAI_API_KEY=..."
        )
    return report


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
    )
    echo(f"ok: storage class {report.storage_class} for models, {report.data_storage_class} for databases")
    if gpu:
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
    )
    bundle = render_bundles(spec, secrets, target)["apps"]

    created = False
    if not report.namespace_exists:
        if dry_run:
            echo(f"would create namespace {namespace}")
        else:
            result = kubectl.run("create", "namespace", namespace)
            if result.returncode != 0:
                raise DeployError(
                    f"--namespace: cannot create namespace {namespace}: {_last_line(result.stderr)} — ask the cluster's "
                    "administrator for a namespace and pass it with --namespace"
                )
            created = True
            echo(f"created namespace {namespace}")

    apply_args = ["apply", "-n", namespace, "-f", "-"]
    if dry_run:
        # The server checks admission too, but only inside a namespace that exists.
        apply_args.insert(1, "--dry-run=server" if report.namespace_exists else "--dry-run=client")
    result = kubectl.run(*apply_args, stdin=bundle)
    if result.returncode != 0:
        raise DeployError(f"kubectl apply into {namespace} failed: {_last_line(result.stderr)}")
    applied = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    for line in applied:
        echo(line)
    return DeployResult(namespace, created, applied, report, dry_run)
