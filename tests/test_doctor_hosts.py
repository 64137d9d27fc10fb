"""doctor on the hosts students have, replayed from probe outputs (tests/doctor_hosts/*.json).

Each JSON file holds what one host answers to the commands and files doctor reads (RecordedProbes).
No Mac was available to this project: the macOS files are written in the formats the commands
print (sysctl -n, vm_stat's page-size header and "Pages free: N." lines, netstat -rn's short
destinations such as "127" and "192.168.1", ifconfig), not captured from a machine — each file's
comment says which host it stands for. The versions and their consequences are upstream facts:
hashicorp/vagrant plugins/providers/virtualbox/driver/meta.rb at v2.3.2 (first "7.0"), v2.4.2
(first "7.1"), v2.4.9 (first "7.2"); action/network.rb at v2.3.4+ (no networks.conf check on darwin
with VirtualBox 7); Linux virt/kvm/kvm_main.c (enable_virt_at_load, 6.12+).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from labctl import doctor
from labctl.doctor import macos, vbox
from labctl.spec import LabSpec

HOSTS = Path(__file__).parent / "doctor_hosts"


def host(name: str) -> doctor.RecordedProbes:
    return doctor.RecordedProbes.load(HOSTS / f"{name}.json")


def spec_on(arch: str, os_name: str, monkeypatch: pytest.MonkeyPatch, data: dict | None = None) -> LabSpec:
    """The lab as that host loads it: provider.arch auto follows the host (labctl/arch.py)."""
    monkeypatch.setenv("LABCTL_HOST_ARCH", arch)
    monkeypatch.setenv("LABCTL_HOST_OS", os_name)
    return LabSpec.from_dict(data or {})


def run(name: str, spec: LabSpec, tmp_path: Path) -> dict[str, doctor.Check]:
    checks = doctor.run_doctor(spec, tmp_path / "state", probes=host(name))
    return {c.name: c for c in checks}


def statuses(checks: dict[str, doctor.Check]) -> dict[str, str]:
    return {name: c.status for name, c in checks.items()}


# ---- macOS, Apple Silicon -------------------------------------------------------------------------
def test_apple_silicon_with_virtualbox_71_and_vagrant_243_passes(monkeypatch, tmp_path):
    spec = spec_on("arm64", "darwin", monkeypatch)
    assert spec.arch == "arm64"
    checks = run("macos-apple-silicon", spec, tmp_path)
    assert statuses(checks) == {
        "vagrant": "ok",
        "virtualbox": "ok",
        "vagrant-virtualbox": "ok",
        "virtualbox-apple-silicon": "ok",
        "lab-arch": "ok",
        "vbox-networks": "ok",
        "cpu-virtualization": "ok",
        "subnet-free": "ok",
        "memory": "ok",
        "disk": "ok",
        "docker-hub": "ok",
    }
    assert "Apple M3 Pro" in checks["cpu-virtualization"].what
    # 900000 + 300000 + 10000 pages of 16 KiB, out of hw.memsize 24 GiB
    assert checks["memory"].what.startswith("18906 MiB available of 24576 MiB")
    # No networks.conf on this Mac, and none needed with VirtualBox 7 there.
    assert "without the /etc/vbox/networks.conf ranges" in checks["vbox-networks"].what
    # Nothing Linux-only is asked on a Mac.
    assert "kvm-vs-virtualbox" not in checks


def test_apple_silicon_with_the_virtualbox_70_preview_and_old_vagrant_gets_every_fix(monkeypatch, tmp_path):
    checks = run("macos-apple-silicon-too-old", spec_on("arm64", "darwin", monkeypatch), tmp_path)
    assert {n for n, c in checks.items() if c.failed} == {"vagrant-virtualbox", "virtualbox-apple-silicon", "vbox-networks"}
    vb = checks["virtualbox-apple-silicon"]
    assert "VirtualBox 7.0.8" in vb.what and "install VirtualBox 7.1 or later" in vb.fix
    assert "Apple Silicon hosts" in vb.fix
    assert "7.1 needs Vagrant ≥ 2.4.2, 7.2 needs Vagrant ≥ 2.4.9" in vb.fix
    assert "install Vagrant 2.3.2 or later" in checks["vagrant-virtualbox"].fix
    # Vagrant before 2.3.4 still checks networks.conf on macOS: the exact line to add.
    assert checks["vbox-networks"].fix.endswith("* 192.168.33.0/24")


def test_apple_silicon_with_virtualbox_72_and_vagrant_243_asks_for_vagrant_249(monkeypatch, tmp_path):
    checks = run("macos-apple-silicon-old-vagrant", spec_on("arm64", "darwin", monkeypatch), tmp_path)
    assert {n for n, c in checks.items() if c.failed} == {"vagrant-virtualbox"}
    check = checks["vagrant-virtualbox"]
    assert check.what == "Vagrant 2.4.3 has no driver for VirtualBox 7.2.0 (the first Vagrant with one is 2.4.9)"
    assert check.fix.startswith("install Vagrant 2.4.9 or later: HashiCorp's macOS installer")
    assert "not supported by this version of Vagrant" in check.why


def test_rosetta_python_guesses_amd64_and_doctor_says_to_set_arm64(monkeypatch, tmp_path):
    # Under Rosetta, Python's platform.machine() is x86_64, so `auto` resolved to amd64.
    spec = spec_on("amd64", "darwin", monkeypatch)
    assert spec.arch == "amd64"
    checks = run("macos-apple-silicon-rosetta", spec, tmp_path)
    lab_arch = checks["lab-arch"]
    assert lab_arch.failed and "this Mac's CPU is arm64" in lab_arch.what
    assert "set provider.arch: arm64" in lab_arch.fix and "Rosetta" in lab_arch.fix


# ---- macOS, Intel -----------------------------------------------------------------------------------
def test_intel_mac_with_virtualbox_70_and_vagrant_241_passes(monkeypatch, tmp_path):
    spec = spec_on("amd64", "darwin", monkeypatch)
    checks = run("macos-intel", spec, tmp_path)
    assert not [c for c in checks.values() if c.status != "ok"], doctor.format_report(list(checks.values()))
    assert "virtualbox-apple-silicon" not in checks
    assert "VT-x (VMX)" in checks["cpu-virtualization"].what
    assert checks["memory"].what.startswith("19921 MiB available of 32768 MiB")


def test_intel_mac_with_virtualbox_71_and_vagrant_241_gets_the_vagrant_to_install(monkeypatch, tmp_path):
    checks = run("macos-intel-old-vagrant", spec_on("amd64", "darwin", monkeypatch), tmp_path)
    assert {n for n, c in checks.items() if c.failed} == {"vagrant-virtualbox", "memory"}
    assert "install Vagrant 2.4.2 or later" in checks["vagrant-virtualbox"].fix
    assert "hashicorp-vagrant" in checks["vagrant-virtualbox"].fix
    assert "8192 MiB available of 32768 MiB" in checks["memory"].what  # (1000000+1000000+97152) × 4 KiB


def test_intel_mac_without_vtx_fails_the_virtualization_check(monkeypatch, tmp_path):
    checks = run("macos-intel-no-vtx", spec_on("amd64", "darwin", monkeypatch), tmp_path)
    cpu = checks["cpu-virtualization"]
    assert cpu.failed and "no VMX in machdep.cpu.features" in cpu.what


def test_libvirt_on_a_mac_is_one_clear_line(monkeypatch, tmp_path):
    spec = spec_on("amd64", "darwin", monkeypatch, {"provider": {"type": "libvirt"}})
    checks = run("macos-intel", spec, tmp_path)
    assert list(checks) == ["provider"]
    assert "provider.type: virtualbox" in checks["provider"].fix


# ---- other hosts --------------------------------------------------------------------------------------
def test_windows_outside_wsl_gets_one_line_naming_what_is_supported(default_spec, tmp_path):
    checks = run("windows", default_spec, tmp_path)
    assert list(checks) == ["host"]
    assert checks["host"].failed
    assert "Linux (Windows: inside WSL 2) and on macOS (Intel or Apple Silicon)" in checks["host"].what
    report = doctor.format_report(list(checks.values()))
    assert report.rstrip().endswith("doctor: 1 checks, 1 failed, 0 warnings")


def test_linux_612_with_kvm_loaded_fails_with_the_fix(default_spec, tmp_path):
    checks = run("linux-6.12-kvm-loaded", default_spec, tmp_path)
    kvm = checks["kvm-vs-virtualbox"]
    assert kvm.failed
    assert "VERR_VMX_IN_VMX_ROOT_MODE" in kvm.why
    assert "sudo modprobe -r kvm_intel kvm" in kvm.fix and "kvm.enable_virt_at_load=0" in kvm.fix
    # The rest of this laptop is fine: the recorded probes reach every Linux check.
    assert {n for n, c in checks.items() if c.failed} == {"kvm-vs-virtualbox"}
    assert checks["vagrant-virtualbox"].what.startswith("Vagrant 2.4.3 supports VirtualBox 7.1.6")


def test_linux_612_with_virt_at_load_off_or_older_kernel_passes(default_spec, tmp_path):
    assert run("linux-6.12-kvm-off-at-load", default_spec, tmp_path)["kvm-vs-virtualbox"].status == "ok"
    older = run("linux-6.8-kvm-loaded", default_spec, tmp_path)
    assert older["kvm-vs-virtualbox"].status == "ok" and "only takes VT-x/AMD-V while a KVM guest runs" in older["kvm-vs-virtualbox"].what


# ---- the pure pieces --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("vbox_out", "vagrant_out", "status", "needle"),
    [
        ("7.0.20r163906", "Vagrant 2.3.1", "fail", "the first Vagrant with one is 2.3.2"),
        ("7.0.20r163906", "Vagrant 2.3.2", "ok", "needs ≥ 2.3.2"),
        ("7.1.0r164728", "Vagrant 2.4.1", "fail", "the first Vagrant with one is 2.4.2"),
        ("7.1.0r164728", "Vagrant 2.4.2", "ok", "needs ≥ 2.4.2"),
        ("7.2.4r170995", "Vagrant 2.4.8", "fail", "the first Vagrant with one is 2.4.9"),
        ("7.2.4r170995", "Vagrant 2.4.9", "ok", "needs ≥ 2.4.9"),
        ("6.1.50r161033", "Vagrant 2.2.19", "ok", "needs ≥ 2.2.19"),
        ("7.3.0r171000", "Vagrant 2.4.9", "warn", "newer than any VirtualBox"),
        ("6.0.24r139119", "Vagrant 2.4.9", "fail", "older than 6.1"),
    ],
)
def test_the_vagrant_each_virtualbox_needs(vbox_out, vagrant_out, status, needle):
    check = vbox.check_vagrant_knows_virtualbox(vagrant_out, vbox_out, "linux")
    assert check is not None and check.status == status and needle in check.what


def test_no_vagrant_line_without_both_versions():
    assert vbox.check_vagrant_knows_virtualbox(None, "7.1.0r1", "linux") is None
    assert vbox.check_vagrant_knows_virtualbox("Vagrant 2.4.9", None, "linux") is None
    assert vbox.check_vagrant_knows_virtualbox("Vagrant 2.4.9", "WARNING: vboxdrv not loaded\n7.1.0r1", "linux") is None


def test_kvm_on_amd_names_the_svm_error():
    check = vbox.check_kvm_holds_virtualization("6.14.0", "kvm_amd 1 0 - Live\nkvm 2 1 kvm_amd, Live\n", "Y")
    assert check.failed and "VERR_SVM_IN_USE" in check.why and "modprobe -r kvm_amd kvm" in check.fix
    # Unknown setting (no sysfs file) on 6.12+ counts as the default (on).
    assert vbox.check_kvm_holds_virtualization("6.12.1", "kvm_intel 1 0 - Live\n", None).failed


def test_netstat_short_destinations():
    text = (HOSTS / "macos-intel.json").read_text()
    routes = macos.parse_netstat_routes(doctor.RecordedProbes.load(HOSTS / "macos-intel.json").commands["netstat -rn -f inet"]["stdout"])
    assert text  # the recording exists
    assert ("0.0.0.0/0", "en0") in routes
    assert ("127.0.0.0/8", "lo0") in routes
    assert ("192.168.1.0/24", "en0") in routes
    assert ("192.168.1.23/32", "en0") in routes
    assert ("224.0.0.0/4", "en0") in routes
    lab = ipaddress.ip_network("192.168.33.0/24")
    assert doctor.check_subnet_routes(routes, lab).status == "ok"
    vpn = routes + macos.parse_netstat_routes("Destination Gateway Flags Netif Expire\n192.168.33 link#20 UCS utun3\n")
    clash = doctor.check_subnet_routes(vpn, lab)
    assert clash.failed and "192.168.33.0/24 via utun3" in clash.what


def test_the_labs_own_bridge_on_a_mac_is_not_a_clash():
    ifconfig = "bridge101: flags=8863<UP> mtu 1500\n\tinet 192.168.33.1 netmask 0xffffff00\nen0: flags=1\n\tinet 192.168.33.1 netmask 0xffffff00\n"
    lab = ipaddress.ip_network("192.168.33.0/24")
    assert macos.lab_interfaces_macos(ifconfig, lab) == frozenset({"bridge101"})


def test_vm_stat_without_a_page_size_is_a_warning(monkeypatch, tmp_path):
    probes = host("macos-intel")
    probes.commands = {**probes.commands, "vm_stat": {"stdout": "garbage\n"}}
    checks = {c.name: c for c in doctor.run_doctor(spec_on("amd64", "darwin", monkeypatch), tmp_path, probes=probes)}
    assert checks["memory"].status == "warn" and "vm_stat" in checks["memory"].what

