"""Where the apps run on a lab and how big Ollama may be, from the spec alone: the nodes that take
the apps, the data node holding the node-local volumes, Ollama's requests and limits, and the names
the manifests and the playbooks both use (namespace, model-pull Job). Pure; split from
labctl/manifests.py so that the spec's capacity checks (labctl.capacity) and the plan need no
manifest rendering."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labctl.spec import LabSpec, Node

DEFAULT_NAMESPACE = "llm"

# Where hostPath-backed volumes (databases that must not sit on NFS) live on the data node.
LOCAL_DATA_ROOT = "/var/lib/labctl"


@dataclass(frozen=True)
class Resources:
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


# ---- sizing -----------------------------------------------------------------------------------------
# What a worker keeps for everything that is not Ollama: the OS, kubelet and containerd, and the
# per-node system pods (calico-node, kube-proxy, csi-nfs-node, MetalLB speaker) — about 1 GiB plus 10 %
# of the node — plus the memory limits of our own pods that share Ollama's node.
SYSTEM_RESERVE_MIB = 1024
SYSTEM_RESERVE_FRACTION = 0.10
WEBUI_MEMORY_LIMIT_MIB = 2048
OLLAMA_MIN_MEMORY_MIB = 1024
# Limits of the pods pinned to the data node with Open WebUI (manifests/apps/monitoring.yaml.j2:
# Prometheus 1Gi, Grafana 512Mi, blackbox 64Mi), and of the model-pull Job, which runs anywhere.
MONITORING_MEMORY_LIMIT_MIB = 1024 + 512 + 64
PULL_JOB_MEMORY_LIMIT_MIB = 64


def schedulable_nodes(spec: LabSpec) -> list[Node]:
    """Where the apps may run: the workers (GPU worker included). kubeadm taints the control plane,
    so the master is a candidate only in a lab without workers, where the control-plane playbook
    removes that taint (step allow-workloads-on-control-plane)."""
    workers = [*spec.nodes.workers, *([spec.nodes.gpu_worker] if spec.nodes.gpu_worker is not None else [])]
    return workers or [spec.nodes.master]


def ollama_node_candidates(spec: LabSpec, gpu: bool) -> list[Node]:
    if gpu and spec.nodes.gpu_worker is not None:
        return [spec.nodes.gpu_worker]
    return schedulable_nodes(spec)


def neighbours_memory_mib(spec: LabSpec, node: Node) -> int:
    """Memory limits of our other pods that can share ``node`` with Ollama: Open WebUI and (with
    monitoring) Prometheus, Grafana and blackbox live on the data node, pinned by their node-local
    volumes; the model-pull Job may land anywhere."""
    total = PULL_JOB_MEMORY_LIMIT_MIB
    if node.name == data_node(spec).name:
        total += WEBUI_MEMORY_LIMIT_MIB
        if spec.apps.options.monitoring:
            total += MONITORING_MEMORY_LIMIT_MIB
    return total


def ollama_memory_limit_mib(spec: LabSpec, node: Node) -> int:
    reserve = SYSTEM_RESERVE_MIB + int(node.memory_mib * SYSTEM_RESERVE_FRACTION)
    room = node.memory_mib - reserve - neighbours_memory_mib(spec, node)
    return max(OLLAMA_MIN_MEMORY_MIB, room // 256 * 256)


def ollama_resources(spec: LabSpec, gpu: bool = False) -> Resources:
    """Requests/limits for one Ollama pod, from the tightest node it may land on.

    memory limit = node memory − (1024 MiB + 10 % of node memory) − the limits of what shares that
    node (labctl's pull Job 64 MiB; on the data node Open WebUI 2048 MiB, and with monitoring
    Prometheus + Grafana + blackbox 1600 MiB), rounded down to 256 MiB, at least 1 GiB. 8 GiB worker:
    8192 − 1843 − 64 − 2048 = 4237 → 4096 MiB; with monitoring 2637 → 2560 MiB, so the limits of
    everything on the node add up to less than the node (they reached 9.6 GiB of 8 before).
    cpu limit = node CPUs − 1 (system pods and Open WebUI), at least 1.
    Requests are half the limits: the scheduler can still place a second replica (autoscaling, or
    a Recreate rollout on a busy node), while the limit lets one pod use the whole node when alone.
    """
    candidates = ollama_node_candidates(spec, gpu)
    memory_limit = min(ollama_memory_limit_mib(spec, n) for n in candidates)
    cpus = min(n.cpus for n in candidates)
    cpu_limit_m = max(1000, (cpus - 1) * 1000)
    return Resources(
        cpu_request=f"{cpu_limit_m // 2}m",
        cpu_limit=f"{cpu_limit_m}m",
        memory_request=f"{memory_limit // 2}Mi",
        memory_limit=f"{memory_limit}Mi",
    )


def data_node(spec: LabSpec) -> Node:
    """The node holding the lab's node-local volumes (Open WebUI's data, Prometheus, Grafana): the
    first worker, else the GPU worker, else (no workers at all) the master."""
    return schedulable_nodes(spec)[0]


def pull_job_name(models: list[str]) -> str:
    # A Job's pod template is immutable: a new model list gets a new Job (the old one expires by TTL).
    digest = hashlib.sha256("\n".join(models).encode()).hexdigest()[:8]
    return f"ollama-pull-{digest}"
