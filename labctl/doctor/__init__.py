"""Preflight: can this host run the lab? `labctl doctor`, and the first thing `labctl create` does.

Two layers. The checks are pure functions over text the host gives us (``vagrant --version``
output, /etc/vbox/networks.conf, ``ip -j route`` JSON, /proc/meminfo, /proc/cpuinfo on Linux;
sysctl, vm_stat and netstat on macOS), so each is unit-tested with crafted or recorded inputs.
``gather()`` is the thin layer that reads those texts through a ``Probes`` object (the real host,
or outputs recorded on another one), and ``run_doctor()`` joins the two. Every check says what it
found, why that matters, and the exact fix.

Modules: facts (Check, HostFacts), checks (the Linux and shared checks), vbox (VirtualBox/Vagrant
versions, KVM on Linux 6.12+), macos (sysctl, vm_stat, netstat), hosts (which checks per platform,
gather), probes (real or recorded host), linux (gathering on Linux), report.
"""

from __future__ import annotations

from pathlib import Path

from labctl.doctor.checks import (
    check_cpu_virtualization,
    check_disk,
    check_kvm,
    check_libvirt,
    check_memory,
    check_rsync,
    check_ssh_keys,
    check_subnet_routes,
    check_vagrant,
    check_vagrant_libvirt,
    check_vbox_networks,
    check_virtualbox,
    cpu_virtualization,
    disk_needed_gib,
    parse_ip_route_json,
    parse_meminfo_kib,
    parse_networks_conf,
    parse_proc_net_route,
    parse_version,
)
from labctl.doctor.facts import (
    BOX_GIB,
    GIB,
    HOST_HEADROOM_MIB,
    MIN_VAGRANT,
    VBOX_DEFAULT_RANGE,
    VBOX_NETWORKS_CONF,
    VM_DISK_GIB,
    Check,
    HostFacts,
    PreflightFailed,
    Status,
)
from labctl.doctor.hosts import evaluate, gather
from labctl.doctor.linux import lab_interfaces
from labctl.doctor.probes import HostProbes, Probes, RecordedProbes
from labctl.doctor.report import format_report, report_json
from labctl.spec import LabSpec

__all__ = [
    "BOX_GIB",
    "GIB",
    "HOST_HEADROOM_MIB",
    "MIN_VAGRANT",
    "VBOX_DEFAULT_RANGE",
    "VBOX_NETWORKS_CONF",
    "VM_DISK_GIB",
    "Check",
    "HostFacts",
    "HostProbes",
    "PreflightFailed",
    "Probes",
    "RecordedProbes",
    "Status",
    "check_cpu_virtualization",
    "check_disk",
    "check_kvm",
    "check_libvirt",
    "check_memory",
    "check_rsync",
    "check_ssh_keys",
    "check_subnet_routes",
    "check_vagrant",
    "check_vagrant_libvirt",
    "check_vbox_networks",
    "check_virtualbox",
    "cpu_virtualization",
    "disk_needed_gib",
    "evaluate",
    "format_report",
    "gather",
    "lab_interfaces",
    "parse_ip_route_json",
    "parse_meminfo_kib",
    "parse_networks_conf",
    "parse_proc_net_route",
    "parse_version",
    "report_json",
    "run_doctor",
]


def run_doctor(
    spec: LabSpec,
    state_dir: Path,
    *,
    running_vm_mib: int = 0,
    cache_dir: Path | None = None,
    probes: Probes | None = None,
) -> list[Check]:
    facts = gather(spec, state_dir, running_vm_mib=running_vm_mib, probes=probes)
    return evaluate(spec, facts, cache_dir=cache_dir)
