"""doctor's data: the Check it reports and the HostFacts its checks read (plain text from the host)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from labctl.errors import LabctlError

# Disk needs have one source (labctl/figures.py), quoted by the handout and the docs too.
from labctl.figures import BOX_GIB as BOX_GIB
from labctl.figures import VM_DISK_GIB as VM_DISK_GIB

Status = Literal["ok", "warn", "fail"]

MIN_VAGRANT = (2, 2, 19)  # vagrant-libvirt 0.11 and `vagrant ssh-config` per machine need >= 2.2.19
VBOX_NETWORKS_CONF = Path("/etc/vbox/networks.conf")
# Without networks.conf VirtualBox (6.1.28+) allows host-only networks only in this range.
VBOX_DEFAULT_RANGE = ipaddress.ip_network("192.168.56.0/21")
GIB = 1024**3
HOST_HEADROOM_MIB = 1024  # the host itself (desktop, browser) needs some memory besides the VMs


class PreflightFailed(LabctlError):
    """At least one doctor check failed; the printed report says what and how to fix it."""

    exit_code = 4


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    what: str
    why: str = ""
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "fail"


@dataclass
class HostFacts:
    """Everything the checks read from the host, as plain text (None = not available)."""

    vagrant_version: str | None = None  # `vagrant --version`
    vboxmanage_version: str | None = None  # `VBoxManage --version`
    virsh_version: str | None = None  # `virsh -c qemu:///system version` (None when it failed)
    virsh_error: str = ""
    libvirt_socket: bool = False
    vagrant_libvirt_plugin: bool | None = None  # None = not checked
    dev_kvm: bool = False
    cpuinfo: str = ""
    networks_conf: str | None = None  # None = file missing
    routes_json: str = "[]"  # `ip -j route`
    proc_net_route: str | None = None  # fallback when `ip` is missing
    meminfo: str = ""
    disk_free_bytes: int = 0
    disk_path: str = ""
    lab_interfaces: frozenset[str] = field(default_factory=frozenset)  # host NICs our lab's VMs already use
    running_vm_mib: int = 0  # memory of this lab's VMs that are already running (re-run of create)
    rsync_path: str | None = None  # `rsync` on PATH (libvirt only: the warm cache's synced folder)
    # which host this is (probes.py): sys.platform and `uname -m`
    system: str = "linux"
    machine: str = "x86_64"
    # Linux + VirtualBox: KVM modules that hold VT-x/AMD-V (vbox.py)
    kernel_release: str = ""  # `uname -r`
    proc_modules: str = ""  # /proc/modules
    kvm_enable_virt_at_load: str | None = None  # /sys/module/kvm/parameters/enable_virt_at_load (Y/N)
    # macOS (macos.py): `sysctl -n <key>` answers, `vm_stat`, `netstat -rn -f inet`
    sysctl: dict[str, str] = field(default_factory=dict)
    vm_stat: str = ""
    netstat_routes: str = ""

