"""LocalTransport (invoke): the same stdin contract as SSH, on this machine."""

from __future__ import annotations

import os

from labctl.transport.base import Host
from labctl.transport.local import LocalTransport

LOCAL = Host(name="localhost", address="127.0.0.1")


def test_script_and_facts_arrive_on_stdin():
    res = LocalTransport().run(LOCAL, 'echo "$LABCTL_GREETING"; echo to-stderr >&2', sudo=False, env={"LABCTL_GREETING": "it's $x"})
    assert res.ok and res.stdout == "it's $x\n" and res.stderr == "to-stderr\n"


def test_errexit_and_exit_codes():
    res = LocalTransport().run(LOCAL, "false\necho not-reached", sudo=False)
    assert res.exit_code == 1 and res.stdout == "" and not res.timed_out


def test_timeout_is_reported_as_such():
    res = LocalTransport().run(LOCAL, "sleep 20", sudo=False, timeout=1)
    assert res.timed_out and not res.ok and res.duration < 10


def test_put_writes_with_mode(tmp_path):
    dest = tmp_path / "sub" / "secret.env"
    LocalTransport().put(LOCAL, b"K=v\n", str(dest), mode=0o600)
    assert dest.read_bytes() == b"K=v\n" and os.stat(dest).st_mode & 0o777 == 0o600
