"""The cross-field rules of lab.yaml: what no single field can check on its own (unique names and
addresses, the MetalLB pool inside the subnet, ranges that must not overlap, the GPU on a provider that
can pass it through, what the nodes can hold with autoscaling). One line per problem, naming the
field and the fix. ``LabSpec`` runs them while it validates; ``spec_errors`` runs them again on a
repaired copy when fields failed. Split from labctl/spec.py, which keeps the models."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # spec imports this module to validate; this one needs its classes only as types
    from labctl.spec import LabSpec

# Every VirtualBox/libvirt-NAT'd VM has its first NIC here; nothing of ours may overlap it.
# (Calico's built-in 192.168.0.0/16 pool is not checked: labctl always sets the pod CIDR.)
VAGRANT_NAT = ipaddress.ip_network("10.0.2.0/24")


def _overlaps(a: ipaddress.IPv4Network, b: ipaddress.IPv4Network) -> bool:
    return a.overlaps(b)


def cross_problems(spec: LabSpec) -> Iterator[str]:
    net = spec.network
    subnet = net.subnet
    nodes = spec.all_nodes()

    seen_names: dict[str, str] = {}
    seen_ips: dict[ipaddress.IPv4Address, str] = {}
    for path, node in nodes:
        if node.name in seen_names:
            yield f"{path}.name: {node.name!r} is already used by {seen_names[node.name]} — give each node its own name"
        seen_names.setdefault(node.name, path)
        if node.ip in seen_ips:
            yield f"{path}.ip: {node.ip} is already used by {seen_ips[node.ip]} — give each node its own address"
        seen_ips.setdefault(node.ip, path)
        if node.ip not in subnet:
            yield f"{path}.ip: {node.ip} is outside the lab subnet {subnet} — use an address in {subnet}"
        elif node.ip in (subnet.network_address, subnet.broadcast_address):
            yield f"{path}.ip: {node.ip} is the subnet's network or broadcast address — pick a host address in {subnet}"
        elif node.ip == next(subnet.hosts()):
            yield f"{path}.ip: {node.ip} is the host's own address on the lab network (Vagrant gives it the .1) — pick another"
        if spec.provider.type == "ssh":
            if not node.ssh_user:
                yield f"{path}.ssh_user: required with provider.type ssh — name the login user of {node.name}"
            if node.disk_gib is not None:
                yield f"{path}.disk_gib: only a Vagrant VM's disk can be grown (provider.type ssh uses machines as they are) — remove it"

    first, last = net.pool_range()
    if first not in subnet or last not in subnet:
        yield f"network.metallb_pool: {net.metallb_pool} is outside the lab subnet {subnet} — use addresses in {subnet}"
    elif subnet.network_address in (first, last) or subnet.broadcast_address in (first, last):
        yield (
            f"network.metallb_pool: {net.metallb_pool} includes the subnet's network or broadcast address — "
            f"keep it between {subnet.network_address + 2} and {subnet.broadcast_address - 1}"
        )
    else:
        for path, node in nodes:
            if first <= node.ip <= last:
                yield f"network.metallb_pool: {net.metallb_pool} contains {node.ip} of {path} — move the pool or the node"
        if first == next(subnet.hosts()):
            yield f"network.metallb_pool: starts at {first}, the host's own address — start it at .2 or later"
    webui = spec.apps.openwebui.address
    if webui is not None and not (first <= webui <= last):
        yield f"apps.openwebui.address: {webui} is not in network.metallb_pool {net.metallb_pool} — pick one of the pool's addresses"

    named = [
        ("network.pod_cidr", net.pod_cidr),
        ("network.service_cidr", net.service_cidr),
        ("network.subnet", subnet),
        ("Vagrant's NAT network", VAGRANT_NAT),
    ]
    for i, (a_name, a) in enumerate(named):
        for b_name, b in named[i + 1 :]:
            if a_name.startswith("network.") and _overlaps(a, b):
                yield f"{a_name}: {a} overlaps {b_name} {b} — choose ranges that do not overlap (e.g. pod 10.10.0.0/16, service 10.96.0.0/12)"

    if spec.nodes.gpu_worker is not None and spec.provider.type == "virtualbox":
        yield (
            "nodes.gpu_worker: VirtualBox cannot pass a PCI device through on Linux/macOS hosts — "
            "set provider.type: libvirt (or remove gpu_worker)"
        )
    if spec.apps.options.gpu and spec.nodes.gpu_worker is None:
        yield "apps.options.gpu: needs nodes.gpu_worker with the GPU's PCI address — add it or set gpu: false"
    yield from _capacity_problems(spec)
    if spec.provider.type != "libvirt" and spec.provider.libvirt != type(spec.provider.libvirt)():
        yield f"provider.libvirt: only used with provider.type libvirt (it is {spec.provider.type}) — remove the block or change the type"


def _capacity_problems(spec: LabSpec) -> Iterator[str]:
    """What the nodes cannot hold (labctl.capacity); issue #12 items 3 and 9."""
    options = spec.apps.options
    if not options.autoscaling:
        return
    if options.gpu:
        # Every Ollama replica asks for nvidia.com/gpu: 1 and the lab passes one GPU through: the
        # HPA's second replica could never be scheduled, so the Deployment would never be Available.
        yield (
            "apps.options.autoscaling: with gpu: true every Ollama replica needs the one passed-through GPU, "
            "so the autoscaler's second replica can never start — set autoscaling: false (or gpu: false)"
        )
        return
    from labctl.capacity import DoesNotFit, autoscaling_fit

    try:
        autoscaling_fit(spec)
    except DoesNotFit as err:
        yield str(err)
