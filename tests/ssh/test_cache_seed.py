"""The warm-cache seeding steps (playbooks 05 and 25) on real SSH nodes, with a small fake cache.

The cache is filled by the real `labctl cache fill` code from the loopback stand-in upstream
(tests/fakeupstream.py: tiny .debs built with dpkg-deb, tiny OCI image archives, a tiny model) and
placed at /labctl-cache on every node, where the Vagrantfile's read-only mount would put it.
containerd cannot run on these nodes, so ``ctr`` is a TEST DOUBLE (CTR_SHIM below) that reads the
image archive's index.json, records the import and lists recorded images — enough for the steps'
checks, which ask ``ctr images ls`` what containerd holds.

First run: every step runs and reports the bytes it copied; the local apt repository really serves
the pinned .deb to apt-get. Second run: every step is skipped by its check and copies nothing.

Then the steps of the other playbooks that would download, as `create --cache` renders them: node
prep's package installs (no pkgs.k8s.io repository, no `apt-get update`: they must install from the
local repository on nodes that have no internet) and the add-on fetch steps of 50/60/70 (they must
find the seeded manifests; ``curl`` is a TEST DOUBLE that records any call and fails).
"""

from __future__ import annotations

import io
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from labctl.cache_fill import fill_cache
from labctl.cache_scan import inspect_cache
from labctl.plan import build_plan, load_playbooks
from labctl.runner import Runner
from labctl.spec import LabSpec
from labctl.transport.ssh import SSHTransport
from labctl.versions import PINS
from tests.fakeupstream import FakeUpstream, Serving

NAMES = ["master", "worker1", "nfs"]
BYTES_LINE = re.compile(r"labctl-bytes kind=(\w+) copied=(\d+) downloaded=(\d+)")

CTR_SHIM = b"""#!/usr/bin/python3
# TEST DOUBLE of containerd's ctr (tests/ssh/test_cache_seed.py): containerd cannot run in these
# test nodes. Supports `ctr -n NS images ls -q` and `ctr -n NS images import [--platform P] FILE`,
# recording imports in /var/lib/ctr-shim/<ns>.images and every call in /var/log/ctr-shim.log.
import json, os, sys, tarfile
args = sys.argv[1:]
with open("/var/log/ctr-shim.log", "a") as log:
    log.write(" ".join(args) + "\\n")
ns = "default"
if args[:1] == ["-n"]:
    ns, args = args[1], args[2:]
os.makedirs("/var/lib/ctr-shim", exist_ok=True)
store = f"/var/lib/ctr-shim/{ns}.images"
known = open(store).read().split() if os.path.exists(store) else []
if args[:3] == ["images", "ls", "-q"]:
    print("\\n".join(known))
elif args[:2] == ["images", "import"]:
    with tarfile.open(args[-1]) as tar:
        index = json.load(tar.extractfile("index.json"))
    for m in index["manifests"]:
        name = m["annotations"]["io.containerd.image.name"]
        if name not in known:
            known.append(name)
        print(f"unpacking {name} ({m['digest']})...done")
    open(store, "w").write("\\n".join(known) + "\\n")
else:
    sys.exit(f"ctr shim: unsupported arguments {args}")
"""


CURL_SHIM = b"""#!/bin/sh
# TEST DOUBLE of curl (tests/ssh/test_cache_seed.py): with a warm cache nothing may be downloaded.
echo "curl $*" >> /var/log/curl-shim.log
echo "curl test double: refusing to download $*" >&2
exit 7
"""

# TEST DOUBLE of systemctl: the nodes run no systemd; installing containerd reloads and enables it.
SYSTEMCTL_SHIM = b"""#!/bin/sh
echo "systemctl $*" >> /var/log/systemctl-shim.log
"""

# Steps of the other playbooks that download something without a cache.
DOWNLOADING_STEPS = (
    "node-prep.install-containerd",
    "node-prep.install-kubernetes-packages",
    "cni-calico.fetch-calico-manifest",
    "load-balancer.fetch-metallb-manifest",
    "storage.fetch-csi-driver-nfs-manifests",
    "storage.fetch-metrics-server-manifest",
)


@pytest.fixture(scope="module")
def fake_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = LabSpec.default()
    upstream = FakeUpstream(spec, tmp_path_factory.mktemp("upstream"))
    serving = Serving(upstream)
    try:
        root = tmp_path_factory.mktemp("cache")
        report = fill_cache(
            spec, root, upstreams=upstream.upstreams(serving.base), kinds={"deb", "image", "model", "manifest", "release"}
        )
    finally:
        serving.stop()
    assert not report.failed, report.summary()
    return root


def bytes_by_host(log: Path) -> dict[tuple[str, str], int]:
    """(host, kind) → bytes copied, from the steps' own `labctl-bytes` lines in the run log."""
    out: dict[tuple[str, str], int] = {}
    host = ""
    for line in log.read_text().splitlines():
        if m := re.search(r"--- \S+ on (\S+): run", line):
            host = m.group(1)
        elif (m := BYTES_LINE.search(line)) and not line.lstrip().startswith(("$", "echo")):
            assert int(m.group(3)) == 0, "a seeding step downloaded something"
            out[(host, m.group(1))] = out.get((host, m.group(1)), 0) + int(m.group(2))
    return out


def run(nodes, plan, log: Path):
    transport = SSHTransport()
    try:
        runner = Runner(transport, nodes.hosts(), log_path=log, console=Console(file=io.StringIO(), width=200))
        return runner.run(plan)
    finally:
        transport.close()


def test_seeding_steps_copy_once_then_nothing(ssh_nodes, fake_cache: Path, tmp_path: Path) -> None:
    spec = LabSpec.default()
    nodes = ssh_nodes(
        NAMES,
        files={
            "/usr/local/bin/ctr": (CTR_SHIM, 0o755),
            "/usr/local/bin/curl": (CURL_SHIM, 0o755),
            "/usr/local/sbin/systemctl": (SYSTEMCTL_SHIM, 0o755),
        },
    )
    for name in NAMES:  # where the Vagrantfile mounts the cache, read-only
        shutil.copytree(fake_cache, nodes.path(name, "/labctl-cache"))
    nodes.exec("nfs", f"mkdir -p {spec.nodes.nfs.export}", check=True)  # playbook 20 made the export

    cache = inspect_cache(fake_cache, spec)
    books = [b for b in load_playbooks() if b.name.startswith("warm-cache")]
    plan = build_plan(spec, books, include_provider=False, cache=cache)
    assert [s.id for s in plan.steps] == [
        "warm-cache-packages.local-apt-repository",
        "warm-cache-seed.import-images",
        "warm-cache-seed.seed-models",
        "warm-cache-seed.place-addon-manifests",
    ]

    # ---- first run: everything copied, byte counts from the steps themselves
    first = run(nodes, plan, tmp_path / "first.log")
    assert all(o.status == "done" for s in first.steps for o in s.outcomes), first.summary()
    copied = bytes_by_host(first.log_path)
    deb_bytes = sum(f.size for f in cache.debs)
    image_bytes = sum(f.size for f in cache.images)
    model_bytes = sum(m.size for m in cache.models)
    assert deb_bytes and image_bytes and model_bytes
    for k8s in ("master", "worker1"):
        assert copied[(k8s, "debs")] == deb_bytes
        # each node imports only the images it runs; together they cover every cached image
        assert copied[(k8s, "images")] == sum(f.size for f in cache.images_by_node[k8s]) < image_bytes
    assert {f.name for n in ("master", "worker1") for f in cache.images_by_node[n]} == {f.name for f in cache.images}
    assert copied[("nfs", "models")] == model_bytes
    manifest_bytes = sum(f.size for f in cache.addons)
    assert copied[("master", "manifests")] == manifest_bytes
    for f in cache.addons:  # where the add-on playbooks look before they download
        assert nodes.read("master", f"/etc/labctl/addons/{f.name}") == (fake_cache / f.path).read_bytes()

    # containerd (the shim) holds every pinned image; apt serves the pinned .deb from the local repo
    # (the node has no route to the internet, so the install can only succeed from the cache)
    listed = set(nodes.exec("master", "ctr -n k8s.io images ls -q", check=True).stdout.split())
    assert listed == {f.name for f in cache.images_by_node["master"]}
    policy = nodes.exec("worker1", "apt-cache policy kubeadm", check=True).stdout
    assert "990 file:/var/lib/labctl/debs ./ Packages" in policy, policy
    assert "Candidate: 1.36.4-1.1" in policy, policy
    installed = nodes.exec("worker1", "apt-get install -y -q 'kubeadm=1.36.4-*' && cat /usr/share/labctl-fake/kubeadm")
    assert installed.returncode == 0 and "fake kubeadm 1.36.4-1.1" in installed.stdout, installed.stderr
    # the model sits in Ollama's layout in the Ollama volume's folder on the export
    dest = nodes.path("nfs", cache.models_dest)
    assert (dest / "manifests/registry.ollama.ai/library/llama3.2/1b").is_file()
    for f in cache.models[0].files:
        assert (dest / f.path).stat().st_size == f.size

    # ---- second run: every check says done, nothing is copied
    imports_before = nodes.read("master", "/var/log/ctr-shim.log").count(b"images import")
    second = run(nodes, plan, tmp_path / "second.log")
    assert all(o.status == "skipped" for s in second.steps for o in s.outcomes), second.summary()
    assert bytes_by_host(second.log_path) == {}
    assert nodes.read("master", "/var/log/ctr-shim.log").count(b"images import") == imports_before

    # ---- a model blob lost on the export: only that blob is copied again
    blob = next(f for f in cache.models[0].files if f.path.startswith("blobs/"))
    (dest / blob.path).unlink()
    third = run(nodes, plan, tmp_path / "third.log")
    statuses = {s.step_id: {o.host: o.status for o in s.outcomes} for s in third.steps}
    assert statuses["warm-cache-seed.seed-models"] == {"nfs": "done"}
    assert statuses["warm-cache-seed.import-images"] == {"master": "skipped", "worker1": "skipped"}
    assert statuses["warm-cache-seed.place-addon-manifests"] == {"master": "skipped"}
    assert bytes_by_host(third.log_path) == {("nfs", "models"): blob.size}

    # ---- what would download without a cache, as create --cache renders it: nothing is downloaded
    full = build_plan(spec, include_provider=False, cache=cache)
    assert "node-prep.add-kubernetes-apt-repository" not in {s.id for s in full.steps}
    later = replace(full, steps=tuple(full.step(step_id) for step_id in DOWNLOADING_STEPS))
    for step in later.steps:
        for c in step.commands:
            assert "apt-get update" not in c.run and "pkgs.k8s.io" not in c.run, step.id
    fourth = run(nodes, later, tmp_path / "fourth.log")
    statuses = {s.step_id: {o.host: o.status for o in s.outcomes} for s in fourth.steps}
    assert all(st in ("done", "skipped") for per_host in statuses.values() for st in per_host.values()), fourth.summary()
    assert statuses["load-balancer.fetch-metallb-manifest"] == {"master": "skipped"}  # the seeded file is its check
    assert statuses["storage.fetch-csi-driver-nfs-manifests"] == {"master": "skipped"}
    for k8s in ("master", "worker1"):
        assert not nodes.path(k8s, "/var/log/curl-shim.log").exists(), nodes.read(k8s, "/var/log/curl-shim.log")
        # containerd and runc: the cached release files, checksum-verified by the step, then installed
        archive = f"containerd-{PINS['containerd']}-linux-amd64.tar.gz"
        assert nodes.read(k8s, f"/var/cache/labctl/releases/{archive}") == (fake_cache / "releases" / archive).read_bytes()
        assert f"VERSION = \"v{PINS['containerd']}\"" in nodes.read(k8s, "/usr/local/bin/containerd").decode()
        assert f"runc version {PINS['runc']}" in nodes.exec(k8s, "/usr/local/sbin/runc --version", check=True).stdout
        assert "enable --now containerd" in nodes.read(k8s, "/var/log/systemctl-shim.log").decode()
        versions = nodes.exec(k8s, "dpkg-query -W -f='${Package}=${Version}\\n' cri-tools kubeadm kubelet kubectl", check=True)
        assert set(versions.stdout.split()) == {
            f"cri-tools={PINS['cri_tools']}-1.1",
            "kubeadm=1.36.4-1.1",
            "kubelet=1.36.4-1.1",
            "kubectl=1.36.4-1.1",
        }
    # the add-on steps edited the seeded manifests, as they edit downloaded ones
    calico = nodes.read("master", f"/etc/labctl/addons/calico-v{PINS['calico']}-lab.yaml").decode()
    assert 'value: "cidr=' in calico and "- name: CALICO_IPV4POOL_CIDR" in calico
    assert b"- --kubelet-insecure-tls" in nodes.read("master", "/etc/labctl/addons/metrics-server-v0.9.0-lab.yaml")

    print(  # the figures for the README (pytest -s shows them)
        f"\nbytes copied: debs {deb_bytes}/k8s node, images {image_bytes} across the k8s nodes (each its own), models {model_bytes} on nfs, manifests {manifest_bytes} on master; "
        f"first run {sum(copied.values())}, second run 0, repair run {blob.size}; downloaded 0 in every run"
    )
