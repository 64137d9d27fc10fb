"""Steps with ``reboot: true`` (the NVIDIA driver): the runner reboots the host, survives the lost
connection, waits for the host to answer from a new boot, then runs the check again.

A netns node has no kernel of its own to reboot. What a reboot looks like from labctl's side is
reproduced instead: the node's `systemctl reboot` (a TEST DOUBLE written here) stops sshd, which is
PID 1 of the node, so every session dies; a watcher then starts sshd again with tests/sshnodes.py
(same address, same host key) and /run comes back as a fresh tmpfs, as after a real boot. The
"driver" is a file the double moves at "boot" time, so the check passes only on the new boot.
"""

from __future__ import annotations

import io
import threading
import time

import pytest
from rich.console import Console

from labctl.plan import HostCommands, Plan, PlannedStep
from labctl.runner import Runner, StepFailed
from labctl.transport.ssh import SSHTransport

# TEST DOUBLE of systemctl: `reboot` = the driver module becomes loaded at the next boot, then the
# machine goes down (sshd, the node's PID 1, stops: every session and command on the node dies).
SYSTEMCTL = b"""#!/bin/sh
[ "$1" = reboot ] || { echo "systemctl test double: only reboot" >&2; exit 1; }
echo "$(date +%s.%N)" >> /var/log/reboots
if [ -e /var/tmp/driver-installed ]; then mv /var/tmp/driver-installed /var/tmp/driver-loaded; fi
kill -TERM 1
"""


def driver_step(timeout: int = 60) -> PlannedStep:
    return PlannedStep(
        id="node-prep.install-fake-driver", playbook="node-prep", title="Install a driver that needs a reboot",
        purpose="", kind="remote", timeout=timeout, reboot=True, done_reason="the driver is loaded",
        commands=(HostCommands("worker1", "test -e /var/tmp/driver-loaded", "touch /var/tmp/driver-installed"),),
    )  # fmt: skip


def after_step() -> PlannedStep:
    return PlannedStep(
        id="node-prep.after", playbook="node-prep", title="Runs on the new boot", purpose="", kind="remote",
        commands=(HostCommands("worker1", "", "cat /var/tmp/driver-loaded >/dev/null && echo new-boot"),),
    )  # fmt: skip


def watch_and_bring_back(nodes, name: str, stop: threading.Event, delay: float = 1.0) -> threading.Thread:
    """Start the node's sshd again after it went down, like a machine finishing its boot."""

    def loop() -> None:
        while not stop.is_set():
            if nodes.sshd_pid(name) is None:
                time.sleep(delay)  # the "boot" takes a moment: labctl's first polls must fail
                nodes.start(name)
            time.sleep(0.2)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def run(nodes, p: Plan, tmp_path, label: str):
    out = io.StringIO()
    transport = SSHTransport()
    try:
        runner = Runner(
            transport, nodes.hosts(), log_path=tmp_path / f"{label}.log",
            console=Console(file=out, force_terminal=False, width=200),
        )  # fmt: skip
        try:
            return runner.run(p, {}), out.getvalue(), None
        except StepFailed as err:
            return None, out.getvalue(), err
    finally:
        transport.close()


@pytest.mark.ssh
def test_a_reboot_step_waits_for_the_new_boot_then_checks_again(ssh_nodes, tmp_path):
    nodes = ssh_nodes(["worker1"], files={"/usr/local/sbin/systemctl": (SYSTEMCTL, 0o755)})
    stop = threading.Event()
    watcher = watch_and_bring_back(nodes, "worker1", stop)
    try:
        p = Plan(lab="reboot", provider="ssh", hosts=(), steps=(driver_step(), after_step()))
        report, console, err = run(nodes, p, tmp_path, "first")
        assert err is None, console
        assert [o.status for s in report.steps for o in s.outcomes] == ["done", "done"]
        assert "worker1: rebooting; waiting up to 60s" in console
        assert "worker1: back after its reboot" in console
        assert nodes.read("worker1", "/var/log/reboots").decode().count("\n") == 1
        # the check ran again on the new boot (the log records it) and the next step ran there too
        log = (tmp_path / "first.log").read_text()
        assert "check after the reboot" in log
        # a second create skips the step: no second reboot
        report2, console2, err2 = run(nodes, p, tmp_path, "second")
        assert err2 is None, console2
        assert report2.steps[0].outcomes[0].status == "skipped"
        assert nodes.read("worker1", "/var/log/reboots").decode().count("\n") == 1
    finally:
        stop.set()
        watcher.join(timeout=10)


@pytest.mark.ssh
def test_a_host_that_does_not_come_back_fails_the_step_with_a_deadline(ssh_nodes, tmp_path):
    nodes = ssh_nodes(["worker1"], files={"/usr/local/sbin/systemctl": (SYSTEMCTL, 0o755)})
    p = Plan(lab="reboot", provider="ssh", hosts=(), steps=(driver_step(timeout=8), after_step()))
    started = time.monotonic()
    _report, console, err = run(nodes, p, tmp_path, "gone")
    assert err is not None, console
    assert time.monotonic() - started < 40
    text = str(err)
    assert "node-prep.install-fake-driver" in text and "worker1" in text
    assert "did not come back from its reboot within 8s" in text
