"""doctor's gathering layer on Linux: the only part that reads the real host."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from labctl.doctor.facts import VBOX_NETWORKS_CONF, HostFacts
from labctl.spec import LabSpec


def _output(argv: Sequence[str], timeout: float = 20) -> tuple[str | None, str]:
    """(stdout, stderr) of a command; stdout None when it is missing or failed."""
    if shutil.which(argv[0]) is None:
        return None, f"{argv[0]} not found"
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, str(err)
    if proc.returncode != 0:
        return None, proc.stderr or proc.stdout
    return proc.stdout, proc.stderr


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def lab_interfaces(spec: LabSpec) -> frozenset[str]:
    """Host interfaces that carry this lab's subnet because Vagrant made them for this lab: the host
    holds the subnet's first address (Vagrant's choice) on a vboxnet*/virbr* interface."""
    out, _ = _output(["ip", "-j", "addr"])
    if not out:
        return frozenset()
    try:
        links = json.loads(out)
    except json.JSONDecodeError:
        return frozenset()
    host_ip = str(next(spec.network.subnet.hosts()))
    ours = set()
    for link in links:
        name = str(link.get("ifname", ""))
        if not name.startswith(("vboxnet", "virbr")):
            continue
        for addr in link.get("addr_info", []):
            if addr.get("local") == host_ip:
                ours.add(name)
    return frozenset(ours)


def gather(spec: LabSpec, state_dir: Path, *, running_vm_mib: int = 0) -> HostFacts:
    facts = HostFacts(running_vm_mib=running_vm_mib)
    if spec.provider.type == "ssh":
        return facts
    facts.vagrant_version, _ = _output(["vagrant", "--version"], timeout=60)
    if spec.provider.type == "virtualbox":
        facts.vboxmanage_version, err = _output(["VBoxManage", "--version"])
        if facts.vboxmanage_version is not None and err.strip():
            facts.vboxmanage_version = err + facts.vboxmanage_version
        facts.networks_conf = _read(VBOX_NETWORKS_CONF)
    else:
        facts.virsh_version, facts.virsh_error = _output(["virsh", "-c", "qemu:///system", "version"])
        facts.libvirt_socket = Path("/var/run/libvirt/libvirt-sock").exists()
        facts.dev_kvm = Path("/dev/kvm").exists()
        plugins, _ = _output(["vagrant", "plugin", "list"], timeout=60)
        facts.vagrant_libvirt_plugin = None if plugins is None else "vagrant-libvirt" in plugins
        facts.rsync_path = shutil.which("rsync")
    facts.cpuinfo = _read(Path("/proc/cpuinfo")) or ""
    routes, _ = _output(["ip", "-j", "route"])
    facts.routes_json = routes or "[]"
    facts.proc_net_route = _read(Path("/proc/net/route"))
    facts.lab_interfaces = lab_interfaces(spec)
    facts.meminfo = _read(Path("/proc/meminfo")) or ""
    # The biggest writes go to the box store (VAGRANT_HOME) and the VM disks; check the fuller one.
    candidates = [state_dir, Path(os.environ.get("VAGRANT_HOME", Path.home() / ".vagrant.d"))]
    if spec.provider.type == "libvirt":
        candidates.append(Path("/var/lib/libvirt/images"))
    worst: tuple[int, str] | None = None
    for candidate in candidates:
        where = _existing_parent(candidate.expanduser())
        free = shutil.disk_usage(where).free
        if worst is None or free < worst[0]:
            worst = (free, str(candidate))
    assert worst is not None
    facts.disk_free_bytes, facts.disk_path = worst
    return facts

