"""SSHTransport through a ProxyCommand (vagrant-libvirt on a remote libvirt host prints one in
`vagrant ssh-config`; vagrant-libvirt 0.11.2 config.rb finalize_proxy_command ends it with
``-W %h:%p``). The host's own address here does not resolve: only the proxy reaches the node."""

from __future__ import annotations

import dataclasses
import shutil

import pytest

from labctl.transport.ssh import SSHTransport


@pytest.mark.skipif(shutil.which("nc") is None, reason="nc (netcat) is not installed")
def test_connects_through_the_proxy_command(ssh_nodes, tmp_path):
    nodes = ssh_nodes(["solo"])
    real = nodes.hosts()["solo"]
    proxied = dataclasses.replace(
        real,
        address="solo.lab.invalid",  # unresolvable: a direct connection would fail
        # OpenSSH runs `exec <ProxyCommand>` in the shell (sshconnect.c), and so does the transport:
        # a command list needs its own shell.
        proxy_command=f"sh -c \"touch '{tmp_path}/proxy used by %r'; exec nc {real.address} %p\"",
    )
    transport = SSHTransport()
    try:
        result = transport.run(proxied, "hostname", sudo=False, timeout=30)
    finally:
        transport.close()
    assert result.ok, result
    assert result.stdout.strip() == "solo"
    assert (tmp_path / f"proxy used by {real.user}").exists()
