"""doctor's VirtualBox checks that depend on versions and the host: which Vagrant knows this
VirtualBox, which VirtualBox runs on Apple Silicon, and KVM holding VT-x/AMD-V on Linux 6.12+.

Sources (checked at the tags named):
- hashicorp/vagrant plugins/providers/virtualbox/driver/meta.rb, the driver map per tag: "7.0" first
  in v2.3.2, "7.1" first in v2.4.2 (CHANGELOG: "Add support for VirtualBox 7.1 [GH-13513]"), "7.2"
  first in v2.4.9 (CHANGELOG: "Add support for VirtualBox 7.2 [GH-13709]"). A VirtualBox without a
  driver there makes Vagrant refuse with "a version of VirtualBox installed that is not supported by
  this version of Vagrant" (templates/locales/en.yml, virtualbox_invalid_version).
- VirtualBox runs arm64 guests on Apple Silicon from 7.1 on; 7.0 for macOS/arm64 was a developer
  preview only.
- Linux 6.12 made KVM enable hardware virtualization when its module loads (the kvm module
  parameter enable_virt_at_load, default on); VirtualBox then fails to start a VM with
  VERR_VMX_IN_VMX_ROOT_MODE (Intel) or VERR_SVM_IN_USE (AMD).
"""

from __future__ import annotations

import re

from labctl.doctor.checks import parse_version
from labctl.doctor.facts import MIN_VAGRANT, Check

# VirtualBox (major, minor) → the first Vagrant whose VirtualBox provider has a driver for it.
VAGRANT_FOR_VIRTUALBOX: dict[tuple[int, int], tuple[int, ...]] = {
    (6, 1): MIN_VAGRANT,
    (7, 0): (2, 3, 2),
    (7, 1): (2, 4, 2),
    (7, 2): (2, 4, 9),
}
APPLE_SILICON_MIN_VIRTUALBOX = (7, 1)
KVM_VIRT_AT_LOAD_KERNEL = (6, 12)


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def virtualbox_version(output: str | None) -> tuple[int, ...] | None:
    """`VBoxManage --version` prints e.g. 7.1.4r165100 (after any WARNING lines)."""
    if not output or not output.strip():
        return None
    return parse_version(output.strip().splitlines()[-1])


def install_vagrant_hint(system: str) -> str:
    if system == "darwin":
        return "HashiCorp's macOS installer from https://developer.hashicorp.com/vagrant/install, or `brew install hashicorp/tap/hashicorp-vagrant`"
    # Debian/Ubuntu's own vagrant package is 2.3.4: too old for VirtualBox 7.1 and later.
    return "HashiCorp's package from https://developer.hashicorp.com/vagrant/install (its apt repository on Debian/Ubuntu; the distribution's own vagrant may be older)"


def check_vagrant_knows_virtualbox(vagrant_output: str | None, vbox_output: str | None, system: str) -> Check | None:
    """None when either version is unknown: the vagrant and virtualbox checks already fail then."""
    vagrant = parse_version(vagrant_output or "")
    vbox = virtualbox_version(vbox_output)
    if vagrant is None or vbox is None or "WARNING" in (vbox_output or ""):
        return None
    minor = vbox[:2]
    shown = f"VirtualBox {_dotted(vbox)}"
    why = (
        "Vagrant drives VirtualBox through one driver per VirtualBox minor release; without the driver for "
        "yours, `vagrant up` stops with 'a version of VirtualBox installed that is not supported by this "
        "version of Vagrant'."
    )
    known = sorted(VAGRANT_FOR_VIRTUALBOX)
    if minor < known[0]:
        return Check(
            "vagrant-virtualbox",
            "fail",
            f"{shown} is older than {_dotted(known[0])}",
            why,
            f"install VirtualBox {_dotted(known[-1])} (https://www.virtualbox.org/wiki/Downloads) and a Vagrant that supports it",
        )
    if minor > known[-1]:
        newest = VAGRANT_FOR_VIRTUALBOX[known[-1]]
        return Check(
            "vagrant-virtualbox",
            "warn",
            f"{shown} is newer than any VirtualBox that labctl knows a Vagrant release for "
            f"(up to {_dotted(known[-1])}, from Vagrant {_dotted(newest)})",
            why,
            f"use the newest Vagrant ({install_vagrant_hint(system)}); if `vagrant up` still calls VirtualBox "
            f"unsupported, install VirtualBox {_dotted(known[-1])}",
        )
    need = VAGRANT_FOR_VIRTUALBOX.get(minor)
    if need is None:  # a minor between known ones that never existed (e.g. 6.2)
        return None
    if vagrant < need:
        return Check(
            "vagrant-virtualbox",
            "fail",
            f"Vagrant {_dotted(vagrant)} has no driver for {shown} (the first Vagrant with one is {_dotted(need)})",
            why,
            f"install Vagrant {_dotted(need)} or later: {install_vagrant_hint(system)}",
        )
    return Check("vagrant-virtualbox", "ok", f"Vagrant {_dotted(vagrant)} supports {shown} (needs ≥ {_dotted(need)})")


def check_virtualbox_on_apple_silicon(vbox_output: str | None) -> Check | None:
    vbox = virtualbox_version(vbox_output)
    if vbox is None:
        return None
    need = _dotted(APPLE_SILICON_MIN_VIRTUALBOX)
    if vbox[:2] < APPLE_SILICON_MIN_VIRTUALBOX:
        return Check(
            "virtualbox-apple-silicon",
            "fail",
            f"VirtualBox {_dotted(vbox)} cannot run this lab's arm64 VMs on Apple Silicon",
            f"VirtualBox runs arm64 guests on Apple Silicon from {need} on (7.0 was a developer preview).",
            f"install VirtualBox {need} or later, the 'macOS / Apple Silicon hosts' package from "
            "https://www.virtualbox.org/wiki/Downloads, and a Vagrant that knows it: "
            + ", ".join(
                f"{_dotted(v)} needs Vagrant ≥ {_dotted(g)}"
                for v, g in sorted(VAGRANT_FOR_VIRTUALBOX.items())
                if v >= APPLE_SILICON_MIN_VIRTUALBOX
            ),
        )
    return Check("virtualbox-apple-silicon", "ok", f"VirtualBox {_dotted(vbox)} runs arm64 guests on Apple Silicon")


def loaded_kvm_modules(proc_modules: str) -> list[str]:
    names = (line.split(" ", 1)[0] for line in proc_modules.splitlines())
    return [n for n in names if n in ("kvm_intel", "kvm_amd")]


def check_kvm_holds_virtualization(kernel_release: str, proc_modules: str, enable_virt_at_load: str | None) -> Check:
    """VirtualBox on Linux: KVM modules loaded on 6.12+ hold VT-x/AMD-V, so VirtualBox cannot start VMs."""
    modules = loaded_kvm_modules(proc_modules)
    m = re.match(r"(\d+)\.(\d+)", kernel_release or "")
    kernel = (int(m.group(1)), int(m.group(2))) if m else None
    if not modules:
        return Check("kvm-vs-virtualbox", "ok", "no KVM module loaded (VirtualBox gets VT-x/AMD-V)")
    if kernel is not None and kernel < KVM_VIRT_AT_LOAD_KERNEL:
        return Check(
            "kvm-vs-virtualbox",
            "ok",
            f"{', '.join(modules)} loaded, but Linux {kernel_release} only takes VT-x/AMD-V while a KVM guest runs",
        )
    setting = (enable_virt_at_load or "").strip()
    if setting in ("N", "0"):
        return Check(
            "kvm-vs-virtualbox",
            "ok",
            f"{', '.join(modules)} loaded with kvm.enable_virt_at_load=0 (KVM does not hold VT-x/AMD-V)",
        )
    error = "VERR_SVM_IN_USE" if modules == ["kvm_amd"] else "VERR_VMX_IN_VMX_ROOT_MODE"
    first = modules[0]
    return Check(
        "kvm-vs-virtualbox",
        "fail",
        f"{', '.join(modules)} loaded on Linux {kernel_release or '6.12+'}: KVM holds VT-x/AMD-V from the moment it loads",
        f"VirtualBox then cannot start any VM (`vagrant up` fails with {error}).",
        f"now: `sudo modprobe -r {first} kvm`; for good: boot with kvm.enable_virt_at_load=0 (add it to "
        "GRUB_CMDLINE_LINUX in /etc/default/grub, then `sudo update-grub`), or use provider.type: libvirt",
    )
