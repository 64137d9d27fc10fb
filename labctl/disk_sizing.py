"""How much disk a Kubernetes node of the lab needs for its container images, and which images a
node runs at all (so the warm cache imports only those).

containerd keeps each image twice: the compressed layers in its content store and the unpacked
snapshot; with a warm cache on libvirt (an rsync copy in the VM) the image's tarball is a third
copy until it is imported. The kubelet starts deleting images when the disk passes 85 % (its
imageGCHighThresholdPercent default), so the images must fit under that line.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labctl.spec import LabSpec, Node

# Compressed (download) size per image, in MiB: rough upper estimates for the pinned tags, NOT
# measurements — `labctl cache fill` stores the real archives, and their sizes replace these when a
# cache is given. The two big ones carry their runtimes: Ollama bundles CUDA/ROCm libraries, Open
# WebUI bundles PyTorch (CPU) and its embedding model.
IMAGE_MIB_ESTIMATE: dict[str, int] = {
    "ollama": 2048,
    "open-webui": 2560,
    "nvidia-device-plugin": 256,
    "grafana": 256,
    "prometheus": 160,
    "calico-node": 160,
    "calico-cni": 96,
}
DEFAULT_IMAGE_MIB_ESTIMATE = 64  # control-plane, MetalLB, CSI, metrics-server, curl, blackbox, pause...
UNPACKED_FACTOR = 2.5  # snapshot size / compressed size, roughly, for these images
OS_AND_PACKAGES_GIB = 4  # Ubuntu 24.04 cloud image + kubeadm/kubelet/containerd + logs
KUBELET_IMAGE_GC_HIGH = 0.85
# The libvirt box (cloud-image ubuntu-24.04) comes with a 10 GiB disk; disk_gib grows it.
LIBVIRT_BOX_DISK_GIB = 10

CONTROL_PLANE_ONLY = {"kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"}
APPS = {"ollama", "open-webui", "curl", "prometheus", "grafana", "blackbox-exporter"}
GPU_ONLY = {"nvidia-device-plugin"}


def node_image_keys(spec: LabSpec, node: Node) -> list[str]:
    """Lock keys (labctl.lab_pins.images) of the images ``node`` runs: the control plane's own only on
    the master, the apps only where pods are scheduled, the device plugin only on the GPU worker;
    the per-node system pods (Calico, kube-proxy, MetalLB speaker, CSI) everywhere."""
    from labctl.lab_pins import images
    from labctl.placement import schedulable_nodes

    roles = spec.roles_of(node)
    if "k8s" not in roles:
        return []
    runs_apps = node.name in {n.name for n in schedulable_nodes(spec)}
    out = []
    for key in images(spec):
        if key in CONTROL_PLANE_ONLY and "control_plane" not in roles:
            continue
        if key in APPS and not runs_apps:
            continue
        if key in GPU_ONLY and "gpu" not in roles:
            continue
        out.append(key)
    return out


def node_image_refs(spec: LabSpec, node: Node) -> set[str]:
    from labctl.lab_pins import images

    refs = images(spec)
    return {refs[key] for key in node_image_keys(spec, node)}


def measured_image_mib(spec: LabSpec, cache_root: Path) -> dict[str, int]:
    """Lock key → MiB of the image's archive in a filled warm cache (the compressed size, which is
    what the estimates stand for); images the cache lacks are left to the estimates."""
    from labctl.cache_needs import arch_suffix, safe_file_name
    from labctl.lab_pins import images

    out: dict[str, int] = {}
    for key, ref in images(spec).items():
        archive = cache_root / "images" / f"{safe_file_name(ref)}{arch_suffix(spec.arch)}.tar"
        if archive.is_file():
            out[key] = max(1, math.ceil(archive.stat().st_size / (1 << 20)))
    return out


def node_disk_need_gib(spec: LabSpec, node: Node, measured_mib: dict[str, int] | None = None, *, tarballs: bool = False) -> int:
    """GiB the node's disk should have: OS and packages, plus each of its images compressed and
    unpacked (and its tarball, while a libvirt cache copy holds it), kept under the kubelet's 85 %
    image GC line, rounded up to 5 GiB. ``measured_mib``: real sizes by lock key (a filled cache)."""
    keys = node_image_keys(spec, node)
    if not keys:
        return 0
    sizes = {k: (measured_mib or {}).get(k, IMAGE_MIB_ESTIMATE.get(k, DEFAULT_IMAGE_MIB_ESTIMATE)) for k in keys}
    copies = 1 + UNPACKED_FACTOR + (1 if tarballs else 0)
    images_gib = sum(sizes.values()) * copies / 1024
    need = OS_AND_PACKAGES_GIB + images_gib / KUBELET_IMAGE_GC_HIGH
    return int(math.ceil(need / 5) * 5)


def disk_warnings(spec: LabSpec) -> list[str]:
    """libvirt: one line per Kubernetes node whose lab.yaml disk_gib is smaller than its images need.
    A node without disk_gib gets what it needs (labctl.figures.node_disk_gib): nothing to say."""
    if spec.provider.type != "libvirt":
        return []
    out = []
    for path, node in spec.all_nodes():
        if node.disk_gib is None:
            continue
        need = node_disk_need_gib(spec, node)
        if need and node.disk_gib < need:
            out.append(
                f"{path}.disk_gib: {node.name} runs images that need about {need} GiB (compressed and unpacked, "
                f"under the kubelet's 85 % image GC line) and its disk has {node.disk_gib} GiB — set "
                f"{path}.disk_gib: {need}, or remove it and labctl sizes the disk from the node's images"
            )
    return out
