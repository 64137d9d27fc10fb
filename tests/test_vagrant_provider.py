"""The Vagrant provider against a fake `vagrant` on PATH (tests/doubles/fakevagrant/vagrant, a TEST
DOUBLE that keeps machines the way Vagrant 2.3.4 does and answers in its output forms).

Upstream facts these tests pin (checked at the source of the versions installed here):
- python-vagrant 1.0.0 ``vagrant/__init__.py`` ``_run_vagrant_command``/``_stream_vagrant_command``
  send Vagrant's stderr to ``err_cm`` only — so labctl runs vagrant itself and reads both streams.
- Vagrant 2.3.4 ``lib/vagrant/environment.rb`` honours VAGRANT_CWD, VAGRANT_VAGRANTFILE and
  VAGRANT_DOTFILE_PATH; vagrant-libvirt 0.11.2 ``lib/vagrant-libvirt/config.rb`` ``_default_uri``
  takes LIBVIRT_DEFAULT_URI when the Vagrantfile sets no URI.
- Vagrant 2.3.4 ``lib/vagrant/util/curl_helper.rb`` draws the download as ``\\r\\033[K`` +
  ``Progress: N% (Rate: …)`` with no newline; ``templates/commands/ssh_config/config.erb`` prints one
  ``IdentityFile`` line per key and ``ProxyCommand`` unquoted.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fake_vagrant import BIN, fake_vagrant  # noqa: F401  (fixture)

from labctl.providers.vagrant import (
    VagrantError,
    VagrantProvider,
    format_ssh_config,
    hosts_from_ssh_config,
    parse_ssh_config,
)
from labctl.providers.vagrant_run import SCRUBBED_ENV, split_pieces, vagrant_env
from labctl.spec import LabSpec

REPO = Path(__file__).resolve().parent.parent


def provider(root: Path, spec: LabSpec | None = None, echo=None) -> VagrantProvider:
    p = VagrantProvider(spec or LabSpec.default(), root, log_path=root / "logs" / "test.log", echo=echo)
    p.render()
    return p


# ---- item 1: Vagrant's error reaches the console ---------------------------------------------------
@pytest.mark.parametrize("command", ["up", "status", "ssh-config"])
def test_vagrants_stderr_is_in_the_error_in_order_with_timestamps(tmp_path, fake_vagrant, monkeypatch, command):  # noqa: F811
    p = provider(tmp_path / "lab")
    if command == "ssh-config":
        p.up()
    monkeypatch.setenv(
        "FAKE_VAGRANT_FAIL",
        f"{command}:The IP address configured for the host-only network is not within the\\nallowed ranges.",
    )
    p = provider(tmp_path / "lab")  # the environment is read when the provider is made
    with pytest.raises(VagrantError) as err:
        {"up": p.up, "status": p.status, "ssh-config": lambda: p.ssh_config(["master"])}[command]()
    message = str(err.value)
    assert f"`vagrant {command}" in message and "failed (exit 1)" in message
    first = message.index("The IP address configured")
    second = message.index("allowed ranges.")
    assert first < second  # in the order Vagrant printed them
    assert "s] The IP address configured" in message  # each line with the seconds it came at
    log = (tmp_path / "lab" / "logs" / "test.log").read_text()
    assert "stderr: The IP address configured" in log


def test_the_log_keeps_both_streams_and_the_console_only_headlines(tmp_path, fake_vagrant):  # noqa: F811
    shown: list[str] = []
    p = provider(tmp_path / "lab", echo=shown.append)
    p.up()
    assert "    master: Creating image (snapshot of base box volume)." in shown
    assert not any("-- Name" in line for line in shown)  # libvirt's domain detail: log only
    log = (tmp_path / "lab" / "logs" / "test.log").read_text()
    assert "master: -- Name: master" in log and "vagrant exited 0" in log


# ---- item 13: box download progress -----------------------------------------------------------
def test_split_pieces_tells_lines_from_redraws():
    pieces, rest = split_pieces("a\r\nb\n\r\x1b[K  box: Progress: 5%\rpart")
    assert pieces == [("a", False), ("b", False), ("", True), ("\x1b[K  box: Progress: 5%", True)]
    assert rest == "part"
    pieces, rest = split_pieces("x\r")  # a trailing \r may be half of \r\n: wait for more
    assert pieces == [] and rest == "x\r"


def test_box_download_progress_reaches_the_console(tmp_path, fake_vagrant, monkeypatch):  # noqa: F811
    monkeypatch.setenv("FAKE_VAGRANT_PROGRESS", "1")
    shown: list[str] = []
    provider(tmp_path / "lab", echo=shown.append).up()
    progress = [line for line in shown if "Progress:" in line]
    assert progress[0].startswith("    box: Progress: 0% (Rate: 9.9M/s")
    assert progress[-1].startswith("    box: Progress: 100%")
    assert len(progress) >= 5  # one per 10 % step crossed: 0, 13, 26, 51, 77, 100
    assert not any("\x1b" in line or "\r" in line for line in shown)
    log = (tmp_path / "lab" / "logs" / "test.log").read_text()
    assert "box: Progress: 100%" in log


# ---- item 2: nothing inherited redirects Vagrant ------------------------------------------------
HOSTILE = {
    "VAGRANT_CWD": "other",
    "VAGRANT_VAGRANTFILE": "Other.Vagrantfile",
    "VAGRANT_DOTFILE_PATH": "other-dot",
    "LIBVIRT_DEFAULT_URI": "qemu:///session",
    "VAGRANT_PREFERRED_PROVIDERS": "docker",
    "VAGRANT_FORCE_COLOR": "1",
}


def test_a_hostile_environment_never_reaches_vagrant(tmp_path, fake_vagrant, monkeypatch):  # noqa: F811
    other = tmp_path / "other"  # another project, with a machine of its own
    (other / ".vagrant" / "machines" / "db" / "virtualbox").mkdir(parents=True)
    (other / ".vagrant" / "machines" / "db" / "virtualbox" / "id").write_text("precious")
    (other / "Vagrantfile").write_text('Vagrant.configure("2") do |config|\n  config.vm.define "db"\nend\n')
    for key, value in HOSTILE.items():
        monkeypatch.setenv(key, str(tmp_path / value) if key == "VAGRANT_CWD" else value)
    p = provider(tmp_path / "lab")
    p.up()
    assert [m.state for m in p.status()] == ["running"] * 3
    p.ssh_config()
    p.halt()
    p.destroy()
    calls = fake_vagrant.calls()
    assert {c["argv"][0] for c in calls} == {"up", "status", "ssh-config", "halt", "destroy"}
    for call in calls:
        assert not set(call["env"]) & set(SCRUBBED_ENV), call
        assert call["root"] == str(tmp_path / "lab")
        assert call["env"]["VAGRANT_DEFAULT_PROVIDER"] == "virtualbox"
    assert (other / ".vagrant" / "machines" / "db" / "virtualbox" / "id").read_text() == "precious"


def test_an_explicit_env_cannot_bring_a_scrubbed_variable_back():
    env = vagrant_env({"VAGRANT_CWD": "/x", "HOME": "/h"}, "libvirt", {"VAGRANT_DOTFILE_PATH": "/y", "VAGRANT_HOME": "/vh"})
    assert "VAGRANT_CWD" not in env and "VAGRANT_DOTFILE_PATH" not in env
    assert env["VAGRANT_HOME"] == "/vh" and env["HOME"] == "/h" and env["VAGRANT_DEFAULT_PROVIDER"] == "libvirt"


def test_vagrant_does_not_wait_for_its_version_check():
    """Vagrant 2.3.4 lib/vagrant/cli.rb calls CheckpointClient#display before the command, which joins
    the version-check thread for up to 10 s (util/checkpoint_client.rb) unless VAGRANT_CHECKPOINT_DISABLE."""
    assert vagrant_env({}, "virtualbox")["VAGRANT_CHECKPOINT_DISABLE"] == "1"


def test_the_libvirt_vagrantfile_names_its_uri(tmp_path):
    spec = LabSpec.from_dict({"provider": {"type": "libvirt"}})
    text = provider(tmp_path, spec).vagrantfile.read_text()
    assert 'libvirt.uri = "qemu:///system"' in text


# ---- item 3: Ctrl-C during `vagrant up` --------------------------------------------------------
CTRL_C_SCRIPT = """\
import sys, time
from pathlib import Path
from labctl.lablock import LabLock
from labctl.providers.vagrant import VagrantProvider
from labctl.spec import LabSpec
root = Path(sys.argv[1])
p = VagrantProvider(LabSpec.default(), root, log_path=root / "logs" / "up.log", echo=lambda s: print(s, flush=True))
p.render()
with LabLock(root, "llm-lab", "labctl create"):
    try:
        p.up(["master"])
    finally:
        (root / "lock-released-after").write_text(str(time.time()))
"""


def test_ctrl_c_waits_for_vagrants_clean_up_holding_the_lock(tmp_path, fake_vagrant, monkeypatch):  # noqa: F811
    """A terminal's Ctrl-C goes to the whole foreground process group: here labctl runs in a group of
    its own and the test signals that group, as the terminal would, twice. Vagrant (own session) gets
    one SIGINT from labctl, cleans up for 1.5 s, and labctl keeps the lock and the log until it exits."""
    from labctl.lablock import LabBusy, LabLock

    root = tmp_path / "lab"
    root.mkdir()
    monkeypatch.setenv("FAKE_VAGRANT_UP_SECONDS", "60")
    monkeypatch.setenv("FAKE_VAGRANT_CLEANUP_SECONDS", "1.5")
    script = tmp_path / "up.py"
    script.write_text(CTRL_C_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(root)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        log = root / "logs" / "up.log"
        while time.monotonic() < deadline and "Creating image" not in (log.read_text() if log.exists() else ""):
            time.sleep(0.05)
        assert "Creating image" in log.read_text()
        os.killpg(proc.pid, signal.SIGINT)  # the terminal's Ctrl-C
        signalled = time.time()
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)  # impatient: a second Ctrl-C is not passed on
        time.sleep(0.2)
        assert proc.poll() is None, "labctl must not exit while Vagrant cleans up"
        with pytest.raises(LabBusy):
            LabLock(root, "llm-lab").acquire()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    cleaned = float((root / "cleaned-up").read_text())
    released = float((root / "lock-released-after").read_text())
    assert signalled < cleaned <= released  # the lock was kept until Vagrant had cleaned up
    assert proc.returncode != 0
    assert "VagrantInterrupted" in err and "interrupted" in err
    assert "labctl keeps the lab lock" in out and "still waiting for Vagrant" in out
    text = log.read_text()
    assert "Waiting for cleanup before exiting" in text and "Removing domain" in text  # logged to the end
    assert text.count("SIGINT sent once") == 1
    with LabLock(root, "llm-lab"):  # free again
        pass


# ---- item 10: ssh-config: every IdentityFile, ProxyCommand -------------------------------------
VAGRANT_SSH_CONFIG = """\
Host master
  HostName 192.168.121.7
  User vagrant
  Port 22
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile /lab/.vagrant/machines/master/libvirt/private_key
  IdentityFile "/home/a b/.vagrant.d/insecure_private_keys/vagrant.key.ed25519"
  IdentitiesOnly yes
  LogLevel FATAL
  ProxyCommand ssh 'virt.example' -l 'admin' -i '/home/a b/.ssh/id' -W %h:%p
"""


def test_ssh_config_keeps_every_identity_file_and_the_proxy_command():
    keys = parse_ssh_config(VAGRANT_SSH_CONFIG)["master"]
    assert keys["IdentityFile"].split("\n") == [
        "/lab/.vagrant/machines/master/libvirt/private_key",
        "/home/a b/.vagrant.d/insecure_private_keys/vagrant.key.ed25519",
    ]
    assert keys["ProxyCommand"] == "ssh 'virt.example' -l 'admin' -i '/home/a b/.ssh/id' -W %h:%p"
    spec = LabSpec.default()
    config = {n.name: dict(keys) for _, n in spec.all_nodes()}
    host = hosts_from_ssh_config(spec, config)["master"]
    assert host.key_file == Path("/lab/.vagrant/machines/master/libvirt/private_key")
    assert len(host.key_files) == 2 and host.proxy_command.endswith("-W %h:%p")


@pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH client not installed")
def test_openssh_reads_the_written_ssh_config_as_vagrant_meant_it(tmp_path):
    """`ssh -G` prints the configuration OpenSSH would use: both keys, and the ProxyCommand without
    the quotes a quoted line would have kept (OpenSSH passes that line to the shell as it is)."""
    path = tmp_path / "ssh-config"
    path.write_text(format_ssh_config(parse_ssh_config(VAGRANT_SSH_CONFIG)))
    shown = subprocess.run(["ssh", "-G", "-F", str(path), "master"], capture_output=True, text=True, check=True).stdout
    lines = shown.splitlines()
    assert "identityfile /lab/.vagrant/machines/master/libvirt/private_key" in lines
    assert "identityfile /home/a b/.vagrant.d/insecure_private_keys/vagrant.key.ed25519" in lines
    assert "proxycommand ssh 'virt.example' -l 'admin' -i '/home/a b/.ssh/id' -W %h:%p" in lines


def test_the_transport_expands_proxy_command_tokens_like_openssh():
    from labctl.transport.base import Host
    from labctl.transport.ssh import expand_proxy_command

    host = Host("master", "192.168.121.7", port=2222, user="vagrant", proxy_command="ssh jump -W %h:%p # 100%% %r")
    assert expand_proxy_command(host) == "ssh jump -W 192.168.121.7:2222 # 100% vagrant"


# ---- item 11: lab.yaml edits on VMs that exist ----------------------------------------------------
def test_a_changed_vm_is_named_with_what_to_do(tmp_path, fake_vagrant):  # noqa: F811
    root = tmp_path / "lab"
    p = provider(root)
    p.up()
    p.record_applied(["nfs", "master", "worker1"])
    assert p.stale_machines(["nfs", "master", "worker1"]) == []
    data = LabSpec.default().model_dump(mode="json", exclude_none=True)
    data["nodes"]["master"].update(cpus=6, memory_mib=12288)
    data["nodes"]["workers"][0]["ip"] = "192.168.33.120"
    bigger = LabSpec.from_dict(data)
    problems = VagrantProvider(bigger, root, log_path=root / "l.log").stale_machines(["nfs", "master", "worker1"])
    assert len(problems) == 2
    master = next(x for x in problems if x.startswith("master:"))
    assert "cpus 4 → 6" in master and "memory_mib 8192 → 12288" in master and "vagrant reload master" in master
    worker = next(x for x in problems if x.startswith("worker1:"))
    assert "ip 192.168.33.101 → 192.168.33.120" in worker and "vagrant destroy -f worker1" in worker


def test_create_refuses_to_run_steps_on_a_stale_vm(tmp_path, fake_vagrant):  # noqa: F811
    from labctl import lifecycle
    from labctl.errors import LifecycleError
    from labctl.lab import Console, Lab
    from labctl.plan import build_plan

    root = tmp_path / "lab"
    spec = LabSpec.default()
    lab = Lab.of(spec, state_dir=root)
    p = provider(root, spec)
    step = build_plan(spec, state_dir=root).step("provider.up")
    lifecycle.bring_up_hosts(lab, p, Console(), step)  # brings up and records
    data = spec.model_dump(mode="json", exclude_none=True)
    data["nodes"]["nfs"]["memory_mib"] = 2048
    changed = LabSpec.from_dict(data)
    lab2 = Lab.of(changed, state_dir=root)
    p2 = VagrantProvider(changed, root, log_path=root / "l.log")
    with pytest.raises(LifecycleError, match=r"nfs: lab.yaml changed \(memory_mib 1024 → 2048\)"):
        lifecycle.bring_up_hosts(lab2, p2, Console(), step)
    # The first `up` only (VirtualBox: the first VM alone, then one process per other VM); none after.
    assert sorted(c for c in fake_vagrant.commands() if c[0] == "up") == [
        ["up", m, "--provider=virtualbox"] for m in ("master", "nfs", "worker1")
    ]


def test_fake_vagrant_is_a_test_double():
    assert "TEST DOUBLE" in (BIN / "vagrant").read_text()
    assert textwrap.dedent((BIN / "vagrant").read_text()).startswith("#!/usr/bin/env python3")


@pytest.mark.validators
@pytest.mark.skipif(shutil.which("vagrant") is None, reason="vagrant is not installed")
def test_real_vagrant_in_a_hostile_environment_sees_the_labs_machines(tmp_path, monkeypatch):
    """Real Vagrant (2.3.4 here): with VAGRANT_CWD/VAGRANT_DOTFILE_PATH/VAGRANT_VAGRANTFILE pointing at
    another project, `vagrant status` through the provider still lists the lab's machines — the
    unscrubbed variables would make it list that project's `db` instead."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "Vagrantfile").write_text('Vagrant.configure("2") { |c| c.vm.define "db" }\n')
    monkeypatch.setenv("VAGRANT_CWD", str(other))
    monkeypatch.setenv("VAGRANT_DOTFILE_PATH", str(other / ".dot"))
    monkeypatch.setenv("VAGRANT_VAGRANTFILE", "Vagrantfile")
    monkeypatch.setenv("LIBVIRT_DEFAULT_URI", "qemu:///session")
    monkeypatch.setenv("VAGRANT_HOME", str(tmp_path / "vagrant-home"))
    monkeypatch.setenv("VAGRANT_CHECKPOINT_DISABLE", "1")
    p = provider(tmp_path / "lab", LabSpec.from_dict({"provider": {"type": "libvirt"}}))
    assert [(m.name, m.state) for m in p.status()] == [("nfs", "not_created"), ("master", "not_created"), ("worker1", "not_created")]
    assert not (other / ".dot").exists()


def test_doctor_runs_vagrant_without_the_hostile_variables(tmp_path, fake_vagrant, monkeypatch):  # noqa: F811
    from labctl import doctor

    for key, value in HOSTILE.items():
        monkeypatch.setenv(key, value)
    doctor.run_doctor(LabSpec.from_dict({"provider": {"type": "libvirt"}}), tmp_path / "lab")
    calls = fake_vagrant.calls()
    assert calls, "doctor asked vagrant nothing"
    for call in calls:
        assert not set(call["env"]) & set(SCRUBBED_ENV), call
