"""A step's `on_interrupt` on real OpenSSH nodes (netns, tests/sshnodes.py), through the real CLI: the
step starts a detached `setsid` job (its own session and process group, as 26-image-pull's
background pull does), a later step is running when `labctl create` gets Ctrl-C / SIGTERM, and the
job's whole group is gone from every node afterwards while labctl exits 130. Without the hook the
same job outlives labctl (the control case), which is what issue #14's pull did before.

The test playbook replaces the shipped ones through a `sitecustomize` in the labctl process only
(labctl.resources.playbooks_dir), so the rest of `create` — provider ssh, preflight, the runner, the
SSH transport, the exit code — is the product's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
NAMES = ["master", "nfs"]

HOOK = """\
pid=$(cat /var/tmp/labctl-test-job/pid 2>/dev/null || true)
if [ -z "$pid" ]; then echo "no job"; exit 0; fi
kill -TERM -- "-$pid" 2>/dev/null || true
rm -f /var/tmp/labctl-test-job/pid
echo "stopped the test job (group $pid)"
"""


def playbook(with_hook: bool) -> dict:
    start = {
        "name": "start-job",
        "title": "Start a detached job",
        "hosts": "all",
        # Two processes in the job's group (the session leader and a child), like the pull's xargs.
        "run": "install -d /var/tmp/labctl-test-job\n"
        "setsid nohup bash -c 'sleep 3001 & sleep 3002; wait' >/dev/null 2>&1 < /dev/null &\n"
        "echo $! > /var/tmp/labctl-test-job/pid\n",
    }
    if with_hook:
        start["on_interrupt"] = HOOK
    slow = {"name": "slow", "title": "A slow step", "hosts": "all", "run": "sleep 60"}
    return {"title": "Interrupt hook test", "purpose": "test", "after": [], "steps": [start, slow]}


SITECUSTOMIZE = """\
from pathlib import Path

import labctl.resources

labctl.resources.playbooks_dir = lambda: Path({folder!r})
"""


def write_lab(nodes, tmp: Path, with_hook: bool) -> tuple[list[str], dict[str, str]]:
    master, nfs = nodes["master"], nodes["nfs"]
    base = master.address.rsplit(".", 1)[0]

    def node(n) -> dict:
        return {"name": n.name, "ip": n.address, "cpus": 1, "memory_mib": 1024,
                "ssh_user": n.user, "ssh_port": n.port, "ssh_key": str(n.key_file)}  # fmt: skip

    spec = {
        "name": "hooks",
        "offline": True,
        "provider": {"type": "ssh", "verify_host_keys": True},
        "network": {"subnet": f"{base}.0/24", "metallb_pool": f"{base}.2-{base}.5"},
        "nodes": {"master": node(master), "workers": [], "nfs": node(nfs)},
    }
    (tmp / "lab.yaml").write_text(yaml.safe_dump(spec))
    books = tmp / "playbooks"
    books.mkdir()
    (books / "10-job.yaml").write_text(yaml.safe_dump(playbook(with_hook), sort_keys=False))
    shim = tmp / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SITECUSTOMIZE.format(folder=str(books)))
    home = tmp / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "known_hosts").write_text(nodes.known_hosts.read_text())
    env = {**os.environ, "HOME": str(home), "LABCTL_HOME": str(tmp / "labctl"),
           "PYTHONPATH": f"{shim}{os.pathsep}{ROOT}", "COLUMNS": "200"}  # fmt: skip
    argv = [sys.executable, "-m", "labctl.cli", "create", "-f", str(tmp / "lab.yaml"), "--only", "job.*"]
    return argv, env


def running(nodes, name: str, pattern: str) -> bool:
    return any(pattern in line for line in nodes.exec(name, "ps -eo args").stdout.splitlines())


def wait_for(what, timeout: float, why: str) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, why
        time.sleep(0.1)


@pytest.mark.parametrize(
    ("sig", "with_hook"),
    [(signal.SIGINT, True), (signal.SIGTERM, True), (signal.SIGINT, False)],
    ids=["SIGINT", "SIGTERM", "control-without-hook"],
)
def test_ctrl_c_stops_a_steps_detached_job_on_every_node(ssh_nodes, tmp_path, sig, with_hook):
    nodes = ssh_nodes(NAMES)
    argv, env = write_lab(nodes, tmp_path, with_hook)
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for name in NAMES:  # the slow step runs: the job's step returned, the job lives on
            wait_for(lambda n=name: running(nodes, n, "sleep 60"), 60, f"the slow step never started on {name}")
            assert running(nodes, name, "sleep 3001") and running(nodes, name, "sleep 3002")
        interrupted = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out + err
    assert time.monotonic() - interrupted < 10  # bounded: the hooks run at once, 5 s each at most
    log = sorted((tmp_path / "labctl" / "hooks" / "logs").glob("create-*.log"))[-1].read_text()
    for name in NAMES:
        if with_hook:
            wait_for(lambda n=name: not running(nodes, n, "sleep 300"), 3, f"the job outlived labctl on {name}:\n{out}{err}\n{log}")
            assert f"{name}: job.start-job on interrupt: stopped the test job (group " in out
            assert f"job.start-job on {name}: on_interrupt: exit 0" in log
            assert not nodes.path(name, "/var/tmp/labctl-test-job/pid").exists()
        else:  # the control: the very job the hook stops does outlive labctl without it
            time.sleep(1)
            assert running(nodes, name, "sleep 3001") and running(nodes, name, "sleep 3002")
            nodes.exec(name, 'kill -TERM -- "-$(cat /var/tmp/labctl-test-job/pid)"')
            assert "on_interrupt" not in log


def test_a_node_gone_dark_does_not_hold_up_ctrl_c(ssh_nodes, tmp_path):
    """nfs's link goes down while the slow step runs: Ctrl-C still ends labctl (130) within the
    bound, master's job is stopped, and nfs is named as not answering instead of hanging the exit."""
    nodes = ssh_nodes(NAMES)
    argv, env = write_lab(nodes, tmp_path, with_hook=True)
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for name in NAMES:
            wait_for(lambda n=name: running(nodes, n, "sleep 60"), 60, f"the slow step never started on {name}")
        subprocess.run(["ip", "link", "set", nodes["nfs"].veth, "down"], check=True)
        interrupted = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        subprocess.run(["ip", "link", "set", nodes["nfs"].veth, "up"], check=False)
    took = time.monotonic() - interrupted
    assert proc.returncode == 130, out + err
    wait_for(lambda: not running(nodes, "master", "sleep 300"), 3, f"the job outlived labctl on master:\n{out}")
    assert "master: job.start-job on interrupt: stopped the test job" in out
    assert "nfs: job.start-job on interrupt: no answer within" in out or "nfs: job.start-job on interrupt: FAILED" in out
    print(f"Ctrl-C with one node dark: labctl exited after {took:.1f}s")
    assert took < 18, out + err  # stop 5 s + hooks 6 s + reports 3 s, each phase in parallel
    nodes.exec("nfs", 'kill -TERM -- "-$(cat /var/tmp/labctl-test-job/pid)"')
