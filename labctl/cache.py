"""The warm cache: everything a lab downloads, gathered once, so a room of students downloads nothing.

Layout of a cache folder (``labctl cache fill DIR`` writes it; copy it to a USB stick or serve it)::

    DIR/boxes/<box>-<version>-<provider>.box (+ .json: metadata for `vagrant box add`)
    DIR/debs/*.deb, Packages, SHA256SUMS       a flat apt repository (Packages written by fill)
    DIR/images/<reference>.tar                 OCI image archives, importable with `ctr images import`
    DIR/models/blobs/sha256-<hex>              Ollama's own models layout (OLLAMA_MODELS): seeding
    DIR/models/manifests/<registry>/<ns>/<model>/<tag>   is a plain copy onto the NFS export
    DIR/addons/...                             the add-on manifests (Calico, MetalLB, csi-driver-nfs,
                                               metrics-server), named as under /etc/labctl/addons/

What a lab needs comes from the same place as the lock (``labctl.lab_pins``: box, packages,
images, manifests), so ``labctl cache status`` and ``labctl lock`` can never disagree about the list.

Fetching goes through ``Fetcher`` objects over a ``Source`` (http(s):// via httpx, or file://):
- ``--mirror URL``: every item from a base URL laid out like a cache (another instructor's cache);
- upstream: models and images from their registries (the OCI distribution API — registry.ollama.ai
  speaks it too; anonymous bearer tokens), .debs from the apt repositories' Packages indexes, the
  box from Vagrant Cloud. Upstream hosts are the ``Upstreams`` defaults; tests point them at a
  loopback server, because this project's test machines cannot reach the internet.

``create --cache DIR`` hands a ``CacheInfo`` (what is present, with sizes) to ``build_plan``; the
playbooks 05-warm-cache-packages and 25-warm-cache-seed render only then (``when: cache``). On the
nodes the cache is read from ``CacheInfo.node_dir`` (the Vagrantfile mounts DIR there read-only).

The parts, each importing only the ones before it (no cycles; ``labctl.lock`` imports cache_scan for
``lock --cache``, and no cache module imports the lock):

- ``cache_needs``  what a lab needs, item names and paths, image references in manifests
- ``cache_scan``   what a cache folder holds: status, digests, ``inspect_cache`` → ``CacheInfo``
- ``cache_fetch``  ``Upstreams``, ``Source`` and the fetchers (images, models, .debs)
- ``cache_host``   the box on the host: metadata, ``vagrant box add``, ``prepare_host_for_cache``
- ``cache_fill``   ``fill_cache``: fetch what is missing

This module re-exports their public names, so ``from labctl.cache import X`` keeps working.
"""

from __future__ import annotations

from labctl.cache_fetch import (
    MANIFEST_TYPES,
    Source,
    Upstreams,
    _version_key,
    fetch_deb,
    fetch_image,
    fetch_model,
    fetch_model_from_mirror,
    parse_packages,
    retry_after_seconds,
    split_reference,
    write_apt_index,
)
from labctl.cache_fill import (
    FillReport,
    fill_cache,
)
from labctl.cache_host import (
    box_add_command,
    box_metadata,
    prepare_host_for_cache,
    vagrant_boxes,
    write_box_metadata,
)
from labctl.cache_needs import (
    CHUNK,
    CSI_NFS_FILES,
    DEB_ARCH,
    DEB_DEPENDENCIES,
    NODE_DIR,
    OLLAMA_REGISTRY,
    SAFE_NAME,
    CacheError,
    Item,
    addon_files,
    addon_images,
    arch_suffix,
    box_file,
    human,
    inside,
    manifest_images,
    model_manifest_path,
    model_parts,
    needed_items,
    normalize_reference,
    safe_file_name,
    sha256_file,
)
from labctl.cache_scan import (
    CachedFile,
    CachedModel,
    CacheInfo,
    Present,
    arches_line,
    inspect_cache,
    known_digests,
    ollama_models_dir,
    scan,
    served_arches,
    status_table,
)

__all__ = [
    "CHUNK",
    "CSI_NFS_FILES",
    "DEB_ARCH",
    "DEB_DEPENDENCIES",
    "MANIFEST_TYPES",
    "NODE_DIR",
    "OLLAMA_REGISTRY",
    "SAFE_NAME",
    "CacheError",
    "CacheInfo",
    "CachedFile",
    "CachedModel",
    "FillReport",
    "Item",
    "Present",
    "Source",
    "Upstreams",
    "_version_key",
    "addon_files",
    "addon_images",
    "arch_suffix",
    "arches_line",
    "box_add_command",
    "box_file",
    "box_metadata",
    "fetch_deb",
    "fetch_image",
    "fetch_model",
    "fetch_model_from_mirror",
    "fill_cache",
    "human",
    "inside",
    "inspect_cache",
    "known_digests",
    "manifest_images",
    "model_manifest_path",
    "model_parts",
    "needed_items",
    "normalize_reference",
    "ollama_models_dir",
    "parse_packages",
    "prepare_host_for_cache",
    "retry_after_seconds",
    "safe_file_name",
    "scan",
    "served_arches",
    "sha256_file",
    "split_reference",
    "status_table",
    "vagrant_boxes",
    "write_apt_index",
    "write_box_metadata",
]
