"""doctor's gathering layer on Linux: reads the host through a ``Probes`` object (probes.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from labctl.doctor.facts import VBOX_NETWORKS_CONF, HostFacts
from labctl.doctor.probes import HostProbes, Probes
from labctl.spec import LabSpec

# Since Linux 6.12, KVM turns VT-x/AMD-V on when its module loads (not when a KVM guest starts), so a
# loaded kvm_intel/kvm_amd keeps VirtualBox from starting any VM. The kvm module says whether it does.
KVM_ENABLE_VIRT_AT_LOAD = "/sys/module/kvm/parameters/enable_virt_at_load"


def lab_interfaces(spec: LabSpec, probes: Probes | None = None) -> frozenset[str]:
    """Host interfaces that carry this lab's subnet because Vagrant made them for this lab: the host
    holds the subnet's first address (Vagrant's choice) on a vboxnet*/virbr* interface."""
    out, _ = (probes or HostProbes()).run(["ip", "-j", "addr"])
    if not out:
        return frozenset()
    try:
        links = json.loads(out)
    except json.JSONDecodeError:
        return frozenset()
    host_ip = str(next(spec.network.subnet.hosts()))
    ours = set()
    for link in links if isinstance(links, list) else []:
        name = str(link.get("ifname", ""))
        if not name.startswith(("vboxnet", "virbr")):
            continue
        for addr in link.get("addr_info", []):
            if addr.get("local") == host_ip:
                ours.add(name)
    return frozenset(ours)


def vagrant_facts(spec: LabSpec, probes: Probes, facts: HostFacts) -> None:
    """Vagrant and VirtualBox: the same commands on Linux and macOS."""
    facts.vagrant_version, _ = probes.run(["vagrant", "--version"], timeout=60)
    if spec.provider.type == "virtualbox":
        facts.vboxmanage_version, err = probes.run(["VBoxManage", "--version"])
        if facts.vboxmanage_version is not None and err.strip():
            facts.vboxmanage_version = err + facts.vboxmanage_version
        facts.networks_conf = probes.read(str(VBOX_NETWORKS_CONF))


def disk_facts(spec: LabSpec, state_dir: Path, probes: Probes, facts: HostFacts) -> None:
    # The biggest writes go to the box store (VAGRANT_HOME) and the VM disks; check the fuller one.
    candidates = [state_dir, Path(os.environ.get("VAGRANT_HOME", Path.home() / ".vagrant.d"))]
    if spec.provider.type == "libvirt":
        candidates.append(Path("/var/lib/libvirt/images"))
    worst: tuple[int, str] | None = None
    for candidate in candidates:
        free = probes.disk_free(str(candidate))
        if worst is None or free < worst[0]:
            worst = (free, str(candidate))
    assert worst is not None
    facts.disk_free_bytes, facts.disk_path = worst


def gather_linux(spec: LabSpec, state_dir: Path, probes: Probes, facts: HostFacts) -> HostFacts:
    vagrant_facts(spec, probes, facts)
    if spec.provider.type == "virtualbox":
        facts.kernel_release = (probes.run(["uname", "-r"])[0] or "").strip()
        facts.proc_modules = probes.read("/proc/modules") or ""
        facts.kvm_enable_virt_at_load = probes.read(KVM_ENABLE_VIRT_AT_LOAD)
    else:
        facts.virsh_version, facts.virsh_error = probes.run(["virsh", "-c", "qemu:///system", "version"])
        facts.libvirt_socket = probes.exists("/var/run/libvirt/libvirt-sock")
        facts.dev_kvm = probes.exists("/dev/kvm")
        plugins, _ = probes.run(["vagrant", "plugin", "list"], timeout=60)
        facts.vagrant_libvirt_plugin = None if plugins is None else "vagrant-libvirt" in plugins
        facts.rsync_path = probes.which("rsync")
    facts.cpuinfo = probes.read("/proc/cpuinfo") or ""
    routes, _ = probes.run(["ip", "-j", "route"])
    facts.routes_json = routes or "[]"
    facts.proc_net_route = probes.read("/proc/net/route")
    facts.lab_interfaces = lab_interfaces(spec, probes)
    facts.meminfo = probes.read("/proc/meminfo") or ""
    disk_facts(spec, state_dir, probes, facts)
    return facts
