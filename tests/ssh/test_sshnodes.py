"""The netns node fixture itself: what every ssh-tier test relies on."""

from __future__ import annotations

import subprocess


def _ssh(nodes, name: str, command: str) -> subprocess.CompletedProcess:
    node = nodes[name]
    return subprocess.run(
        ["ssh", "-i", str(node.key_file), "-o", f"UserKnownHostsFile={nodes.known_hosts}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
         f"{node.user}@{node.address}", command],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_nodes_have_own_name_root_and_sudo(ssh_nodes):
    nodes = ssh_nodes(["alpha", "beta"], files={"/usr/local/bin/shim-probe": (b"#!/bin/sh\necho shim $(hostname)\n", 0o755)})
    for name in ("alpha", "beta"):
        res = _ssh(nodes, name, "hostname; sudo -n id -u; shim-probe; test -s /etc/resolv.conf || echo empty-resolv")
        assert res.returncode == 0, res.stderr
        assert res.stdout.split() == [name, "0", "shim", name, "empty-resolv"]
    # Separate roots: a file written on one node is not on the other.
    assert _ssh(nodes, "alpha", "echo only-alpha | sudo tee /etc/marker").returncode == 0
    assert nodes.read("alpha", "/etc/marker") == b"only-alpha\n"
    assert not nodes.path("beta", "/etc/marker").exists()
    assert nodes.exec("beta", "hostname").stdout.strip() == "beta"


def test_kill_drops_sessions_and_restart_keeps_state(ssh_nodes):
    nodes = ssh_nodes(["gamma"])
    assert _ssh(nodes, "gamma", "sudo touch /var/tmp/kept").returncode == 0
    nodes.kill("gamma")
    assert nodes.sshd_pid("gamma") is None
    assert _ssh(nodes, "gamma", "true").returncode == 255  # ssh: connection refused
    nodes.restart("gamma")
    res = _ssh(nodes, "gamma", "test -e /var/tmp/kept && echo kept")
    assert res.stdout.strip() == "kept", res.stderr


def test_close_removes_namespaces_and_mounts(ssh_nodes):
    nodes = ssh_nodes(["delta"])
    node = nodes["delta"]
    nodes.close()
    assert node.netns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert subprocess.run(["ip", "link", "show", node.veth], capture_output=True).returncode != 0
    assert subprocess.run(["mountpoint", "-q", str(node.root)]).returncode != 0
