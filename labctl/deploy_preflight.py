"""What `labctl deploy` checks before it creates anything, with read-only kubectl calls.

Written for the user `deploy` exists for: a student whose rights stop at their own namespace. Every
cluster-wide look-up (namespaces, StorageClasses, nodes, RuntimeClasses, APIServices,
IngressClasses) is asked first with ``kubectl auth can-i``; one the user may not run is reported as
"cannot check …" and deploy goes on with what the command line said, instead of failing on the
Forbidden answer. What can be checked and is wrong still stops the deploy with one line and its fix.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.errors import LabctlError
from labctl.spec import LabSpec

DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
PSA_ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
# Provisioners that refuse ReadWriteMany claims. k3s's local-path: "NodePath only supports
# ReadWriteOnce and ReadWriteOncePod (1.22+) access modes" (rancher/local-path-provisioner
# provisioner.go, Provision); the cloud block-disk CSI drivers are single-node by design.
RWO_ONLY_PROVISIONERS = {
    "rancher.io/local-path": "k3s's local-path",
    "ebs.csi.aws.com": "AWS EBS",
    "pd.csi.storage.gke.io": "GCE persistent disk",
    "disk.csi.azure.com": "Azure disk",
    "kubernetes.io/no-provisioner": "local volumes",
}
# IngressClass spec.controller → the annotation family manifests/apps/ingress.yaml.j2 renders.
INGRESS_CONTROLLERS = {
    "k8s.io/ingress-nginx": "ingress-nginx",
    "nginx.org/ingress-controller": "nginx-inc",
    "traefik.io/ingress-controller": "traefik",
}


class DeployError(LabctlError):
    exit_code = 1


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no error message"


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
        """stdout of a read-only query; a failure stops the deploy."""
        result = self.run(*args)
        if result.returncode != 0:
            raise DeployError(f"kubectl {' '.join(args)} failed: {last_line(result.stderr)}")
        return result.stdout

    def query_json(self, *args: str) -> dict[str, Any]:
        try:
            return json.loads(self.query(*args, "-o", "json"))
        except json.JSONDecodeError:
            raise DeployError(f"kubectl {' '.join(args)} -o json did not return JSON — check the kubectl on PATH") from None

    def get_json(self, *args: str) -> dict[str, Any] | None:
        """One object as JSON, or None when it does not exist."""
        result = self.run(*args, "-o", "json")
        if result.returncode != 0:
            if "NotFound" in result.stderr or "not found" in result.stderr:
                return None
            raise DeployError(f"kubectl {' '.join(args)} failed: {last_line(result.stderr)}")
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError:
            raise DeployError(f"kubectl {' '.join(args)} -o json did not return JSON — check the kubectl on PATH") from None

    def exists(self, *args: str) -> bool:
        return self.get_json(*args) is not None

    def can_i(self, verb: str, resource: str, *, namespace: str | None = None, subresource: str | None = None) -> bool:
        """`kubectl auth can-i`: exit 0 and "yes", or exit 1 and "no"; anything else is an error."""
        args = ["auth", "can-i", verb, resource]
        if subresource:
            args.append(f"--subresource={subresource}")
        if namespace:
            args += ["-n", namespace]
        result = self.run(*args)
        words = result.stdout.split()
        answer = words[0] if words else ""
        if result.returncode == 0 and answer == "yes":
            return True
        if result.returncode == 1 and answer == "no":
            return False
        raise DeployError(f"kubectl {' '.join(args)} failed: {last_line(result.stderr or result.stdout)}")


@dataclass
class Preflight:
    namespace_exists: bool
    # None: not checked (no right to list StorageClasses, no class given) — claims leave
    # storageClassName out and the cluster's default class applies.
    storage_class: str | None
    data_storage_class: str | None
    gpus: int | None = 0  # None: cannot check
    runtime_class_nvidia: bool = False
    pod_security: str | None = None  # the namespace's enforce level; None: none set or cannot check
    pod_security_read: bool = False  # False: the namespace could not be read (deploy probes instead)
    ingress_controller: str | None = None
    notes: list[str] = field(default_factory=list)

    def cannot_check(self, what: str, why: str, consequence: str) -> None:
        self.notes.append(f"cannot check {what} ({why}) — {consequence}")


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


def _allocatable_gpus(nodes: list[dict[str, Any]]) -> int:
    total = 0
    for node in nodes:
        value = node.get("status", {}).get("allocatable", {}).get("nvidia.com/gpu", "0")
        try:
            total += int(value)
        except ValueError:
            continue
    return total


def _namespace(kubectl: Kubectl, report: Preflight, namespace: str) -> None:
    if not kubectl.can_i("get", f"namespaces/{namespace}"):
        # A namespace-only user cannot read Namespace objects, not even their own.
        report.namespace_exists = True
        report.cannot_check(
            f"namespace {namespace}",
            "you may not read Namespace objects",
            "taking it as given; its Pod Security level is probed with a server-side dry run of the pods",
        )
        return
    obj = kubectl.get_json("get", "namespace", namespace)
    report.namespace_exists = obj is not None
    if obj is None:
        if not kubectl.can_i("create", "namespaces"):
            raise DeployError(
                f"--namespace: namespace {namespace} does not exist and you may not create namespaces — ask the "
                "cluster's administrator for one and pass it with --namespace"
            )
        return
    report.pod_security = obj.get("metadata", {}).get("labels", {}).get(PSA_ENFORCE_LABEL)
    report.pod_security_read = True
    if report.pod_security == "restricted":
        raise DeployError(
            f"--namespace: namespace {namespace} enforces Pod Security 'restricted', and the Ollama and Open WebUI "
            "images run as root, so their pods would never be created — deploy into a namespace labelled "
            f"{PSA_ENFORCE_LABEL}=baseline (ask the cluster's administrator)"
        )
    if report.pod_security:
        report.notes.append(f"namespace {namespace} enforces Pod Security {report.pod_security!r}: every pod fits it")


def _storage(
    kubectl: Kubectl, report: Preflight, spec: LabSpec, storage_class: str | None, data_storage_class: str | None
) -> None:
    autoscaling = spec.apps.options.autoscaling
    if not kubectl.can_i("list", "storageclasses"):
        report.storage_class, report.data_storage_class = storage_class, data_storage_class or storage_class
        given = f"storage class {storage_class}" if storage_class else "the cluster's default storage class"
        report.cannot_check(
            given,
            "you may not list StorageClasses",
            "using it as given" if storage_class else "the claims leave storageClassName out, so the default applies",
        )
        if autoscaling:
            report.cannot_check(
                "that the models class can do ReadWriteMany",
                "same reason",
                "autoscaling's models claim stays Pending if it cannot",
            )
        return
    classes = kubectl.query_json("get", "storageclass").get("items", [])
    models_class = _resolve_class(classes, storage_class, "--storage-class")
    data_class = _resolve_class(classes, data_storage_class, "--data-storage-class") if data_storage_class else models_class
    report.storage_class, report.data_storage_class = models_class, data_class
    provisioners = {c.get("metadata", {}).get("name"): c.get("provisioner", "") for c in classes}
    if provisioners.get(data_class) == "nfs.csi.k8s.io":
        report.notes.append(
            f"storage class {data_class} is NFS: Open WebUI's SQLite is slow or locks up on NFS (open-webui#23939) "
            "— prefer --data-storage-class with block or local storage"
        )
    rwo_only = RWO_ONLY_PROVISIONERS.get(provisioners.get(models_class, ""))
    if autoscaling and rwo_only:
        shared = [n for n, p in provisioners.items() if p not in RWO_ONLY_PROVISIONERS]
        hint = f"pass --storage-class with one that can (maybe: {', '.join(shared)})" if shared else (
            "install a ReadWriteMany provisioner (e.g. csi-driver-nfs) and pass --storage-class"
        )
        raise DeployError(
            f"apps.options.autoscaling: its Ollama replicas share one ReadWriteMany models volume, and storage class "
            f"{models_class} ({rwo_only}) only provisions ReadWriteOnce, so the claim would never bind — {hint}, "
            "or set autoscaling: false"
        )


def _gpu(kubectl: Kubectl, report: Preflight) -> None:
    if kubectl.can_i("list", "nodes"):
        report.gpus = _allocatable_gpus(kubectl.query_json("get", "nodes").get("items", []))
        if report.gpus < 1:
            raise DeployError(
                "--gpu: no node has allocatable nvidia.com/gpu — install the NVIDIA device plugin on the GPU nodes "
                "(or deploy without --gpu)"
            )
    else:
        report.gpus = None
        report.cannot_check("allocatable GPUs", "you may not list nodes", "trusting --gpu; Ollama stays Pending if none is free")
    if kubectl.can_i("get", "runtimeclasses.node.k8s.io"):
        report.runtime_class_nvidia = kubectl.exists("get", "runtimeclass", "nvidia")
        if not report.runtime_class_nvidia:
            report.notes.append("no RuntimeClass nvidia: Ollama uses the node's default runtime (fine if it is nvidia)")
    else:
        report.cannot_check(
            "RuntimeClass nvidia",
            "you may not read RuntimeClasses",
            "Ollama uses the node's default runtime (fine if it is nvidia)",
        )


def _metrics_api(kubectl: Kubectl, report: Preflight) -> None:
    if not kubectl.can_i("get", "apiservices.apiregistration.k8s.io"):
        report.cannot_check(
            "the metrics API", "you may not read APIServices", "the autoscaler does nothing without metrics-server"
        )
        return
    if not kubectl.exists("get", "apiservice", "v1beta1.metrics.k8s.io"):
        raise DeployError(
            "apps.options.autoscaling: the cluster has no metrics API (metrics-server) — install metrics-server "
            "or set autoscaling: false"
        )


def _ingress(kubectl: Kubectl, report: Preflight, spec: LabSpec) -> None:
    options = spec.apps.options
    if not kubectl.can_i("get", "ingressclasses.networking.k8s.io"):
        report.cannot_check(
            f"IngressClass {options.ingress_class}",
            "you may not read IngressClasses",
            f"annotations for apps.options.ingress_controller {options.ingress_controller}",
        )
        return
    obj = kubectl.get_json("get", "ingressclass", options.ingress_class)
    if obj is None:
        classes = kubectl.query_json("get", "ingressclass").get("items", [])
        known = ", ".join(c.get("metadata", {}).get("name", "") for c in classes) or "none"
        raise DeployError(
            f"apps.options.ingress_class: the cluster has no IngressClass {options.ingress_class!r} (it has: {known}) "
            "— set ingress_class to one of those, or ingress: false"
        )
    controller = obj.get("spec", {}).get("controller", "")
    report.ingress_controller = INGRESS_CONTROLLERS.get(controller, "other")
    if report.ingress_controller == "other":
        report.notes.append(
            f"IngressClass {options.ingress_class} is served by {controller}, which labctl has no annotations for: "
            "check that it passes websockets and allows answers that stream for minutes"
        )


def _gateway(kubectl: Kubectl, report: Preflight, spec: LabSpec, namespace: str) -> None:
    gw_ns, _, name = spec.apps.options.gateway.rpartition("/")
    gw_ns = gw_ns or namespace
    if not kubectl.can_i("get", "gateways.gateway.networking.k8s.io", namespace=gw_ns):
        report.cannot_check(
            f"Gateway {gw_ns}/{name}",
            f"you may not read Gateways in {gw_ns}",
            "the HTTPRoute is created; `kubectl -n NS describe httproute open-webui` shows whether it was accepted",
        )
        return
    if not kubectl.exists("get", "gateway", name, "-n", gw_ns):
        raise DeployError(
            f"apps.options.gateway: there is no Gateway {name!r} in namespace {gw_ns} — name one the cluster runs "
            "(kubectl get gateways -A), or set gateway to \"\""
        )
    if gw_ns != namespace:
        report.notes.append(
            f"Gateway {gw_ns}/{name} is in another namespace: its listeners must allow routes from {namespace} "
            "(allowedRoutes.namespaces), or the HTTPRoute is not accepted"
        )


def _cluster_rbac(kubectl: Kubectl) -> None:
    """--cluster-rbac: Prometheus' ClusterRole and binding. RBAC lets a user grant only rights they
    hold (or `escalate`/`bind`), so nodes/metrics is checked too."""
    missing = [
        what
        for what, ok in (
            ("create clusterroles", kubectl.can_i("create", "clusterroles.rbac.authorization.k8s.io")),
            ("create clusterrolebindings", kubectl.can_i("create", "clusterrolebindings.rbac.authorization.k8s.io")),
            ("list nodes", kubectl.can_i("list", "nodes")),
            ("get nodes/metrics", kubectl.can_i("get", "nodes", subresource="metrics")),
        )
        if not ok
    ]
    if missing:
        raise DeployError(
            f"--cluster-rbac: you may not {', '.join(missing)} — deploy without --cluster-rbac (monitoring then "
            "records Ollama's latency only), or ask the cluster's administrator"
        )


def preflight(
    kubectl: Kubectl,
    spec: LabSpec,
    *,
    namespace: str,
    storage_class: str | None,
    data_storage_class: str | None,
    gpu: bool,
    cluster_rbac: bool = False,
) -> Preflight:
    """Read-only checks; raises DeployError with one line on the first thing that is missing."""
    if shutil.which(kubectl.binary) is None:
        raise DeployError(
            f"{kubectl.binary} not found on PATH — install it (https://kubernetes.io/docs/tasks/tools/) and retry"
        )
    if not kubectl.kubeconfig.is_file():
        raise DeployError(f"--kubeconfig: {kubectl.kubeconfig} does not exist — pass the path of your cluster's kubeconfig")
    options = spec.apps.options
    report = Preflight(namespace_exists=False, storage_class=None, data_storage_class=None)
    _namespace(kubectl, report, namespace)
    _storage(kubectl, report, spec, storage_class, data_storage_class)
    if gpu:
        _gpu(kubectl, report)
    if options.autoscaling:
        _metrics_api(kubectl, report)
    if options.ingress:
        _ingress(kubectl, report, spec)
    if options.gateway:
        _gateway(kubectl, report, spec, namespace)
    if options.monitoring:
        if cluster_rbac:
            _cluster_rbac(kubectl)
        else:
            report.notes.append(
                "monitoring without --cluster-rbac: Prometheus records Ollama's latency only (pod CPU and memory "
                "come from each kubelet, which needs the cluster-wide nodes/metrics right)"
            )
    pull_secret = options.image_pull_secret
    if pull_secret and not (report.namespace_exists and kubectl.exists("get", "secret", pull_secret, "-n", namespace)):
        # The kubelet pulls anonymously when the Secret is missing: say so now, not after a 429.
        report.notes.append(
            f"apps.options.image_pull_secret: Secret {pull_secret!r} is not in namespace {namespace} yet, so images "
            f"are pulled anonymously — create it with kubectl -n {namespace} create secret docker-registry "
            f"{pull_secret} --docker-server=https://index.docker.io/v1/ --docker-username=... --docker-password=..."
        )
    secret = options.openai_secret
    if secret and not (report.namespace_exists and kubectl.exists("get", "secret", secret, "-n", namespace)):
        create_ns = "" if report.namespace_exists else f"kubectl create namespace {namespace} && "
        raise DeployError(
            f"apps.options.openai_secret: Secret {secret!r} is missing in namespace {namespace} — create it with "
            f"{create_ns}kubectl -n {namespace} create secret generic {secret} --from-literal=OPENAI_API_BASE_URL=... "
            "--from-literal=OPENAI_API_KEY=..."
        )
    return report
