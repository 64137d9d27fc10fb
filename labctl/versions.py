"""Every upstream version labctl installs, pinned in one place.

Nothing else in the tree names a version: templates, playbooks and manifests read these through
``PINS`` (rendered as ``versions.<key>``), and ``labctl versions`` prints this table. Change a pin
here and the Vagrantfile, the playbooks, the manifests and the handout all follow.

Every pin carries the date it was last checked at its upstream source (``checked``): pins rot — a
tag is deleted, a box version is cleaned up, an apt pocket moves on. ``labctl versions --check``
(labctl/upstream_check.py) re-checks them all against the live upstreams; docs/upstream.md records
how each one was checked.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass

# The day the pins below were last checked against their upstream sources (docs/upstream.md).
CHECKED = "2026-12-03"


@dataclass(frozen=True)
class Pin:
    key: str
    version: str
    what: str
    source: str
    checked: str = CHECKED  # ISO date this pin was last confirmed at its source


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
    # Since Kubernetes 1.32 kubeadm's package no longer depends on cri-tools, so crictl (used by the
    # image pre-pull check) is installed explicitly, from the same pkgs.k8s.io repository; cri-tools
    # follows the Kubernetes minor (kubernetes-sigs/cri-tools tag v1.36.0).
    Pin(
        "cri_tools",
        "1.36.0",
        "crictl (apt cri-tools from pkgs.k8s.io, held)",
        "https://github.com/kubernetes-sigs/cri-tools/releases",
    ),
    # containerd and runc come from their upstream GitHub releases, which keep every version (Ubuntu's
    # noble-updates pocket keeps only its newest containerd, so a pinned .deb disappears when it moves).
    # containerd v2.2.7 (tag 2026-08-12) prints SystemdCgroup in `config default` (2.1.5+/2.2.0+);
    # runc 1.3.6 is the version containerd v2.2.7 is tested with (script/setup/runc-version).
    Pin(
        "containerd",
        "2.2.7",
        "container runtime (upstream release archive, sha256-verified)",
        "https://github.com/containerd/containerd/releases",
    ),
    Pin(
        "runc",
        "1.3.6",
        "OCI runtime containerd starts containers with (upstream release binary, sha256-verified)",
        "https://github.com/opencontainers/runc/releases",
    ),
    # 3.33.1 could not be confirmed by any public record (2026-12-03); v3.33.0's manifests/calico.yaml is
    # used by many public installs. Newest tag in a projectcalico/calico snapshot of 2026-08: v3.32.1.
    Pin(
        "calico",
        "3.33.0",
        "CNI (plain manifest, pod CIDR and autodetection set)",
        "https://github.com/projectcalico/calico/releases",
    ),
    Pin(
        "metallb",
        "0.16.1",
        "LoadBalancer for bare metal (native manifest, L2 mode)",
        "https://github.com/metallb/metallb/releases",
    ),
    # 4.13.5 is not a tag upstream; v4.13.4 is the newest, with its deploy/v4.13.4/ manifests
    # (kubernetes-csi/csi-driver-nfs, tags checked 2026-12-03).
    Pin(
        "csi_driver_nfs",
        "4.13.4",
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
    # The GPU worker's driver: Ubuntu's signed, prebuilt "server" (datacenter) branch for 24.04, installed
    # headless with `ubuntu-drivers install --gpgpu nvidia:<branch>` plus nvidia-utils-<branch> for
    # nvidia-smi. 580 is the branch Ubuntu's noble archive moves the older server branches onto
    # (nvidia-utils-565-server is a transitional package depending on nvidia-utils-580-server).
    Pin(
        "nvidia_driver",
        "580-server",
        "NVIDIA driver branch on the GPU worker (Ubuntu restricted, GPU option)",
        "https://packages.ubuntu.com/noble-updates/nvidia-utils-580-server",
    ),
    Pin(
        "prometheus",
        "3.15.0",
        "image quay.io/prometheus/prometheus (monitoring option)",
        "https://github.com/prometheus/prometheus/releases",
    ),
    Pin(
        "grafana", "13.2.3", "image grafana/grafana (monitoring option)", "https://github.com/grafana/grafana/releases"
    ),
    Pin(
        "blackbox_exporter",
        "0.27.0",
        "image quay.io/prometheus/blackbox-exporter (monitoring option: synthetic generate latency)",
        "https://github.com/prometheus/blackbox_exporter/releases",
    ),
    Pin(
        "curl_image", "8.16.0", "image quay.io/curl/curl (model pre-pull Job)", "https://github.com/curl/curl-container"
    ),
)

PINS: dict[str, str] = {p.key: p.version for p in _PINS}


def all_pins() -> tuple[Pin, ...]:
    return _PINS


@dataclass(frozen=True)
class Download:
    """One file a playbook downloads from an upstream release (the warm cache keeps it too)."""

    key: str
    file: str  # file name on the node and in the cache (releases/<file>)
    url: str


def release_downloads(arch: str = "amd64") -> tuple[Download, ...]:
    """containerd and runc from their GitHub releases, each with the checksum file published beside it.

    Asset names as the projects' release scripts write them: containerd's Makefile writes
    ``containerd-<v>-linux-<arch>.tar.gz`` and ``<that>.sha256sum`` (containerd/containerd v2.2.7,
    Makefile, release targets); runc's script/release_build.sh writes ``runc.<arch>`` and one
    ``runc.sha256sum`` for all of them. The archive holds no systemd unit: containerd.service comes
    from the repository at the same tag. The checksums are fetched from the same release, so they
    catch a corrupt or truncated download, not a compromised release; no sha256 of these archives
    is pinned here because none could be confirmed from a public record without internet access.
    """
    c, r = PINS["containerd"], PINS["runc"]
    ctr = f"containerd-{c}-linux-{arch}.tar.gz"
    rel = f"https://github.com/containerd/containerd/releases/download/v{c}"
    runc = f"https://github.com/opencontainers/runc/releases/download/v{r}"
    return (
        Download("containerd", ctr, f"{rel}/{ctr}"),
        Download("containerd-sha256sum", f"{ctr}.sha256sum", f"{rel}/{ctr}.sha256sum"),
        Download(
            "containerd-service",
            f"containerd-{c}.service",
            f"https://raw.githubusercontent.com/containerd/containerd/v{c}/containerd.service",
        ),
        Download("runc", f"runc-{r}.{arch}", f"{runc}/runc.{arch}"),
        Download("runc-sha256sum", f"runc-{r}.sha256sum", f"{runc}/runc.sha256sum"),
    )


# The cloud-image box project deletes a version once 10 newer ones exist, or once 5 newer ones exist and
# it is older than 183 days (FACTS.md #24). Its versions are build dates (20260814.0.0).
BOX_CLEANUP_DAYS = 183


def box_version_date(version: str) -> _dt.date | None:
    """``20260814.0.0`` -> 2026-08-14; None for a version that is not a build date (bento's 202510.26.0)."""
    head = version.split(".", 1)[0]
    if len(head) != 8 or not head.isdigit():
        return None
    try:
        return _dt.date(int(head[:4]), int(head[4:6]), int(head[6:]))
    except ValueError:
        return None


def expiry_note(pin: Pin) -> str:
    """When a pinned box version may disappear upstream ("" for pins that do not expire by policy)."""
    if pin.key != "box_libvirt_version":
        return ""
    built = box_version_date(pin.version)
    if built is None:
        return ""
    gone = built + _dt.timedelta(days=BOX_CLEANUP_DAYS)
    return f"may be deleted upstream from {gone.isoformat()} (cloud-image clean-up: >{BOX_CLEANUP_DAYS} days old and 5 newer)"


def kubernetes_minor(version: str | None = None) -> str:
    """``1.36.4`` -> ``1.36``: pkgs.k8s.io has one apt repository per minor release."""
    major, minor, *_ = (version or PINS["kubernetes"]).split(".")
    return f"{major}.{minor}"
