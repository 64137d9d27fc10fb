"""doctor on macOS: what the Mac says through sysctl, vm_stat, netstat and ifconfig, and the checks
over it. macOS has no /proc: virtualization support is `sysctl kern.hv_support` (the Hypervisor
framework; on Intel also the CPU's VMX feature), memory is `sysctl hw.memsize` plus `vm_stat`'s page
counts, routes are `netstat -rn -f inet`.

Apple Silicon is recognised by `sysctl hw.optional.arm64` = 1, not by `uname -m` alone: a Python
running under Rosetta 2 reports x86_64 on an arm64 Mac.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from labctl.doctor.facts import Check, HostFacts
from labctl.doctor.linux import disk_facts, vagrant_facts
from labctl.doctor.probes import Probes
from labctl.spec import LabSpec

SYSCTL_KEYS = ("kern.hv_support", "hw.optional.arm64", "machdep.cpu.features", "machdep.cpu.brand_string", "hw.memsize")


def gather_macos(spec: LabSpec, state_dir: Path, probes: Probes, facts: HostFacts) -> HostFacts:
    vagrant_facts(spec, probes, facts)
    for key in SYSCTL_KEYS:
        out, _ = probes.run(["sysctl", "-n", key])
        if out is not None:
            facts.sysctl[key] = out.strip()
    facts.vm_stat = probes.run(["vm_stat"])[0] or ""
    facts.netstat_routes = probes.run(["netstat", "-rn", "-f", "inet"])[0] or ""
    facts.lab_interfaces = lab_interfaces_macos(probes.run(["ifconfig"])[0] or "", spec.network.subnet)
    disk_facts(spec, state_dir, probes, facts)
    return facts


def is_apple_silicon(facts: HostFacts) -> bool:
    return facts.sysctl.get("hw.optional.arm64") == "1" or facts.machine in ("arm64", "aarch64")


# ---- pure parsing and checks -----------------------------------------------------------------------
def lab_interfaces_macos(ifconfig: str, subnet: ipaddress.IPv4Network) -> frozenset[str]:
    """Interfaces holding the subnet's first address (the host's side of the lab network, which
    VirtualBox makes: vboxnetN with 6.x/7.0 host-only adapters, bridgeN with 7.x host-only networks)."""
    host_ip = str(next(subnet.hosts()))
    ours: set[str] = set()
    current = ""
    for line in ifconfig.splitlines():
        m = re.match(r"^([A-Za-z0-9]+):\s", line)
        if m:
            current = m.group(1)
            continue
        words = line.split()
        if len(words) >= 2 and words[0] == "inet" and words[1] == host_ip and current.startswith(("vboxnet", "bridge")):
            ours.add(current)
    return frozenset(ours)


def _netstat_destination(text: str) -> str | None:
    """netstat's short forms: 'default', '127' (= 127.0.0.0/8), '192.168.1' (/24), '10.211.55/24',
    '192.168.33.7' (a host route), '169.254.1.1/32'. Returns a CIDR or None."""
    if text == "default":
        return "0.0.0.0/0"
    addr, _, prefix = text.partition("/")
    addr = addr.split("%", 1)[0]  # link-local scope suffixes (fe80::%en0 are IPv6; kept for safety)
    parts = addr.split(".")
    if not 1 <= len(parts) <= 4 or not all(p.isdigit() for p in parts):
        return None
    padded = ".".join(parts + ["0"] * (4 - len(parts)))
    bits = prefix if prefix.isdigit() else str(8 * len(parts))
    try:
        return str(ipaddress.ip_network(f"{padded}/{bits}", strict=False))
    except ValueError:
        return None


def parse_netstat_routes(text: str) -> list[tuple[str, str]]:
    """(destination CIDR, interface) from `netstat -rn -f inet` (columns Destination Gateway Flags Netif ...)."""
    out: list[tuple[str, str]] = []
    netif_col = 3
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "Destination":
            netif_col = words.index("Netif") if "Netif" in words else 3
            continue
        dst = _netstat_destination(words[0])
        if dst is None or len(words) <= netif_col:
            continue
        out.append((dst, words[netif_col]))
    return out


def vm_stat_available_mib(text: str) -> int | None:
    """Memory macOS can hand to new VMs without swapping much: free + inactive + speculative pages
    (inactive pages are reclaimed first; speculative ones are read-ahead). The page size is in the
    header ('page size of 16384 bytes' on Apple Silicon, 4096 on Intel)."""
    size = re.search(r"page size of (\d+) bytes", text)
    if not size:
        return None
    pages = 0
    found = False
    for key in ("Pages free", "Pages inactive", "Pages speculative"):
        m = re.search(rf"^{key}:\s+(\d+)\.?\s*$", text, re.MULTILINE)
        if m:
            pages += int(m.group(1))
            found = True
    if not found:
        return None
    return pages * int(size.group(1)) // (1024 * 1024)


def memsize_mib(value: str | None) -> int | None:
    return int(value) // (1024 * 1024) if value and value.strip().isdigit() else None


def check_mac_virtualization(facts: HostFacts) -> Check:
    hv = facts.sysctl.get("kern.hv_support")
    brand = facts.sysctl.get("machdep.cpu.brand_string", "")
    cpu = f" ({brand})" if brand else ""
    if is_apple_silicon(facts):
        if hv == "1":
            return Check("cpu-virtualization", "ok", f"Apple Silicon{cpu}: the Hypervisor framework is available (kern.hv_support=1)")
        return Check(
            "cpu-virtualization",
            "fail",
            f"Apple Silicon{cpu} but kern.hv_support is {hv or 'unknown'}",
            "VirtualBox 7.1+ on Apple Silicon runs VMs through macOS's Hypervisor framework.",
            "run labctl on the Mac itself, not inside a macOS VM (macOS VMs get no nested virtualization)",
        )
    features = set(facts.sysctl.get("machdep.cpu.features", "").split())
    if "VMX" in features and hv != "0":
        return Check("cpu-virtualization", "ok", f"Intel Mac{cpu}: the CPU offers VT-x (VMX) and kern.hv_support={hv or '?'}")
    return Check(
        "cpu-virtualization",
        "fail",
        f"Intel Mac{cpu}: " + ("no VMX in machdep.cpu.features" if "VMX" not in features else "kern.hv_support is 0"),
        "VirtualBox needs VT-x to start 64-bit VMs.",
        "run labctl on the Mac itself, not inside a VM; a Mac whose CPU lacks VT-x cannot run the lab",
    )


def mac_memory(facts: HostFacts) -> tuple[int | None, int | None]:
    """(available MiB, total MiB) from vm_stat and hw.memsize."""
    return vm_stat_available_mib(facts.vm_stat), memsize_mib(facts.sysctl.get("hw.memsize"))
