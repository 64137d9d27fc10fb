"""End to end on real VMs: `labctl create / snapshot save / restore / status / verify / halt / resume /
destroy --keep-data / create / destroy` with
vagrant-libvirt under qemu TCG, from a Debian box this test builds (cached), with libvirtd started
by the test inside a network namespace the test made. Then raw `vagrant up` of the same rendered
Vagrantfile, to compare the VM layer's wall time (target: labctl ≤ 1.1 × raw).

Profile switch, named here on purpose: the lab is `offline: true` (steps that need the internet are
skipped, loudly) and `create --only` selects the steps the box can run without Kubernetes binaries
(the NFS VM's root file system grown onto its bigger disk, hosts file, swap, kernel modules and
parameters, the NFS export). Every other step is reported
"SKIPPED … not selected by --only" in the output, which the test checks.

Slow (about 8 minutes on an idle 2-core host, 30+ under heavy load; the first run adds ~3 minutes of
debootstrap for the box): marked e2e. Figures go to $LABCTL_E2E_FIGURES (default
/tmp/labctl-e2e-figures.json) and the test output.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import libvirt_env  # tests/e2e/libvirt_env.py (pytest puts this folder on sys.path)
import pytest

pytestmark = pytest.mark.e2e

ONLY = (
    "node-prep.grow-root-filesystem",
    "node-prep.write-hosts-file",
    "node-prep.disable-swap",
    "node-prep.load-kernel-modules",
    "node-prep.set-kernel-parameters",
    "nfs-server.*",
)
# A host's outcome line in create's output; steps of overlapping playbooks carry a "<playbook> | " prefix.
HOST_SAYS = r"^(?:[\w-]+ +\| )?\s+{host}: {what}"
SUBNET = "10.252.33"  # a range picked for this test; it exists only inside the test's namespace
NFS_DISK_GIB = 10  # the box's disk is 4 GiB (build_box.sh): the grow step must take the NFS VM's ext4 to ~10


def lab_yaml(version: str) -> str:
    return f"""\
apiVersion: labctl.dev/v1alpha1
kind: Lab
name: e2e
offline: true
provider:
  type: libvirt
  box: {libvirt_env.BOX_NAME}
  box_version: "{version}"
  boot_timeout: 1800
  libvirt:
    driver: qemu
network:
  subnet: {SUBNET}.0/24
  metallb_pool: {SUBNET}.2-{SUBNET}.5
nodes:
  master: {{name: master, ip: {SUBNET}.100, cpus: 1, memory_mib: 1024}}
  workers: []
  nfs: {{name: nfs, ip: {SUBNET}.11, cpus: 1, memory_mib: 1024, disk_gib: {NFS_DISK_GIB}}}
"""


def _ok(proc, what: str) -> str:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{what} failed with exit {proc.returncode}:\n{out[-6000:]}"
    return out


@pytest.fixture(scope="module")
def libvirt(tmp_path_factory):
    missing = libvirt_env.missing_requirements()
    if missing:
        pytest.skip(f"e2e needs {', '.join(missing)} (CI installs them: see .ci/run)")
    other = libvirt_env.running_system_libvirtd()
    if other:
        pytest.skip(f"a libvirtd (PID {other}) already runs on this host; the e2e starts its own in a namespace")
    with libvirt_env.libvirt_in_namespace(tmp_path_factory.mktemp("libvirt")) as ns:
        yield ns


def test_vm_lifecycle_end_to_end(libvirt, tmp_path):
    ns = libvirt
    figures: dict[str, object] = {}
    t0 = time.monotonic()
    stamp = libvirt_env.build_box()
    version = libvirt_env.add_box(stamp)
    figures["box_build_and_add_seconds"] = round(time.monotonic() - t0, 1)

    lab_file = tmp_path / "lab.yaml"
    lab_file.write_text(lab_yaml(version))
    home = tmp_path / "labctl-home"
    env = ns.env(LABCTL_HOME=str(home))
    state = home / "e2e"
    only_args = [a for pattern in ONLY for a in ("--only", pattern)]

    # ---- create: doctor → Vagrantfile → VMs → ssh-config → the selected steps -------------------
    started = time.monotonic()
    out = _ok(ns.labctl("create", "-f", str(lab_file), *only_args, env=env), "labctl create")
    figures["create_seconds"] = round(time.monotonic() - started, 1)
    timing = json.loads((state / "last-create.json").read_text())
    figures["labctl_vm_layer_cold_pool_seconds"] = timing["vm_seconds"]
    upload = _box_upload_seconds(Path(timing["log"]).read_text())
    if upload is not None:
        figures["box_upload_into_pool_seconds"] = upload
    assert "doctor: " in out and "0 failed" in out
    assert "==> Step: Bring up 2 VMs with Vagrant (libvirt)" in out
    assert "SKIPPED on every host: needs the internet and the lab is offline" in out
    assert "SKIPPED on every host: not selected by --only" in out
    assert "kubeconfig:  not fetched" in out
    assert (state / "Vagrantfile").is_file() and (state / "ssh-config").is_file()
    assert oct((state / "ssh-config").stat().st_mode & 0o777) == "0o600"

    # The steps really ran on the VMs: hosts file, swap off, modules, the NFS export.
    hosts = _ok(ns.labctl("ssh", "-f", str(lab_file), "master", "--", "cat /etc/hosts", env=env), "ssh master")
    assert f"{SUBNET}.11 nfs" in hosts and f"{SUBNET}.100 master" in hosts
    modules = _ok(ns.labctl("ssh", "-f", str(lab_file), "master", "--", "lsmod; sudo swapon --show", env=env), "ssh master")
    assert "br_netfilter" in modules and "overlay" in modules
    exports = _ok(ns.labctl("ssh", "-f", str(lab_file), "nfs", "--", "sudo exportfs -v", env=env), "ssh nfs")
    assert "/srv/nfs/lab" in exports and f"{SUBNET}.0/24" in exports
    # disk_gib: libvirt grew the NFS VM's disk, and the grow step its mounted ext4 (the box has 4 GiB).
    df = _ok(ns.labctl("ssh", "-f", str(lab_file), "nfs", "--", "df -B1 --output=size /", env=env), "df on nfs")
    root_bytes = int(re.findall(r"^\s*(\d+)\s*$", df, re.MULTILINE)[-1])
    assert root_bytes > (NFS_DISK_GIB - 1) * 2**30, df
    figures["nfs_root_filesystem_gib"] = round(root_bytes / 2**30, 2)
    ping = _ok(ns.labctl("ssh", "-f", str(lab_file), "master", "--", f"ping -c1 -W5 {SUBNET}.11", env=env), "ping nfs")
    assert "1 received" in ping

    # ---- a second create finishes nothing new: every selected step is skipped by its check ------
    again = _ok(ns.labctl("create", "-f", str(lab_file), *only_args, env=env), "second labctl create")
    assert "skipped (every VM is already running)" in again
    assert re.search(HOST_SAYS.format(host="master", what="skipped"), again, re.MULTILINE), again  # the pattern reads this output
    assert not re.search(HOST_SAYS.format(host=r"\S+", what="done"), again, re.MULTILINE), again

    # ---- snapshots: save, damage the lab, restore, the damage is gone --------------------------
    def snapshots_now() -> dict:
        return json.loads(_ok(ns.labctl("snapshot", "list", "-f", str(lab_file), "--output", "json", env=env), "snapshot list"))

    assert snapshots_now() == {}  # create --only saves no `ready` snapshot: only a whole lab is worth one
    nfs_ssh = ("ssh", "-f", str(lab_file), "nfs", "--")
    _ok(ns.labctl(*nfs_ssh, "echo before | sudo tee /root/snapshot-marker", env=env), "marker before the snapshot")
    started = time.monotonic()
    _ok(ns.labctl("snapshot", "save", "-f", str(lab_file), "base", env=env), "snapshot save")
    figures["snapshot_save_seconds"] = round(time.monotonic() - started, 1)
    assert snapshots_now() == {"base": ["master", "nfs"]}
    damage = "sudo rm /root/snapshot-marker && sudo touch /root/after-damage && sudo systemctl stop nfs-server"
    _ok(ns.labctl(*nfs_ssh, damage, env=env), "damage")
    damaged = ns.labctl(*nfs_ssh, "systemctl is-active nfs-server", env=env)
    assert damaged.stdout.strip().splitlines()[-1] == "inactive", damaged.stdout + damaged.stderr
    started = time.monotonic()
    restore = ns.labctl("snapshot", "restore", "-f", str(lab_file), "base", env=env)
    figures["snapshot_restore_seconds"] = round(time.monotonic() - started, 1)
    figures["create_over_restore"] = round(figures["create_seconds"] / figures["snapshot_restore_seconds"], 2)
    # The whole restore a user gets (no --only): VMs back, clocks set, kubelet/etcd checked, then
    # create's final verification and summary. This lab has no Kubernetes (offline, create --only),
    # so that verification finds no cluster and says so with exit 7, as `labctl verify` does below.
    restored = restore.stdout + restore.stderr
    assert restore.returncode == 7, restored
    assert "kubelet and etcd: " in restored and "master (kubelet absent)" in restored, restored
    assert "Verify the lab from this machine" in restored and "kubectl is not installed on the master" in restored
    # Where restore's time went (labctl's own record): each vagrant call, reaching the VMs and
    # setting their clocks, create's re-check.
    figures["snapshot_restore_breakdown"] = json.loads((state / "last-restore.json").read_text())
    assert "clocks set on" in restored and "re-checking what a restore can break" in restored, restored
    after = _ok(ns.labctl(*nfs_ssh, "sudo cat /root/snapshot-marker; sudo test -e /root/after-damage && echo damage-left "
                          "|| echo damage-gone; systemctl is-active nfs-server", env=env), "after restore")
    assert after.split()[-3:] == ["before", "damage-gone", "active"], after
    _ok(ns.labctl("snapshot", "delete", "-f", str(lab_file), "base", env=env), "snapshot delete")
    assert snapshots_now() == {}

    # ---- status and verify: honest about what is not there -------------------------------------
    status = json.loads(_ok(ns.labctl("status", "-f", str(lab_file), "--output", "json", env=env), "status"))
    assert {v["name"]: v["state"] for v in status["vms"]} == {"nfs": "running", "master": "running"}
    assert status["cluster_error"] == "kubectl is not installed on the master"
    checks = {c["name"]: c for c in status["checks"]}
    assert checks["vms-running"]["ok"] is True
    assert checks["open-webui-health"]["ok"] is False and checks["open-webui-health"]["detail"].startswith("unreachable")
    verify = ns.labctl("verify", "-f", str(lab_file), env=env)
    assert verify.returncode == 7, verify.stdout + verify.stderr

    # ---- halt / resume: the lab comes back, swap stays off ----------------------------------------
    started = time.monotonic()
    _ok(ns.labctl("halt", "-f", str(lab_file), env=env), "halt")
    figures["halt_seconds"] = round(time.monotonic() - started, 1)
    assert all(state_line.endswith("shut off") for state_line in _domain_states(ns).values()), _domain_states(ns)
    started = time.monotonic()
    resumed = _ok(ns.labctl("resume", "-f", str(lab_file), env=env), "resume")
    figures["resume_seconds"] = round(time.monotonic() - started, 1)
    assert "==> Step: Turn swap off, now and after every reboot" in resumed
    assert all(s.endswith("running") for s in _domain_states(ns).values()), _domain_states(ns)
    swap = _ok(ns.labctl("ssh", "-f", str(lab_file), "master", "--", "sudo swapon --show --noheadings | wc -l", env=env), "swap")
    assert swap.strip().splitlines()[-1] == "0"

    # ---- destroy --keep-data: the NFS VM and its export stay; create brings the rest back -------
    _ok(ns.labctl("ssh", "-f", str(lab_file), "nfs", "--", "echo kept | sudo tee /srv/nfs/lab/marker", env=env), "marker")
    kept = _ok(ns.labctl("destroy", "-f", str(lab_file), "--keep-data", "--yes", env=env), "destroy --keep-data")
    assert "keeping nfs and its exports" in kept, kept
    assert {name.removeprefix("e2e_"): st for name, st in _domain_states(ns).items()} == {"nfs": "running"}, _domain_states(ns)
    assert not (state / "ssh-config").exists()  # forgotten with the VMs it described; rebuilt by create
    started = time.monotonic()
    rebuilt = _ok(ns.labctl("create", "-f", str(lab_file), *only_args, env=env), "create after destroy --keep-data")
    figures["create_after_keep_data_seconds"] = round(time.monotonic() - started, 1)
    assert re.search(HOST_SAYS.format(host="master", what="done"), rebuilt, re.MULTILINE), rebuilt  # the new master is prepared again
    assert all(s.endswith("running") for s in _domain_states(ns).values()), _domain_states(ns)
    marker = _ok(ns.labctl("ssh", "-f", str(lab_file), "nfs", "--", "cat /srv/nfs/lab/marker", env=env), "marker kept")
    assert "kept" in marker

    # ---- destroy: nothing of the lab left in libvirt; a second destroy is a no-op ---------------
    _ok(ns.labctl("destroy", "-f", str(lab_file), "--yes", env=env), "destroy")
    assert not [d for d in ns.names("list", "--all", "--name") if d.startswith("e2e_")]
    assert not [v for v in ns.volumes() if v.startswith("e2e_")], ns.volumes()
    # vagrant-libvirt keeps the box's base image in the pool for the next lab: that one only.
    assert all(v.startswith("labctl-VAGRANTSLASH-e2e-debian") for v in ns.volumes()), ns.volumes()
    second = _ok(ns.labctl("destroy", "-f", str(lab_file), "--yes", env=env), "second destroy")
    assert "nothing to destroy" in second

    # ---- VM layer: raw `vagrant up` of the same rendered Vagrantfile vs labctl, same run. Both now
    # find the box image in the libvirt pool (the first create uploaded it), so neither pays that.
    from labctl.render import render_vagrantfile
    from labctl.spec import LabSpec

    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "Vagrantfile").write_text(render_vagrantfile(LabSpec.load(lab_file), source=str(lab_file)))
    started = time.monotonic()
    _ok(ns.run(["vagrant", "up", "--provider=libvirt"], cwd=raw, env=env, timeout=3600), "raw vagrant up")
    figures["raw_vagrant_up_seconds"] = round(time.monotonic() - started, 1)
    _ok(ns.run(["vagrant", "destroy", "-f"], cwd=raw, env=env, timeout=900), "raw vagrant destroy")
    assert not [d for d in ns.names("list", "--all", "--name") if d.startswith("raw_")]

    started = time.monotonic()
    _ok(ns.labctl("create", "-f", str(lab_file), *only_args, env=env), "labctl create (warm pool)")
    figures["create_warm_pool_seconds"] = round(time.monotonic() - started, 1)
    figures["labctl_vm_layer_seconds"] = json.loads((state / "last-create.json").read_text())["vm_seconds"]
    _ok(ns.labctl("destroy", "-f", str(lab_file), "--yes", env=env), "final destroy")
    assert not [d for d in ns.names("list", "--all", "--name") if d.startswith(("e2e_", "raw_"))]
    assert not [v for v in ns.volumes() if v.startswith(("e2e_", "raw_"))], ns.volumes()

    ratio = figures["labctl_vm_layer_seconds"] / figures["raw_vagrant_up_seconds"]
    figures["vm_layer_ratio"] = round(ratio, 3)
    figures["host_load_1min_at_end"] = os.getloadavg()[0]
    out_path = Path(os.environ.get("LABCTL_E2E_FIGURES", "/tmp/labctl-e2e-figures.json"))
    out_path.write_text(json.dumps(figures, indent=2) + "\n")
    print("\ne2e figures:", json.dumps(figures, indent=2))
    # TCG boot time swings with the host's load (other jobs share the 2 cores), so the 1.1× target
    # is reported, and only a gross overhead (> 1.5×) fails the test.
    assert ratio < 1.5, figures


def _box_upload_seconds(log: str) -> float | None:
    """Seconds vagrant-libvirt spent copying the box image into the pool (from the stamped log)."""
    stamps = re.findall(r"^\[\s*([\d.]+)s\] (.*)$", log, re.MULTILINE)
    start = next((float(t) for t, line in stamps if "Uploading base box image" in line), None)
    end = next((float(t) for t, line in stamps if "Creating image (snapshot of base box volume)" in line), None)
    return round(end - start, 1) if start is not None and end is not None and end >= start else None


def _domain_states(ns) -> dict[str, str]:
    states = {}
    for line in ns.virsh("list", "--all").splitlines()[2:]:
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[1].startswith("e2e_"):
            states[parts[1]] = parts[2].strip()
    return states
