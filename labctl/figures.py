"""Every figure a user reads in more than one place, in one place.

Disk needs are computed from the lab (doctor checks them, the handout and the docs quote them);
measured durations are records of a run, with when and where they were taken. README.md and docs/
quote these values, and tests/test_figures.py fails when a page quotes another one, so a figure
cannot disagree with itself again (issue #15: "some 30 GB", "about 40 GiB" and "14 GiB" for one lab).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labctl.spec import LabSpec, Node

BOX_GIB = 2  # a Ubuntu 24.04 box, unpacked once into the box store
VM_DISK_GIB = 4  # what a linked clone grows to: packages, container images, logs

_QUANTITY_GIB = {"Mi": 1 / 1024, "Gi": 1, "Ti": 1024}


def quantity_gib(quantity: str) -> int:
    """A Kubernetes quantity ("20Gi", "1Ti", "512Mi") in whole GiB, rounded up (at least 1)."""
    m = re.fullmatch(r"(\d+)(Mi|Gi|Ti)", quantity)
    if not m:
        raise ValueError(f"{quantity!r} is not a quantity like 20Gi")
    gib = int(m.group(1)) * _QUANTITY_GIB[m.group(2)]
    return max(1, math.ceil(gib))


def node_disk_gib(spec: LabSpec, node: Node, *, cache_dir: Path | str | None = None) -> int | None:
    """The disk a VM gets, in GiB; None = the box's own. The one source for the Vagrantfile, the
    root-grow step and the host's disk figures.

    ``disk_gib`` when lab.yaml sets it. Otherwise, on libvirt, a Kubernetes node gets what the images
    it runs need (labctl.disk_sizing.node_disk_need_gib: the master the control plane's, the node that
    runs the apps Ollama's and Open WebUI's) when that is more than the box's 10 GiB. With a warm
    cache (``create --cache``) the node also holds its image archives until they are imported, and
    the archives' real sizes replace the estimates. VirtualBox's bento box has a 64 GiB disk."""
    if node.disk_gib is not None:
        return node.disk_gib
    if spec.provider.type != "libvirt":
        return None
    from labctl.disk_sizing import LIBVIRT_BOX_DISK_GIB, measured_image_mib, node_disk_need_gib

    measured = measured_image_mib(spec, Path(cache_dir)) if cache_dir is not None else None
    need = node_disk_need_gib(spec, node, measured, tarballs=cache_dir is not None)
    return need if need > LIBVIRT_BOX_DISK_GIB else None


def disk_needed_gib(spec: LabSpec) -> tuple[int, int]:
    """(minimum, with models) free GiB on the host: the box plus one linked clone per VM; the second
    adds the VMs' grown disks (node_disk_gib) and the models volume that fills the NFS VM's disk."""
    nodes = [n for _, n in spec.all_nodes()]
    minimum = BOX_GIB + VM_DISK_GIB * len(nodes)
    grown = sum(max(VM_DISK_GIB, node_disk_gib(spec, n) or 0) for n in nodes)
    with_models = BOX_GIB + grown + quantity_gib(spec.storage.models_size)
    return minimum, with_models


def disk_sentence(spec: LabSpec) -> str:
    """How the handout and the docs say it (doctor prints the same two numbers)."""
    minimum, with_models = disk_needed_gib(spec)
    return f"{minimum} GiB of free disk, {with_models} GiB once the models are downloaded"


@dataclass(frozen=True)
class Measured:
    """A duration measured once, quoted as measured (not rounded into a promise)."""

    what: str
    value: str  # as a person reads it: "14m48s"
    when: str  # ISO date of the run
    where: str  # the machine


E2E_TEST = Measured(
    "the e2e test (real VMs under qemu TCG, `-m e2e`)", "14m48s", "2026-12-03", "a clean Debian 12 CI machine, 2 cores"
)
CI_RUN = Measured(
    "the whole `.ci/run` (apt and pip installs, ruff, every test tier)", "19m40s", "2026-12-03",
    "a clean Debian 12 CI machine, 2 cores",
)
MEASURED = (E2E_TEST, CI_RUN)
