"""A private libvirt for the e2e test: libvirtd and virtlogd started by hand (no systemd needed)
inside a network namespace the test made, so every VM, bridge and dnsmasq lives in that namespace.

Everything started here is stopped by PID on the way out, even when the test fails: domains and
networks the test created are destroyed, the box image volume vagrant-libvirt uploaded is deleted,
qemu and dnsmasq processes left by libvirtd are killed through libvirt's own PID files, and the
namespace is deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BOX_CACHE = Path(os.environ.get("LABCTL_E2E_CACHE", "/var/cache/labctl-test")) / "box"
# qemu runs as libvirt-qemu and cannot read /root: the box store lives outside it.
VAGRANT_HOME = Path(os.environ.get("LABCTL_E2E_VAGRANT_HOME", "/var/cache/labctl-test/vagrant-home"))
BOX_NAME = "labctl/e2e-debian"
NEEDED_TOOLS = ("vagrant", "libvirtd", "virtlogd", "virsh", "qemu-system-x86_64", "qemu-img", "debootstrap", "ip", "mkfs.ext4")


def missing_requirements() -> list[str]:
    out = [t for t in NEEDED_TOOLS if shutil.which(t) is None]
    if os.geteuid() != 0:
        out.append("root (ip netns, libvirtd)")
    if shutil.which("vagrant") and "vagrant-libvirt" not in subprocess.run(
        ["vagrant", "plugin", "list"], capture_output=True, text=True, check=False
    ).stdout:
        out.append("the vagrant-libvirt plugin")
    return out


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _stop_pid(pid: int, grace: float = 15.0) -> None:
    if not _pid_alive(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def running_system_libvirtd() -> int | None:
    """A libvirtd that is not ours (its socket would clash with the one we start)."""
    for pidfile in (Path("/run/libvirtd.pid"), Path("/var/run/libvirtd.pid")):
        pid = _read_pid(pidfile)
        if pid and _pid_alive(pid):
            return pid
    return None


def build_box() -> str:
    """Run the cached box builder; return the box stamp (changes when the box is rebuilt)."""
    subprocess.run([str(REPO / "tests" / "e2e" / "build_box.sh"), str(BOX_CACHE)], check=True)
    return (BOX_CACHE / "stamp").read_text().strip()


def box_version(stamp: str) -> str:
    return f"1.0.{int(stamp[:6], 16)}"


def add_box(stamp: str) -> str:
    """`vagrant box add` the built box (once per box build) under a version derived from its stamp."""
    version = box_version(stamp)
    VAGRANT_HOME.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "VAGRANT_HOME": str(VAGRANT_HOME)}
    listed = subprocess.run(["vagrant", "box", "list"], env=env, capture_output=True, text=True, check=True).stdout
    if f"{BOX_NAME} (libvirt, {version})" not in listed:
        catalog = VAGRANT_HOME / "labctl-e2e-box.json"
        catalog.write_text(
            json.dumps(
                {
                    "name": BOX_NAME,
                    "versions": [
                        {
                            "version": version,
                            "providers": [{"name": "libvirt", "url": (BOX_CACHE / "labctl-e2e.box").as_uri()}],
                        }
                    ],
                }
            )
        )
        subprocess.run(["vagrant", "box", "add", "--force", catalog.as_uri()], env=env, check=True, capture_output=True)
    return version


@dataclass
class LibvirtNamespace:
    name: str
    workdir: Path
    pids: dict[str, int] = field(default_factory=dict)
    networks_before: set[str] = field(default_factory=set)
    pool_existed: bool = False

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, "VAGRANT_HOME": str(VAGRANT_HOME), "PYTHONPATH": str(REPO), **extra}
        env.pop("VAGRANT_DEFAULT_PROVIDER", None)
        return env

    def run(self, argv: Sequence[str], *, timeout: float = 1800, check: bool = False, **kwargs) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the namespace (so it reaches the VMs' networks) and capture its output."""
        return subprocess.run(
            [*self.prefix(), *argv], capture_output=True, text=True, timeout=timeout, check=check, env=kwargs.pop("env", self.env()), **kwargs
        )

    def labctl(self, *args: str, env: dict[str, str] | None = None, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
        return self.run([sys.executable, "-m", "labctl.cli", *args], env=env or self.env(), timeout=timeout)

    def virsh(self, *args: str) -> str:
        return self.run(["virsh", "-c", "qemu:///system", *args], timeout=120, check=True).stdout

    def names(self, *args: str) -> list[str]:
        return [line.strip() for line in self.virsh(*args).splitlines() if line.strip()]

    def volumes(self, pool: str = "default") -> list[str]:
        if pool not in self.names("pool-list", "--all", "--name"):
            return []
        if "running" not in self.virsh("pool-info", pool):
            return []
        # virsh 9 has no `vol-list --name`: the table is " Name   Path", a rule, then one row per volume.
        rows = self.virsh("vol-list", pool).splitlines()[2:]
        return [row.split()[0] for row in rows if row.strip()]


@contextlib.contextmanager
def libvirt_in_namespace(workdir: Path) -> Iterator[LibvirtNamespace]:
    ns = LibvirtNamespace(name=f"labctl-e2e-{os.getpid()}", workdir=workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ip", "netns", "add", ns.name], check=True)
    try:
        subprocess.run(["ip", "-n", ns.name, "link", "set", "lo", "up"], check=True)
        for daemon in ("virtlogd", "libvirtd"):
            pidfile = workdir / f"{daemon}.pid"
            subprocess.run([*ns.prefix(), daemon, "-d", "-p", str(pidfile)], check=True)
            deadline = time.monotonic() + 30
            while _read_pid(pidfile) is None and time.monotonic() < deadline:
                time.sleep(0.2)
            pid = _read_pid(pidfile)
            if pid is None:
                raise RuntimeError(f"{daemon} did not write {pidfile}")
            ns.pids[daemon] = pid
        deadline = time.monotonic() + 60
        while True:
            probe = subprocess.run([*ns.prefix(), "virsh", "-c", "qemu:///system", "version"], capture_output=True, text=True, check=False)
            if probe.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"libvirtd does not answer: {probe.stderr.strip()}")
            time.sleep(0.5)
        _remove_test_domains(ns)  # what a crashed earlier run of this test left defined
        ns.networks_before = set(ns.names("net-list", "--all", "--name"))
        ns.pool_existed = "default" in ns.names("pool-list", "--all", "--name")
        yield ns
    finally:
        _teardown(ns)


def _remove_test_domains(ns: LibvirtNamespace) -> None:
    """The test's domains, with their disks and snapshots: libvirt refuses to undefine a domain that
    has snapshots unless told to drop their metadata (the snapshot test makes some; a run that failed
    after it left domains that made the next run's `vagrant up` fail)."""
    for domain in ns.names("list", "--all", "--name"):
        if domain.startswith(("e2e", "raw")):
            subprocess.run([*ns.prefix(), "virsh", "-c", "qemu:///system", "destroy", domain], capture_output=True, check=False)
            subprocess.run(
                [*ns.prefix(), "virsh", "-c", "qemu:///system", "undefine", domain, "--remove-all-storage",
                 "--snapshots-metadata"],
                capture_output=True,
                check=False,
            )


def _teardown(ns: LibvirtNamespace) -> None:
    """Best effort, step by step: one failing step must not keep the next from running."""
    if "libvirtd" in ns.pids and _pid_alive(ns.pids["libvirtd"]):
        with contextlib.suppress(Exception):
            _remove_test_domains(ns)
        with contextlib.suppress(Exception):
            for net in set(ns.names("net-list", "--all", "--name")) - ns.networks_before:
                subprocess.run([*ns.prefix(), "virsh", "-c", "qemu:///system", "net-destroy", net], capture_output=True, check=False)
                subprocess.run([*ns.prefix(), "virsh", "-c", "qemu:///system", "net-undefine", net], capture_output=True, check=False)
        with contextlib.suppress(Exception):
            for vol in ns.volumes():
                if vol.startswith(("labctl-VAGRANTSLASH-e2e-debian", "e2e_", "raw_")):
                    subprocess.run([*ns.prefix(), "virsh", "-c", "qemu:///system", "vol-delete", "--pool", "default", vol], capture_output=True, check=False)
        if not ns.pool_existed:
            with contextlib.suppress(Exception):
                subprocess.run([*ns.prefix(), "virsh", "-c", "qemu:///system", "pool-destroy", "default"], capture_output=True, check=False)
                subprocess.run([*ns.prefix(), "virsh", "-c", "qemu:///system", "pool-undefine", "default"], capture_output=True, check=False)
    # If libvirt could not delete them, the files themselves: the box image and this lab's disks.
    images = Path("/var/lib/libvirt/images")
    ours = [*images.glob("labctl-VAGRANTSLASH-e2e-debian_vagrant_box_image_*"),
            *(images / f"{lab}_{node}.img" for lab in ("e2e", "raw") for node in ("master", "nfs"))]
    for leftover in ours:
        with contextlib.suppress(OSError):
            leftover.unlink()
    # qemu and dnsmasq outlive libvirtd (they are re-parented to init). Everything still running in
    # the namespace was started by this test (the namespace is the test's own): stop it by PID.
    for daemon in ("libvirtd", "virtlogd"):
        if daemon in ns.pids:
            _stop_pid(ns.pids[daemon])
    leftovers = subprocess.run(["ip", "netns", "pids", ns.name], capture_output=True, text=True, check=False).stdout
    for word in leftovers.split():
        if word.isdigit():
            _stop_pid(int(word), grace=5)
    subprocess.run(["ip", "netns", "del", ns.name], check=False)
