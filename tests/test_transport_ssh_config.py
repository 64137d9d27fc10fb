"""SSHTransport gives every connection a Fabric config of its own (no sshd needed).

fabric 3.2.3's ``Connection.__init__`` assigns ``self.inline_ssh_env``, which is not an attribute of
the class, so it is written into the config and invoke 2.2 rebuilds the config's merged data
(invoke/config.py ``DataProxy.__setattr__`` → ``_modify`` → ``merge``). With one config shared by
the threads that connect to 20 hosts at once, a thread read it while it was being rebuilt and failed
with "No attribute or config key found for 'gateway'" (seen on the 20-host runner benchmark).
"""

from __future__ import annotations

import pytest

import labctl.transport.ssh as ssh
from labctl.transport.base import Host


def test_each_connection_gets_its_own_config_without_ssh_config_files(monkeypatch):
    configs = []

    class Refused(ssh.Connection):  # the real constructor; only the network part is refused
        def open(self):  # type: ignore[no-untyped-def]
            configs.append(self.config)
            raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(ssh, "Connection", Refused)
    transport = ssh.SSHTransport()
    for name in ("a", "b"):
        with pytest.raises(ssh.TransportError, match="connection refused"):
            transport.connection(Host(name, "127.0.0.1", port=1))
    assert len(configs) == 2 and configs[0] is not configs[1]
    assert all(c.load_ssh_configs is False for c in configs)  # ~/.ssh/config never rewrites the lab's hosts


def test_a_fabric_connection_writes_into_its_config():
    """Why the config is not shared: constructing a Connection modifies the config it is given."""
    config = ssh._config()
    ssh.Connection("127.0.0.1", user="root", config=config, connect_kwargs={})
    assert "inline_ssh_env" in config._modifications
