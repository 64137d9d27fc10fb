"""What a lab pins: the container images it runs, the add-on manifests it applies and the apt
packages it installs, each at the version labctl pins (``labctl.versions.PINS``).

One list with two readers: ``labctl.lock`` records it in lab.lock.yaml, and the warm cache
(``labctl.cache_needs``) fills exactly it. Both import from here, so neither imports the other to
learn what a lab needs (the lock reads the cache's digests; the cache never reads the lock).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labctl.spec import LabSpec


# Calico publishes every release image to docker.io/calico and to quay.io/calico (projectcalico/calico
# v3.32.1 release/internal/registry/registry.go: DefaultCalicoRegistries), and its manifests/calico.yaml
# names quay.io/calico/* since v3.31.0 (projectcalico/calico#10025; v3.31.0 … v3.32.1 and the v3.33
# development tag checked). quay.io has no anonymous pull limit like Docker Hub's. The lab takes
# Calico from quay.io whatever the manifest it is given says (an older or mirrored copy may still
# name docker.io): 50-cni-calico's sed makes the same rewrite on the manifest the cluster applies,
# and the warm cache fills and imports the rewritten names, so both sides agree on every name.
CALICO_REGISTRY = "quay.io/calico"
REGISTRY_REWRITES: dict[str, str] = {"docker.io/calico/": f"{CALICO_REGISTRY}/"}


def lab_reference(normalized: str) -> str:
    """The name the lab pulls an image under, from its normalized reference (as containerd names it:
    docker.io/calico/node:v3.33.0 → quay.io/calico/node:v3.33.0; others unchanged)."""
    for prefix, replacement in REGISTRY_REWRITES.items():
        if normalized.startswith(prefix):
            return replacement + normalized[len(prefix) :]
    return normalized


def images(spec: LabSpec) -> dict[str, str]:
    """Container images the lab runs whose tags labctl pins (key → reference).

    kubeadm's own images (etcd, coredns, pause) are pinned to what kubeadm at the pinned version
    pulls. Images named inside the add-on manifests (e.g. the csi-driver-nfs sidecars) are fixed by
    the locked manifest URLs; the warm cache reads them out of the manifests (``labctl.cache_needs``).
    """
    from labctl.versions import PINS

    k8s = PINS["kubernetes"]
    out = {
        "kube-apiserver": f"registry.k8s.io/kube-apiserver:v{k8s}",
        "kube-controller-manager": f"registry.k8s.io/kube-controller-manager:v{k8s}",
        "kube-scheduler": f"registry.k8s.io/kube-scheduler:v{k8s}",
        "kube-proxy": f"registry.k8s.io/kube-proxy:v{k8s}",
        "etcd": f"registry.k8s.io/etcd:{PINS['etcd']}",
        "coredns": f"registry.k8s.io/coredns/coredns:v{PINS['coredns']}",
        "pause": f"registry.k8s.io/pause:{PINS['pause']}",
        # Docker Hub limits anonymous pulls (about 10 an hour per address, manifests counted): images
        # come from quay.io where upstream publishes there too (curl/curl-container README;
        # Prometheus: quay.io/prometheus; Calico: CALICO_REGISTRY, the same names its manifest gets
        # by REGISTRY_REWRITES). Ollama and Grafana publish on Docker Hub only.
        "calico-cni": f"{CALICO_REGISTRY}/cni:v{PINS['calico']}",
        "calico-node": f"{CALICO_REGISTRY}/node:v{PINS['calico']}",
        "calico-kube-controllers": f"{CALICO_REGISTRY}/kube-controllers:v{PINS['calico']}",
        "metallb-controller": f"quay.io/metallb/controller:v{PINS['metallb']}",
        "metallb-speaker": f"quay.io/metallb/speaker:v{PINS['metallb']}",
        "csi-nfsplugin": f"registry.k8s.io/sig-storage/nfsplugin:v{PINS['csi_driver_nfs']}",
        "metrics-server": f"registry.k8s.io/metrics-server/metrics-server:v{PINS['metrics_server']}",
        "ollama": f"docker.io/ollama/ollama:{PINS['ollama']}",
        "open-webui": f"ghcr.io/open-webui/open-webui:v{PINS['open_webui']}",
        "curl": f"quay.io/curl/curl:{PINS['curl_image']}",
    }
    if spec.apps.options.gpu:
        out["nvidia-device-plugin"] = f"nvcr.io/nvidia/k8s-device-plugin:v{PINS['nvidia_device_plugin']}"
    if spec.apps.options.monitoring:
        out["prometheus"] = f"quay.io/prometheus/prometheus:v{PINS['prometheus']}"
        out["grafana"] = f"docker.io/grafana/grafana:{PINS['grafana']}"
        out["blackbox-exporter"] = f"quay.io/prometheus/blackbox-exporter:v{PINS['blackbox_exporter']}"
    return out


def manifests() -> dict[str, tuple[str, str]]:
    """Upstream manifests the lab applies: name → (version, URL)."""
    from labctl.versions import PINS

    calico, metallb, nfs, ms = PINS["calico"], PINS["metallb"], PINS["csi_driver_nfs"], PINS["metrics_server"]
    return {
        "calico": (calico, f"https://raw.githubusercontent.com/projectcalico/calico/v{calico}/manifests/calico.yaml"),
        "metallb": (
            metallb,
            f"https://raw.githubusercontent.com/metallb/metallb/v{metallb}/config/manifests/metallb-native.yaml",
        ),
        "csi-driver-nfs": (
            nfs,
            f"https://raw.githubusercontent.com/kubernetes-csi/csi-driver-nfs/v{nfs}/deploy/v{nfs}/",
        ),
        "metrics-server": (
            ms,
            f"https://github.com/kubernetes-sigs/metrics-server/releases/download/v{ms}/components.yaml",
        ),
    }


def packages() -> dict[str, str]:
    """apt packages on every Kubernetes node: name → version pattern (apt's ``name=version``)."""
    from labctl.versions import PINS

    k8s = f"{PINS['kubernetes']}-{PINS['kubernetes_deb_revision']}"
    cri = f"{PINS['cri_tools']}-{PINS['kubernetes_deb_revision']}"  # installed explicitly since 1.32
    # containerd and runc are not apt packages any more: labctl.versions.release_downloads
    return {"kubeadm": k8s, "kubelet": k8s, "kubectl": k8s, "cri-tools": cri}
