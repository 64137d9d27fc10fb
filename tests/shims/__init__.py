"""Node-side TEST DOUBLES for the ssh tier: what a netns test node cannot really have.

A test node (tests/sshnodes.py) is a Debian rootfs with sshd as PID 1, in its own network namespace,
sharing the host's kernel, without internet and without systemd. The playbooks run there for real
(bash, sed, grep, awk, install, getent, dpkg, apt-mark, cmp, stat are the node's real tools); only
what cannot exist or must not act is replaced, each file saying "TEST DOUBLE" at its top:

| double | why | where in the node |
|---|---|---|
| apt-get | no internet; builds small .debs holding the doubles below and installs them with the real dpkg (so dpkg-query and apt-mark hold are real); refuses packages whose repository is not configured | /usr/local/sbin |
| curl | no internet; serves the files the test maps to URLs (tests/shims/www); in-cluster URLs answer only for addresses of Services the fake cluster has | /usr/local/bin |
| systemctl | no systemd in a node | /usr/local/sbin |
| modprobe, lsmod | loading br_netfilter would change the shared host kernel | /usr/local/sbin |
| sysctl | net.bridge.* exists only with br_netfilter in the host kernel; a node must not change the host | /usr/local/sbin |
| swapon, swapoff | /proc/swaps is the host's: a real `swapoff -a` would turn off the host's swap | /usr/local/sbin |
| kubeadm, kubectl, kubelet, crictl, containerd, exportfs | no cluster, no container runtime, no nfsd in a node; installed by the apt-get double | /usr/bin, /usr/sbin (from .debs) |

kubeadm's double starts a small fake API server (lib/fake_apiserver.py) on the control plane's
advertise address:6443; every node's kubectl double talks to it, so a worker's join is seen by the
control plane, and the order rules of a real cluster hold (see that module). Sudo's secure_path puts
/usr/local/sbin and /usr/local/bin first, so the doubles win over the node's real tools there.

Every double records its calls as JSON lines in /var/log/labctl-shims/<tool>.log (0600) inside the
node; tests read them with ``NodeSet.read`` or :func:`calls`.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
LIB = "/opt/labctl-shims/lib"
WWW = "/opt/labctl-shims/www"
SBIN_DOUBLES = ("apt-get", "systemctl", "modprobe", "lsmod", "sysctl", "swapon", "swapoff")
# package → files its fake .deb installs (path in the package, double in tests/shims/payload)
PACKAGES = {
    "kubeadm": {"usr/bin/kubeadm": "kubeadm"},
    "kubectl": {"usr/bin/kubectl": "kubectl"},
    "kubelet": {"usr/bin/kubelet": "kubelet"},
    "cri-tools": {"usr/bin/crictl": "crictl"},
    "containerd": {"usr/bin/containerd": "containerd"},
    "nfs-kernel-server": {"usr/sbin/exportfs": "exportfs"},
}
# A fresh Vagrant box has a swap file in /etc/fstab and active: the node-prep playbook must remove both.
SEEDED_SWAP = "/swap.img"


def release_bodies() -> dict[str, bytes]:
    """URL → body for the pinned containerd/runc release downloads (labctl.versions.release_downloads),
    shaped like the real assets: a .tar.gz with bin/containerd (the containerd double, reporting the
    pinned version), `sha256sum` lines naming the upstream file names, runc.<arch> (a double printing
    `runc version <pin>`), a systemd unit. The archive is deterministic, so its checksum is stable."""
    import hashlib
    import io
    import tarfile

    from labctl.versions import PINS, release_downloads

    binary = (HERE / "payload" / "containerd").read_text()
    binary = binary.replace('VERSION = "v0.0.0-labctl-test"', f'VERSION = "v{PINS["containerd"]}"')
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for name, data in (("bin/containerd", binary.encode()), ("bin/containerd-shim-runc-v2", b"#!/bin/sh\nexit 0\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o755, 0
            tar.addfile(info, io.BytesIO(data))
    archive = buf.getvalue()
    runc = f"#!/bin/sh\n# TEST DOUBLE of runc\necho 'runc version {PINS['runc']}'\necho 'commit: labctl-test-double'\n".encode()
    sha = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731
    bodies: dict[str, bytes] = {}
    # Both architectures (labctl.arch): the same doubles, named as upstream names each build.
    for arch in ("amd64", "arm64"):
        by_key = {d.key: d for d in release_downloads(arch)}
        ctr_name = f"containerd-{PINS['containerd']}-linux-{arch}.tar.gz"
        bodies.update({
            by_key["containerd"].url: archive,
            by_key["containerd-sha256sum"].url: f"{sha(archive)}  {ctr_name}\n".encode(),
            by_key["containerd-service"].url: b"# TEST DOUBLE of containerd.service\n[Service]\nExecStart=/usr/local/bin/containerd\n",
            by_key["runc"].url: runc,
            by_key["runc-sha256sum"].url: f"{sha(runc)}  runc.amd64\n{sha(runc)}  runc.arm64\n".encode(),
        })
    return bodies


def node_files(routes: dict[str, str | dict], bodies: dict[str, bytes] | None = None) -> dict[str, tuple[bytes, int]]:
    """Files for ``start_nodes(files=...)``: every double, PyYAML for the fake API server, the curl routes.

    ``routes``: URL glob → file name in tests/shims/www or in ``bodies`` (or a dict {"file": name,
    "service": True} for in-cluster addresses). ``bodies``: extra response bodies made by the test.
    """
    files: dict[str, tuple[bytes, int]] = {}
    for name in SBIN_DOUBLES:
        files[f"/usr/local/sbin/{name}"] = ((HERE / "bin" / name).read_bytes(), 0o755)
    files["/usr/local/bin/curl"] = ((HERE / "bin" / "curl").read_bytes(), 0o755)
    for lib in (HERE / "lib").glob("*.py"):
        files[f"{LIB}/{lib.name}"] = (lib.read_bytes(), 0o644)
    # PyYAML's pure-Python modules (the node's python3 has no yaml); its C speedups are optional.
    for module in Path(yaml.__file__).parent.glob("*.py"):
        files[f"{LIB}/yaml/{module.name}"] = (module.read_bytes(), 0o644)
    for package, contents in PACKAGES.items():
        for dest, double in contents.items():
            files[f"/opt/labctl-shims/payload/{package}/{dest}"] = ((HERE / "payload" / double).read_bytes(), 0o755)
    table = {}
    for pattern, route in routes.items():
        route = {"file": route} if isinstance(route, str) else dict(route)
        name = route["file"]
        content = (bodies or {}).get(name)
        files[f"{WWW}/{name}"] = (content if content is not None else (HERE / "www" / name).read_bytes(), 0o644)
        table[pattern] = {**route, "file": f"{WWW}/{name}"}
    files["/etc/labctl-shims/curl-routes.json"] = (json.dumps(table, indent=1).encode(), 0o644)
    files["/var/lib/labctl-shims/swaps"] = (f"{SEEDED_SWAP}\n".encode(), 0o644)
    files["/etc/fstab"] = (f"# /etc/fstab of a labctl test node\n{SEEDED_SWAP}\tnone\tswap\tsw\t0\t0\n".encode(), 0o644)
    return files


def calls(log_text: bytes | str) -> list[list[str]]:
    """The argv of every call in a double's log."""
    text = log_text.decode() if isinstance(log_text, bytes) else log_text
    out = []
    for line in text.splitlines():
        argv = json.loads(line)["argv"]
        out.append(argv.split() if isinstance(argv, str) else argv)
    return out
