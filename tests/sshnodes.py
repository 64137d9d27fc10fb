"""Real OpenSSH "nodes" in network namespaces, for the ssh test tier and the runner benchmark.

API (other tests and benchmarks import this module; it has no pytest dependency)::

    from tests.sshnodes import start_nodes, NodesUnavailable

    nodes = start_nodes(["master", "worker1", "nfs"], tmp_path,
                        files={"/usr/local/bin/kubeadm": (shim_bytes, 0o755)})
    try:
        n = nodes["master"]            # Node: name, address, port (22), user ("vagrant"), key_file, host_key
        hosts = nodes.hosts()          # {name: labctl.transport.base.Host} ready for the runner
        nodes.exec("master", "cat /etc/hostname")   # CompletedProcess, run as root inside the node
        nodes.read("master", "/etc/fstab")          # bytes of a file in the node's root
        nodes.kill("worker1")          # SIGKILL the node's sshd: every session and command on it dies
        nodes.restart("worker1")       # start its sshd again (same root, same address, same host key)
        nodes.known_hosts              # Path of a known_hosts file with every node's host key
    finally:
        nodes.close()                  # kills every process it started (by PID), unmounts, deletes netns

What a node is: its own network namespace (``ip netns add``) with a veth to a bridge on the host
(10.251.<slot>.1/24 on the host side, nodes at .10, .11, ...; the slot is a free /24 picked under a
lock so parallel test sessions never collide), its own root (an overlay on a debootstrap'd Debian
bookworm rootfs), and ``sshd -D`` entered with ``unshare --mount --uts --pid --fork`` + chroot,
so sshd is PID 1 of the node's PID namespace (killing it takes every command on the node with it,
like a host that goes away). Each node: hostname = its name, /etc/hosts naming every node of the
set, an empty /etc/resolv.conf (sudo would otherwise stall on DNS), login user ``vagrant`` with
passwordless sudo and the set's ed25519 key (generated, 0600), ``Subsystem sftp internal-sftp``,
``UsePAM no``, an ed25519 host key generated per node. No systemd, no kernel modules, no internet.

The base rootfs is built once with ``debootstrap --variant=minbase`` from the Debian mirror in
/etc/apt/sources.list and cached under ``$LABCTL_TEST_CACHE`` (default /var/cache/labctl-test),
keyed by suite, mirror, package list and the fixture's layout version; a file lock makes parallel
builders wait for one build. The first build takes a few minutes; each node after that costs an
overlay mount and a few file writes (~0.1 s).

``start_nodes`` raises ``NodesUnavailable`` (with the exact missing piece) when this machine cannot
run nodes: not root, no ``ip netns``/``unshare``/``debootstrap``, or no overlayfs. The pytest fixture
in tests/ssh/conftest.py turns that into a loud skip.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

SUITE = "bookworm"
# What a node needs to look like a small Debian server: sshd + sudo for the runner, iproute2/procps
# for scripts that inspect the node, python3 for shims, kmod/curl/gnupg/ca-certificates because
# node-prep scripts call them (their network actions are shimmed by the tests, never real).
DEFAULT_PACKAGES = ("ca-certificates", "curl", "gnupg", "iproute2", "kmod", "openssh-server", "procps", "python3", "sudo")
LAYOUT_VERSION = 1  # bump when _prepare_base changes what the cached rootfs holds
SUBNET_PREFIX = "10.251"  # nodes live in 10.251.<slot>.0/24; no overlap with the lab, NAT, pod or service ranges
FIRST_HOST = 10
MAX_NODES = 200
USER = "vagrant"
STATE_DIR = Path("/run/labctl-test")

SSHD_CONFIG = """\
# labctl test node: key login for the test user only, sftp for Fabric's put.
Port 22
ListenAddress 0.0.0.0
HostKey /etc/ssh/ssh_host_ed25519_key
PidFile /run/sshd.pid
PermitRootLogin no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
PrintMotd no
MaxStartups 200:30:400
MaxSessions 100
Subsystem sftp internal-sftp
"""


class NodesUnavailable(RuntimeError):
    """This machine cannot run netns SSH nodes; the message names exactly what is missing."""


def cache_dir() -> Path:
    return Path(os.environ.get("LABCTL_TEST_CACHE", "/var/cache/labctl-test"))


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line format), else deb.debian.org."""
    candidates = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in candidates:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            continue
        for m in re.finditer(r"(?m)^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text):
            uri = m.group(1).rstrip("/")
            if uri.endswith("/debian") and "security" not in uri:
                return uri
    return "http://deb.debian.org/debian"


def _check_machine() -> None:
    if os.geteuid() != 0:
        raise NodesUnavailable("netns SSH nodes need root (ip netns, mount, chroot); run the ssh tests as root")
    for tool in ("ip", "unshare", "chroot", "nsenter", "mount", "ssh-keygen"):
        if not shutil.which(tool):
            raise NodesUnavailable(f"netns SSH nodes need {tool!r} on PATH (apt-get install iproute2 util-linux openssh-client)")
    if "overlay" not in Path("/proc/filesystems").read_text():
        raise NodesUnavailable("netns SSH nodes need overlayfs (modprobe overlay)")


def _run(*cmd: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()[-800:]}")
    return res


# --------------------------------------------------------------------------------------------------
# The cached base rootfs


def base_rootfs(packages: tuple[str, ...] = DEFAULT_PACKAGES) -> Path:
    """The debootstrap'd rootfs for ``packages``, built once (under a lock) and cached."""
    _check_machine()
    mirror = debian_mirror()
    pkgs = tuple(sorted(set(packages)))
    key = hashlib.sha256(f"{SUITE}|{mirror}|{','.join(pkgs)}|{LAYOUT_VERSION}".encode()).hexdigest()[:16]
    root = cache_dir() / "rootfs"
    target = root / key
    if (target / ".labctl-ready").exists():
        return target
    if not shutil.which("debootstrap"):
        raise NodesUnavailable("the node rootfs is not cached yet and 'debootstrap' is missing (apt-get install debootstrap)")
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a parallel builder finishes first; then we find it ready
        if (target / ".labctl-ready").exists():
            return target
        tmp = root / f"{key}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        started = time.monotonic()
        res = _run(
            "debootstrap", "--variant=minbase", f"--include={','.join(pkgs)}", SUITE, str(tmp), mirror, check=False
        )
        if res.returncode != 0:
            log = tmp / "debootstrap" / "debootstrap.log"
            detail = log.read_text(errors="replace")[-1500:] if log.exists() else res.stderr[-1500:]
            raise NodesUnavailable(f"debootstrap of the node rootfs from {mirror} failed: {detail}")
        _prepare_base(tmp)
        (tmp / ".labctl-ready").write_text(
            json.dumps({"suite": SUITE, "mirror": mirror, "packages": pkgs, "seconds": round(time.monotonic() - started)})
        )
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    return target


def _prepare_base(root: Path) -> None:
    """What every node shares: the login user, sudo, sshd config, no host keys (each node makes its own)."""
    _run("chroot", str(root), "useradd", "--create-home", "--shell", "/bin/bash", USER)
    # '*' = no password but not locked: with UsePAM no, sshd refuses key logins to locked ('!') accounts.
    _run("chroot", str(root), "usermod", "--password", "*", USER)
    sudoers = root / "etc/sudoers.d" / USER
    sudoers.write_text(f"{USER} ALL=(ALL) NOPASSWD:ALL\n")
    sudoers.chmod(0o440)
    (root / "etc/ssh/sshd_config").write_text(SSHD_CONFIG)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    (root / "etc/resolv.conf").write_text("")
    ssh_dir = root / "home" / USER / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    _run("chroot", str(root), "chown", f"{USER}:{USER}", f"/home/{USER}/.ssh")
    _run("chroot", str(root), "apt-get", "clean")


# --------------------------------------------------------------------------------------------------
# A set of running nodes


@dataclass
class Node:
    name: str
    address: str
    netns: str
    root: Path  # the merged overlay, as seen from the host
    key_file: Path
    host_key: str  # "ssh-ed25519 AAAA..." (public)
    veth: str = ""  # the host end of the node's veth pair
    port: int = 22
    user: str = USER
    pid: int | None = None  # the `unshare` process; its child is sshd (PID 1 in the node)
    log: Path | None = None
    _proc: subprocess.Popen | None = field(default=None, repr=False)


class NodeSet(Mapping[str, Node]):
    def __init__(self, slot: int, slot_lock, workdir: Path, key_file: Path) -> None:
        self.slot = slot
        self._slot_lock = slot_lock
        self.workdir = workdir
        self.key_file = key_file
        self.bridge = f"ltbr{slot}"
        self.nodes: dict[str, Node] = {}
        self.known_hosts = workdir / "known_hosts"
        self._closed = False

    # Mapping protocol: nodes["master"]
    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    def hosts(self, *, verify_host_key: bool = False, roles: Mapping[str, tuple[str, ...]] | None = None) -> dict:
        """``{name: Host}`` for the runner (labctl.transport.base.Host)."""
        from labctl.transport.base import Host

        return {
            n.name: Host(
                name=n.name,
                address=n.address,
                roles=tuple((roles or {}).get(n.name, ())),
                port=n.port,
                user=n.user,
                key_file=n.key_file,
                verify_host_key=verify_host_key,
                lab_ip=n.address,
            )
            for n in self.nodes.values()
        }

    # ---- process control
    def start(self, name: str, *, timeout: float = 15.0) -> None:
        """Start the node's sshd (its PID namespace, mounts and hostname) and wait for its banner."""
        node = self.nodes[name]
        if node._proc and node._proc.poll() is None:
            if self.sshd_pid(name):
                return
            # sshd was just killed and its launcher is still exiting: wait for it, then start afresh.
            node._proc.wait(timeout=10)
        node.log = node.root.parent / "sshd.log"
        r = str(node.root)
        # Mounts made here live in the node's private mount namespace and vanish with it.
        inner = (
            f"mount -t proc proc {r}/proc && mount --rbind /dev {r}/dev && mount -t sysfs sysfs {r}/sys"
            f" && mount -t tmpfs -o mode=755 tmpfs {r}/run && mkdir -p {r}/run/sshd {r}/run/lock"
            f" && hostname {node.name} && exec chroot {r} /usr/sbin/sshd -D -e"
        )
        with open(node.log, "ab") as log:
            node._proc = subprocess.Popen(
                ["ip", "netns", "exec", node.netns, "unshare", "--mount", "--uts", "--pid", "--fork",
                 "--propagation", "private", "--kill-child=SIGKILL", "sh", "-c", inner],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            )  # fmt: skip
        node.pid = node._proc.pid
        self._save_state()
        deadline = time.monotonic() + timeout
        while True:
            if node._proc.poll() is not None:
                raise RuntimeError(f"sshd of node {name} exited ({node._proc.returncode}): {node.log.read_text()[-800:]}")
            with contextlib.suppress(OSError), socket.create_connection((node.address, node.port), timeout=1) as s:
                s.settimeout(2)
                if s.recv(64).startswith(b"SSH-"):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd of node {name} did not answer on {node.address}:22 within {timeout}s")
            time.sleep(0.05)

    def sshd_pid(self, name: str) -> int | None:
        """Host PID of the node's sshd (PID 1 inside the node), or None when it is not running."""
        node = self.nodes[name]
        if not node._proc or node._proc.poll() is not None:
            return None
        try:
            children = Path(f"/proc/{node.pid}/task/{node.pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill the node's sshd; as PID 1 of the node it takes every session and command with it."""
        node = self.nodes[name]
        pid = self.sshd_pid(name)
        if pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if node._proc:
            try:
                node._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                node._proc.kill()
                node._proc.wait(timeout=10)

    def stop(self, name: str) -> None:
        """Stop the node's sshd politely (SIGTERM)."""
        self.kill(name, signal.SIGTERM)

    def restart(self, name: str) -> None:
        self.kill(name)
        self.start(name)

    # ---- inspection
    def exec(self, name: str, command: str, *, check: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
        """Run ``command`` with sh as root inside the node (its namespaces when running, else a chroot)."""
        node = self.nodes[name]
        pid = self.sshd_pid(name)
        if pid:
            cmd = ["nsenter", "-t", str(pid), "-m", "-u", "-n", "-p", "-r", "-w", "/bin/sh", "-c", command]
        else:
            cmd = ["ip", "netns", "exec", node.netns, "chroot", str(node.root), "/bin/sh", "-c", command]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise RuntimeError(f"{name}: {command!r} exited {res.returncode}: {res.stderr.strip()[-800:]}")
        return res

    def read(self, name: str, path: str) -> bytes:
        return (self.nodes[name].root / path.lstrip("/")).read_bytes()

    def path(self, name: str, path: str) -> Path:
        """Where a file inside the node lives on the host (the overlay's merged view)."""
        return self.nodes[name].root / path.lstrip("/")

    # ---- teardown
    def close(self) -> None:
        """Kill every process this set started (by PID), unmount the overlays, delete namespaces and bridge."""
        if self._closed:
            return
        self._closed = True
        for name in list(self.nodes):
            with contextlib.suppress(Exception):
                self.kill(name)
        for node in self.nodes.values():
            _umount(node.root)
            # Deleting our end of the veth removes both ends now; a deleted netns frees them only later.
            _run("ip", "link", "del", node.veth, check=False)
            _run("ip", "netns", "del", node.netns, check=False)
        _run("ip", "link", "del", self.bridge, check=False)
        (STATE_DIR / f"slot-{self.slot}.json").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self._slot_lock.close()  # releases the slot's flock

    def __enter__(self) -> NodeSet:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _save_state(self) -> None:
        # What a later session needs to clean up if this process dies without close() (see _clean_slot).
        state = {
            "bridge": self.bridge,
            "nodes": [{"netns": n.netns, "veth": n.veth, "root": str(n.root), "pid": n.pid} for n in self.nodes.values()],
        }
        (STATE_DIR / f"slot-{self.slot}.json").write_text(json.dumps(state))


def _umount(root: Path) -> None:
    if os.path.ismount(root):
        res = _run("umount", str(root), check=False)
        if res.returncode != 0:
            _run("umount", "-l", str(root), check=False)


def _clean_slot(slot: int) -> None:
    """Remove what a crashed earlier session left in this slot (its processes, mounts, netns, bridge)."""
    state_file = STATE_DIR / f"slot-{slot}.json"
    if not state_file.exists():
        _run("ip", "link", "del", f"ltbr{slot}", check=False)
        return
    with contextlib.suppress(ValueError, OSError):
        state = json.loads(state_file.read_text())
        for n in state.get("nodes", []):
            pid = n.get("pid")
            # Only kill it if it is still one of our node launchers (PIDs get reused).
            with contextlib.suppress(OSError):
                if pid and b"unshare" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
            _umount(Path(n["root"]))
            _run("ip", "link", "del", n.get("veth", ""), check=False)
            _run("ip", "netns", "del", n["netns"], check=False)
        _run("ip", "link", "del", state.get("bridge", f"ltbr{slot}"), check=False)
    state_file.unlink(missing_ok=True)


def _claim_slot():
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    for slot in range(1, 250):
        lock = open(STATE_DIR / f"slot-{slot}.lock", "w")  # noqa: SIM115 — held open for the NodeSet's life
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        _clean_slot(slot)
        return slot, lock
    raise NodesUnavailable(f"every test subnet slot under {STATE_DIR} is in use")


def start_nodes(
    names: list[str],
    workdir: Path,
    *,
    files: dict[str, tuple[bytes, int]] | None = None,
    packages: tuple[str, ...] = DEFAULT_PACKAGES,
) -> NodeSet:
    """Start one real sshd per name, each in its own netns and overlay root (see the module docstring).

    ``files`` (path → (content, mode)) are written into every node's root before sshd starts
    (shims for kubeadm & co.). ``workdir`` holds the overlays, the login key and the logs.
    """
    _check_machine()
    if not names or len(set(names)) != len(names) or len(names) > MAX_NODES:
        raise ValueError(f"node names must be 1..{MAX_NODES} distinct names, got {names!r}")
    for name in names:
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", name):
            raise ValueError(f"node name {name!r}: use lower-case letters, digits and '-' (it becomes the hostname)")
    base = base_rootfs(packages)
    workdir = Path(workdir).absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    key_file = workdir / "id_ed25519"
    if not key_file.exists():
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "labctl-test", "-f", str(key_file))
    key_file.chmod(0o600)
    public_key = (workdir / "id_ed25519.pub").read_text()

    slot, lock = _claim_slot()
    nodes = NodeSet(slot, lock, workdir, key_file)
    atexit.register(nodes.close)
    try:
        subnet = f"{SUBNET_PREFIX}.{slot}"
        _run("ip", "link", "add", nodes.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{subnet}.1/24", "dev", nodes.bridge)
        _run("ip", "link", "set", nodes.bridge, "up")
        addresses = {name: f"{subnet}.{FIRST_HOST + i}" for i, name in enumerate(names)}
        hosts_file = "127.0.0.1 localhost\n" + "".join(f"{a} {n}\n" for n, a in addresses.items())
        known = []
        for i, name in enumerate(names):
            node_dir = workdir / "nodes" / name
            for sub in ("upper", "work", "root"):
                (node_dir / sub).mkdir(parents=True, exist_ok=True)
            root = node_dir / "root"
            node = Node(
                name=name,
                address=addresses[name],
                netns=f"lt{slot}n{i}",
                veth=f"lt{slot}v{i}",
                root=root,
                key_file=key_file,
                host_key="",
            )
            nodes.nodes[name] = node
            _umount(root)  # a previous run in the same workdir
            _run(
                "mount", "-t", "overlay", "overlay", "-o",
                f"lowerdir={base},upperdir={node_dir / 'upper'},workdir={node_dir / 'work'}", str(root),
            )  # fmt: skip
            (root / "etc/hostname").write_text(name + "\n")
            (root / "etc/hosts").write_text(hosts_file)
            host_key = root / "etc/ssh/ssh_host_ed25519_key"
            if not host_key.exists():
                _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"root@{name}", "-f", str(host_key))
            node.host_key = " ".join(Path(f"{host_key}.pub").read_text().split()[:2])
            known.append(f"{node.address} {node.host_key}\n")
            auth = root / "home" / USER / ".ssh" / "authorized_keys"
            auth.write_text(public_key)
            auth.chmod(0o600)
            uid_gid = (root / "home" / USER).stat()
            os.chown(auth, uid_gid.st_uid, uid_gid.st_gid)
            for path, (content, mode) in (files or {}).items():
                dest = root / path.lstrip("/")
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(content)
                dest.chmod(mode)
            _run("ip", "netns", "add", node.netns)
            _run("ip", "link", "add", node.veth, "type", "veth", "peer", "name", "eth0", "netns", node.netns)
            _run("ip", "link", "set", node.veth, "master", nodes.bridge, "up")
            for cmd in (
                ("ip", "addr", "add", f"{node.address}/24", "dev", "eth0"),
                ("ip", "link", "set", "eth0", "up"),
                ("ip", "link", "set", "lo", "up"),
            ):
                _run("ip", "netns", "exec", node.netns, *cmd)
            nodes._save_state()
        nodes.known_hosts.write_text("".join(known))
        for name in names:
            nodes.start(name)
    except BaseException:
        nodes.close()
        raise
    return nodes
