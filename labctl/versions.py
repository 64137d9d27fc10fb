"""Every upstream version labctl installs, pinned in one place.

Nothing else in the tree names a version: templates, playbooks and manifests read these through
``PINS`` (rendered as ``versions.<key>``), and ``labctl versions`` prints this table. Change a pin
here and the Vagrantfile, the playbooks, the manifests and the handout all follow.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pin:
    key: str
    version: str
    what: str
    source: str


_PINS: tuple[Pin, ...] = (
    # bento publishes VirtualBox builds; its libvirt builds are not reliably uploaded, so the libvirt
    # provider uses the cloud-image box, which publishes both.
    Pin(
        "box_virtualbox",
        "bento/ubuntu-24.04",
        "Vagrant box, provider virtualbox",
        "https://portal.cloud.hashicorp.com/vagrant/discover/bento/ubuntu-24.04",
    ),
    Pin("box_virtualbox_version", "202510.26.0", "its version", "chef/bento releases"),
    Pin(
        "box_libvirt",
        "cloud-image/ubuntu-24.04",
        "Vagrant box, provider libvirt",
        "https://portal.cloud.hashicorp.com/vagrant/discover/cloud-image/ubuntu-24.04",
    ),
    Pin("box_libvirt_version", "20260814.0.0", "its version", "cloud-image box releases"),
    Pin("kubernetes", "1.36.4", "kubeadm, kubelet, kubectl (apt, held)", "https://kubernetes.io/releases/"),
    # pkgs.k8s.io revisions are usually -1.1 but not always (1.36.2 shipped as -2.1), so the
    # package version is matched as <kubernetes>-* and the resolved one is recorded by `labctl lock`.
    Pin(
        "kubernetes_deb_revision",
        "*",
        "Debian revision of the pkgs.k8s.io packages",
        "https://pkgs.k8s.io/core:/stable:/v1.36/deb/",
    ),
    # The images `kubeadm init` runs besides the Kubernetes components, as kubeadm 1.36 names them
    # (cmd/kubeadm/app/constants: DefaultEtcdVersion, CoreDNSVersion, PauseVersion). Source: the output
    # of `kubeadm config images list` for v1.36.4, the same in several independent records (2026):
    # coredns/coredns:v1.14.2, pause:3.10.2, etcd:3.6.8-0. Change them together with the minor.
    Pin("etcd", "3.6.8-0", "image registry.k8s.io/etcd (kubeadm's default for 1.36)", "kubeadm config images list"),
    Pin(
        "coredns",
        "1.14.2",
        "image registry.k8s.io/coredns/coredns (kubeadm's default for 1.36)",
        "kubeadm config images list",
    ),
    Pin("pause", "3.10.2", "image registry.k8s.io/pause (kubeadm's default for 1.36)", "kubeadm config images list"),
    Pin("containerd", "2.2.1-*", "container runtime (Ubuntu 24.04 package containerd, held)", "Ubuntu noble-updates"),
    Pin(
        "calico",
        "3.33.1",
        "CNI (plain manifest, pod CIDR and autodetection set)",
        "https://github.com/projectcalico/calico/releases",
    ),
    Pin(
        "metallb",
        "0.16.1",
        "LoadBalancer for bare metal (native manifest, L2 mode)",
        "https://github.com/metallb/metallb/releases",
    ),
    Pin(
        "csi_driver_nfs",
        "4.13.5",
        "NFS CSI driver and its StorageClass",
        "https://github.com/kubernetes-csi/csi-driver-nfs/releases",
    ),
    Pin(
        "metrics_server",
        "0.9.0",
        "resource metrics for kubectl top and the HPA",
        "https://github.com/kubernetes-sigs/metrics-server/releases",
    ),
    Pin("ollama", "0.40.1", "image ollama/ollama", "https://github.com/ollama/ollama/releases"),
    Pin(
        "open_webui",
        "0.11.4",
        "image ghcr.io/open-webui/open-webui",
        "https://github.com/open-webui/open-webui/releases",
    ),
    Pin(
        "nvidia_device_plugin",
        "0.20.0",
        "NVIDIA k8s-device-plugin (GPU option)",
        "https://github.com/NVIDIA/k8s-device-plugin/releases",
    ),
    Pin(
        "prometheus",
        "3.15.0",
        "image prom/prometheus (monitoring option)",
        "https://github.com/prometheus/prometheus/releases",
    ),
    Pin(
        "grafana", "13.2.3", "image grafana/grafana (monitoring option)", "https://github.com/grafana/grafana/releases"
    ),
    Pin(
        "blackbox_exporter",
        "0.27.0",
        "image prom/blackbox-exporter (monitoring option: synthetic generate latency)",
        "https://github.com/prometheus/blackbox_exporter/releases",
    ),
    Pin(
        "curl_image", "8.16.0", "image curlimages/curl (model pre-pull Job)", "https://hub.docker.com/r/curlimages/curl"
    ),
)

PINS: dict[str, str] = {p.key: p.version for p in _PINS}


def all_pins() -> tuple[Pin, ...]:
    return _PINS


def kubernetes_minor(version: str | None = None) -> str:
    """``1.36.4`` -> ``1.36``: pkgs.k8s.io has one apt repository per minor release."""
    major, minor, *_ = (version or PINS["kubernetes"]).split(".")
    return f"{major}.{minor}"
