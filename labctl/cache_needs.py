"""What a lab needs from a warm cache, and the names things have inside one (labctl.cache says how
the cache is laid out and how its parts fit together).

The list comes from the same place as the lock (``labctl.lab_pins``: box, packages, images,
manifests), so ``labctl cache status`` and ``labctl lock`` can never disagree about it. The image
helpers here (``normalize_reference``, ``manifest_images``, ``addon_images``) are the stable place
for any module that needs to know which images a manifest runs.

Nothing here downloads; the only I/O is reading add-on manifests already in a cache folder.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labctl.errors import LabctlError
from labctl.versions import release_downloads

if TYPE_CHECKING:
    from labctl.spec import LabSpec

NODE_DIR = "/labctl-cache"  # where each node sees the cache (read-only mount)
OLLAMA_REGISTRY = "registry.ollama.ai"
DEB_ARCH = "amd64"  # the architecture of a lab that does not say (provider.arch resolves it: LabSpec.arch)
# Dependencies the pinned packages pull in from the same repositories (versions follow the repo).
DEB_DEPENDENCIES = {"kubernetes-cni": "*"}
SAFE_NAME = re.compile(r"^[A-Za-z0-9._+~%-]+$")
CHUNK = 1 << 20


class CacheError(LabctlError):
    exit_code = 1


# ---- what a lab needs -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Item:
    kind: str  # box | deb | image | model | manifest | release
    key: str  # the lock key (images.ollama, models.llama3.2:1b, packages.kubeadm, box.name)
    name: str  # what a person reads: docker.io/ollama/ollama:0.40.1, kubeadm=1.36.4-*, ...
    path: str  # relative to the cache folder; for debs a glob over debs/
    url: str = ""  # manifests: where upstream publishes the file


def safe_file_name(reference: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", reference)


def model_parts(model: str) -> tuple[str, str, str]:
    """llama3.2:1b → (library, llama3.2, 1b); someone/m → (someone, m, latest)."""
    name, _, tag = model.partition(":")
    ns, _, repo = name.rpartition("/")
    return ns or "library", repo, tag or "latest"


def inside(root: Path, rel: str) -> Path:
    """root/rel, refused unless it stays inside root: model names come from lab.yaml and digests
    from a registry's answer, and neither may write outside the cache (no '..', no absolute path)."""
    path = root / rel
    if rel.startswith("/") or ".." in Path(rel).parts or not path.resolve().is_relative_to(root.resolve()):
        raise CacheError(f"{rel!r} would be written outside the cache folder {root} — refusing it")
    return path


def model_manifest_path(model: str) -> str:
    ns, repo, tag = model_parts(model)
    return f"models/manifests/{OLLAMA_REGISTRY}/{ns}/{repo}/{tag}"


def arch_suffix(arch: str) -> str:
    """What an architecture adds to image and box file names. amd64 adds nothing, so a cache filled
    before labs had an architecture still serves amd64 labs; arm64 files sit beside them."""
    return "" if arch == DEB_ARCH else f".{arch}"


def box_file(spec: LabSpec) -> str:
    provider = "libvirt" if spec.provider.type == "libvirt" else "virtualbox"
    return f"boxes/{safe_file_name(spec.box)}-{spec.box_version}-{provider}{arch_suffix(spec.arch)}.box"


def needed_items(spec: LabSpec, root: Path | None = None) -> list[Item]:
    """Everything a lab downloads. With ``root`` (a cache folder), also the images named inside the
    add-on manifests already in it: those are only known once the manifests are fetched."""
    from labctl.lab_pins import images, packages

    out: list[Item] = []
    if spec.provider.type != "ssh":
        out.append(Item("box", "box.name", f"{spec.box} {spec.box_version}", box_file(spec)))
    for name, version in {**packages(), **DEB_DEPENDENCIES}.items():
        out.append(Item("deb", f"packages.{name}", f"{name}={version}", f"debs/{name}_{version}_{spec.arch}.deb"))
    suffix = arch_suffix(spec.arch)
    for key, ref in images(spec).items():
        out.append(Item("image", f"images.{key}", ref, f"images/{safe_file_name(ref)}{suffix}.tar"))
    for model in spec.apps.ollama.models:
        out.append(Item("model", f"models.{model}", model, model_manifest_path(model)))
    for key, rel, url in addon_files():
        out.append(Item("manifest", key, rel.removeprefix("addons/"), rel, url))
    for d in release_downloads(getattr(spec, "arch", DEB_ARCH)):  # containerd and runc release files
        out.append(Item("release", f"releases.{d.key}", d.file, f"releases/{d.file}", d.url))
    if root is not None:
        pinned = {normalize_reference(ref) for ref in images(spec).values()}
        for ref in addon_images(root):
            if ref not in pinned:
                out.append(Item("image", f"addon-images.{ref}", ref, f"images/{safe_file_name(ref)}{suffix}.tar"))
    return out


def normalize_reference(ref: str) -> str:
    """An image reference as containerd names it after a pull: calico/cni:v3 → docker.io/calico/cni:v3,
    busybox → docker.io/library/busybox:latest. With a digest the tag is dropped (the digest is what
    gets pulled, and what the kubelet then looks up)."""
    name, at, digest = ref.strip().partition("@")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, path = first, rest
    else:
        host, path = "docker.io", name
    if host == "docker.io" and "/" not in path:
        path = f"library/{path}"
    last = path.rsplit("/", 1)[-1]
    if at:
        if ":" in last:
            path = path.rsplit(":", 1)[0]
        return f"{host}/{path}@{digest}"
    return f"{host}/{path}" if ":" in last else f"{host}/{path}:latest"


POD_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")


def manifest_images(text: str, where: str = "manifest") -> list[str]:
    """Every container image a Kubernetes manifest (one or more YAML documents) runs, normalized,
    in order of first appearance. Walks every object, so Deployments, DaemonSets, Jobs, CronJobs
    and bare Pods are all covered; CRD schemas that merely describe a `containers` field are not
    lists of containers and are passed over."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # calico.yaml is large: use libyaml when present
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in POD_CONTAINER_LISTS and isinstance(value, list):
                    for container in value:
                        if isinstance(container, dict) and isinstance(container.get("image"), str):
                            ref = normalize_reference(container["image"])
                            if ref not in found:
                                found.append(ref)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    try:
        for document in yaml.load_all(text, Loader=loader):
            walk(document)
    except yaml.YAMLError as err:
        raise CacheError(
            f"{where}: not valid YAML ({str(err).splitlines()[0]}) — delete it and run `labctl cache fill` again"
        ) from None
    return found


def addon_images(root: Path) -> list[str]:
    """The images the add-on manifests present in the cache make the cluster pull (Calico, MetalLB,
    csi-driver-nfs and its sidecars, metrics-server), each once, under the names the lab pulls them
    by: the playbooks rewrite some registries before applying (labctl.lab_pins.lab_reference)."""
    from labctl.lab_pins import lab_reference

    out: list[str] = []
    for _, rel, _ in addon_files():
        path = root / rel
        if path.is_file():
            for ref in map(lab_reference, manifest_images(path.read_text(encoding="utf-8"), str(path))):
                if ref not in out:
                    out.append(ref)
    return out


# The add-on manifests the playbooks download on the control plane, in the names they use under
# /etc/labctl/addons/ (their fetch steps skip the download when the file is already there).
CSI_NFS_FILES = ("rbac-csi-nfs.yaml", "csi-nfs-driverinfo.yaml", "csi-nfs-controller.yaml", "csi-nfs-node.yaml")


def addon_files() -> list[tuple[str, str, str]]:
    """(lock key, path in the cache, upstream URL) for every add-on manifest file."""
    from labctl.lab_pins import manifests

    m = manifests()
    out = [
        ("manifests.calico.url", f"addons/calico-v{m['calico'][0]}.yaml", m["calico"][1]),
        ("manifests.metallb.url", f"addons/metallb-native-v{m['metallb'][0]}.yaml", m["metallb"][1]),
        (
            "manifests.metrics-server.url",
            f"addons/metrics-server-v{m['metrics-server'][0]}.yaml",
            m["metrics-server"][1],
        ),
    ]
    version, base = m["csi-driver-nfs"]
    out += [
        ("manifests.csi-driver-nfs.url", f"addons/csi-driver-nfs-v{version}/{name}", base + name)
        for name in CSI_NFS_FILES
    ]
    return out


# ---- helpers every part of the cache uses -------------------------------------------------------
def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()
