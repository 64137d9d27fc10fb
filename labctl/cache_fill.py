"""`labctl cache fill`: fetch every item a lab needs that the cache folder lacks, from upstream or
from a ``--mirror`` laid out like a cache. One failed item does not stop the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from labctl.cache_fetch import (
    Source,
    Upstreams,
    fetch_deb,
    fetch_image,
    fetch_model,
    fetch_model_from_mirror,
    split_reference,
    write_apt_index,
)
from labctl.cache_host import write_box_metadata
from labctl.cache_needs import CacheError, human
from labctl.cache_scan import Present, scan

if TYPE_CHECKING:
    from labctl.spec import LabSpec


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
