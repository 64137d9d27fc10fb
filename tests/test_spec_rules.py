"""lab.yaml rules at their edges, through the public loaders (``LabSpec.from_yaml``/``from_dict``/
``load``): which value is the last one accepted, which is the first refused, and the exact line the
user reads. Complements tests/malformed/ (one CLI case per file) with boundaries and derived views."""

from __future__ import annotations

import ipaddress

import pytest

from labctl.errors import SpecError
from labctl.spec import LabSpec
from labctl.spec_warnings import spec_warnings


def problems(data: dict) -> list[str]:
    with pytest.raises(SpecError) as info:
        LabSpec.from_dict(data, source="lab.yaml")
    return info.value.problems


def one(data: dict) -> str:
    found = problems(data)
    assert len(found) == 1, found
    return found[0]


def node(name: str, ip: str, **kw) -> dict:
    return {"name": name, "ip": ip, "cpus": 2, "memory_mib": 2048, **kw}


def nodes(**changes) -> dict:
    base = {
        "master": node("master", "192.168.33.100"),
        "workers": [node("worker1", "192.168.33.101")],
        "nfs": node("nfs", "192.168.33.11"),
    }
    base.update(changes)
    return {"nodes": base}


# ---- node addresses -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "ip, message",
    [
        ("192.168.33.0", "nodes.master.ip: 192.168.33.0 is the subnet's network or broadcast address — pick a host address in 192.168.33.0/24"),
        ("192.168.33.255", "nodes.master.ip: 192.168.33.255 is the subnet's network or broadcast address — pick a host address in 192.168.33.0/24"),
        ("192.168.33.1", "nodes.master.ip: 192.168.33.1 is the host's own address on the lab network (Vagrant gives it the .1) — pick another"),
        ("192.168.34.100", "nodes.master.ip: 192.168.34.100 is outside the lab subnet 192.168.33.0/24 — use an address in 192.168.33.0/24"),
    ],
)  # fmt: skip
def test_node_address_edges(ip, message):
    assert one(nodes(master=node("master", ip))) == message


@pytest.mark.parametrize("ip", ["192.168.33.6", "192.168.33.254"])
def test_first_and_last_usable_addresses_are_fine(ip):
    assert LabSpec.from_dict(nodes(master=node("master", ip))).nodes.master.ip == ipaddress.IPv4Address(ip)


def test_duplicate_names_and_addresses_name_the_first_owner():
    found = problems(nodes(workers=[node("master", "192.168.33.100")]))
    assert found == [
        "nodes.workers[0].name: 'master' is already used by nodes.master — give each node its own name",
        "nodes.workers[0].ip: 192.168.33.100 is already used by nodes.master — give each node its own address",
    ]


# ---- the MetalLB pool -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "pool, message",
    [
        ("192.168.33.80-192.168.33.100", "network.metallb_pool: 192.168.33.80-192.168.33.100 contains 192.168.33.100 of nodes.master — move the pool or the node"),
        ("192.168.33.90-192.168.33.100", "network.metallb_pool: 192.168.33.90-192.168.33.100 contains 192.168.33.100 of nodes.master — move the pool or the node"),
        ("192.168.33.1-192.168.33.5", "network.metallb_pool: starts at 192.168.33.1, the host's own address — start it at .2 or later"),
        ("192.168.33.250-192.168.34.2", "network.metallb_pool: 192.168.33.250-192.168.34.2 is outside the lab subnet 192.168.33.0/24 — use addresses in 192.168.33.0/24"),
        ("192.168.32.2-192.168.33.5", "network.metallb_pool: 192.168.32.2-192.168.33.5 is outside the lab subnet 192.168.33.0/24 — use addresses in 192.168.33.0/24"),
        ("192.168.33.5-192.168.33.2", "network.metallb_pool: '192.168.33.5-192.168.33.2': the first address must not come after the last — write FIRST-LAST"),
        ("192.168.33.5", "network.metallb_pool: '192.168.33.5' is not an address range — write it as FIRST-LAST, e.g. 192.168.33.2-192.168.33.5"),
    ],
)  # fmt: skip
def test_pool_edges(pool, message):
    assert one({"network": {"metallb_pool": pool}}) == message


def test_a_pool_of_one_address_next_to_the_nodes_is_fine():
    spec = LabSpec.from_dict({"network": {"metallb_pool": "192.168.33.99-192.168.33.99"}})
    assert spec.network.metallb_pool == "192.168.33.99-192.168.33.99"
    assert spec.network.pool_range() == (ipaddress.IPv4Address("192.168.33.99"),) * 2
    assert spec.webui_address == ipaddress.IPv4Address("192.168.33.99")
    # Fields are matched whole since #10 (hostile lab.yaml): spaces around the addresses are refused,
    # no longer trimmed.
    with pytest.raises(SpecError) as info:
        LabSpec.from_dict({"network": {"metallb_pool": " 192.168.33.99 - 192.168.33.99 "}})
    assert "network.metallb_pool: ' 192.168.33.99 - 192.168.33.99 ' is not an address range — write it as FIRST-LAST" in str(info.value)


@pytest.mark.parametrize("address, ok", [("192.168.33.2", True), ("192.168.33.5", True), ("192.168.33.6", False)])
def test_webui_address_must_be_in_the_pool(address, ok):
    data = {"apps": {"openwebui": {"address": address}}}
    if ok:
        assert str(LabSpec.from_dict(data).webui_address) == address
    else:
        assert one(data) == (
            "apps.openwebui.address: 192.168.33.6 is not in network.metallb_pool 192.168.33.2-192.168.33.5 — "
            "pick one of the pool's addresses"
        )


# ---- ranges that must not overlap -----------------------------------------------------------------
def test_overlapping_ranges_each_named_once():
    assert one({"network": {"pod_cidr": "10.96.0.0/16"}}) == (
        "network.pod_cidr: 10.96.0.0/16 overlaps network.service_cidr 10.96.0.0/12 — choose ranges that do not "
        "overlap (e.g. pod 10.10.0.0/16, service 10.96.0.0/12)"
    )
    assert one({"network": {"pod_cidr": "10.0.0.0/16"}}).startswith(
        "network.pod_cidr: 10.0.0.0/16 overlaps Vagrant's NAT network 10.0.2.0/24"
    )


def test_adjacent_ranges_do_not_overlap():
    assert LabSpec.from_dict({"network": {"pod_cidr": "10.0.3.0/24"}}).network.pod_cidr.prefixlen == 24


# ---- providers and the GPU ------------------------------------------------------------------------
GPU = node("gpu1", "192.168.33.102", pci="0000:01:00.0")


def test_gpu_rules():
    assert one({**nodes(gpu_worker=GPU)}).startswith("nodes.gpu_worker: VirtualBox cannot pass a PCI device through")
    assert one({"apps": {"options": {"gpu": True}}}) == (
        "apps.options.gpu: needs nodes.gpu_worker with the GPU's PCI address — add it or set gpu: false"
    )
    spec = LabSpec.from_dict({**nodes(gpu_worker={**GPU, "pci": "0000:0A:1F.7"}), "provider": {"type": "libvirt"},
                              "apps": {"options": {"gpu": True}}})  # fmt: skip
    assert spec.nodes.gpu_worker is not None and spec.nodes.gpu_worker.pci == "0000:0a:1f.7"
    assert spec.nodes.gpu_worker.pci_parts() == {"domain": "0x0000", "bus": "0x0a", "slot": "0x1f", "function": "0x7"}
    assert spec.roles_of(spec.nodes.gpu_worker) == ("k8s", "workers", "gpu")
    assert [p for p, _ in spec.all_nodes()] == ["nodes.nfs", "nodes.master", "nodes.workers[0]", "nodes.gpu_worker"]


def test_pci_written_without_quotes_is_explained():
    found = one({**nodes(gpu_worker={**GPU, "pci": 3600}), "provider": {"type": "libvirt"}})
    assert "YAML read it as the number 3600 — write the PCI address in quotes" in found


def test_libvirt_block_only_with_libvirt():
    assert one({"provider": {"libvirt": {"driver": "qemu"}}}) == (
        "provider.libvirt: only used with provider.type libvirt (it is virtualbox) — remove the block or change the type"
    )
    assert LabSpec.from_dict({"provider": {"type": "libvirt", "libvirt": {"driver": "qemu"}}}).provider.libvirt.driver == "qemu"


def test_provider_ssh_needs_users_and_no_disk_growth():
    found = problems({"provider": {"type": "ssh"}, **nodes(master=node("master", "192.168.33.100", disk_gib=20))})
    assert "nodes.master.ssh_user: required with provider.type ssh — name the login user of master" in found
    assert any(p.startswith("nodes.master.disk_gib: only a Vagrant VM's disk can be grown") for p in found)
    assert len([p for p in found if "ssh_user" in p]) == 3


def test_boxes_follow_the_provider():
    from labctl.versions import PINS

    vbox, libvirt = LabSpec.default(), LabSpec.from_dict({"provider": {"type": "libvirt"}})
    assert (vbox.box, vbox.box_version) == (PINS["box_virtualbox"], PINS["box_virtualbox_version"])
    assert (libvirt.box, libvirt.box_version) == (PINS["box_libvirt"], PINS["box_libvirt_version"])
    own = LabSpec.from_dict({"provider": {"box": "me/box", "box_version": "1.0"}})
    assert (own.box, own.box_version) == ("me/box", "1.0")


# ---- the memory budget warning --------------------------------------------------------------------
@pytest.mark.parametrize("budget, warned", [(17408, False), (17407, True)])
def test_memory_budget_warning_edge(budget, warned):
    spec = LabSpec.from_dict({"provider": {"host_memory_budget_mib": budget}})
    assert spec.memory_mib() == 17408
    assert bool(spec_warnings(spec)) is warned
    if warned:
        assert spec_warnings(spec)[0] == (
            "provider.host_memory_budget_mib: the VMs need 17408 MiB, above the budget of 17407 MiB — lower "
            "nodes.*.memory_mib or raise the budget if the host has room"
        )


def test_no_memory_warning_for_machines_that_exist():
    spec = LabSpec.from_dict({"provider": {"type": "ssh", "host_memory_budget_mib": 1024},
                              **nodes(master=node("master", "192.168.33.100", ssh_user="u"), workers=[],
                                      nfs=node("nfs", "192.168.33.11", ssh_user="u"))})  # fmt: skip
    assert spec_warnings(spec) == []


# ---- messages per kind of mistake -----------------------------------------------------------------
@pytest.mark.parametrize(
    "data, message",
    [
        ({"nodes": {"master": {"name": "master", "ip": "192.168.33.100", "cpus": 2, "memory": 2048}}},
         "nodes.master.memory: unknown key — did you mean 'memory_mib'?"),
        ({"nodes": {"master": {**node("master", "192.168.33.100"), "zzz": 1}}},
         "nodes.master.zzz: unknown key — known keys here: name, ip, cpus, memory_mib, disk_gib, ssh_user, ssh_port, ssh_key"),
        ({"provider": {"type": "vmware"}}, "provider.type: 'vmware' is not allowed — use 'virtualbox', 'libvirt' or 'ssh'"),
        ({"nodes": {"master": node("master", "192.168.33.100", cpus="four")}},
         "nodes.master.cpus: 'four' is not a whole number — write digits, e.g. 4"),
        ({"provider": {"boot_timeout": "x"}}, "provider.boot_timeout: 'x' is not a whole number — write digits, e.g. 900"),
        ({"nodes": {"master": node("master", "192.168.33.100", cpus=0)}}, "nodes.master.cpus: 0 is too small — use 1 or more"),
        ({"nodes": {"master": node("master", "192.168.33.100", cpus=65)}}, "nodes.master.cpus: 65 is too large — use 64 or less"),
        ({"offline": "maybe"}, "offline: 'maybe' is not true or false — write true or false"),
        ({"apps": {"ollama": {"models": "llama3"}}}, "apps.ollama.models: expected a list — write it as [a, b] or as '- item' lines"),
        ({"network": "x"}, "network: expected a mapping of keys — write 'key: value' lines indented under it"),
        ({"provider": {"box": 5}}, "provider.box: 5 is not text — write it in quotes"),
        ({"nodes": {"nfs": {**node("nfs", "192.168.33.11"), "export": "srv"}}},
         "nodes.nfs.export: 'srv' is not an absolute, normalised folder — write it like /srv/nfs/lab (letters, digits, '.', '_', '-'; no '..', no trailing '/')"),
        ({"nodes": {"master": node("master", "192.168.33.300")}},
         "nodes.master.ip: '192.168.33.300' is not an IPv4 address — write it like 192.168.33.100"),
        ({"network": {"subnet": "192.168.33.1/24"}},
         "network.subnet: '192.168.33.1/24' is not an IPv4 network — write it like 192.168.33.0/24 (the address part must end in zeros for its prefix)"),
        ({"nodes": {"master": {"name": "master", "ip": "192.168.33.100", "cpus": 2}}},
         "nodes.master.memory_mib: required — add it (see `labctl init` for an example)"),
        ({"storage": {"models_size": "0Gi"}}, "storage.models_size: '0Gi' is not a size — write it like 20Gi or 512Mi"),
        ({"apps": {"ollama": {"models": ["a:1", "a:1"]}}}, "apps.ollama.models: lists a model twice — keep each model once"),
        ({"name": "Lab_1"}, "name: 'Lab_1' is not a valid name — use lower-case letters, digits and '-' (max 63), starting and ending with a letter or digit"),
        ([], "(top level): expected a mapping of keys — write 'key: value' lines indented under it"),
    ],
)  # fmt: skip
def test_one_line_per_mistake(data, message):
    assert one(data) == message


def test_too_many_workers():
    workers = [node(f"w{i}", f"192.168.33.{120 + i}") for i in range(21)]
    assert one(nodes(workers=workers)) == "nodes.workers: has 21 items — at most 20 are allowed"


# ---- reading the file -----------------------------------------------------------------------------
def test_yaml_errors_name_the_position():
    with pytest.raises(SpecError) as info:
        LabSpec.from_yaml("name: lab\nnodes:\n  master: [\n", source="my.yaml")
    (line,) = info.value.problems
    assert line.startswith("invalid YAML at line 4, column 1: ") and line.endswith("fix the indentation or quoting there")
    assert str(info.value).startswith("my.yaml: invalid YAML")


def test_a_key_written_twice_is_refused_with_both_lines():
    with pytest.raises(SpecError) as info:
        LabSpec.from_yaml("name: a\noffline: true\nname: b\n")
    assert info.value.problems == [
        "line 3, column 1: key 'name' appears twice in the same mapping (first on line 1) — keep one of them"
    ]


def test_the_same_key_in_two_mappings_is_fine():
    spec = LabSpec.from_yaml("apps:\n  ollama: {expose: true}\n  openwebui: {auth: false}\n")
    assert spec.apps.ollama.expose and not spec.apps.openwebui.auth


def test_empty_file_is_the_default_lab_and_a_list_is_refused():
    assert LabSpec.from_yaml("") == LabSpec.default()
    with pytest.raises(SpecError, match="the top level is a list, not a mapping of keys"):
        LabSpec.from_yaml("- a\n")


def test_load_refuses_a_missing_or_non_utf8_file(tmp_path):
    with pytest.raises(SpecError, match="file not found — run `labctl init`"):
        LabSpec.load(tmp_path / "nope.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(SpecError, match=r"not UTF-8 text \(invalid continuation byte at byte 9\) — save it as UTF-8"):
        LabSpec.load(bad)
    good = tmp_path / "lab.yaml"
    good.write_text("name: mine\n")
    assert LabSpec.load(good).name == "mine"


@pytest.mark.parametrize("value, ok", [(59, False), (60, True), (7200, True), (7201, False)])
def test_boot_timeout_limits(value, ok):
    data = {"provider": {"boot_timeout": value}}
    if ok:
        assert LabSpec.from_dict(data).provider.boot_timeout == value
    else:
        assert one(data).startswith(f"provider.boot_timeout: {value} is too ")


def test_memory_not_a_number_suggests_mib():
    assert one(nodes(master=node("master", "192.168.33.100", memory_mib="8G"))) == (
        "nodes.master.memory_mib: '8G' is not a whole number — write digits, e.g. 8192"
    )


def test_the_default_lab_names_its_format_and_loads_from_a_path_string(tmp_path):
    spec = LabSpec.default()
    assert (spec.apiVersion, spec.kind) == ("labctl.dev/v1alpha1", "Lab")
    path = tmp_path / "lab.yaml"
    path.write_text("apiVersion: labctl.dev/v1alpha1\nkind: Lab\nname: from-str\n")
    assert LabSpec.load(str(path)).name == "from-str"
    assert one({"apiVersion": "labctl.dev/v1"}) == "apiVersion: 'labctl.dev/v1' is not allowed — use 'labctl.dev/v1alpha1'"


def test_roles_of_each_node():
    spec = LabSpec.default()
    assert spec.roles_of(spec.nodes.master) == ("k8s", "control_plane")
    assert spec.roles_of(spec.nodes.nfs) == ("nfs",)
    assert spec.roles_of(spec.nodes.workers[0]) == ("k8s", "workers")


def test_a_number_field_without_its_own_example_suggests_1():
    assert one({"apps": {"ollama": {"num_parallel": "two"}}}) == (
        "apps.ollama.num_parallel: 'two' is not a whole number — write digits, e.g. 1"
    )


@pytest.mark.parametrize("port,ok", [(1, True), (65535, True), (65536, False), (0, False)])
def test_the_open_webui_port_is_a_tcp_port(port: int, ok: bool) -> None:
    data = {"apps": {"openwebui": {"port": port}}}
    if ok:
        assert LabSpec.from_dict(data).apps.openwebui.port == port
    else:
        assert one(data).startswith("apps.openwebui.port: ")
