"""What a warm cache folder holds: ``scan`` (per needed item: present or missing, with sizes), the
``cache status`` table, the digests ``labctl lock --cache`` records, and ``inspect_cache`` — the
plan's view of a cache (``CacheInfo``), read before planning so that planning stays pure.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from labctl.cache_needs import (
    DEB_ARCH,
    NODE_DIR,
    SAFE_NAME,
    CacheError,
    Item,
    human,
    needed_items,
    sha256_file,
)
from labctl.versions import release_downloads

if TYPE_CHECKING:
    from labctl.spec import LabSpec


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
            out[r.item.key] = "sha256:" + sha256_file(path)
    return out


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
    from labctl.lab_pins import images as lock_images

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
