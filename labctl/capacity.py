"""What the lab's nodes can hold: Ollama replicas under autoscaling, after the system pods.

The seed's autoscaling (2–10 Ollama replicas) does not fit the default 4-CPU worker: with each
replica asking for half a node's CPUs, two replicas plus Open WebUI plus the system pods ask for
3.6–4.0 CPUs of the 4 the kubelet can hand out, and the second replica can stay Pending. Here the
requests are sized so that the minimum number of replicas fits beside the system pods, the maximum
is capped by what fits, and ``labctl validate`` says what the lab can hold. Pure arithmetic over the
spec — nothing is asked of a cluster.

The system pods' requests are those of the pinned upstream manifests (kubeadm's static pods,
calico-node, csi-driver-nfs, CoreDNS, metrics-server); MetalLB and kube-proxy request nothing.
Pods that may land on any node (CoreDNS, metrics-server, the NFS controller) are counted against
every node Ollama may use, so the estimate errs on the side of fitting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the spec calls these checks while it validates: it imports this module, not the reverse
    from labctl.spec import LabSpec, Node

MIN_REPLICAS = 2  # the seed's HPA minimum
MAX_REPLICAS = 10  # the seed's HPA maximum
# CPU (millicores) / memory (MiB) requests of the system pods, per node Ollama may run on.
PER_NODE_CPU_M = 250 + 30  # calico-node 250m; csi-nfs-node 3 x 10m
PER_NODE_MEMORY_MIB = 3 * 20  # csi-nfs-node 3 x 20Mi (calico-node requests no memory)
ANYWHERE_CPU_M = 2 * 100 + 100 + 4 * 10  # CoreDNS x2, metrics-server, csi-nfs-controller
ANYWHERE_MEMORY_MIB = 2 * 70 + 200 + 4 * 20
CONTROL_PLANE_CPU_M = 250 + 200 + 100 + 100  # kube-apiserver, controller-manager, scheduler, etcd (kubeadm)
CONTROL_PLANE_MEMORY_MIB = 100  # etcd (the others request no memory)
WEBUI_CPU_M = 250  # manifests/apps/openwebui.yaml.j2 requests
WEBUI_MEMORY_MIB = 512
KUBELET_EVICTION_MIB = 100  # kubelet's default hard eviction threshold (memory.available<100Mi)
KERNEL_SHARE = 0.05  # what the guest kernel keeps of the VM's memory before the kubelet counts it
MIN_CPU_REQUEST_M = 250
MIN_MEMORY_REQUEST_MIB = 512
STEP_M = 50
# Keep a tenth of each node free: the model pre-pull Job, a rollout's surge and estimation error.
HEADROOM = 0.9


@dataclass(frozen=True)
class NodeRoom:
    name: str
    cpu_m: int  # free for Ollama after the system pods (and Open WebUI on its node)
    memory_mib: int


@dataclass(frozen=True)
class AutoscalingFit:
    min_replicas: int
    max_replicas: int
    cpu_request_m: int
    memory_request_mib: int
    rooms: tuple[NodeRoom, ...]

    def summary(self) -> str:
        where = ", ".join(f"{r.name} {r.cpu_m}m CPU/{r.memory_mib} MiB free" for r in self.rooms)
        return (
            f"autoscaling: Ollama {self.min_replicas}-{self.max_replicas} replicas, each requesting "
            f"{self.cpu_request_m}m CPU and {self.memory_request_mib} MiB ({where} after the system pods)"
        )


class DoesNotFit(ValueError):
    pass


def node_rooms(spec: LabSpec, nodes: list[Node]) -> tuple[NodeRoom, ...]:
    from labctl.placement import data_node

    webui_node = data_node(spec).name
    rooms = []
    for node in nodes:
        cpu = node.cpus * 1000 - PER_NODE_CPU_M - ANYWHERE_CPU_M
        memory = int(node.memory_mib * (1 - KERNEL_SHARE)) - KUBELET_EVICTION_MIB - PER_NODE_MEMORY_MIB
        memory -= ANYWHERE_MEMORY_MIB
        if node.name == spec.nodes.master.name:
            cpu -= CONTROL_PLANE_CPU_M
            memory -= CONTROL_PLANE_MEMORY_MIB
        if node.name == webui_node:
            cpu -= WEBUI_CPU_M
            memory -= WEBUI_MEMORY_MIB
        rooms.append(NodeRoom(node.name, max(0, int(cpu * HEADROOM)), max(0, int(memory * HEADROOM))))
    return tuple(rooms)


def _replicas(rooms: tuple[NodeRoom, ...], cpu_m: int, memory_mib: int) -> int:
    return sum(min(r.cpu_m // cpu_m, r.memory_mib // memory_mib) for r in rooms)


def autoscaling_fit(spec: LabSpec) -> AutoscalingFit:
    """Requests and replica bounds for Ollama under autoscaling; DoesNotFit when 2 cannot fit."""
    from labctl.placement import ollama_node_candidates, ollama_resources

    rooms = node_rooms(spec, ollama_node_candidates(spec, gpu=False))
    default = ollama_resources(spec, gpu=False)
    cpu = int(default.cpu_request.removesuffix("m"))
    memory = int(default.memory_request.removesuffix("Mi"))
    # Shrink the requests (not the limits: an alone replica may still use the whole node) until the
    # minimum fits; CPU first, in 50m steps, then memory in 256 MiB steps.
    while _replicas(rooms, cpu, memory) < MIN_REPLICAS and cpu - STEP_M >= MIN_CPU_REQUEST_M:
        cpu -= STEP_M
    while _replicas(rooms, cpu, memory) < MIN_REPLICAS and memory - 256 >= MIN_MEMORY_REQUEST_MIB:
        memory -= 256
    fits = _replicas(rooms, cpu, memory)
    if fits < MIN_REPLICAS:
        where = ", ".join(f"{r.name} {r.cpu_m}m CPU/{r.memory_mib} MiB" for r in rooms)
        raise DoesNotFit(
            f"apps.options.autoscaling: {MIN_REPLICAS} Ollama replicas of at least {MIN_CPU_REQUEST_M}m CPU and "
            f"{MIN_MEMORY_REQUEST_MIB} MiB do not fit beside the system pods (free: {where}) — "
            "give the workers more CPUs/memory, add a worker, or set autoscaling: false"
        )
    return AutoscalingFit(MIN_REPLICAS, min(MAX_REPLICAS, fits), cpu, memory, rooms)
