"""containerd and runc release files are checked against the sha256 published beside them before
anything is unpacked (issue #12 item 5). Over real SSH on a netns node whose curl (TEST DOUBLE,
tests/shims) serves the release assets: once intact, once with a corrupted archive."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest
from rich.console import Console

from labctl.plan import build_plan
from labctl.runner import Runner, StepFailed
from labctl.transport.ssh import SSHTransport
from labctl.versions import PINS, release_downloads
from tests.shims import node_files, release_bodies
from tests.ssh.test_playbooks_e2e import netns_spec

pytestmark = pytest.mark.ssh
NAMES = ["master", "worker1", "nfs"]
STEP = "node-prep.install-containerd"


def files(tamper: bool) -> dict:
    bodies = release_bodies()
    table = {}
    for url, body in list(bodies.items()):
        name = "release-" + url.rsplit("/", 1)[1]
        if tamper and url.endswith(".tar.gz"):
            body = body[:-1] + bytes([body[-1] ^ 0xFF])  # one flipped byte, the size unchanged
        table[url] = name
        bodies[name] = body
    return node_files(table, bodies)


def run_step(nodes, tmp_path, label: str):
    spec = netns_spec(nodes)
    plan = build_plan(spec, include_provider=False)
    only = replace(plan, steps=(replace(plan.step(STEP), commands=plan.step(STEP).commands[:1]),))
    transport = SSHTransport()
    try:
        runner = Runner(transport, nodes.hosts(), log_path=tmp_path / f"{label}.log",
                        console=Console(file=io.StringIO(), width=200))  # fmt: skip
        return runner.run(only)
    finally:
        transport.close()


def test_intact_release_files_are_installed(ssh_nodes, tmp_path):
    nodes = ssh_nodes(NAMES, files=files(tamper=False))
    report = run_step(nodes, tmp_path, "intact")
    assert [o.status for s in report.steps for o in s.outcomes] == ["done"]
    assert f"VERSION = \"v{PINS['containerd']}\"" in nodes.read("master", "/usr/local/bin/containerd").decode()
    assert nodes.path("master", "/usr/local/sbin/runc").stat().st_mode & 0o777 == 0o755
    # a second run is skipped by the check (version of both binaries, the unit file)
    again = run_step(nodes, tmp_path, "again")
    assert [o.status for s in again.steps for o in s.outcomes] == ["skipped"]


def test_a_corrupted_archive_is_refused_before_anything_is_unpacked(ssh_nodes, tmp_path):
    nodes = ssh_nodes(NAMES, files=files(tamper=True))
    with pytest.raises(StepFailed) as info:
        run_step(nodes, tmp_path, "tampered")
    archive = next(d.file for d in release_downloads() if d.key == "containerd")
    assert f"{archive}: sha256" in str(info.value) and "does not match" in str(info.value)
    assert not nodes.path("master", "/usr/local/bin/containerd").exists()
    assert not nodes.path("master", f"/var/cache/labctl/releases/{archive}").exists()  # removed, fetched anew next time
