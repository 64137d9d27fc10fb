"""Roster mode, the pure half: a class roster in, every per-student Kubernetes object out.

`labctl class create` gives each student of a class their own slice of a shared cluster: a
namespace, a ResourceQuota and a LimitRange sized from the cluster's allocatable capacity, a
ServiceAccount with a namespaced Role, and a kubeconfig holding a short-lived token for that account.
This module only parses and computes (roster, quota shares, objects, kubeconfig text); talking to
the cluster is labctl/classroom.py's job. Objects are built as data and dumped with PyYAML, so no
roster value is ever pasted into YAML text.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from labctl.errors import LabctlError

CLASS_LABEL = "labctl.dev/class"
STUDENT_LABEL = "labctl.dev/student"
MANAGED_BY = {"app.kubernetes.io/managed-by": "labctl"}
SERVICE_ACCOUNT = "student"
QUOTA_NAME = "student-quota"
LIMITS_NAME = "student-limits"
ROLE_NAME = "student"
# A student's namespace is "<class>-<student>": both parts RFC 1123 labels, the whole at most 63.
LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
MAX_CLASS_NAME = 20
ROSTER_MAX_BYTES = 256 * 1024
# Share of the cluster that stays with the system (kube-system, CNI, CSI, monitoring): the
# students' quotas add up to at most the rest.
SYSTEM_RESERVE = 0.10

# What a student may do in their own namespace. Deliberately absent: anything cluster-scoped, RBAC
# objects, ServiceAccounts and their tokens, quotas and limit ranges (a student could lift their
# own), and every wildcard. tests/test_roster.py proves each of these.
_RW = ["get", "list", "watch", "create", "update", "patch", "delete"]
_RO = ["get", "list", "watch"]
STUDENT_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": [""],
        "resources": ["pods", "services", "configmaps", "secrets", "persistentvolumeclaims"],
        "verbs": _RW,
    },
    {"apiGroups": [""], "resources": ["pods/log", "events", "endpoints", "resourcequotas", "limitranges"], "verbs": _RO},
    {"apiGroups": [""], "resources": ["pods/exec", "pods/portforward"], "verbs": ["get", "create"]},
    {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "replicasets"], "verbs": _RW},
    {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": _RW},
    {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": _RW},
    {"apiGroups": ["networking.k8s.io"], "resources": ["ingresses", "networkpolicies"], "verbs": _RW},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": _RO},
]


class RosterError(LabctlError):
    """The roster file or a class option is malformed; one line names the file/line and the fix."""

    exit_code = 2


def check_class_name(name: str) -> str:
    if not (LABEL.fullmatch(name) and len(name) <= MAX_CLASS_NAME):
        raise RosterError(
            f"--name: {name[:80]!r} is not a class name — use at most {MAX_CLASS_NAME} lower-case letters, "
            "digits and '-', starting and ending with a letter or digit"
        )
    return name


def parse_roster(path: Path, class_name: str) -> list[str]:
    """Student ids, one per line (blank lines and '#' comments skipped), in file order, unique."""
    if not path.is_file():
        raise RosterError(f"--roster: {path} is not a regular file — pass a text file with one student id per line")
    if path.stat().st_size > ROSTER_MAX_BYTES:
        raise RosterError(f"--roster: {path} is larger than {ROSTER_MAX_BYTES // 1024} KiB — one student id per line")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RosterError(f"--roster: {path} is not UTF-8 text — save it as plain text, one student id per line") from None
    students: list[str] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        limit = 63 - len(class_name) - 1
        if not (LABEL.fullmatch(line) and len(line) <= limit):
            raise RosterError(
                f"{path}:{number}: {line[:80]!r} is not a student id — use at most {limit} lower-case letters, digits "
                f"and '-' (it becomes the namespace {class_name}-<id>)"
            )
        if line in students:
            raise RosterError(f"{path}:{number}: student {line!r} is listed twice — keep one line per student")
        students.append(line)
    if not students:
        raise RosterError(f"--roster: {path} lists no student — write one student id per line")
    return students


def namespace_of(class_name: str, student: str) -> str:
    return f"{class_name}-{student}"


# --- quantities -------------------------------------------------------------------------------

_MEMORY_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
_QUANTITY = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)(?P<unit>m|k|M|G|T|Ki|Mi|Gi|Ti)?")


def cpu_millis(value: str) -> int:
    """A Kubernetes CPU quantity ("4", "3500m", "0.5") in millicores."""
    m = _QUANTITY.fullmatch(value.strip())
    if not m or m["unit"] not in (None, "m"):
        raise ValueError(f"{value!r} is not a CPU quantity — write it like 2, 500m or 1.5")
    number = float(m["number"])
    return int(number) if m["unit"] == "m" else int(number * 1000)


def memory_bytes(value: str) -> int:
    """A Kubernetes memory quantity ("8Gi", "16318420Ki", "512M") in bytes."""
    m = _QUANTITY.fullmatch(value.strip())
    if not m or m["unit"] == "m":
        raise ValueError(f"{value!r} is not a memory quantity — write it like 4Gi or 512Mi")
    return int(float(m["number"]) * _MEMORY_UNITS[m["unit"] or ""])


@dataclass(frozen=True)
class Share:
    """One student's slice: quota totals and the per-container defaults of the LimitRange."""

    cpu_millis: int
    memory_mib: int
    storage: str
    pods: int = 20
    pvcs: int = 4

    @property
    def cpu(self) -> str:
        return f"{self.cpu_millis}m"

    @property
    def memory(self) -> str:
        return f"{self.memory_mib}Mi"


@dataclass(frozen=True)
class Capacity:
    """Allocatable CPU and memory summed over the nodes that take workloads."""

    cpu_millis: int
    memory_bytes: int
    nodes: int


def schedulable_capacity(nodes_json: dict[str, Any]) -> Capacity:
    """Sum `status.allocatable` of nodes a student's pod can land on (not cordoned, no NoSchedule taint)."""
    cpu = mem = count = 0
    for node in nodes_json.get("items", []):
        spec = node.get("spec") or {}
        if spec.get("unschedulable"):
            continue
        if any(t.get("effect") in ("NoSchedule", "NoExecute") for t in spec.get("taints") or []):
            continue
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        try:
            cpu += cpu_millis(str(allocatable.get("cpu", "0")))
            mem += memory_bytes(str(allocatable.get("memory", "0")))
        except ValueError as err:
            name = (node.get("metadata") or {}).get("name", "?")
            raise RosterError(f"node {name}: allocatable {err} — check `kubectl get node {name} -o yaml`") from None
        count += 1
    return Capacity(cpu, mem, count)


def size_share(
    capacity: Capacity, students: int, *, cpu: str | None = None, memory: str | None = None, storage: str = "50Gi"
) -> Share:
    """Each student's share: given on the command line, or the cluster's capacity (less the system
    reserve) divided by the roster. Refuses a share whose sum exceeds what the cluster can give."""
    usable_cpu = int(capacity.cpu_millis * (1 - SYSTEM_RESERVE))
    usable_mib = int(capacity.memory_bytes * (1 - SYSTEM_RESERVE)) // 2**20
    fits_cpu, fits_mib = usable_cpu // students, usable_mib // students
    try:
        want_cpu = cpu_millis(cpu) if cpu else fits_cpu
        want_mib = memory_bytes(memory) // 2**20 if memory else fits_mib
    except ValueError as err:
        raise RosterError(f"--cpu/--memory: {err}") from None
    if want_cpu > fits_cpu or want_mib > fits_mib:
        raise RosterError(
            f"{students} students × {want_cpu}m CPU / {want_mib}Mi memory do not fit: the cluster's schedulable nodes "
            f"offer {usable_cpu}m / {usable_mib}Mi after a {int(SYSTEM_RESERVE * 100)}% system reserve, i.e. at most "
            f"{fits_cpu}m / {fits_mib}Mi per student — lower --cpu/--memory or add nodes"
        )
    if want_cpu < 100 or want_mib < 128:
        raise RosterError(
            f"each of {students} students would get {want_cpu}m CPU / {want_mib}Mi memory — too little to run a pod; "
            "use a smaller roster or a larger cluster"
        )
    try:
        memory_bytes(storage)
    except ValueError as err:
        raise RosterError(f"--storage: {err}") from None
    return Share(want_cpu, want_mib, storage)


# --- objects ----------------------------------------------------------------------------------


def _meta(name: str, class_name: str, student: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {CLASS_LABEL: class_name, STUDENT_LABEL: student, **MANAGED_BY}}
    if namespace is not None:
        meta["namespace"] = namespace
    return meta


def student_objects(class_name: str, student: str, share: Share) -> list[dict[str, Any]]:
    """The namespace and everything in it that makes it one student's: quota, limits, account, rights."""
    ns = namespace_of(class_name, student)
    # Default requests are small so a student's many small pods fit; default limits never exceed the share.
    default_cpu = f"{min(1000, share.cpu_millis)}m"
    default_mem = f"{min(1024, share.memory_mib)}Mi"
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(ns, class_name, student)},
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": _meta(QUOTA_NAME, class_name, student, ns),
            "spec": {
                "hard": {
                    "requests.cpu": share.cpu,
                    "limits.cpu": share.cpu,
                    "requests.memory": share.memory,
                    "limits.memory": share.memory,
                    "requests.storage": share.storage,
                    "pods": str(share.pods),
                    "persistentvolumeclaims": str(share.pvcs),
                    # The lab's few MetalLB addresses and node ports are not for one student to take.
                    "services.loadbalancers": "0",
                    "services.nodeports": "0",
                }
            },
        },
        {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": _meta(LIMITS_NAME, class_name, student, ns),
            "spec": {
                "limits": [
                    {
                        "type": "Container",
                        "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
                        "default": {"cpu": default_cpu, "memory": default_mem},
                        "max": {"cpu": share.cpu, "memory": share.memory},
                    }
                ]
            },
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(SERVICE_ACCOUNT, class_name, student, ns)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _meta(ROLE_NAME, class_name, student, ns),
            "rules": STUDENT_RULES,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _meta(ROLE_NAME, class_name, student, ns),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE_NAME},
            "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": ns}],
        },
    ]


def dump_objects(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False)


# --- kubeconfig -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterEndpoint:
    """Where students reach the API server, and how they trust it. Never the admin's credentials."""

    name: str
    server: str
    ca_data: str | None
    insecure: bool = False


def cluster_endpoint(view: dict[str, Any]) -> ClusterEndpoint:
    """The cluster of `kubectl config view --raw --minify -o json` (the admin's current context)."""
    clusters = view.get("clusters") or []
    if not clusters:
        raise RosterError("--kubeconfig: the current context names no cluster — pass --context or fix the kubeconfig")
    entry = clusters[0]
    cluster = entry.get("cluster") or {}
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith("https://"):
        raise RosterError(
            f"--kubeconfig: cluster {entry.get('name')!r} has no https server address — students need one to connect"
        )
    ca_data = cluster.get("certificate-authority-data")
    if ca_data is None and (ca_file := cluster.get("certificate-authority")):
        try:
            ca_data = base64.b64encode(Path(ca_file).expanduser().read_bytes()).decode()
        except OSError as err:
            raise RosterError(f"--kubeconfig: cannot read the cluster's CA file {ca_file}: {err.strerror}") from None
    return ClusterEndpoint(str(entry.get("name") or "cluster"), server, ca_data, bool(cluster.get("insecure-skip-tls-verify")))


def student_kubeconfig(endpoint: ClusterEndpoint, class_name: str, student: str, token: str) -> str:
    ns = namespace_of(class_name, student)
    cluster: dict[str, Any] = {"server": endpoint.server}
    if endpoint.ca_data:
        cluster["certificate-authority-data"] = endpoint.ca_data
    elif endpoint.insecure:
        cluster["insecure-skip-tls-verify"] = True
    context = f"{class_name}-{student}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": class_name, "cluster": cluster}],
        "users": [{"name": context, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": class_name, "user": context, "namespace": ns}}],
        "current-context": context,
    }
    return yaml.safe_dump(config, sort_keys=False)


def token_expiry(token: str) -> int | None:
    """The `exp` claim (Unix seconds) of a service-account JWT, or None when it has none."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        exp = json.loads(base64.urlsafe_b64decode(payload)).get("exp")
    except (ValueError, AttributeError):
        return None
    return exp if isinstance(exp, int) else None
