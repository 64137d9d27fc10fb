"""One CPU architecture per lab: `provider.arch` (auto | amd64 | arm64), resolved when the spec loads.

Why at load time: `auto` follows the host, and what the host can run is a validation question (an
amd64 lab cannot boot under VirtualBox on Apple Silicon). Resolving it once, in ``LabSpec``, gives the
Vagrantfile, the plan, the cache and the lock the same concrete answer, and `labctl validate` refuses
an impossible combination before anything is written. lab.yaml keeps `auto`; ``LabSpec.arch`` is the
resolved name. Names are Debian's (dpkg --print-architecture), which are also Vagrant's box
architecture names (hashicorp/vagrant v2.4.0+ lib/vagrant/util/platform.rb maps x86_64 → amd64 and
aarch64 → arm64) and the OCI platform's architecture (linux/amd64, linux/arm64).
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from labctl.spec import LabSpec

Arch = Literal["amd64", "arm64"]
ARCHES: tuple[Arch, ...] = ("amd64", "arm64")
# Tests and cross-planning (an instructor on Linux preparing a Mac room's handout) set this, as
# Vagrant's VAGRANT_HOST_ARCHITECTURE does for Vagrant.
HOST_ARCH_ENV = "LABCTL_HOST_ARCH"
HOST_OS_ENV = "LABCTL_HOST_OS"  # "darwin" / "linux": what the host is, for the messages only

_MACHINE_TO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "x64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def arch_of_machine(machine: str) -> str:
    """`uname -m` (or platform.machine()) → Debian's name; unknown machines are returned as given."""
    return _MACHINE_TO_ARCH.get(machine.strip().lower(), machine.strip().lower())


def host_arch() -> str:
    override = os.environ.get(HOST_ARCH_ENV, "").strip()
    if override:
        return arch_of_machine(override)
    if sys.platform == "darwin" and _mac_has_arm64_cpu():
        return "arm64"  # also under Rosetta 2, where platform.machine() says x86_64
    return arch_of_machine(platform.machine())


@functools.cache  # the CPU does not change while labctl runs; specs are loaded many times
def _mac_has_arm64_cpu() -> bool:
    try:
        out = subprocess.run(["sysctl", "-n", "hw.optional.arm64"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.strip() == "1"


def host_os() -> str:
    return os.environ.get(HOST_OS_ENV, "").strip() or sys.platform


def host_words(arch: str, os_name: str) -> str:
    """How the host reads in a message: 'Apple Silicon' says more to a student than 'darwin arm64'."""
    if os_name == "darwin":
        return "an Apple Silicon Mac" if arch == "arm64" else "an Intel Mac"
    return f"an {arch} host" if arch[:1] in "aeiou" else f"a {arch} host"


def resolve(wanted: str, provider_type: str, machine_arch: str | None = None) -> str:
    """The lab's architecture. `auto` is the host's for VMs; with provider ssh the machines are
    someone else's, so `auto` means amd64 (the common case) and arm64 machines say so in lab.yaml."""
    if wanted != "auto":
        return wanted
    if provider_type == "ssh":
        return "amd64"
    arch = machine_arch or host_arch()
    return arch if arch in ARCHES else "amd64"


def arch_problems(spec: LabSpec, arch: str, machine_arch: str | None = None, os_name: str | None = None) -> Iterator[str]:
    """Combinations that cannot run, each as one line naming the field and the fix."""
    machine = machine_arch or host_arch()
    os_name = os_name or host_os()
    where = host_words(machine, os_name)
    provider = spec.provider.type
    if provider == "virtualbox" and machine in ARCHES and arch != machine:
        yield (
            f"provider.arch: {arch} VMs cannot run under VirtualBox on {where} — VirtualBox runs only guests of the "
            f"host's own architecture (no emulation); set provider.arch: auto (or {machine})"
        )
    if provider == "libvirt" and machine in ARCHES and arch != machine:
        yield (
            f"provider.arch: {arch} VMs on {where} would need full-system emulation of another CPU, which this "
            f"lab's libvirt settings do not set up; set provider.arch: auto (or {machine})"
        )
    if arch == "arm64" and spec.nodes.gpu_worker is not None:
        yield (
            "nodes.gpu_worker: the GPU worker needs an NVIDIA card passed through by libvirt on an amd64 host "
            "(PCI passthrough, NVIDIA's amd64 driver packages); it cannot be part of an arm64 lab — remove "
            "gpu_worker or set provider.arch: amd64 on an amd64 host"
        )


def with_arch(spec: LabSpec, arch: str) -> LabSpec:
    """The same lab for another architecture, without the host check: an instructor on one machine
    fills the warm cache (or writes the handout) for laptops of the other architecture."""
    if arch not in ARCHES:
        raise ValueError(f"unknown architecture {arch!r}: use one of {', '.join(ARCHES)}")
    if arch == spec.arch:
        return spec
    other = spec.model_copy()
    other._arch = arch
    return other
