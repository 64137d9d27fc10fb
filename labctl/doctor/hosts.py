"""doctor by platform: which checks a host gets (Linux, macOS, or one line for anything else), and
``gather`` — which reads the host through its probes (probes.py). Pure except ``gather``."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from labctl.doctor.checks import (
    check_available_memory,
    check_disk,
    check_ssh_keys,
    check_subnet_routes,
    check_vagrant,
    check_vbox_networks,
    check_virtualbox,
    disk_needed_gib,
    evaluate_linux,
    parse_version,
)
from labctl.doctor.facts import Check, HostFacts
from labctl.doctor.linux import gather_linux
from labctl.doctor.macos import (
    check_mac_virtualization,
    gather_macos,
    is_apple_silicon,
    mac_memory,
    parse_netstat_routes,
)
from labctl.doctor.probes import HostProbes, Probes
from labctl.doctor.vbox import (
    check_kvm_holds_virtualization,
    check_vagrant_knows_virtualbox,
    check_virtualbox_on_apple_silicon,
    virtualbox_version,
)
from labctl.spec import LabSpec

SUPPORTED_SYSTEMS = ("linux", "darwin")
# hashicorp/vagrant v2.3.4+ plugins/providers/virtualbox/action/network.rb: on darwin with VirtualBox
# 7.0+ (host-only *networks*, not adapters) Vagrant skips the networks.conf range validation.
DARWIN_NO_RANGE_CHECK_VIRTUALBOX = (7, 0)
DARWIN_NO_RANGE_CHECK_VAGRANT = (2, 3, 4)


def check_host_supported(system: str) -> Check:
    return Check(
        "host",
        "fail",
        f"this host is {system!r}: labctl runs on Linux (Windows: inside WSL 2) and on macOS (Intel or Apple Silicon)",
        "labctl's checks, Vagrant settings and commands are written and tested for those hosts only.",
        "run labctl on a Linux or macOS machine, or on Windows inside WSL 2 (`wsl --install`)",
    )


def check_lab_arch(spec: LabSpec, facts: HostFacts) -> Check:
    """The spec's architecture was resolved from Python's view of the host; the probes see the
    hardware. They differ under Rosetta 2 (an x86_64 Python on an Apple Silicon Mac)."""
    host = "arm64" if is_apple_silicon(facts) else "amd64"
    if spec.arch == host:
        return Check("lab-arch", "ok", f"the lab's VMs are {spec.arch}, like this Mac's CPU")
    return Check(
        "lab-arch",
        "fail",
        f"the lab's VMs are {spec.arch}, but this Mac's CPU is {host}",
        "VirtualBox runs only guests of the host's own architecture.",
        f"set provider.arch: {host} in lab.yaml (an x86_64 Python under Rosetta 2 makes `auto` guess amd64; "
        "a native arm64 Python guesses right)",
    )


def check_vbox_networks_macos(
    text: str | None, subnet: ipaddress.IPv4Network, vbox_output: str | None, vagrant_output: str | None
) -> Check:
    vbox = virtualbox_version(vbox_output)
    vagrant = parse_version(vagrant_output or "")
    if (
        vbox is not None
        and vbox[:2] >= DARWIN_NO_RANGE_CHECK_VIRTUALBOX
        and vagrant is not None
        and vagrant >= DARWIN_NO_RANGE_CHECK_VAGRANT
    ):
        return Check(
            "vbox-networks",
            "ok",
            f"lab subnet {subnet}: VirtualBox 7 on macOS makes host-only networks without the "
            "/etc/vbox/networks.conf ranges, and Vagrant does not check them there",
        )
    return check_vbox_networks(text, subnet)


def evaluate_macos(spec: LabSpec, facts: HostFacts) -> list[Check]:
    if spec.provider.type != "virtualbox":
        return [
            Check(
                "provider",
                "fail",
                f"provider.type {spec.provider.type} on macOS",
                "labctl's libvirt provider needs libvirtd and KVM, which are Linux's.",
                "set provider.type: virtualbox in lab.yaml (VirtualBox 7.1+ on Apple Silicon)",
            )
        ]
    checks = [check_vagrant(facts.vagrant_version), check_virtualbox(facts.vboxmanage_version)]
    for extra in (
        check_vagrant_knows_virtualbox(facts.vagrant_version, facts.vboxmanage_version, "darwin"),
        check_virtualbox_on_apple_silicon(facts.vboxmanage_version) if is_apple_silicon(facts) else None,
    ):
        if extra is not None:
            checks.append(extra)
    checks.append(check_lab_arch(spec, facts))
    checks.append(
        check_vbox_networks_macos(facts.networks_conf, spec.network.subnet, facts.vboxmanage_version, facts.vagrant_version)
    )
    checks.append(check_mac_virtualization(facts))
    checks.append(check_subnet_routes(parse_netstat_routes(facts.netstat_routes), spec.network.subnet, facts.lab_interfaces))
    available, total = mac_memory(facts)
    if available is None:
        checks.append(Check("memory", "warn", "cannot read free pages from `vm_stat`", "", "check Activity Monitor's Memory tab"))
    else:
        note = f" of {total} MiB" if total else ""
        checks.append(check_available_memory(available, spec.memory_mib(), facts.running_vm_mib, note))
    minimum, comfortable = disk_needed_gib(spec)
    checks.append(check_disk(facts.disk_free_bytes, facts.disk_path, minimum, comfortable))
    return checks


def evaluate(spec: LabSpec, facts: HostFacts, *, cache_dir: Path | None = None) -> list[Check]:
    """All checks for ``spec`` over ``facts``; ``cache_dir`` is the warm cache given to ``create --cache``. Pure."""
    if spec.provider.type == "ssh":  # only keys are read locally: any host will do
        return check_ssh_keys(spec)
    if facts.system not in SUPPORTED_SYSTEMS:
        return [check_host_supported(facts.system)]
    checks = evaluate_macos(spec, facts) if facts.system == "darwin" else evaluate_linux(spec, facts, cache_dir=cache_dir)
    if facts.system != "darwin" and spec.provider.type == "virtualbox":
        after = next(i for i, c in enumerate(checks) if c.name == "virtualbox") + 1
        extra = [check_vagrant_knows_virtualbox(facts.vagrant_version, facts.vboxmanage_version, "linux")]
        extra.append(check_kvm_holds_virtualization(facts.kernel_release, facts.proc_modules, facts.kvm_enable_virt_at_load))
        checks[after:after] = [c for c in extra if c is not None]
    if not any(c.name == "provider" and c.failed for c in checks):
        checks.append(check_docker_hub(spec, cache=cache_dir is not None))
    return checks


def check_docker_hub(spec: LabSpec, *, cache: bool) -> Check:
    """Docker Hub's anonymous limit is per address: a room behind one NAT shares it (issue #16 item 7)."""
    from labctl.registries import docker_hub_room

    status, what = docker_hub_room(spec, cache=cache)
    if status == "ok":
        return Check("docker-hub", "ok", what)
    return Check(
        "docker-hub",
        "warn",
        what,
        "each image on each node is a pull, manifest requests included; past the limit pods stay in ImagePullBackOff (HTTP 429)",
        "create --cache, apps.options.registry_mirror, or apps.options.image_pull_secret",
    )


def gather(spec: LabSpec, state_dir: Path, *, running_vm_mib: int = 0, probes: Probes | None = None) -> HostFacts:
    """Read what the checks need from the host (``probes``: the real one unless given)."""
    probes = probes or HostProbes()
    facts = HostFacts(running_vm_mib=running_vm_mib, system=probes.system, machine=probes.machine)
    if spec.provider.type == "ssh" or probes.system not in SUPPORTED_SYSTEMS:
        return facts
    if probes.system == "darwin":
        return gather_macos(spec, state_dir, probes, facts)
    return gather_linux(spec, state_dir, probes, facts)
