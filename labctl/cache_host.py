"""The host side of a warm cache: the box's metadata for `vagrant box add`, and adding the pinned
box to Vagrant before `vagrant up` (``prepare_host_for_cache``), so that no laptop downloads it.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from labctl.cache_needs import CacheError, box_file, human, sha256_file

if TYPE_CHECKING:
    from labctl.spec import LabSpec


def write_box_metadata(spec: LabSpec, root: Path) -> Path:
    """boxes/<box>.json: `vagrant box add boxes/<box>.json` adds the cached file under the pinned name
    and version (a bare .box file would be added without a version, and the Vagrantfile pins one)."""
    box = root / box_file(spec)
    path = box.with_suffix(".json")
    path.write_text(json.dumps(box_metadata(spec, box, sha256_file(box)), indent=2) + "\n", encoding="utf-8")
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
        meta.write_text(json.dumps(box_metadata(spec, box, sha256 or sha256_file(box))), encoding="utf-8")
        added = run(
            ["vagrant", "box", "add", "--force", str(meta)], capture_output=True, text=True, env=env, check=False
        )
    if added.returncode != 0:
        tail = " ".join((added.stderr or added.stdout or "").strip().splitlines()[-3:])
        raise CacheError(f"vagrant box add of {box} failed (exit {added.returncode}): {tail}")
    return f"added box {label} to Vagrant from the warm cache ({human(box.stat().st_size)})"
