"""VMs up in parallel where Vagrant allows it (labctl/providers/vagrant_up.py), against the fake
`vagrant` on PATH (tests/doubles/fakevagrant/vagrant, a TEST DOUBLE) which records each `vagrant up`
process's machines, start and end (FAKE_VAGRANT_UP_LOG), and can hold Vagrant's "fpcollision" lock
the way Vagrant 2.3.4 takes it, without retry (FAKE_VAGRANT_FPCOLLISION_SECONDS).

Upstream facts pinned here (Vagrant 2.3.4 as installed, hashicorp/vagrant; vagrant-libvirt 0.11.2):
- lib/vagrant/batch_action.rb parallelises one `vagrant up` only if every machine's provider was
  registered with ``parallel: true``; plugins/providers/virtualbox/plugin.rb registers
  ``provider(:virtualbox, priority: 6)`` (no parallel), vagrant-libvirt's lib/vagrant-libvirt/plugin.rb
  ``provider('libvirt', parallel: true, box_optional: true)``.
- plugins/providers/virtualbox/action/import_master.rb imports the linked-clone master under
  ``env.lock(..., retry: true)``; handle_forwarded_port_collisions.rb takes ``env.lock("fpcollision")``
  without retry, so a second process fails with EnvironmentLockedError.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from fake_vagrant import fake_vagrant  # noqa: F401  (fixture)
from rich.console import Console

from labctl.providers.vagrant import VagrantError, VagrantProvider
from labctl.spec import LabSpec


def _provider(root: Path, kind: str = "virtualbox") -> tuple[VagrantProvider, list[str]]:
    spec = LabSpec.default()
    if kind != "virtualbox":
        data = spec.model_dump(mode="json", exclude_none=True)
        data["provider"]["type"] = kind
        spec = LabSpec.from_dict(data)
    shown: list[str] = []
    p = VagrantProvider(spec, root, log_path=root / "logs" / "test.log", echo=shown.append)
    p.render()
    return p, shown


def _ups(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def up_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_vagrant: Any) -> Path:  # noqa: F811
    log = tmp_path / "ups.jsonl"
    monkeypatch.setenv("FAKE_VAGRANT_UP_LOG", str(log))
    return log


def test_virtualbox_first_vm_alone_then_the_others_at_the_same_time(tmp_path, monkeypatch, up_log, fake_vagrant):  # noqa: F811
    monkeypatch.setenv("FAKE_VAGRANT_UP_SECONDS", "1.5")
    p, shown = _provider(tmp_path / "lab")
    p.up()
    ups = _ups(up_log)
    assert [u["machines"] for u in ups[:1]] == [["nfs"]] and sorted(u["machines"][0] for u in ups[1:]) == ["master", "worker1"]
    assert all(len(u["machines"]) == 1 and u["exit"] == 0 for u in ups)
    first, rest = ups[0], ups[1:]
    # The box, the linked-clone master and the host-only network come with the first VM: it ends
    # before any other starts. The others overlap: each started before the other ended.
    assert all(first["end"] <= u["start"] for u in rest)
    assert max(u["start"] for u in rest) < min(u["end"] for u in rest)
    assert "    nfs: up alone first (box, linked-clone master, host-only network), then master, worker1 at the same time" in shown
    assert {s.name: s.state for s in p.status()} == {"nfs": "running", "master": "running", "worker1": "running"}
    assert sorted(what for what, _ in p.calls if what.startswith("up")) == [
        "up master --provider=virtualbox", "up nfs --provider=virtualbox", "up worker1 --provider=virtualbox"
    ]


def test_a_parallel_up_that_meets_vagrants_lock_is_brought_up_the_serial_way(tmp_path, monkeypatch, up_log, fake_vagrant):  # noqa: F811
    """Both parallel `up`s want the fpcollision lock: one holds it 3 s, the other fails with Vagrant's
    EnvironmentLockedError text and is brought up again alone once the parallel ones are done."""
    monkeypatch.setenv("FAKE_VAGRANT_FPCOLLISION_SECONDS", "3")
    p, shown = _provider(tmp_path / "lab")
    p.up()
    ups = _ups(up_log)
    assert len(ups) == 4, ups
    parallel, retry = ups[1:3], ups[3]
    failed = [u for u in parallel if u["exit"] != 0]
    assert len(failed) == 1 and retry["machines"] == failed[0]["machines"] and retry["exit"] == 0
    assert retry["start"] >= max(u["end"] for u in parallel)
    assert f"    {failed[0]['machines'][0]}: `vagrant up` met a lock held by another Vagrant process; bringing them up the serial way" in shown
    assert {s.state for s in p.status()} == {"running"}


def test_serial_when_forced_one_vagrant_up_as_before(tmp_path, monkeypatch, up_log, fake_vagrant):  # noqa: F811
    monkeypatch.setenv("LABCTL_VAGRANT_SERIAL", "1")
    p, _ = _provider(tmp_path / "lab")
    p.up()
    assert [c for c in fake_vagrant.commands() if c[0] == "up"] == [["up", "--provider=virtualbox"]]
    assert len(_ups(up_log)) == 1


def test_libvirt_one_vagrant_up_for_all_vms_which_vagrant_parallelises(tmp_path, up_log, fake_vagrant):  # noqa: F811
    p, shown = _provider(tmp_path / "lab", "libvirt")
    p.up()
    assert [c for c in fake_vagrant.commands() if c[0] == "up"] == [["up", "--provider=libvirt"]]
    assert not any("alone first" in line for line in shown)


def test_when_a_vm_of_the_lab_exists_the_pending_ones_all_go_up_at_once(tmp_path, monkeypatch, up_log, fake_vagrant):  # noqa: F811
    """After `destroy --keep-data` the NFS VM is there: box, master and network exist, so the
    master and the worker are brought up together, no VM alone first."""
    monkeypatch.setenv("FAKE_VAGRANT_UP_SECONDS", "1.0")
    p, shown = _provider(tmp_path / "lab")
    p.up(["nfs"])
    p.up(["master", "worker1"])
    ups = _ups(up_log)[1:]
    assert sorted(u["machines"][0] for u in ups) == ["master", "worker1"]
    assert max(u["start"] for u in ups) < min(u["end"] for u in ups)
    assert not any("alone first" in line for line in shown)


def test_a_parallel_up_failing_for_another_reason_is_an_error_not_retried(tmp_path, monkeypatch, up_log, fake_vagrant):  # noqa: F811
    p, _ = _provider(tmp_path / "lab")
    p.up(["nfs"])
    monkeypatch.setenv("FAKE_VAGRANT_FAIL", "up:There is not enough memory to start the VM.")
    p2 = VagrantProvider(p.spec, p.root, log_path=p.log_path, echo=Console(file=io.StringIO()).print)
    with pytest.raises(VagrantError) as err:
        p2.up(["master", "worker1"])
    assert str(err.value).count("There is not enough memory to start the VM.") == 2
    assert "`vagrant up master --provider=virtualbox` failed" in str(err.value)
    assert len([c for c in fake_vagrant.commands() if c[0] == "up"]) == 3  # nfs, then the two: no retry


PARALLEL_CTRL_C = """\
import sys
from pathlib import Path
from labctl.providers.vagrant import VagrantProvider
from labctl.spec import LabSpec
root = Path(sys.argv[1])
p = VagrantProvider(LabSpec.default(), root, log_path=root / "logs" / "up.log", echo=lambda s: print(s, flush=True))
p.render()
nfs = root / ".vagrant" / "machines" / "nfs" / "virtualbox"
nfs.mkdir(parents=True)
(nfs / "id").write_text("fake-nfs-id")  # a VM of the lab exists: the two others go up together
p.up(["master", "worker1"])
"""


def test_ctrl_c_reaches_every_parallel_vagrant_up_once_and_waits_for_their_clean_up(tmp_path, monkeypatch, fake_vagrant):  # noqa: F811
    """Each parallel `vagrant up` runs in its own session: the terminal's Ctrl-C reaches labctl only,
    which forwards one SIGINT to each and returns when both have cleaned up."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "lab"
    root.mkdir()
    monkeypatch.setenv("FAKE_VAGRANT_UP_SECONDS", "60")
    monkeypatch.setenv("FAKE_VAGRANT_CLEANUP_SECONDS", "1.0")
    script = tmp_path / "up.py"
    script.write_text(PARALLEL_CTRL_C)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    proc = subprocess.Popen([sys.executable, str(script), str(root)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        log = root / "logs" / "up.log"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (log.read_text() if log.exists() else "").count("Creating image") < 2:
            time.sleep(0.05)
        assert log.read_text().count("Creating image") == 2
        os.killpg(proc.pid, signal.SIGINT)  # the terminal's Ctrl-C
        out, err = proc.communicate(timeout=60)
        assert "labctl keeps the lab lock" in out
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert proc.returncode != 0 and "VagrantInterrupted" in err
    assert text.count("SIGINT sent once") == 2
    assert "==> master: Waiting for cleanup" in text and "==> worker1: Waiting for cleanup" in text
    assert text.count("vagrant exited 1") == 2  # both ran to the end of their clean-up
