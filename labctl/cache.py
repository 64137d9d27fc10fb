"""The warm cache: everything a lab downloads, gathered once, so a room of students downloads nothing.

Layout of a cache folder (``labctl cache fill DIR`` writes it; copy it to a USB stick or serve it)::

    DIR/boxes/<box>-<version>-<provider>.box (+ .json: metadata for `vagrant box add`)
    DIR/debs/*.deb, Packages, SHA256SUMS       a flat apt repository (Packages written by fill)
    DIR/images/<reference>.tar                 OCI image archives, importable with `ctr images import`
    DIR/models/blobs/sha256-<hex>              Ollama's own models layout (OLLAMA_MODELS): seeding
    DIR/models/manifests/<registry>/<ns>/<model>/<tag>   is a plain copy onto the NFS export
    DIR/addons/...                             the add-on manifests (Calico, MetalLB, csi-driver-nfs,
                                               metrics-server), named as under /etc/labctl/addons/

What a lab needs comes from the same place as the lock (``labctl.lock``: box, packages, images,
models), so ``labctl cache status`` and ``labctl lock`` can never disagree about the list.

Fetching goes through ``Fetcher`` objects over a ``Source`` (http(s):// via httpx, or file://):
- ``--mirror URL``: every item from a base URL laid out like a cache (another instructor's cache);
- upstream: models and images from their registries (the OCI distribution API — registry.ollama.ai
  speaks it too; anonymous bearer tokens), .debs from the apt repositories' Packages indexes, the
  box from Vagrant Cloud. Upstream hosts are the ``Upstreams`` defaults; tests point them at a
  loopback server, because this project's test machines cannot reach the internet.

``create --cache DIR`` hands a ``CacheInfo`` (what is present, with sizes) to ``build_plan``; the
playbooks 05-warm-cache-packages and 25-warm-cache-seed render only then (``when: cache``). On the
nodes the cache is read from ``CacheInfo.node_dir`` (the Vagrantfile mounts DIR there read-only).
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import json
import os
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

from labctl.errors import LabctlError
from labctl.spec import LabSpec
from labctl.versions import release_downloads

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
    from labctl.lock import images, packages

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
        raise CacheError(f"{where}: not valid YAML ({str(err).splitlines()[0]}) — delete it and run `labctl cache fill` again") from None
    return found


def addon_images(root: Path) -> list[str]:
    """The images named in the add-on manifests present in the cache (Calico, MetalLB, csi-driver-nfs
    and its sidecars, metrics-server), each once."""
    out: list[str] = []
    for _, rel, _ in addon_files():
        path = root / rel
        if path.is_file():
            for ref in manifest_images(path.read_text(encoding="utf-8"), str(path)):
                if ref not in out:
                    out.append(ref)
    return out


# The add-on manifests the playbooks download on the control plane, in the names they use under
# /etc/labctl/addons/ (their fetch steps skip the download when the file is already there).
CSI_NFS_FILES = ("rbac-csi-nfs.yaml", "csi-nfs-driverinfo.yaml", "csi-nfs-controller.yaml", "csi-nfs-node.yaml")


def addon_files() -> list[tuple[str, str, str]]:
    """(lock key, path in the cache, upstream URL) for every add-on manifest file."""
    from labctl.lock import manifests

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


# ---- what a cache holds ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Present:
    item: Item
    files: tuple[tuple[str, int], ...]  # (relative path, size); empty = missing

    @property
    def ok(self) -> bool:
        return bool(self.files)

    @property
    def size(self) -> int:
        return sum(s for _, s in self.files)


def _model_files(root: Path, manifest_rel: str) -> tuple[tuple[str, int], ...]:
    manifest = root / manifest_rel
    if not manifest.is_file():
        return ()
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        layers = [data["config"], *data["layers"]]
    except (ValueError, KeyError, TypeError):
        return ()
    files = [(manifest_rel, manifest.stat().st_size)]
    for layer in layers:
        rel = f"models/blobs/{layer['digest'].replace(':', '-')}"
        blob = root / rel
        if not blob.is_file() or blob.stat().st_size != int(layer["size"]):
            return ()  # a half-copied model is a missing model
        files.append((rel, blob.stat().st_size))
    return tuple(files)


def _present(root: Path, item: Item) -> Present:
    if item.kind == "deb":
        matches = sorted(p for p in (root / "debs").glob("*.deb") if fnmatch.fnmatch(f"debs/{p.name}", item.path))
        return Present(item, tuple((f"debs/{p.name}", p.stat().st_size) for p in matches[-1:]))
    if item.kind == "model":
        return Present(item, _model_files(root, item.path))
    p = root / item.path
    return Present(item, ((item.path, p.stat().st_size),) if p.is_file() else ())


def scan(spec: LabSpec, root: Path) -> list[Present]:
    return [_present(root, item) for item in needed_items(spec, root)]


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def status_table(spec: LabSpec, root: Path) -> tuple[str, bool]:
    rows = scan(spec, root)
    width = max(len(r.item.name) for r in rows)
    lines = [
        f"warm cache {root} for lab {spec.name!r} ({spec.arch}):",
        f"  {'KIND':<8} {'ITEM':<{width}}  {'STATE':<8} SIZE",
    ]
    for r in rows:
        state = "present" if r.ok else "MISSING"
        lines.append(f"  {r.item.kind:<8} {r.item.name:<{width}}  {state:<8} {human(r.size) if r.ok else '-'}")
    missing = sum(not r.ok for r in rows)
    total = sum(r.size for r in rows)
    if any(r.item.kind == "manifest" and not r.ok for r in rows):
        lines.append(
            "  (the images named inside the missing add-on manifests are listed once `cache fill` has fetched them)"
        )
    lines.append(
        f"{len(rows) - missing}/{len(rows)} present, {human(total)}"
        + (f"; {missing} missing — run `labctl cache fill {root}` on a machine with internet" if missing else "")
    )
    lines.append(arches_line(spec, root))
    return "\n".join(lines) + "\n", missing == 0


def served_arches(spec: LabSpec, root: Path) -> dict[str, tuple[int, int]]:
    """architecture → (items present, items needed) of this lab in the cache, for amd64 and arm64.
    Models and add-on manifests serve both; boxes, .debs and images are per architecture."""
    from labctl.arch import ARCHES, with_arch

    out: dict[str, tuple[int, int]] = {}
    for arch in ARCHES:
        rows = scan(with_arch(spec, arch), root)
        out[arch] = (sum(r.ok for r in rows), len(rows))
    return out


def arches_line(spec: LabSpec, root: Path) -> str:
    parts = []
    for arch, (have, need) in served_arches(spec, root).items():
        state = "complete" if have == need else f"{have}/{need} items"
        parts.append(f"{arch} {state}" + (" (this lab)" if arch == spec.arch else ""))
    serves = [a for a, (have, need) in served_arches(spec, root).items() if have == need]
    return f"architectures: {', '.join(parts)} — serves {', '.join(serves) if serves else 'none yet'}"


def known_digests(spec: LabSpec, root: Path) -> dict[str, str]:
    """Content digests of what the cache holds, for `labctl lock --cache`: image manifest digests
    (from the archive's index.json), model manifest digests (what `ollama list` shows), box sha256."""
    out: dict[str, str] = {}
    for r in scan(spec, root):
        if not r.ok:
            continue
        path = root / r.files[0][0]
        if r.item.kind == "image":
            with tarfile.open(path) as tar:
                member = tar.extractfile("index.json")
                if member is not None:
                    out[r.item.key] = json.load(member)["manifests"][0]["digest"]
        elif r.item.kind == "model":
            out[r.item.key] = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        elif r.item.kind == "box":
            out[r.item.key] = "sha256:" + _sha256_file(path)
    return out


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


# ---- the plan's view of a cache (what the seeding steps render from) ---------------------------------
@dataclass(frozen=True)
class CachedFile:
    name: str  # image reference or deb file name
    path: str  # relative to the cache folder
    size: int


@dataclass(frozen=True)
class CachedModel:
    name: str
    files: tuple[CachedFile, ...]  # manifest first, then blobs (paths relative to DIR/models)

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class CacheInfo:
    host_dir: str
    node_dir: str = NODE_DIR
    debs: tuple[CachedFile, ...] = ()
    images: tuple[CachedFile, ...] = ()
    models: tuple[CachedModel, ...] = ()
    addons: tuple[CachedFile, ...] = ()  # name = path under /etc/labctl/addons/ on the control plane
    releases: tuple[CachedFile, ...] = ()  # containerd/runc release files (complete set only)
    models_dest: str = ""  # on the NFS node: the Ollama volume's folder on the export
    missing: tuple[str, ...] = field(default_factory=tuple)
    # node name → the cached images that node runs (labctl.disk_sizing.node_image_keys): a worker
    # does not import the control plane's images, the master not Ollama's or Open WebUI's.
    images_by_node: dict[str, tuple[CachedFile, ...]] = field(default_factory=dict)
    # libvirt: the cache is an rsync copy inside each VM, so an imported archive can go (it would
    # otherwise sit on the VM's disk next to containerd's two copies of the same image).
    delete_after_import: bool = False

    def __bool__(self) -> bool:  # `when: cache` in a playbook
        return True


def ollama_models_dir(spec: LabSpec) -> str:
    """The Ollama volume's folder on the NFS export: the StorageClass's subDir is
    <namespace>/<pvc name> (manifests/lab/storage.yaml.j2), the claim is ollama-models in the lab
    namespace, and the container sets OLLAMA_MODELS to the volume's root."""
    from labctl.manifests import DEFAULT_NAMESPACE

    return f"{spec.nodes.nfs.export.rstrip('/')}/{DEFAULT_NAMESPACE}/ollama-models"


def inspect_cache(root: Path, spec: LabSpec, node_dir: str = NODE_DIR) -> CacheInfo:
    """Read a cache folder (I/O happens here, before planning) into what the plan renders from."""
    if not root.is_dir():
        raise CacheError(f"--cache {root}: no such folder — fill it with `labctl cache fill {root}` first")
    debs: list[CachedFile] = []
    images: list[CachedFile] = []
    models: list[CachedModel] = []
    addons: list[CachedFile] = []
    releases: list[CachedFile] = []
    missing: list[str] = []
    for r in scan(spec, root):
        if not r.ok:
            missing.append(r.item.name)
            continue
        if r.item.kind == "deb":
            rel, size = r.files[0]
            name = rel.removeprefix("debs/")
            if not SAFE_NAME.match(name):
                raise CacheError(f"{root / rel}: unexpected characters in a .deb file name — rename it")
            debs.append(CachedFile(name, rel, size))
        elif r.item.kind == "image":
            images.append(CachedFile(r.item.name, r.files[0][0], r.files[0][1]))
        elif r.item.kind == "model":
            files = tuple(CachedFile(rel, rel.removeprefix("models/"), size) for rel, size in r.files)
            models.append(CachedModel(r.item.name, files))
        elif r.item.kind == "manifest":
            rel, size = r.files[0]
            addons.append(CachedFile(rel.removeprefix("addons/"), rel, size))
        elif r.item.kind == "release":
            rel, size = r.files[0]
            releases.append(CachedFile(rel.removeprefix("releases/"), rel, size))
    if debs:
        for extra in ("Packages", "SHA256SUMS"):
            if not (root / "debs" / extra).is_file():
                raise CacheError(f"{root}/debs/{extra} is missing — run `labctl cache fill {root}` to write the index")
    from labctl.disk_sizing import node_image_refs
    from labctl.lock import images as lock_images

    pinned = set(lock_images(spec).values())
    by_node = {
        node.name: tuple(f for f in images if f.name in node_image_refs(spec, node) or f.name not in pinned)
        for _, node in spec.all_nodes()
        if "k8s" in spec.roles_of(node)
    }
    return CacheInfo(
        images_by_node=by_node,
        delete_after_import=spec.provider.type == "libvirt",
        host_dir=str(root.resolve()),
        node_dir=node_dir,
        debs=tuple(debs),
        images=tuple(images),
        models=tuple(models),
        addons=tuple(addons),
        # all or nothing: the install step copies every release file from the cache, or downloads all
        releases=tuple(releases) if len(releases) == len(release_downloads(getattr(spec, "arch", DEB_ARCH))) else (),
        models_dest=ollama_models_dir(spec),
        missing=tuple(missing),
    )


# ---- sources and fetchers --------------------------------------------------------------------------
@dataclass
class Upstreams:
    """Where `cache fill` fetches from without --mirror. Tests point these at a loopback server."""

    ollama_registry: str = f"https://{OLLAMA_REGISTRY}"
    # reference host → registry base URL (docker.io's API lives on another host)
    registries: dict[str, str] = field(
        default_factory=lambda: {
            "docker.io": "https://registry-1.docker.io",
            "registry.k8s.io": "https://registry.k8s.io",
            "quay.io": "https://quay.io",
            "ghcr.io": "https://ghcr.io",
            "nvcr.io": "https://nvcr.io",
        }
    )
    # apt repositories: (base URL, path of the Packages index under it); first match wins
    apt: list[tuple[str, str]] = field(default_factory=list)
    vagrant_cloud: str = "https://vagrantcloud.com"
    # URL prefix → replacement, applied to add-on manifest URLs (tests point GitHub at loopback)
    url_rewrites: dict[str, str] = field(default_factory=dict)

    def rewrite(self, url: str) -> str:
        for prefix, replacement in self.url_rewrites.items():
            if url.startswith(prefix):
                return replacement + url[len(prefix) :]
        return url

    @classmethod
    def default(cls, arch: str = DEB_ARCH) -> Upstreams:
        from labctl.versions import kubernetes_minor

        minor = kubernetes_minor()
        # Ubuntu serves amd64 from archive.ubuntu.com and every other architecture (arm64 included)
        # from ports.ubuntu.com/ubuntu-ports; pkgs.k8s.io's flat index lists every architecture.
        ubuntu = "http://archive.ubuntu.com/ubuntu/" if arch == "amd64" else "http://ports.ubuntu.com/ubuntu-ports/"
        return cls(
            apt=[
                (f"https://pkgs.k8s.io/core:/stable:/v{minor}/deb/", "Packages"),
                (ubuntu, f"dists/noble-updates/main/binary-{arch}/Packages.gz"),
                (ubuntu, f"dists/noble/main/binary-{arch}/Packages.gz"),
            ]
        )


class Source:
    """GET over http(s):// (httpx, redirects followed, anonymous bearer tokens) or file://."""

    # A registry that says 429 (Docker Hub: about 10 anonymous pulls an hour per address, manifest
    # requests included) or 503 is asked again after its Retry-After, a few times, if that is short.
    RATE_LIMIT_RETRIES = 3
    MAX_RETRY_AFTER_SECONDS = 300.0

    def __init__(self, timeout: float = 60.0, sleep: Callable[[float], None] | None = None) -> None:
        import time

        self.timeout = timeout
        self._client: Any = None
        self._tokens: dict[str, str] = {}
        self.bytes_downloaded = 0
        self.sleep = sleep or time.sleep

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            self._client = httpx.Client(follow_redirects=True, timeout=self.timeout)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    @contextmanager
    def open(self, url: str, headers: dict[str, str] | None = None, _attempt: int = 0) -> Iterator[Iterator[bytes]]:
        if url.startswith("file://"):
            path = Path(url.removeprefix("file://"))
            if not path.is_file():
                raise CacheError(f"{url}: not found")

            def chunks() -> Iterator[bytes]:
                with path.open("rb") as f:
                    while chunk := f.read(CHUNK):
                        self.bytes_downloaded += len(chunk)
                        yield chunk

            yield chunks()
            return
        client = self._http()
        hdrs = dict(headers or {})
        scope = url.split("/v2/")[0] if "/v2/" in url else ""
        if scope in self._tokens:
            hdrs["Authorization"] = f"Bearer {self._tokens[scope]}"
        wait: float | None = None
        with client.stream("GET", url, headers=hdrs) as resp:
            if resp.status_code == 401 and scope and "Authorization" not in hdrs:
                resp.read()
                self._tokens[scope] = self._token(resp.headers.get("www-authenticate", ""), url)
            elif resp.status_code in (429, 503):
                resp.read()
                wait = retry_after_seconds(resp.headers.get("retry-after"), default=30.0 * (_attempt + 1))
                if _attempt >= self.RATE_LIMIT_RETRIES or wait > self.MAX_RETRY_AFTER_SECONDS:
                    raise CacheError(
                        f"GET {url}: HTTP {resp.status_code}, the registry asks to wait {wait:.0f} s — it rate-limits "
                        "this address (Docker Hub: about 10 anonymous pulls an hour, manifests included): fill the "
                        "cache later, from another network, or with --mirror"
                    )
            else:
                if resp.status_code != 200:
                    raise CacheError(f"GET {url}: HTTP {resp.status_code}")

                def chunks() -> Iterator[bytes]:
                    for chunk in resp.iter_bytes(CHUNK):
                        self.bytes_downloaded += len(chunk)
                        yield chunk

                yield chunks()
                return
        if wait is not None:
            self.sleep(wait)
            with self.open(url, headers, _attempt + 1) as again:
                yield again
            return
        with self.open(url, headers, _attempt) as again:  # retry once with the token
            yield again

    def _token(self, challenge: str, url: str) -> str:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        if not challenge.lower().startswith("bearer") or "realm" not in params:
            raise CacheError(f"GET {url}: HTTP 401 and no anonymous token offered — this registry needs a login")
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        resp = self._http().get(params["realm"], params=query)
        if resp.status_code != 200:
            raise CacheError(f"token from {params['realm']}: HTTP {resp.status_code}")
        data = resp.json()
        return data.get("token") or data["access_token"]

    def read(self, url: str, headers: dict[str, str] | None = None) -> bytes:
        with self.open(url, headers) as chunks:
            return b"".join(chunks)

    def download(self, url: str, dest: Path, *, sha256: str | None = None, size: int | None = None) -> int:
        """Write url to dest atomically, verifying digest/size when given; returns bytes written."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        h = hashlib.sha256()
        written = 0
        with self.open(url) as chunks, tmp.open("wb") as f:
            for chunk in chunks:
                f.write(chunk)
                h.update(chunk)
                written += len(chunk)
        if sha256 and h.hexdigest() != sha256.removeprefix("sha256:"):
            tmp.unlink()
            raise CacheError(f"{url}: sha256 {h.hexdigest()} does not match the expected {sha256}")
        if size is not None and written != size:
            tmp.unlink()
            raise CacheError(f"{url}: {written} bytes, expected {size}")
        os.replace(tmp, dest)
        return written


def retry_after_seconds(value: str | None, default: float) -> float:
    """Retry-After as seconds: a number of seconds or an HTTP date (RFC 9110 section 10.2.3)."""
    if not value:
        return default
    value = value.strip()
    if value.isdigit():
        return float(value)
    from datetime import datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


def split_reference(ref: str) -> tuple[str, str, str]:
    """docker.io/ollama/ollama:0.40.1 → (docker.io, ollama/ollama, 0.40.1);
    registry.k8s.io/x@sha256:ab → (registry.k8s.io, x, sha256:ab) — the part after the name is what
    the registry's /manifests/ endpoint takes."""
    host, _, rest = ref.partition("/")
    if "@" in rest:
        name, _, digest = rest.partition("@")
        return host, name, digest
    name, _, tag = rest.rpartition(":")
    return host, name, tag


def fetch_model(source: Source, base: str, model: str, root: Path) -> int:
    """A model from an Ollama registry (OCI distribution API) into root/models, Ollama's layout."""
    ns, repo, tag = model_parts(model)
    raw = source.read(f"{base}/v2/{ns}/{repo}/manifests/{tag}", {"Accept": MANIFEST_TYPES})
    data = json.loads(raw)
    written = 0
    for layer in [data["config"], *data["layers"]]:
        blob = inside(root, "models/blobs/" + layer["digest"].replace(":", "-"))
        if blob.is_file() and blob.stat().st_size == int(layer["size"]):
            continue
        written += source.download(f"{base}/v2/{ns}/{repo}/blobs/{layer['digest']}", blob, sha256=layer["digest"])
    manifest = inside(root, model_manifest_path(model))
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_bytes(raw)  # last: a manifest only exists when all its blobs do
    return written + len(raw)


def fetch_model_from_mirror(source: Source, base: str, model: str, root: Path) -> int:
    """A model from a mirror laid out like a cache (models/manifests/..., models/blobs/...)."""
    rel = model_manifest_path(model)
    raw = source.read(f"{base}/{rel}")
    data = json.loads(raw)
    written = 0
    for layer in [data["config"], *data["layers"]]:
        name = layer["digest"].replace(":", "-")
        blob = inside(root, f"models/blobs/{name}")
        if blob.is_file() and blob.stat().st_size == int(layer["size"]):
            continue
        written += source.download(f"{base}/models/blobs/{name}", blob, sha256=layer["digest"])
    inside(root, rel).parent.mkdir(parents=True, exist_ok=True)
    inside(root, rel).write_bytes(raw)
    return written + len(raw)


def fetch_image(source: Source, base: str, ref: str, dest: Path, platform: str = "linux/amd64") -> int:
    """An image from a registry into one OCI archive (what `ctr images import` reads)."""
    _, name, tag = split_reference(ref)
    os_, arch = platform.split("/")
    raw = source.read(f"{base}/v2/{name}/manifests/{tag}", {"Accept": MANIFEST_TYPES})
    data = json.loads(raw)
    if "manifests" in data:  # an index: pick the platform
        picks = [
            m
            for m in data["manifests"]
            if m.get("platform", {}).get("os") == os_ and m["platform"].get("architecture") == arch
        ]
        if not picks:
            raise CacheError(f"{ref}: no {platform} image in its index")
        raw = source.read(f"{base}/v2/{name}/manifests/{picks[0]['digest']}", {"Accept": MANIFEST_TYPES})
        data = json.loads(raw)
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    media = data.get("mediaType", "application/vnd.oci.image.manifest.v1+json")
    with tempfile.TemporaryDirectory(dir=dest.parent if dest.parent.exists() else None) as tmpd:
        tmp = Path(tmpd)
        for blob in [data["config"], *data["layers"]]:
            source.download(
                f"{base}/v2/{name}/blobs/{blob['digest']}",
                tmp / "blobs" / "sha256" / blob["digest"].split(":")[1],
                sha256=blob["digest"],
            )
        (tmp / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(raw)
        (tmp / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": media,
                    "digest": digest,
                    "size": len(raw),
                    "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": tag},
                }
            ],
        }
        (tmp / "index.json").write_text(json.dumps(index))
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        with tarfile.open(part, "w") as tar:
            for member in ("oci-layout", "index.json", "blobs"):
                tar.add(tmp / member, arcname=member)
        os.replace(part, dest)
    return dest.stat().st_size


def parse_packages(text: str) -> list[dict[str, str]]:
    """A Debian Packages index → one dict per stanza (continuation lines dropped; we need no long fields)."""
    out: list[dict[str, str]] = []
    for stanza in re.split(r"\n\s*\n", text.strip()):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            k, _, v = line.partition(":")
            fields[k.strip()] = v.strip()
        if fields:
            out.append(fields)
    return out


def _version_key(version: str) -> list[Any]:
    """Good-enough ordering of Debian versions for picking the newest of one release's revisions."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", version)]


def fetch_deb(
    source: Source,
    repos: list[tuple[str, str]],
    name: str,
    pattern: str,
    root: Path,
    indexes: dict[str, list[dict[str, str]]],
    arch: str = DEB_ARCH,
) -> int:
    for base, index_path in repos:
        url = base.rstrip("/") + "/" + index_path
        if url not in indexes:
            try:
                raw = source.read(url)
            except CacheError:
                indexes[url] = []
                continue
            indexes[url] = parse_packages((gzip.decompress(raw) if url.endswith(".gz") else raw).decode())
        candidates = [
            p
            for p in indexes[url]
            if p.get("Package") == name
            and p.get("Architecture") in (arch, "all")
            and fnmatch.fnmatch(p.get("Version", ""), pattern)
        ]
        if candidates:
            best = max(candidates, key=lambda p: _version_key(p["Version"]))
            dest = root / "debs" / Path(best["Filename"]).name
            if dest.is_file() and _sha256_file(dest) == best.get("SHA256"):
                return 0
            return source.download(base.rstrip("/") + "/" + best["Filename"], dest, sha256=best.get("SHA256"))
    raise CacheError(f"{name}={pattern}: not found in {', '.join(b for b, _ in repos)}")


def write_apt_index(debs_dir: Path) -> None:
    """Packages + SHA256SUMS for a flat repository (`deb [trusted=yes] file:/dir ./`), built with
    dpkg-deb so it works without dpkg-dev."""
    stanzas: list[str] = []
    sums: list[str] = []
    for deb in sorted(debs_dir.glob("*.deb")):
        control = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True).stdout
        digest = _sha256_file(deb)
        stanzas.append(
            control.rstrip("\n") + f"\nFilename: ./{deb.name}\nSize: {deb.stat().st_size}\nSHA256: {digest}\n"
        )
        sums.append(f"{digest}  {deb.name}")
    (debs_dir / "Packages").write_text("\n".join(stanzas), encoding="utf-8")
    (debs_dir / "SHA256SUMS").write_text("".join(s + "\n" for s in sums), encoding="utf-8")


def write_box_metadata(spec: LabSpec, root: Path) -> Path:
    """boxes/<box>.json: `vagrant box add boxes/<box>.json` adds the cached file under the pinned name
    and version (a bare .box file would be added without a version, and the Vagrantfile pins one)."""
    box = root / box_file(spec)
    path = box.with_suffix(".json")
    path.write_text(json.dumps(box_metadata(spec, box, _sha256_file(box)), indent=2) + "\n", encoding="utf-8")
    return path


def box_metadata(spec: LabSpec, box: Path, sha256: str) -> dict[str, Any]:
    """Vagrant's box catalog format for one local box file under the pinned name and version."""
    provider = "libvirt" if spec.provider.type == "libvirt" else "virtualbox"
    return {
        "name": spec.box,
        "versions": [
            {
                "version": spec.box_version,
                "providers": [
                    {
                        "name": provider,
                        # Vagrant 2.4+ with box_architecture set only takes a provider entry of that
                        # architecture (hashicorp/vagrant v2.4.9 lib/vagrant/box_metadata.rb, provider()).
                        "architecture": spec.arch,
                        "default_architecture": True,
                        "url": box.resolve().as_uri(),
                        "checksum_type": "sha256",
                        "checksum": sha256,
                    }
                ],
            }
        ],
    }


def box_add_command(spec: LabSpec, root: Path) -> list[str] | None:
    """`vagrant box add` of the cached box under its pinned name and version (None: not cached).
    Run on each laptop before `vagrant up`, which then finds the box and downloads nothing."""
    meta = (root / box_file(spec)).with_suffix(".json")
    if spec.provider.type == "ssh" or not meta.is_file():
        return None
    return ["vagrant", "box", "add", "--force", str(meta.resolve())]


def vagrant_boxes(listing: str) -> set[tuple[str, str, str]]:
    """`vagrant box list` → {(name, provider, version)}. Lines read `bento/ubuntu-24.04 (virtualbox,
    202510.26.0)`; newer Vagrant adds the architecture: `(virtualbox, 202510.26.0, (amd64))`."""
    out: set[tuple[str, str, str]] = set()
    for line in listing.splitlines():
        m = re.match(r"^(\S+)\s+\(([^,\s]+),\s*([^,\s)]+)", line.strip())
        if m:
            out.add((m.group(1), m.group(2), m.group(3)))
    return out


def prepare_host_for_cache(
    spec: LabSpec,
    cache_dir: Path | str,
    *,
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
    env: dict[str, str] | None = None,
) -> str:
    """Before `vagrant up` with a warm cache: make Vagrant know the pinned box from the cache, so that
    `vagrant up` downloads no box. Returns one line saying what happened; raises CacheError when
    `vagrant box add` fails.

    Skips the add when `vagrant box list` already shows the pinned name, provider and version (a
    re-add would unpack the whole box again on every create). The metadata handed to `vagrant box
    add` points at where the box file is now — the cache may have been copied (USB stick, another
    laptop) since `cache fill` wrote boxes/<box>.json — and keeps that file's checksum, which Vagrant
    verifies while adding."""
    if spec.provider.type == "ssh":
        return "provider ssh: the machines exist already, no box to add"
    root = Path(cache_dir).expanduser().resolve()
    provider = "libvirt" if spec.provider.type == "libvirt" else "virtualbox"
    label = f"{spec.box} {spec.box_version} ({provider})"
    box = root / box_file(spec)
    if not box.is_file():
        return f"the warm cache has no box {label}: `vagrant up` downloads it (`labctl cache fill` adds it)"
    listed = run(["vagrant", "box", "list"], capture_output=True, text=True, env=env, check=False)
    if listed.returncode == 0 and (spec.box, provider, spec.box_version) in vagrant_boxes(listed.stdout):
        return f"box {label} already added to Vagrant"
    sha256 = ""
    cached_meta = box.with_suffix(".json")
    if cached_meta.is_file():
        try:
            sha256 = json.loads(cached_meta.read_text(encoding="utf-8"))["versions"][0]["providers"][0]["checksum"]
        except (ValueError, KeyError, IndexError, TypeError):
            sha256 = ""
    with tempfile.TemporaryDirectory(prefix="labctl-box-") as tmp:
        meta = Path(tmp) / "box.json"
        meta.write_text(json.dumps(box_metadata(spec, box, sha256 or _sha256_file(box))), encoding="utf-8")
        added = run(["vagrant", "box", "add", "--force", str(meta)], capture_output=True, text=True, env=env, check=False)
    if added.returncode != 0:
        tail = " ".join((added.stderr or added.stdout or "").strip().splitlines()[-3:])
        raise CacheError(f"vagrant box add of {box} failed (exit {added.returncode}): {tail}")
    return f"added box {label} to Vagrant from the warm cache ({human(box.stat().st_size)})"


# ---- fill ------------------------------------------------------------------------------------------
@dataclass
class FillReport:
    fetched: list[tuple[str, int]] = field(default_factory=list)  # (item name, bytes)
    kept: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        total = sum(b for _, b in self.fetched)
        line = f"fetched {len(self.fetched)} items ({human(total)}), {len(self.kept)} already present"
        if self.failed:
            line += f", {len(self.failed)} FAILED: " + "; ".join(f"{n}: {why}" for n, why in self.failed)
        return line


def fill_cache(
    spec: LabSpec,
    root: Path,
    *,
    mirror: str | None = None,
    kinds: set[str] | None = None,
    upstreams: Upstreams | None = None,
    source: Source | None = None,
    echo: Callable[[str], None] = lambda _: None,
) -> FillReport:
    """Fetch every missing item. One failed item does not stop the others; the report says which."""
    root.mkdir(parents=True, exist_ok=True)
    up = upstreams or Upstreams.default(spec.arch)
    src = source or Source()
    report = FillReport()
    indexes: dict[str, list[dict[str, str]]] = {}
    base = mirror.rstrip("/") if mirror else ""
    if base and not base.startswith(("http://", "https://", "file://")):
        raise CacheError(f"--mirror {mirror}: use an http://, https:// or file:// URL")
    debs_changed = False
    try:
        # Two rounds: the images named inside the add-on manifests are only known once the manifests
        # are in the cache, so the second round picks up what the first one's manifests name.
        seen: set[str] = set()
        for _round in range(2):
            for present in scan(spec, root):
                if present.item.path in seen:
                    continue
                seen.add(present.item.path)
                debs_changed |= _fill_item(spec, root, present, kinds, base, up, src, indexes, report, echo)
    finally:
        if source is None:
            src.close()
    if debs_changed or ((root / "debs").is_dir() and not (root / "debs" / "Packages").exists()):
        write_apt_index(root / "debs")
    return report


def _fill_item(
    spec: LabSpec,
    root: Path,
    present: Present,
    kinds: set[str] | None,
    base: str,
    up: Upstreams,
    src: Source,
    indexes: dict[str, list[dict[str, str]]],
    report: FillReport,
    echo: Callable[[str], None],
) -> bool:
    """Fetch one item unless present or filtered out; True when a .deb was fetched."""
    item = present.item
    debs_changed = False
    if kinds and item.kind not in kinds:
        return False
    if present.ok:
        report.kept.append(item.name)
        return False
    echo(f"fetching {item.kind} {item.name}")
    try:
        if item.kind == "model":
            if base:
                n = fetch_model_from_mirror(src, base, item.name, root)
            else:
                n = fetch_model(src, up.ollama_registry, item.name, root)
        elif item.kind == "image":
            if base:
                n = src.download(f"{base}/{item.path}", root / item.path)
            else:
                host, _, _ = split_reference(item.name)
                # a registry not in the table speaks the API on its own host (gcr.io, public.ecr.aws, ...)
                registry = up.registries.get(host, f"https://{host}")
                n = fetch_image(src, registry, item.name, root / item.path, platform=f"linux/{spec.arch}")
        elif item.kind == "deb":
            pkg, _, pattern = item.name.partition("=")
            repos = [(base + "/debs/", "Packages")] if base else up.apt
            n = fetch_deb(src, repos, pkg, pattern, root, indexes, arch=spec.arch)
            debs_changed = True
        elif item.kind in ("manifest", "release"):
            url = f"{base}/{item.path}" if base else up.rewrite(item.url)
            n = src.download(url, root / item.path)
        else:  # box
            if base:
                url = f"{base}/{item.path}"
            else:
                org, _, box = spec.box.partition("/")
                provider = "libvirt" if spec.provider.type == "libvirt" else "virtualbox"
                url = (
                    f"{up.vagrant_cloud}/{org}/boxes/{box}/versions/{spec.box_version}"
                    f"/providers/{provider}/{spec.arch}/vagrant.box"
                )
            n = src.download(url, root / item.path)
            write_box_metadata(spec, root)
        report.fetched.append((item.name, n))
    except (CacheError, OSError, KeyError, ValueError) as err:
        report.failed.append((item.name, str(err)))
        echo(f"  failed: {err}")
    return debs_changed
