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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labctl.spec import LabSpec

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


def disk_needed_gib(spec: LabSpec) -> tuple[int, int]:
    """(minimum, with models) free GiB on the host: the box plus one linked clone per VM; the second
    adds the VMs' grown disks and the models volume that fills the NFS VM's disk."""
    nodes = [n for _, n in spec.all_nodes()]
    minimum = BOX_GIB + VM_DISK_GIB * len(nodes)
    with_models = BOX_GIB + sum(max(VM_DISK_GIB, n.disk_gib or 0) for n in nodes) + quantity_gib(spec.storage.models_size)
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
