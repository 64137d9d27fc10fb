"""doctor's checks over crafted inputs: networks.conf variants, routes, memory, disk, CPU, tools."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import pytest

from labctl import doctor
from labctl.spec import LabSpec

LAB = ipaddress.ip_network("192.168.33.0/24")


# ---- /etc/vbox/networks.conf ------------------------------------------------------------------------
def test_missing_networks_conf_allows_only_the_default_range_and_prints_the_line_to_add():
    check = doctor.check_vbox_networks(None, LAB)
    assert check.status == "fail"
    assert "192.168.56.0/21" in check.what
    assert "* 192.168.33.0/24" in check.fix
    assert "create the file" in check.fix
    # A lab inside VirtualBox's default range needs no file at all.
    assert doctor.check_vbox_networks(None, ipaddress.ip_network("192.168.57.0/24")).status == "ok"


def test_networks_conf_with_several_ranges_on_several_lines():
    text = "# lab ranges\n* 10.0.0.0/8 192.168.56.0/21\n* 192.168.33.0/24   # the LLM lab\n* fd00::/64\n"
    assert doctor.parse_networks_conf(text) == [
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.56.0/21"),
        ipaddress.ip_network("192.168.33.0/24"),
    ]
    assert doctor.check_vbox_networks(text, LAB).status == "ok"


def test_networks_conf_covering_range_is_enough():
    assert doctor.check_vbox_networks("* 192.168.32.0/21\n", LAB).status == "ok"  # .32–.39 covers .33
    assert doctor.check_vbox_networks("* 0.0.0.0/0\n", LAB).status == "ok"


def test_networks_conf_that_does_not_cover_the_lab_fails_with_the_exact_line():
    for text in ("* 192.168.56.0/21\n", "* 192.168.33.128/25\n", "", "# * 192.168.33.0/24\n", "192.168.33.0/24\n"):
        check = doctor.check_vbox_networks(text, LAB)
        assert check.status == "fail", text
        assert check.fix.endswith("* 192.168.33.0/24"), check.fix
        assert "not within the allowed ranges" in check.why


def test_networks_conf_ignores_garbage_words():
    assert doctor.parse_networks_conf("* not-a-net 192.168.33.0/24\n") == [ipaddress.ip_network("192.168.33.0/24")]


# ---- routes ---------------------------------------------------------------------------------------
ROUTES = [
    {"dst": "default", "gateway": "10.0.0.1", "dev": "eth0", "protocol": "dhcp"},
    {"dst": "10.0.0.0/24", "dev": "eth0", "protocol": "kernel", "scope": "link", "prefsrc": "10.0.0.7"},
]


def routes(*extra: dict) -> list[tuple[str, str]]:
    return doctor.parse_ip_route_json(json.dumps(ROUTES + list(extra)))


def test_default_route_and_unrelated_networks_do_not_clash():
    assert doctor.check_subnet_routes(routes(), LAB).status == "ok"


def test_the_same_subnet_on_another_interface_fails():
    check = doctor.check_subnet_routes(routes({"dst": "192.168.33.0/24", "dev": "wlan0"}), LAB)
    assert check.status == "fail"
    assert "192.168.33.0/24 via wlan0" in check.what
    assert "network.subnet" in check.fix


def test_a_wider_overlapping_network_fails_and_a_narrower_one_too():
    assert doctor.check_subnet_routes(routes({"dst": "192.168.0.0/16", "dev": "tun0"}), LAB).status == "fail"
    assert doctor.check_subnet_routes(routes({"dst": "192.168.33.64/26", "dev": "br0"}), LAB).status == "fail"
    assert doctor.check_subnet_routes(routes({"dst": "192.168.33.9", "dev": "wg0"}), LAB).status == "fail"
    assert doctor.check_subnet_routes(routes({"dst": "192.168.34.0/24", "dev": "br0"}), LAB).status == "ok"


def test_the_labs_own_interface_is_not_a_clash():
    found = routes({"dst": "192.168.33.0/24", "dev": "vboxnet0"})
    assert doctor.check_subnet_routes(found, LAB, lab_interfaces={"vboxnet0"}).status == "ok"
    assert doctor.check_subnet_routes(found, LAB, lab_interfaces={"virbr3"}).status == "fail"


def test_proc_net_route_fallback():
    text = (
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        "wlan0\t0021A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
    )
    parsed = doctor.parse_proc_net_route(text)
    assert parsed == [("0.0.0.0/0", "eth0"), ("192.168.33.0/24", "wlan0")]
    assert doctor.check_subnet_routes(parsed, LAB).status == "fail"


def test_malformed_route_json_yields_no_routes():
    assert doctor.parse_ip_route_json("not json") == []


# ---- memory and disk ------------------------------------------------------------------------------
def meminfo(available_mib: int) -> str:
    return f"MemTotal:       24683520 kB\nMemFree:         1000000 kB\nMemAvailable:   {available_mib * 1024} kB\n"


def test_memory_enough_tight_and_not_enough():
    assert doctor.check_memory(meminfo(20000), 17408).status == "ok"
    tight = doctor.check_memory(meminfo(17800), 17408)
    assert tight.status == "warn" and "left for the host" in tight.what
    short = doctor.check_memory(meminfo(8000), 17408)
    assert short.status == "fail"
    assert "8000 MiB available" in short.what and "17408 MiB" in short.what
    assert "memory_mib" in short.fix


def test_memory_of_already_running_vms_is_not_counted_twice():
    # Re-running create on a lab whose VMs run: they hold their memory already.
    assert doctor.check_memory(meminfo(3000), 17408, running_vm_mib=17408).status == "ok"


def test_unreadable_meminfo_is_a_warning_not_a_pass():
    assert doctor.check_memory("garbage", 1024).status == "warn"


def test_disk_thresholds(default_spec):
    minimum, comfortable = doctor.disk_needed_gib(default_spec)
    assert minimum == doctor.BOX_GIB + 3 * doctor.VM_DISK_GIB
    assert comfortable >= minimum + 20  # the 20Gi models volume
    gib = doctor.GIB
    assert doctor.check_disk((minimum - 1) * gib, "/x", minimum, comfortable).status == "fail"
    assert doctor.check_disk((minimum + 1) * gib, "/x", minimum, comfortable).status == "warn"
    assert doctor.check_disk((comfortable + 1) * gib, "/x", minimum, comfortable).status == "ok"


# ---- CPU, KVM, tools ------------------------------------------------------------------------------
INTEL = "processor\t: 0\nflags\t\t: fpu vme de pse vmx sse2\n"
NO_VIRT = "processor\t: 0\nflags\t\t: fpu vme de pse sse2 hypervisor\n"


def test_cpu_virtualization_flags():
    assert doctor.cpu_virtualization(INTEL) == "vmx"
    assert doctor.cpu_virtualization("flags : svm lm") == "svm"
    assert doctor.cpu_virtualization(NO_VIRT) is None
    assert doctor.check_cpu_virtualization(NO_VIRT, "virtualbox", "kvm").status == "fail"
    assert doctor.check_cpu_virtualization(NO_VIRT, "libvirt", "kvm").status == "fail"
    qemu = doctor.check_cpu_virtualization(NO_VIRT, "libvirt", "qemu")
    assert qemu.status == "warn" and "TCG" in qemu.why
    assert doctor.check_cpu_virtualization(INTEL, "virtualbox", "kvm").status == "ok"


def test_kvm_device():
    assert doctor.check_kvm(False, "kvm").status == "fail"
    assert doctor.check_kvm(True, "kvm").status == "ok"
    assert doctor.check_kvm(False, "qemu").status == "ok"
    assert doctor.check_kvm(True, "qemu").status == "warn"


def test_vagrant_version():
    assert doctor.check_vagrant(None).status == "fail"
    assert doctor.check_vagrant("Vagrant 2.3.4\n").status == "ok"
    assert doctor.check_vagrant("Vagrant 2.2.6\n").status == "fail"
    assert doctor.check_vagrant("no digits").status == "fail"


def test_virtualbox_and_libvirt_answers():
    assert doctor.check_virtualbox(None).status == "fail"
    assert doctor.check_virtualbox("7.0.20r163906\n").status == "ok"
    assert doctor.check_virtualbox("WARNING: The vboxdrv kernel module is not loaded.\n7.0.20r1\n").status == "fail"
    ok = doctor.check_libvirt("Running hypervisor: QEMU 7.2.0\n", "", True)
    assert ok.status == "ok" and "QEMU 7.2.0" in ok.what
    down = doctor.check_libvirt(None, "error: failed to connect to the hypervisor\n", False)
    assert down.status == "fail" and "not running" in down.what and "failed to connect" in down.what


# ---- evaluate: the whole set for a spec -------------------------------------------------------------
def healthy_facts(**changes) -> doctor.HostFacts:
    facts = doctor.HostFacts(
        vagrant_version="Vagrant 2.3.4",
        vboxmanage_version="7.0.20r163906",
        virsh_version="Running hypervisor: QEMU 7.2.0",
        libvirt_socket=True,
        vagrant_libvirt_plugin=True,
        dev_kvm=True,
        cpuinfo=INTEL,
        networks_conf="* 192.168.33.0/24\n",
        routes_json=json.dumps(ROUTES),
        meminfo=meminfo(23000),
        disk_free_bytes=200 * doctor.GIB,
        disk_path="/home/me/.vagrant.d",
    )
    for key, value in changes.items():
        setattr(facts, key, value)
    return facts


def names(checks):
    return {c.name: c.status for c in checks}


def test_evaluate_virtualbox_healthy(default_spec):
    got = names(doctor.evaluate(default_spec, healthy_facts()))
    assert got == {
        "vagrant": "ok",
        "virtualbox": "ok",
        "vagrant-virtualbox": "ok",  # Vagrant 2.3.4 has the VirtualBox 7.0 driver
        "kvm-vs-virtualbox": "ok",  # no KVM module loaded
        "vbox-networks": "ok",
        "cpu-virtualization": "ok",
        "subnet-free": "ok",
        "memory": "ok",
        "disk": "ok",
        "docker-hub": "ok",  # 1 pull (Ollama): about 10 laptops behind one address within the hour
    }


def test_evaluate_reports_every_failure_at_once(default_spec):
    checks = doctor.evaluate(
        default_spec, healthy_facts(networks_conf=None, meminfo=meminfo(4000), vagrant_version=None)
    )
    assert {c.name for c in checks if c.failed} == {"vagrant", "vbox-networks", "memory"}
    report = doctor.format_report(checks)
    assert "FAIL  vbox-networks" in report
    assert "fix: add this line to /etc/vbox/networks.conf (create the file; sudo needed):  * 192.168.33.0/24" in report
    # 8: without a Vagrant version there is no Vagrant-for-this-VirtualBox line
    assert report.rstrip().endswith("9 checks, 3 failed, 0 warnings")
    assert json.loads(doctor.report_json(checks))["ok"] is False


def test_evaluate_libvirt_qemu_without_kvm_only_warns():
    spec = LabSpec.from_dict({"provider": {"type": "libvirt", "libvirt": {"driver": "qemu"}}})
    checks = names(doctor.evaluate(spec, healthy_facts(dev_kvm=False, cpuinfo=NO_VIRT, networks_conf=None)))
    assert "vbox-networks" not in checks  # VirtualBox's rule does not apply to libvirt
    assert checks["cpu-virtualization"] == "warn"
    assert checks["kvm"] == "ok"
    assert "fail" not in checks.values()


def test_evaluate_provider_ssh_checks_keys(tmp_path: Path):
    key = tmp_path / "id_ed25519"
    key.write_text("k")
    base = {"provider": {"type": "ssh"}}
    nodes = {
        "master": {"name": "master", "ip": "192.168.33.100", "cpus": 2, "memory_mib": 2048, "ssh_user": "u", "ssh_key": str(key)},
        "workers": [],
        "nfs": {"name": "nfs", "ip": "192.168.33.11", "cpus": 1, "memory_mib": 1024, "ssh_user": "u", "ssh_key": str(tmp_path / "missing")},
    }
    spec = LabSpec.from_dict({**base, "nodes": nodes})
    checks = doctor.evaluate(spec, doctor.HostFacts())
    assert [(c.name, c.status) for c in checks] == [("ssh-key:nfs", "fail")]


# ---- rsync: libvirt copies the warm cache with an rsync synced folder ---------------------------------
LIBVIRT = {"provider": {"type": "libvirt"}}


def test_rsync_check_fails_with_the_fix_when_missing():
    missing = doctor.check_rsync(None, Path("/media/cache"))
    assert missing.status == "fail" and "`rsync` is not on PATH" in missing.what
    assert "/media/cache" in missing.why and "synced folder" in missing.why
    assert "apt install rsync" in missing.fix
    present = doctor.check_rsync("/usr/bin/rsync", Path("/media/cache"))
    assert present.status == "ok" and "/usr/bin/rsync" in present.what


def test_evaluate_asks_for_rsync_only_for_libvirt_with_a_cache(default_spec):
    libvirt = LabSpec.from_dict(LIBVIRT)
    cache = Path("/media/cache")
    with_cache = names(doctor.evaluate(libvirt, healthy_facts(rsync_path=None), cache_dir=cache))
    assert with_cache["rsync"] == "fail"
    assert names(doctor.evaluate(libvirt, healthy_facts(rsync_path="/usr/bin/rsync"), cache_dir=cache))["rsync"] == "ok"
    # No cache: nothing is synced, so a host without rsync is fine.
    assert "rsync" not in names(doctor.evaluate(libvirt, healthy_facts(rsync_path=None)))
    # VirtualBox mounts the cache as a shared folder (no rsync).
    assert "rsync" not in names(doctor.evaluate(default_spec, healthy_facts(rsync_path=None), cache_dir=cache))


def test_gather_finds_rsync_on_path(tmp_path, monkeypatch):
    """The gathering layer looks rsync up on the real PATH: a folder with an executable rsync, then one without."""
    with_rsync = tmp_path / "bin-with"
    with_rsync.mkdir()
    (with_rsync / "rsync").write_text("#!/bin/sh\nexit 0\n")
    (with_rsync / "rsync").chmod(0o755)
    without = tmp_path / "bin-without"
    without.mkdir()
    spec = LabSpec.from_dict(LIBVIRT)
    monkeypatch.setenv("PATH", str(with_rsync))
    checks = names(doctor.run_doctor(spec, tmp_path / "state", cache_dir=tmp_path / "cache"))
    assert checks["rsync"] == "ok"
    monkeypatch.setenv("PATH", str(without))
    failed = [c for c in doctor.run_doctor(spec, tmp_path / "state", cache_dir=tmp_path / "cache") if c.name == "rsync"]
    assert [c.status for c in failed] == ["fail"] and "apt install rsync" in failed[0].fix


@pytest.mark.parametrize("provider", ["virtualbox", "libvirt"])
def test_gather_reads_this_host_without_crashing(provider, tmp_path):
    """The gathering layer on the real host: it must return text for every check (values vary)."""
    spec = LabSpec.from_dict({"provider": {"type": provider}})
    facts = doctor.gather(spec, tmp_path / "state")
    assert "MemAvailable" in facts.meminfo
    assert facts.disk_free_bytes > 0
    checks = doctor.evaluate(spec, facts)
    assert {c.status for c in checks} <= {"ok", "warn", "fail"}


def test_doctor_says_how_many_laptops_of_a_room_docker_hub_allows(default_spec, monkeypatch):
    """Issue #16 item 7: Docker Hub's anonymous limit is per address, so doctor says how many laptops
    behind one NAT can create within the hour, warns when one lab alone uses half of it, and is quiet
    when the images come from a cache or a mirror."""
    from labctl import registries

    hub = {c.name: c for c in doctor.evaluate(default_spec, healthy_facts())}["docker-hub"]
    pulls = registries.docker_hub_pulls(default_spec)
    assert pulls == 1  # Ollama; Calico comes from quay.io
    assert hub.status == "ok" and "1 image pull from Docker Hub per lab: about 10 laptops" in hub.what
    # No lab.yaml reaches half the limit today (Grafana is the only other docker.io image): the
    # warning path is driven through the count.
    monkeypatch.setattr(registries, "docker_hub_pulls", lambda spec: 6)
    busy = {c.name: c for c in doctor.evaluate(default_spec, healthy_facts())}["docker-hub"]
    assert busy.status == "warn" and "about 1 laptop behind one address" in busy.what
    assert "registry_mirror" in busy.fix and "429" in busy.why
    cached = {c.name: c for c in doctor.evaluate(default_spec, healthy_facts(), cache_dir=Path("/nonexistent"))}
    assert cached["docker-hub"].what == "no Docker Hub pulls: images come from the warm cache"
    data = default_spec.model_dump(mode="json", exclude_none=True)
    data["apps"].setdefault("options", {})["registry_mirror"] = "https://mirror.example.test"
    mirrored = {c.name: c for c in doctor.evaluate(LabSpec.from_dict(data), healthy_facts())}["docker-hub"]
    assert mirrored.status == "ok" and "mirror.example.test" in mirrored.what
