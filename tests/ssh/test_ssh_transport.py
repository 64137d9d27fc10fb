"""SSHTransport on a real sshd node: stdin-fed scripts, the one-round-trip guarded path, uploads."""

from __future__ import annotations

import pytest

from labctl.transport.ssh import SSHTransport


@pytest.fixture
def node(ssh_nodes):
    nodes = ssh_nodes(["solo"])
    transport = SSHTransport()
    yield nodes, nodes.hosts()["solo"], transport
    transport.close()


def test_run_feeds_script_and_env_on_stdin(node):
    _nodes, host, t = node
    value = "it's \"quoted\" $HOME `x`\nsecond line"
    res = t.run(host, 'printf "%s" "$LABCTL_VALUE"; id -u; read -r line || echo "stdin is /dev/null"', env={"LABCTL_VALUE": value})
    assert res.ok, res
    assert res.stdout == value + "0\nstdin is /dev/null\n"
    assert t.run(host, "id -un", sudo=False).stdout.strip() == "vagrant"


def test_guarded_check_passes_in_one_exec(node):
    nodes, host, t = node
    check, run = t.run_guarded(host, "echo the-fact; test -d /etc", "touch /var/tmp/ran")
    assert check.ok and run is None
    assert check.stdout == "the-fact\n"
    assert not nodes.path("solo", "/var/tmp/ran").exists()


def test_guarded_failing_check_runs_the_script_with_outputs_apart(node):
    _nodes, host, t = node
    check, run = t.run_guarded(
        host, "echo checking; echo check-err >&2; test -f /var/tmp/flag", "echo running; echo run-err >&2; touch /var/tmp/flag"
    )
    assert check.exit_code == 1 and check.stdout == "checking\n" and check.stderr == "check-err\n"
    assert run is not None and run.ok and run.stdout == "running\n" and run.stderr == "run-err\n"
    check2, run2 = t.run_guarded(host, "test -f /var/tmp/flag", "exit 9")
    assert check2.ok and run2 is None


def test_guarded_check_keeps_errexit(node):
    # A failing first line must fail the check even though the next line succeeds.
    _nodes, host, t = node
    check, run = t.run_guarded(host, "false\ntrue", "echo ran")
    assert check.exit_code == 1 and run is not None and run.stdout == "ran\n"


def test_guarded_timeout_in_check_is_a_timeout(node):
    _nodes, host, t = node
    check, run = t.run_guarded(host, "sleep 30", "true", timeout=1)
    assert check.timed_out and run is None


def test_put_installs_with_mode_and_owner(node):
    nodes, host, t = node
    t.put(host, b"a=1\n", "/etc/labctl/sub/dir/conf", mode=0o640)
    assert nodes.exec("solo", "stat -c '%a %U' /etc/labctl/sub/dir/conf", check=True).stdout.split() == ["640", "root"]
    assert nodes.read("solo", "/etc/labctl/sub/dir/conf") == b"a=1\n"
    assert nodes.exec("solo", "ls -A /home/vagrant | grep -c labctl-upload || true").stdout.strip() == "0"
