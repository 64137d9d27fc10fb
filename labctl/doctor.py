"""Preflight: can this host run the lab? `labctl doctor`, and the first thing `labctl create` does.

Two layers. The checks are pure functions over text the host gives us (``vagrant --version``
output, /etc/vbox/networks.conf, ``ip -j route`` JSON, /proc/meminfo, /proc/cpuinfo), so each is
unit-tested with crafted inputs. ``gather()`` is the thin layer that reads those texts from the real
host, and ``run_doctor()`` joins the two. Every check says what it found, why that matters, and the
exact fix.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from labctl.errors import LabctlError
from labctl.spec import LabSpec

Status = Literal["ok", "warn", "fail"]

MIN_VAGRANT = (2, 2, 19)  # vagrant-libvirt 0.11 and `vagrant ssh-config` per machine need >= 2.2.19
VBOX_NETWORKS_CONF = Path("/etc/vbox/networks.conf")
# Without networks.conf VirtualBox (6.1.28+) allows host-only networks only in this range.
VBOX_DEFAULT_RANGE = ipaddress.ip_network("192.168.56.0/21")
GIB = 1024**3
BOX_GIB = 2  # a Ubuntu 24.04 box, unpacked once into the box store
VM_DISK_GIB = 4  # what a linked clone grows to: packages, container images, logs
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


# ---- pure checks ---------------------------------------------------------------------------------
def parse_version(text: str) -> tuple[int, ...] | None:
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not m:
        return None
    return tuple(int(p) for p in m.groups(default="0"))


def check_vagrant(version_output: str | None) -> Check:
    why = "labctl drives the VMs through Vagrant (python-vagrant calls the `vagrant` command)."
    if version_output is None:
        return Check(
            "vagrant",
            "fail",
            "`vagrant` is not on PATH",
            why,
            "install Vagrant ≥ 2.2.19 (Debian/Ubuntu: `apt install vagrant`, or HashiCorp's package)",
        )
    version = parse_version(version_output)
    if version is None:
        return Check("vagrant", "fail", f"cannot read a version from {version_output.strip()!r}", why, "reinstall Vagrant")
    shown = ".".join(map(str, version))
    if version < MIN_VAGRANT:
        need = ".".join(map(str, MIN_VAGRANT))
        return Check("vagrant", "fail", f"Vagrant {shown} is older than {need}", why, f"upgrade Vagrant to ≥ {need}")
    return Check("vagrant", "ok", f"Vagrant {shown}")


def check_virtualbox(vboxmanage_output: str | None) -> Check:
    why = "provider.type is virtualbox: Vagrant creates the VMs with VirtualBox."
    if vboxmanage_output is None:
        return Check(
            "virtualbox",
            "fail",
            "`VBoxManage --version` did not run (VirtualBox missing or its kernel module not loaded)",
            why,
            "install VirtualBox 7.x and load its driver (`sudo /sbin/vboxconfig`), or set provider.type: libvirt",
        )
    version = vboxmanage_output.strip().splitlines()[-1] if vboxmanage_output.strip() else "?"
    if "WARNING" in vboxmanage_output or "not loaded" in vboxmanage_output:
        return Check(
            "virtualbox", "fail", f"VirtualBox answers with a warning: {version}", why, "run `sudo /sbin/vboxconfig`"
        )
    return Check("virtualbox", "ok", f"VirtualBox {version}")


def check_libvirt(virsh_version: str | None, virsh_error: str, socket_present: bool) -> Check:
    why = "provider.type is libvirt: vagrant-libvirt talks to libvirtd at qemu:///system."
    if virsh_version is not None:
        m = re.search(r"Running hypervisor:\s*(.+)", virsh_version)
        return Check("libvirt", "ok", f"libvirtd answers ({m.group(1).strip() if m else 'qemu:///system'})")
    where = "the libvirt socket exists but `virsh -c qemu:///system version` failed" if socket_present else (
        "libvirtd is not running (no /var/run/libvirt/libvirt-sock)"
    )
    detail = f": {virsh_error.strip().splitlines()[-1]}" if virsh_error.strip() else ""
    return Check(
        "libvirt",
        "fail",
        where + detail,
        why,
        "install and start libvirt (`apt install libvirt-daemon-system && systemctl enable --now libvirtd`) "
        "and add yourself to the libvirt group (`sudo usermod -aG libvirt $USER`, then log in again)",
    )


def check_vagrant_libvirt(plugin_present: bool | None) -> Check:
    if plugin_present is None or plugin_present:
        return Check("vagrant-libvirt", "ok", "vagrant-libvirt plugin installed")
    return Check(
        "vagrant-libvirt",
        "fail",
        "the vagrant-libvirt plugin is not installed",
        "Vagrant needs the plugin to create libvirt VMs.",
        "`apt install vagrant-libvirt` (Debian/Ubuntu) or `vagrant plugin install vagrant-libvirt`",
    )


def cpu_virtualization(cpuinfo: str) -> str | None:
    """'vmx' (Intel VT-x), 'svm' (AMD-V) or None, from /proc/cpuinfo's flags."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = set(line.partition(":")[2].split())
            for flag in ("vmx", "svm"):
                if flag in flags:
                    return flag
    return None


def check_cpu_virtualization(cpuinfo: str, provider: str, driver: str) -> Check:
    flag = cpu_virtualization(cpuinfo)
    if flag:
        return Check("cpu-virtualization", "ok", f"the CPU offers {'VT-x' if flag == 'vmx' else 'AMD-V'} ({flag})")
    what = "the CPU flags show neither vmx (VT-x) nor svm (AMD-V)"
    if provider == "libvirt" and driver == "qemu":
        return Check(
            "cpu-virtualization",
            "warn",
            what,
            "libvirt.driver is qemu: the VMs run under software emulation (TCG), which works but is 10–50× slower.",
            "enable VT-x/AMD-V in the firmware (BIOS/UEFI) settings for usable speed",
        )
    return Check(
        "cpu-virtualization",
        "fail",
        what,
        "VirtualBox and KVM need hardware virtualization to start 64-bit VMs.",
        "enable VT-x/AMD-V in the firmware (BIOS/UEFI) settings; inside a VM, enable nested virtualization"
        + ("; or set provider.libvirt.driver: qemu (slow software emulation)" if provider == "libvirt" else ""),
    )


def check_kvm(dev_kvm: bool, driver: str) -> Check:
    if driver == "qemu":
        return Check(
            "kvm",
            "ok" if not dev_kvm else "warn",
            "libvirt.driver is qemu (software emulation)" + ("; /dev/kvm exists" if dev_kvm else ""),
            "qemu emulation is much slower than KVM." if dev_kvm else "",
            "set provider.libvirt.driver: kvm for hardware speed" if dev_kvm else "",
        )
    if dev_kvm:
        return Check("kvm", "ok", "/dev/kvm is present")
    return Check(
        "kvm",
        "fail",
        "/dev/kvm is missing",
        "libvirt.driver is kvm: libvirt cannot start a KVM guest without /dev/kvm.",
        "load the module (`sudo modprobe kvm_intel` or `kvm_amd`) and enable VT-x/AMD-V in the firmware, "
        "or set provider.libvirt.driver: qemu (slow software emulation)",
    )


def parse_networks_conf(text: str | None) -> list[ipaddress.IPv4Network] | None:
    """The IPv4 ranges VirtualBox allows for host-only networks; None when the file does not exist.

    Each line reads ``* <range> [<range> ...]``; ``#`` starts a comment; IPv6 ranges are ignored.
    """
    if text is None:
        return None
    ranges: list[ipaddress.IPv4Network] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("*"):
            continue
        for word in line[1:].split():
            try:
                net = ipaddress.ip_network(word, strict=False)
            except ValueError:
                continue
            if isinstance(net, ipaddress.IPv4Network):
                ranges.append(net)
    return ranges


def check_vbox_networks(text: str | None, subnet: ipaddress.IPv4Network, path: Path = VBOX_NETWORKS_CONF) -> Check:
    ranges = parse_networks_conf(text)
    allowed = [VBOX_DEFAULT_RANGE] if ranges is None else ranges
    source = f"{path} is missing, so VirtualBox allows only {VBOX_DEFAULT_RANGE}" if ranges is None else (
        f"{path} allows " + (", ".join(map(str, ranges)) or "no IPv4 range")
    )
    if any(subnet.subnet_of(r) for r in allowed):
        return Check("vbox-networks", "ok", f"lab subnet {subnet} is allowed ({source})")
    line = f"* {subnet}"
    fix = (
        f"add this line to {path} (create the file; sudo needed):  {line}"
        if ranges is None
        else f"add this line to {path} (sudo needed):  {line}"
    )
    return Check(
        "vbox-networks",
        "fail",
        f"lab subnet {subnet} is not allowed: {source}",
        "VirtualBox refuses to create a host-only network outside the allowed ranges, so `vagrant up` stops "
        "with 'The IP address configured for the host-only network is not within the allowed ranges'.",
        fix,
    )


def parse_ip_route_json(text: str) -> list[tuple[str, str]]:
    """(destination, device) of each route in ``ip -j route`` output; 'default' kept as 0.0.0.0/0."""
    try:
        data = json.loads(text or "[]")
    except json.JSONDecodeError:
        return []
    out: list[tuple[str, str]] = []
    for route in data if isinstance(data, list) else []:
        if not isinstance(route, dict):
            continue
        dst = str(route.get("dst", ""))
        out.append(("0.0.0.0/0" if dst == "default" else dst, str(route.get("dev", ""))))
    return out


def parse_proc_net_route(text: str) -> list[tuple[str, str]]:
    """(destination, device) from /proc/net/route (hex, little-endian addresses)."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 8:
            continue
        try:
            dst = ipaddress.IPv4Address(int(cols[1], 16).to_bytes(4, "little"))
            mask = ipaddress.IPv4Address(int(cols[7], 16).to_bytes(4, "little"))
            net = ipaddress.IPv4Network(f"{dst}/{mask}", strict=False)
        except ValueError:
            continue
        out.append((str(net), cols[0]))
    return out


def check_subnet_routes(
    routes: Iterable[tuple[str, str]], subnet: ipaddress.IPv4Network, lab_interfaces: Iterable[str] = ()
) -> Check:
    """Fail when another interface already routes (part of) the lab subnet: the VMs' addresses would
    collide with, or be hidden behind, that network. The default route does not count."""
    ours = set(lab_interfaces)
    clashes: list[str] = []
    for dst, dev in routes:
        try:
            net = ipaddress.ip_network(dst if "/" in dst else f"{dst}/32", strict=False)
        except ValueError:
            continue
        if not isinstance(net, ipaddress.IPv4Network) or net.prefixlen == 0 or dev in ours:
            continue
        if net.overlaps(subnet):
            clashes.append(f"{net} via {dev or '?'}")
    if not clashes:
        return Check("subnet-free", "ok", f"no other host network overlaps the lab subnet {subnet}")
    return Check(
        "subnet-free",
        "fail",
        f"the lab subnet {subnet} is already routed on this host: {', '.join(clashes)}",
        "the VMs' addresses would clash with that network (another lab, a VPN, a home network): the host "
        "could not reach the VMs, or would reach the wrong machines.",
        "pick a free /24 for network.subnet (and move the node IPs and metallb_pool with it), "
        "or remove the other network (`ip route` shows it)",
    )


def parse_meminfo_kib(text: str, key: str = "MemAvailable") -> int | None:
    m = re.search(rf"^{key}:\s+(\d+)\s*kB", text, re.MULTILINE)
    return int(m.group(1)) if m else None


def check_memory(meminfo: str, needed_mib: int, running_vm_mib: int = 0) -> Check:
    available_kib = parse_meminfo_kib(meminfo)
    if available_kib is None:
        return Check("memory", "warn", "cannot read MemAvailable from /proc/meminfo", "", "check `free -m` yourself")
    available = available_kib // 1024
    # VMs of this lab that already run hold their memory already; only the rest must still fit.
    still_needed = max(0, needed_mib - running_vm_mib)
    what = f"{available} MiB available, the lab's VMs need {still_needed} MiB more"
    why = "VMs that do not fit make the host swap or the OOM killer end a VM in the middle of the setup."
    fix = "close programs, lower nodes.*.memory_mib in lab.yaml, or drop a worker"
    if available < still_needed:
        return Check("memory", "fail", what, why, fix)
    if available < still_needed + HOST_HEADROOM_MIB:
        return Check("memory", "warn", what + f" (less than {HOST_HEADROOM_MIB} MiB left for the host)", why, fix)
    return Check("memory", "ok", what)


def disk_needed_gib(spec: LabSpec) -> tuple[int, int]:
    """(minimum, comfortable) free GiB: box + one linked clone per VM; comfortable adds the VMs'
    disk sizes and the models volume that lives on the NFS VM."""
    nodes = [n for _, n in spec.all_nodes()]
    minimum = BOX_GIB + VM_DISK_GIB * len(nodes)
    models_gib = int(re.sub(r"\D", "", spec.storage.models_size)) * (1024 if spec.storage.models_size.endswith("Ti") else 1)
    if spec.storage.models_size.endswith("Mi"):
        models_gib = 1
    comfortable = BOX_GIB + sum(max(VM_DISK_GIB, n.disk_gib or 0) for n in nodes) + models_gib
    return minimum, comfortable


def check_disk(free_bytes: int, path: str, minimum_gib: int, comfortable_gib: int) -> Check:
    free_gib = free_bytes / GIB
    what = f"{free_gib:.1f} GiB free at {path}; the lab needs {minimum_gib} GiB, {comfortable_gib} GiB with models"
    why = "VM disks, the box and the downloaded models all land there; a full disk stops VMs mid-install."
    fix = f"free space at {path}, or point VAGRANT_HOME / LABCTL_HOME / the libvirt pool at a bigger disk"
    if free_gib < minimum_gib:
        return Check("disk", "fail", what, why, fix)
    if free_gib < comfortable_gib:
        return Check("disk", "warn", what, why, fix)
    return Check("disk", "ok", what)


def check_rsync(rsync_path: str | None, cache_dir: Path) -> Check:
    """libvirt + ``create --cache``: the Vagrantfile copies the cache into the VMs with an rsync
    synced folder, and Vagrant runs the host's ``rsync`` for it."""
    if rsync_path:
        return Check("rsync", "ok", f"{rsync_path} (copies the warm cache {cache_dir} into the VMs)")
    return Check(
        "rsync",
        "fail",
        "`rsync` is not on PATH",
        f"with provider.type libvirt the warm cache ({cache_dir}) reaches the VMs through an rsync synced "
        "folder: `vagrant up` would stop at the first VM with 'rsync could not be found on your PATH'.",
        "install rsync (Debian/Ubuntu: `apt install rsync`), or create the lab without --cache",
    )


def check_ssh_keys(spec: LabSpec) -> list[Check]:
    out = []
    for _, node in spec.all_nodes():
        if node.ssh_key is None:
            continue
        key = Path(node.ssh_key).expanduser()
        if not key.is_file():
            out.append(
                Check(
                    f"ssh-key:{node.name}",
                    "fail",
                    f"{key} does not exist",
                    f"labctl logs in to {node.name} with that key.",
                    f"fix nodes.*.ssh_key for {node.name} in lab.yaml",
                )
            )
    if not out:
        out.append(Check("ssh-keys", "ok", "every ssh_key named in lab.yaml exists (or the SSH agent is used)"))
    return out


def evaluate(spec: LabSpec, facts: HostFacts, *, cache_dir: Path | None = None) -> list[Check]:
    """All checks for ``spec`` over ``facts``; ``cache_dir`` is the warm cache given to ``create --cache``. Pure."""
    provider = spec.provider.type
    if provider == "ssh":
        return check_ssh_keys(spec)
    driver = spec.provider.libvirt.driver
    checks = [check_vagrant(facts.vagrant_version)]
    if provider == "virtualbox":
        checks.append(check_virtualbox(facts.vboxmanage_version))
        checks.append(check_vbox_networks(facts.networks_conf, spec.network.subnet))
    else:
        checks.append(check_vagrant_libvirt(facts.vagrant_libvirt_plugin))
        checks.append(check_libvirt(facts.virsh_version, facts.virsh_error, facts.libvirt_socket))
        checks.append(check_kvm(facts.dev_kvm, driver))
        if cache_dir is not None:
            checks.append(check_rsync(facts.rsync_path, cache_dir))
    checks.append(check_cpu_virtualization(facts.cpuinfo, provider, driver))
    routes = parse_ip_route_json(facts.routes_json)
    if not routes and facts.proc_net_route:
        routes = parse_proc_net_route(facts.proc_net_route)
    checks.append(check_subnet_routes(routes, spec.network.subnet, facts.lab_interfaces))
    checks.append(check_memory(facts.meminfo, spec.memory_mib(), facts.running_vm_mib))
    minimum, comfortable = disk_needed_gib(spec)
    checks.append(check_disk(facts.disk_free_bytes, facts.disk_path, minimum, comfortable))
    return checks


# ---- gathering (the only part that touches the host) ----------------------------------------------
def _output(argv: Sequence[str], timeout: float = 20) -> tuple[str | None, str]:
    """(stdout, stderr) of a command; stdout None when it is missing or failed."""
    if shutil.which(argv[0]) is None:
        return None, f"{argv[0]} not found"
    env = None
    if argv[0] == "vagrant":  # never with a variable that points Vagrant at another project
        from labctl.providers.vagrant_run import scrubbed_env

        env = scrubbed_env(os.environ)
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False, env=env)
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


def run_doctor(spec: LabSpec, state_dir: Path, *, running_vm_mib: int = 0, cache_dir: Path | None = None) -> list[Check]:
    return evaluate(spec, gather(spec, state_dir, running_vm_mib=running_vm_mib), cache_dir=cache_dir)


def format_report(checks: Sequence[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}[c.status]
        lines.append(f"{mark}  {c.name:<{width}}  {c.what}")
        if c.status != "ok":
            pad = " " * (width + 8)
            if c.why:
                lines.append(f"{pad}why: {c.why}")
            if c.fix:
                lines.append(f"{pad}fix: {c.fix}")
    failed = sum(c.failed for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    lines.append(
        f"doctor: {len(checks)} checks, {failed} failed, {warned} warning{'s' if warned != 1 else ''}"
    )
    return "\n".join(lines) + "\n"


def report_json(checks: Sequence[Check]) -> str:
    return json.dumps({"ok": not any(c.failed for c in checks), "checks": [asdict(c) for c in checks]}, indent=2)
