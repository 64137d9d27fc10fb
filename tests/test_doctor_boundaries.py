"""doctor at its boundaries: the exact values where a check turns ok → warn → fail, the lab's own
vboxnet/virbr interface left out of the subnet-clash check, and Ti/Gi/Mi model volumes in the disk
estimate. Pure checks get facts in; ``lab_interfaces`` reads a fake ``ip`` put first on PATH."""

from __future__ import annotations

import ipaddress
import json
import os
import stat
from pathlib import Path

import pytest

from labctl import doctor
from labctl.spec import LabSpec

SUBNET = ipaddress.ip_network("192.168.33.0/24")


def meminfo(available_mib: int) -> str:
    return f"MemTotal:       24683520 kB\nMemAvailable:   {available_mib * 1024} kB\n"


# ---- memory ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "available, status",
    [
        (9999, "fail"),  # one MiB short
        (10000, "warn"),  # exactly what the VMs need: they fit, the host has nothing left
        (11023, "warn"),
        (11024, "ok"),  # exactly the 1024 MiB the host keeps for itself left: fine
    ],
)
def test_memory_thresholds_are_exact(available, status):
    check = doctor.check_memory(meminfo(available), 10000)
    assert check.status == status
    assert check.what.startswith(f"{available} MiB available, the lab's VMs need 10000 MiB more")
    assert ("left for the host" in check.what) == (status == "warn")
    assert bool(check.fix) == (status != "ok")


def test_memory_counts_kib_down_to_whole_mib():
    text = "MemAvailable:   10240000 kB\n"  # 10000 MiB exactly
    assert doctor.check_memory(text, 10000).status == "warn"
    assert doctor.check_memory("MemAvailable:   10239999 kB\n", 10000).status == "fail"


def test_running_vms_never_make_the_need_negative():
    check = doctor.check_memory(meminfo(5000), 2000, running_vm_mib=9000)
    assert check.status == "ok" and "need 0 MiB more" in check.what


def test_memavailable_is_read_not_memfree():
    text = "MemFree:   99999999 kB\nMemAvailable:   1024 kB\n"
    assert doctor.parse_meminfo_kib(text) == 1024
    assert doctor.parse_meminfo_kib(text, "MemFree") == 99999999


# ---- disk -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "free_gib, status", [(9.99, "fail"), (10, "warn"), (29.99, "warn"), (30, "ok")]
)  # fmt: skip
def test_disk_thresholds_are_exact(free_gib, status):
    check = doctor.check_disk(int(free_gib * doctor.GIB), "/var/lib", 10, 30)
    assert check.status == status
    assert "/var/lib; the lab needs 10 GiB, 30 GiB with models" in check.what
    assert ("/var/lib" in check.fix) == (status != "ok")


def spec_with(models_size: str, disk_gib: int | None = None) -> LabSpec:
    data = json.loads(LabSpec.default().model_dump_json())
    storage = {"models_size": models_size}
    nodes = data["nodes"]
    nodes["master"]["disk_gib"] = disk_gib
    return LabSpec.from_dict({"nodes": {k: v for k, v in nodes.items() if v is not None}, "storage": storage})


@pytest.mark.parametrize("size, models_gib", [("20Gi", 20), ("2Ti", 2048), ("1Ti", 1024), ("500Mi", 1)])
def test_disk_estimate_reads_the_unit_of_the_models_volume(size, models_gib):
    minimum, comfortable = doctor.disk_needed_gib(spec_with(size))
    assert minimum == 14  # the 2 GiB box + 4 GiB per linked clone, 3 VMs
    assert comfortable == 14 + models_gib


def test_disk_estimate_counts_a_node_disk_bigger_than_a_clone():
    _, comfortable = doctor.disk_needed_gib(spec_with("20Gi", disk_gib=64))
    assert comfortable == 2 + 64 + 2 * 4 + 20


# ---- the subnet-clash check and the lab's own interfaces ------------------------------------------
def test_the_labs_own_interface_is_left_out_but_another_on_the_same_subnet_is_not():
    routes = [("192.168.33.0/24", "virbr1"), ("0.0.0.0/0", "eth0")]
    assert doctor.check_subnet_routes(routes, SUBNET, {"virbr1"}).status == "ok"
    clash = doctor.check_subnet_routes(routes, SUBNET, {"vboxnet0"})
    assert clash.status == "fail" and "192.168.33.0/24 via virbr1" in clash.what


def test_single_host_routes_and_bad_destinations():
    assert doctor.check_subnet_routes([("192.168.33.7", "tun0")], SUBNET).status == "fail"
    assert doctor.check_subnet_routes([("192.168.34.7", "tun0"), ("not-an-ip", "x")], SUBNET).status == "ok"
    assert doctor.check_subnet_routes([("fd00::/8", "wg0")], SUBNET).status == "ok"
    what = doctor.check_subnet_routes([("192.168.33.0/25", ""), ("192.168.0.0/16", "wg0")], SUBNET).what
    assert what.endswith("192.168.33.0/25 via ?, 192.168.0.0/16 via wg0")


def fake_ip(tmp_path: Path, monkeypatch, links: list[dict] | str) -> None:
    """A fake `ip` first on PATH that answers `ip -j addr` with ``links``."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    out = links if isinstance(links, str) else json.dumps(links)
    (bindir / "answer.json").write_text(out)
    script = bindir / "ip"
    script.write_text(f"#!/bin/sh\ncat '{bindir / 'answer.json'}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")


def link(name: str, *addresses: str) -> dict:
    return {"ifname": name, "addr_info": [{"family": "inet", "local": a, "prefixlen": 24} for a in addresses]}


def test_lab_interfaces_are_vboxnet_or_virbr_holding_the_subnets_first_address(tmp_path, monkeypatch):
    fake_ip(tmp_path, monkeypatch, [
        link("lo", "127.0.0.1"),
        link("eth0", "192.168.33.1"),  # a real network on the lab subnet: not ours, whatever its address
        link("vboxnet0", "192.168.33.1"),
        link("virbr3", "192.168.33.1", "10.0.0.1"),
        link("virbr0", "192.168.122.1"),  # libvirt's default network: another subnet
        link("vboxnet1", "192.168.33.5"),  # on the subnet but not at .1: not Vagrant's
    ])  # fmt: skip
    assert doctor.lab_interfaces(LabSpec.default()) == frozenset({"vboxnet0", "virbr3"})


@pytest.mark.parametrize("answer", ["not json", ""])
def test_lab_interfaces_with_an_unreadable_answer_is_empty(tmp_path, monkeypatch, answer):
    fake_ip(tmp_path, monkeypatch, answer)
    assert doctor.lab_interfaces(LabSpec.default()) == frozenset()


# ---- versions and tools ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "output, status",
    [("Vagrant 2.2.18", "fail"), ("Vagrant 2.2.19", "ok"), ("Vagrant 2.3", "ok"), ("Vagrant 1.9.9", "fail"),
     ("Vagrant x", "fail"), (None, "fail")],
)  # fmt: skip
def test_vagrant_minimum_version_is_inclusive(output, status):
    check = doctor.check_vagrant(output)
    assert check.status == status
    if output == "Vagrant 2.2.18":
        assert check.what == "Vagrant 2.2.18 is older than 2.2.19" and check.fix == "upgrade Vagrant to ≥ 2.2.19"
    if output == "Vagrant 2.3":
        assert check.what == "Vagrant 2.3.0"


def test_parse_version_forms():
    assert doctor.parse_version("Vagrant 2.4.1") == (2, 4, 1)
    assert doctor.parse_version("7.0") == (7, 0, 0)
    assert doctor.parse_version("") is None


def test_virtualbox_version_is_the_last_line_and_warnings_fail():
    assert doctor.check_virtualbox("7.0.20r163906\n").what == "VirtualBox 7.0.20r163906"
    warned = doctor.check_virtualbox("WARNING: The vboxdrv kernel module is not loaded.\n7.0.20r1\n")
    assert warned.status == "fail" and warned.what.endswith(": 7.0.20r1")
    assert doctor.check_virtualbox("vboxdrv not loaded\n7.0\n").status == "fail"
    assert doctor.check_virtualbox(None).status == "fail"


def test_libvirt_answers():
    ok = doctor.check_libvirt("Running hypervisor: QEMU 8.2.2\n", "", True)
    assert ok.status == "ok" and ok.what == "libvirtd answers (QEMU 8.2.2)"
    assert doctor.check_libvirt("something\n", "", True).what == "libvirtd answers (qemu:///system)"
    down = doctor.check_libvirt(None, "", False)
    assert down.status == "fail" and down.what == "libvirtd is not running (no /var/run/libvirt/libvirt-sock)"
    denied = doctor.check_libvirt(None, "error: first\nerror: permission denied\n", True)
    assert denied.what.endswith("failed: error: permission denied")


def test_vagrant_libvirt_plugin():
    assert doctor.check_vagrant_libvirt(None).status == "ok"
    assert doctor.check_vagrant_libvirt(True).status == "ok"
    assert doctor.check_vagrant_libvirt(False).status == "fail"


@pytest.mark.parametrize(
    "flags, found", [("fpu vmx sse2", "vmx"), ("fpu svm", "svm"), ("fpu sse2", None), ("fpu vmxx", None)]
)  # fmt: skip
def test_cpu_flags(flags, found):
    assert doctor.cpu_virtualization(f"processor\t: 0\nmodel name\t: vmx svm cpu\nflags\t\t: {flags}\n") == found


def test_cpu_virtualization_names_the_technology():
    assert doctor.check_cpu_virtualization("flags\t: svm\n", "virtualbox", "kvm").what.endswith("AMD-V (svm)")
    assert doctor.check_cpu_virtualization("flags\t: vmx\n", "virtualbox", "kvm").what.endswith("VT-x (vmx)")
    assert doctor.check_cpu_virtualization("flags\t: sse\n", "libvirt", "qemu").status == "warn"
    libvirt_kvm = doctor.check_cpu_virtualization("flags\t: sse\n", "libvirt", "kvm")
    assert libvirt_kvm.status == "fail" and "driver: qemu" in libvirt_kvm.fix
    vbox = doctor.check_cpu_virtualization("flags\t: sse\n", "virtualbox", "kvm")
    assert vbox.status == "fail" and "driver: qemu" not in vbox.fix


def test_kvm_under_each_driver():
    assert doctor.check_kvm(False, "qemu").status == "ok"
    both = doctor.check_kvm(True, "qemu")
    assert both.status == "warn" and both.what.endswith("; /dev/kvm exists") and "kvm" in both.fix
    assert doctor.check_kvm(True, "kvm").status == "ok"
    assert doctor.check_kvm(False, "kvm").status == "fail"


# ---- the report -----------------------------------------------------------------------------------
def test_report_lines_counts_and_plural():
    checks = [
        doctor.Check("memory", "warn", "tight", "why-m", "fix-m"),
        doctor.Check("disk", "ok", "plenty", "why-d", "fix-d"),
        doctor.Check("vagrant-libvirt", "fail", "missing", "", "install it"),
    ]
    text = doctor.format_report(checks)
    lines = text.splitlines()
    assert lines[0] == "WARN  memory           tight"
    assert lines[1] == " " * 23 + "why: why-m"  # under the text column: width of the longest name + 8
    assert lines[3] == "ok    disk             plenty"  # an ok check prints no why/fix
    assert lines[4] == "FAIL  vagrant-libvirt  missing"
    assert lines[5] == " " * 23 + "fix: install it"  # no empty why line
    assert lines[-1] == "doctor: 3 checks, 1 failed, 1 warning"
    assert text.endswith("\n")
    two = doctor.format_report([checks[0], checks[0]])
    assert two.splitlines()[-1] == "doctor: 2 checks, 0 failed, 2 warnings"
    assert doctor.format_report([checks[1]]).splitlines()[-1] == "doctor: 1 checks, 0 failed, 0 warnings"


# ---- gathering, with fake tools first on PATH -------------------------------------------------------
def fake_tools(tmp_path: Path, monkeypatch, **scripts: str) -> Path:
    """Executables named after the keywords (`vagrant`, `virsh`, ...) answering with the given shell body."""
    bindir = tmp_path / "tools"
    bindir.mkdir(exist_ok=True)
    for name, body in scripts.items():
        path = bindir / name
        path.write_text(f"#!/bin/sh\n{body}\n")
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return bindir


VAGRANT = 'case "$1" in --version) echo "Vagrant 2.4.1";; plugin) echo "vagrant-libvirt (0.12.2, global)";; esac'


def test_gather_for_libvirt_reads_the_tools_it_finds(tmp_path, monkeypatch):
    fake_tools(tmp_path, monkeypatch, vagrant=VAGRANT,
               virsh='echo "Running hypervisor: QEMU 8.2.2"', rsync="exit 0")  # fmt: skip
    spec = LabSpec.from_dict({"provider": {"type": "libvirt"}})
    facts = doctor.gather(spec, tmp_path / "not" / "yet" / "created", running_vm_mib=512)
    assert facts.vagrant_version is not None and facts.vagrant_version.strip() == "Vagrant 2.4.1"
    assert facts.vagrant_libvirt_plugin is True
    assert facts.virsh_version is not None and "QEMU 8.2.2" in facts.virsh_version
    assert facts.rsync_path == str(tmp_path / "tools" / "rsync")
    assert facts.running_vm_mib == 512
    assert "flags" in facts.cpuinfo or facts.cpuinfo.startswith("processor")
    assert facts.proc_net_route is not None and facts.proc_net_route.startswith("Iface")
    assert "MemAvailable" in facts.meminfo
    assert facts.disk_free_bytes > 0 and facts.disk_path
    assert facts.vboxmanage_version is None and facts.networks_conf is None  # VirtualBox is not asked


def test_gather_without_the_plugin_or_a_failing_virsh(tmp_path, monkeypatch):
    fake_tools(tmp_path, monkeypatch, vagrant='case "$1" in --version) echo "Vagrant 2.4.1";; plugin) echo "vagrant-share";; esac',
               virsh='echo "error: failed to connect" >&2; exit 1')  # fmt: skip
    facts = doctor.gather(LabSpec.from_dict({"provider": {"type": "libvirt"}}), tmp_path)
    assert facts.vagrant_libvirt_plugin is False
    assert facts.virsh_version is None and "failed to connect" in facts.virsh_error


def test_gather_for_virtualbox_keeps_vboxmanage_warnings(tmp_path, monkeypatch):
    fake_tools(tmp_path, monkeypatch, vagrant=VAGRANT,
               VBoxManage='echo "WARNING: vboxdrv not loaded" >&2; echo "7.0.20r163906"')  # fmt: skip
    facts = doctor.gather(LabSpec.default(), tmp_path)
    assert facts.vboxmanage_version is not None
    assert facts.vboxmanage_version.startswith("WARNING: vboxdrv not loaded") and "7.0.20r163906" in facts.vboxmanage_version
    assert doctor.check_virtualbox(facts.vboxmanage_version).status == "fail"
    assert facts.virsh_version is None and facts.vagrant_libvirt_plugin is None


def test_gather_for_provider_ssh_asks_the_host_nothing(tmp_path, monkeypatch):
    fake_tools(tmp_path, monkeypatch, vagrant=VAGRANT)
    spec = LabSpec.from_dict({
        "provider": {"type": "ssh"},
        "nodes": {"master": {"name": "master", "ip": "192.168.33.100", "cpus": 2, "memory_mib": 2048, "ssh_user": "u"},
                  "workers": [], "nfs": {"name": "nfs", "ip": "192.168.33.11", "cpus": 1, "memory_mib": 1024, "ssh_user": "u"}},
    })  # fmt: skip
    facts = doctor.gather(spec, tmp_path, running_vm_mib=7)
    assert facts == doctor.HostFacts(running_vm_mib=7)


def test_a_tool_that_is_missing_is_none(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing there
    facts = doctor.gather(LabSpec.from_dict({"provider": {"type": "libvirt"}}), tmp_path)
    assert facts.vagrant_version is None and facts.vagrant_libvirt_plugin is None and facts.virsh_version is None
    assert facts.virsh_error == "virsh not found"
    assert facts.routes_json == "[]" and facts.lab_interfaces == frozenset()


def test_a_check_without_why_or_fix_prints_neither():
    text = doctor.format_report([doctor.Check("kvm", "fail", "/dev/kvm is missing")])
    assert text == "FAIL  kvm  /dev/kvm is missing\ndoctor: 1 checks, 1 failed, 0 warnings\n"
    assert doctor.Check("x", "fail", "y").failed and not doctor.Check("x", "warn", "y").failed


def test_a_route_without_a_device_is_shown_with_a_question_mark():
    routes = doctor.parse_ip_route_json('[{"dst": "192.168.33.0/24"}, {"dst": "default", "dev": "eth0"}]')
    assert routes == [("192.168.33.0/24", ""), ("0.0.0.0/0", "eth0")]
    assert doctor.check_subnet_routes(routes, SUBNET).what.endswith(": 192.168.33.0/24 via ?")


def test_every_failing_check_says_why_and_how_to_fix_it():
    """The start of each explanation is pinned: it is what the user reads before fixing anything."""
    no_virt = doctor.check_cpu_virtualization("flags\t: sse\n", "virtualbox", "kvm")
    assert no_virt.why.startswith("VirtualBox and KVM need hardware virtualization")
    assert no_virt.fix.startswith("enable VT-x/AMD-V in the firmware")
    slow = doctor.check_cpu_virtualization("flags\t: sse\n", "libvirt", "qemu")
    assert slow.why.startswith("libvirt.driver is qemu: the VMs run under software emulation")
    both = doctor.check_kvm(True, "qemu")
    assert both.why.startswith("qemu emulation is much slower than KVM")
    assert both.fix.startswith("set provider.libvirt.driver: kvm")
    assert doctor.check_kvm(False, "qemu").why == "" and doctor.check_kvm(False, "qemu").fix == ""
    missing = doctor.check_kvm(False, "kvm")
    assert missing.why.startswith("libvirt.driver is kvm: libvirt cannot start a KVM guest")
    assert missing.fix.startswith("load the module")
    vagrant = doctor.check_vagrant(None)
    assert vagrant.why.startswith("labctl drives the VMs through Vagrant") and vagrant.fix.startswith("install Vagrant")
    memory = doctor.check_memory(meminfo(100), 10000)
    assert memory.why.startswith("VMs that do not fit make the host swap") and memory.fix.startswith("close programs")
    disk = doctor.check_disk(0, "/x", 10, 30)
    assert disk.why.startswith("VM disks, the box and the downloaded models") and disk.fix.startswith("free space at /x")


def test_check_names_are_stable():
    """`doctor --output json` readers and the report key on these names."""
    for free_gib in (0, 20, 100):  # fail, warn, ok
        assert doctor.check_disk(free_gib * doctor.GIB, "/x", 10, 30).name == "disk"
    for available in (10, 10000, 99999):
        assert doctor.check_memory(meminfo(available), 9500).name == "memory"
    assert doctor.check_memory("garbage", 1).name == "memory"
    assert doctor.check_subnet_routes([], SUBNET).name == "subnet-free"


def test_provider_ssh_with_no_key_files_named_is_one_ok_check():
    spec = LabSpec.from_dict({
        "provider": {"type": "ssh"},
        "nodes": {"master": {"name": "master", "ip": "192.168.33.100", "cpus": 2, "memory_mib": 2048, "ssh_user": "u"},
                  "workers": [], "nfs": {"name": "nfs", "ip": "192.168.33.11", "cpus": 1, "memory_mib": 1024, "ssh_user": "u"}},
    })  # fmt: skip
    checks = doctor.evaluate(spec, doctor.HostFacts())
    assert [(c.name, c.status) for c in checks] == [("ssh-keys", "ok")]
    assert doctor.format_report(checks).startswith("ok    ssh-keys  every ssh_key named in lab.yaml exists")


def test_labctl_doctor_exits_4_on_a_failure_as_its_help_says(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from labctl.cli import cli

    fake_tools(tmp_path, monkeypatch, vagrant=VAGRANT)
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "labs"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lab.yaml").write_text("nodes:\n  master: {name: master, ip: 192.168.33.100, cpus: 4, memory_mib: 262144}\n")
    assert "exit 4 on a failure" in " ".join(CliRunner().invoke(cli, ["doctor", "--help"]).output.split())
    result = CliRunner().invoke(cli, ["doctor", "-f", "lab.yaml"])
    assert result.exit_code == 4, result.output
    assert any(line.startswith("FAIL  memory") for line in result.output.splitlines())


def test_host_facts_start_as_nothing_known():
    facts = doctor.HostFacts()
    assert (facts.vagrant_version, facts.vboxmanage_version, facts.virsh_version, facts.networks_conf) == (None,) * 4
    assert (facts.virsh_error, facts.cpuinfo, facts.meminfo, facts.disk_path) == ("", "", "", "")
    assert (facts.routes_json, facts.proc_net_route, facts.lab_interfaces) == ("[]", None, frozenset())
    assert (facts.libvirt_socket, facts.dev_kvm, facts.vagrant_libvirt_plugin) == (False, False, None)
    assert (facts.disk_free_bytes, facts.running_vm_mib, facts.rsync_path) == (0, 0, None)


def test_more_fix_texts_and_kvm_names():
    assert doctor.check_vagrant("Vagrant x").fix == "reinstall Vagrant"
    assert doctor.check_cpu_virtualization("flags\t: sse\n", "libvirt", "kvm").fix.endswith(
        "; or set provider.libvirt.driver: qemu (slow software emulation)"
    )
    assert {doctor.check_kvm(k, d).name for k in (True, False) for d in ("kvm", "qemu")} == {"kvm"}


def test_proc_net_route_skips_short_and_garbage_lines():
    text = (
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
        "eth0\t0021A8C0\n"  # cut short
        "eth0\tZZZZ\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"  # not hex
        "vboxnet0\t0021A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"
    )
    assert doctor.parse_proc_net_route(text) == [("192.168.33.0/24", "vboxnet0")]
