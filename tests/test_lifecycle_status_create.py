"""create, status and verify end to end without VMs or SSH: provider ``ssh`` (doctor only checks
key files) or a fake Vagrant provider, the scripted transport answering for the hosts, and the lab
on loopback addresses (127.0.0.0/24) so Open WebUI's health check reaches a server this test starts
on 127.0.0.2 — nothing leaves the machine."""

from __future__ import annotations

import io
import json
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from rich.console import Console as RichConsole

from labctl import lifecycle
from labctl.errors import LifecycleError
from labctl.kubeconfig import merge_kubeconfig_file, user_kubeconfig_path
from labctl.lab import NOT_CREATED, Console, Lab
from labctl.spec import LabSpec
from labctl.status import format_status, lab_status, parse_sections, verify
from labctl.transport.base import Result
from labctl.transport.scripted import ScriptedTransport
from tests.test_lifecycle_destroy_resume import ADMIN, FakeLab, FakeProvider


@pytest.fixture(autouse=True)
def _loopback_is_a_lab_subnet_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """lab.yaml refuses a loopback subnet (it must be RFC 1918, labctl.spec_checks); these tests must
    keep every connection on loopback, so for them alone 127.0.0.0/8 counts as a private range."""
    import ipaddress

    from labctl import spec_checks

    monkeypatch.setattr(spec_checks, "PRIVATE_RANGES", (*spec_checks.PRIVATE_RANGES, ipaddress.IPv4Network("127.0.0.0/8")))


def loopback_spec(provider: str = "ssh", port: int = 8080, **extra) -> LabSpec:
    user = {"ssh_user": "ubuntu"} if provider == "ssh" else {}
    return LabSpec.from_dict({
        "name": "loop",
        "provider": {"type": provider},
        "network": {"subnet": "127.0.0.0/24", "metallb_pool": "127.0.0.2-127.0.0.5"},
        "nodes": {
            "master": {"name": "master", "ip": "127.0.0.100", "cpus": 2, "memory_mib": 2048, **user},
            "workers": [{"name": "worker1", "ip": "127.0.0.101", "cpus": 2, "memory_mib": 2048, **user}],
            "nfs": {"name": "nfs", "ip": "127.0.0.11", "cpus": 1, "memory_mib": 1024, **user},
        },
        "apps": {"openwebui": {"port": port}, "ollama": {"models": ["llama3.2:1b", "qwen2:0.5b"]}},
        **extra,
    })  # fmt: skip


def console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(RichConsole(file=out, width=300, highlight=False)), out


# ---- create (provider ssh) --------------------------------------------------------------------------
def test_create_runs_the_plan_fetches_the_kubeconfig_and_says_what_next(tmp_path, monkeypatch, webui):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kube" / "config"))
    lab = Lab.of(loopback_spec(port=webui), source="my lab.yaml", state_dir=tmp_path / "state")
    # The lab answers: the cluster probe from the master, Open WebUI's /health on 127.0.0.2.
    t = answering().on("cat /etc/kubernetes/admin.conf", host="master", stdout=ADMIN)
    c, out = console()
    merged = tmp_path / "merged-config"
    result = lifecycle.create(lab, c, transport_factory=lambda: t, merge_kubeconfig_into=merged)
    assert t.closed
    assert result.kubeconfig == lab.kubeconfig and result.report is not None
    assert lab.state_dir == tmp_path / "state"
    assert result.log_path.exists() and result.log_path.parent == lab.state_dir / "logs"
    assert result.log_path.name.startswith("create-") and result.log_path.suffix == ".log"
    assert not (lab.state_dir / "Vagrantfile").exists()  # provider ssh: no VMs, no Vagrantfile
    conf = yaml.safe_load(lab.kubeconfig.read_text())
    assert conf["kind"] == "Config" and conf["apiVersion"] == "v1"
    assert conf["clusters"][0]["cluster"]["server"] == "https://127.0.0.100:6443"
    assert [c["name"] for c in conf["clusters"]] == ["labctl-loop"]
    assert [u["name"] for u in conf["users"]] == ["labctl-loop-admin"]
    assert conf["contexts"] == [{"name": "labctl-loop", "context": {"cluster": "labctl-loop", "user": "labctl-loop-admin"}}]
    assert conf["current-context"] == "labctl-loop"
    assert stat.S_IMODE(lab.kubeconfig.stat().st_mode) == 0o600
    assert "labctl-loop" in merged.read_text()
    timings = json.loads((lab.state_dir / "last-create.json").read_text())
    assert set(timings) == {"total_seconds", "vm_seconds", "log"} and timings["log"] == str(result.log_path)
    text = out.getvalue()
    # The log is named once preflight passed (a run stopped at preflight writes none).
    assert f"==> Lab 'loop': state in {lab.state_dir}\n" in text and f"    log: {result.log_path}\n" in text
    assert "==> Lab 'loop' created in" in text
    assert f"    Open WebUI:  http://127.0.0.2:{webui}" in text
    assert "==> Step: Verify the lab from this machine" in text and "FAIL" not in text
    assert f"    kubeconfig:  {lab.kubeconfig} (merged into {merged} as context labctl-loop)" in text
    assert "      labctl status -f 'my lab.yaml'" in text
    assert "      kubectl --context labctl-loop get nodes" in text
    assert "      labctl ssh master -f 'my lab.yaml'" in text
    assert "only the steps matching" not in text and "offline lab" not in text
    # Every remote step ran its check on the hosts it targets (the scripted hosts say "done").
    assert {c.host for c in t.runs()} == {"master", "worker1", "nfs"}


def test_create_without_merging_prints_the_kubeconfig_command(tmp_path, monkeypatch, webui):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kube" / "config"))
    lab = Lab.of(loopback_spec(port=webui), source="lab.yaml", state_dir=tmp_path / "state")
    t = answering().on("cat /etc/kubernetes/admin.conf", stdout=ADMIN)
    c, out = console()
    lifecycle.create(lab, c, transport_factory=lambda: t)
    text = out.getvalue()
    assert f"    kubeconfig:  {lab.kubeconfig}\n" in text
    assert f"      kubectl --kubeconfig {lab.kubeconfig} get nodes" in text
    assert "      labctl status\n" in text  # lab.yaml is the default file: no -f


def test_create_with_only_skips_the_kubeconfig_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kube" / "config"))
    lab = Lab(loopback_spec(offline=True), tmp_path / "state")  # no source: the built-in default
    t = ScriptedTransport()
    c, out = console()
    result = lifecycle.create(lab, c, only=["node-prep.*"], transport_factory=lambda: t)
    assert result.kubeconfig is None and not lab.kubeconfig.exists()
    assert not any("admin.conf" in c.script and c.script.startswith("cat ") for c in t.runs())
    text = out.getvalue()
    assert "    only the steps matching node-prep.* ran; the others were skipped (see above)" in text
    assert "    offline lab: every step that needs the internet was skipped (see above)" in text
    assert "    kubeconfig:  not fetched (the control-plane steps did not run)" in text
    assert "kubectl --" not in text
    assert "      labctl status\n" in text and "      labctl ssh master\n" in text  # no -f for the default lab


def test_create_names_the_master_when_admin_conf_cannot_be_read(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kube" / "config"))
    lab = Lab.of(loopback_spec(), state_dir=tmp_path / "state")
    t = ScriptedTransport().on("cat /etc/kubernetes/admin.conf", exit_code=1, stderr="cat: No such file\n")
    with pytest.raises(LifecycleError, match=r"could not read /etc/kubernetes/admin.conf on master: cat: No such file"):
        lifecycle.create(lab, console()[0], transport_factory=lambda: t)
    assert t.closed and not lab.kubeconfig.exists()


def test_bring_up_hosts_starts_only_the_stopped_vms_and_saves_ssh_config(tmp_path):
    spec = loopback_spec("libvirt")
    lab = FakeLab(spec, tmp_path / "state")
    lab.fake = FakeProvider(lab.state_dir, {"nfs": "running", "master": "shutoff", "worker1": "running"})
    result, seconds = lifecycle.bring_up_hosts(lab, lab.fake, console()[0], step=None)  # type: ignore[arg-type]
    assert ("up", ["master"]) in lab.fake.calls and seconds >= 0
    assert result.skipped_reason == ""
    assert sorted(result.hosts) == ["master", "nfs", "worker1"]
    assert result.hosts["master"].lab_ip == "127.0.0.100"
    assert stat.S_IMODE(lab.ssh_config.stat().st_mode) == 0o600
    again, _ = lifecycle.bring_up_hosts(lab, lab.fake, console()[0], step=None)  # type: ignore[arg-type]
    assert again.skipped_reason == "every VM is already running"
    assert [c for c in lab.fake.calls if c[0] == "up"] == [("up", ["master"])]


# ---- status / verify ----------------------------------------------------------------------------
NODES_JSON = json.dumps({"items": [
    {"metadata": {"name": "master", "labels": {"node-role.kubernetes.io/control-plane": ""}},
     "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.36.4"}}},
    {"metadata": {"name": "worker1", "labels": {}},
     "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "nodeInfo": {"kubeletVersion": "v1.36.4"}}},
]})  # fmt: skip
PODS_JSON = json.dumps({"items": [
    {"metadata": {"namespace": "llm", "name": "ollama-0"},
     "status": {"phase": "Running", "containerStatuses": [{"ready": True, "restartCount": 2}]}},
    {"metadata": {"namespace": "kube-system", "name": "etcd-master"}, "status": {"phase": "Running"}},
    {"metadata": {"namespace": "metallb-system", "name": "controller-7d9c"},
     "status": {"phase": "Running", "containerStatuses": [{"ready": True}]}},
    {"metadata": {"namespace": "llm", "name": "open-webui-0"},
     "status": {"phase": "Running", "containerStatuses": [{"ready": True, "restartCount": 0}]}},
]})  # fmt: skip


def probe(**sections: tuple[str, int]) -> str:
    base = {
        "nodes": (NODES_JSON, 0),
        "pods": (PODS_JSON, 0),
        "webui_lb": ("127.0.0.2", 0),
        "ollama_version": ('{"version": "0.40.1"}', 0),
        "ollama_tags": ('{"models": [{"name": "llama3.2:1b"}, {"name": "qwen2:0.5b:latest"}]}', 0),
    }
    base.update(sections)
    return "".join(f"@@{k}\n{text}\n@@rc {rc}\n" for k, (text, rc) in base.items())


def answering() -> ScriptedTransport:
    """A transport whose master answers the cluster probe of status/verify like a healthy lab."""
    return ScriptedTransport().on("section nodes", host="master", stdout=probe())


@pytest.fixture
def webui():
    """An HTTP server on 127.0.0.2 answering /health (loopback only); yields its port."""

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args):  # type: ignore[no-untyped-def]
            pass

    server = ThreadingHTTPServer(("127.0.0.2", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def created(lab: Lab) -> None:
    """What `create` leaves for a Vagrant lab: a lab without it is "not created yet", asked nothing."""
    lab.state_dir.mkdir(parents=True, exist_ok=True)
    (lab.state_dir / "Vagrantfile").write_text("# rendered\n")


def status_of(tmp_path: Path, port: int, answer: dict, states: dict[str, str] | None = None):
    lab = FakeLab(loopback_spec("libvirt", port=port), tmp_path / "state")
    created(lab)
    lab.fake = FakeProvider(lab.state_dir, states or dict.fromkeys(("nfs", "master", "worker1"), "running"))
    t = ScriptedTransport().on("section nodes", **answer)
    return lab, t, lab_status(lab, transport_factory=lambda: t)


def test_a_healthy_lab_passes_every_check(tmp_path, webui):
    lab, t, status = status_of(tmp_path, webui, {"stdout": probe()})
    assert t.closed and t.runs()[0].host == "master" and t.runs()[0].sudo
    assert [n["name"] for n in status.nodes] == ["master", "worker1"]
    assert status.nodes[0] == {"name": "master", "ready": True, "roles": ["control-plane"], "version": "v1.36.4"}
    assert [p["name"] for p in status.pods] == ["ollama-0", "controller-7d9c", "open-webui-0"]
    assert status.pods[0]["restarts"] == 2
    checks = {c.name: (c.ok, c.detail) for c in status.checks(lab.spec)}
    assert all(ok for ok, _ in checks.values()), checks
    assert checks["open-webui-health"][1] == f"http://127.0.0.2:{webui}/health answered 200"
    assert checks["metallb-address"][1] == "open-webui has 127.0.0.2"
    assert checks["ollama-version"][1] == "Ollama 0.40.1"
    assert checks["ollama-models"][1] == "installed: llama3.2:1b, qwen2:0.5b:latest"
    assert checks["vms-running"][1] == "every VM is running"
    assert checks["key-pods-ready"][1] == "all ready"
    text = format_status(status, lab.spec)
    assert text.startswith("Lab loop (provider libvirt)\n\nVMs:\n  nfs          running\n")
    assert "  master       Ready     control-plane  v1.36.4" in text
    assert "  worker1      Ready     -              v1.36.4" in text
    assert "\n\nNodes:\n  master " in text and "\n\nKey pods:\n  llm/ollama-0 " in text and "\n\nChecks:\n  ok  " in text
    assert "NOT ready" not in text and "restarts 2" in text
    assert "FAIL" not in text
    as_json = status.to_dict(lab.spec)
    assert as_json["lab"] == "loop" and len(as_json["checks"]) == len(status.checks(lab.spec))


def test_each_broken_part_is_named(tmp_path, webui):
    answer = probe(
        webui_lb=("", 0),
        ollama_tags=('{"models": [{"name": "llama3.2:1b"}]}', 0),
        pods=(json.dumps({"items": [{"metadata": {"namespace": "llm", "name": "ollama-0"},
                                     "status": {"phase": "Pending", "containerStatuses": []}}]}), 0),
    )  # fmt: skip
    lab, _, status = status_of(tmp_path, webui, {"stdout": answer})
    checks = {c.name: (c.ok, c.detail) for c in status.checks(lab.spec)}
    assert checks["metallb-address"] == (False, "open-webui has no address, expected 127.0.0.2")
    assert checks["ollama-models"] == (False, "installed: llama3.2:1b; missing: qwen2:0.5b")
    assert checks["key-pods-ready"] == (False, "llm/ollama-0 (Pending)")
    assert "NOT ready  restarts 0" in format_status(status, lab.spec)


def test_an_api_server_that_does_not_answer(tmp_path, webui):
    answer = probe(nodes=("The connection to the server was refused\n", 1))
    lab, _, status = status_of(tmp_path, webui, {"stdout": answer})
    assert status.cluster_error == "unreachable: the API server did not answer (The connection to the server was refused)"
    checks = {c.name: (c.ok, c.detail) for c in status.checks(lab.spec)}
    assert checks["nodes-ready"] == (False, status.cluster_error)
    assert "  unavailable: unreachable: the API server" in format_status(status, lab.spec)


def test_an_uninitialised_cluster_and_an_unreachable_master(tmp_path, webui):
    lab, _, status = status_of(tmp_path, webui, {"stdout": "@@error\nthe cluster is not initialised\n@@rc 1\n"})
    assert status.cluster_error == "the cluster is not initialised"
    checks = {c.name: (c.ok, c.detail) for c in status.checks(lab.spec)}
    assert checks["ollama-version"] == (False, "unreachable: the cluster is not initialised")
    _, _, timed = status_of(tmp_path / "b", webui, {"timed_out": True, "exit_code": -1})
    assert timed.cluster_error == "unreachable: master: timed out"
    _, _, lost = status_of(tmp_path / "c", webui, {"error": "connection refused", "exit_code": -1})
    assert lost.cluster_error == "unreachable: master: connection refused"


def test_a_lab_whose_vms_are_all_stopped_asks_no_one(tmp_path):
    states = dict.fromkeys(("nfs", "master", "worker1"), "shutoff")
    lab, t, status = status_of(tmp_path, 9, {"stdout": probe()}, states)
    assert t.runs() == []
    checks = {c.name: (c.ok, c.detail) for c in status.checks(lab.spec)}
    assert checks["vms-running"] == (False, "not running: nfs, master, worker1")
    assert checks["nodes-ready"] == (False, "unreachable: the master VM is not running")
    assert checks["open-webui-health"] == (False, "unreachable: none of the lab's VMs is running")
    assert checks["metallb-address"] == (False, "cannot read Service open-webui: unreachable: the master VM is not running")


def test_verify_returns_the_status_and_its_checks(tmp_path, webui):
    lab = FakeLab(loopback_spec("libvirt", port=webui), tmp_path / "state")
    created(lab)
    lab.fake = FakeProvider(lab.state_dir, dict.fromkeys(("nfs", "master", "worker1"), "running"))
    t = ScriptedTransport().on("section nodes", stdout=probe())
    status, checks = verify(lab, transport_factory=lambda: t)
    assert status.lab == "loop" and all(c.ok for c in checks)


def test_long_lines_are_never_wrapped(tmp_path):
    """Paths and commands are copied from the terminal: a narrow terminal must not break them."""
    out = io.StringIO()
    c = Console(RichConsole(file=out, width=30, highlight=False))
    long_path = "/home/student/.local/share/labctl/llm-lab/logs/create-20261203-080000.log"
    c.say(f"log {long_path}")
    assert out.getvalue() == f"log {long_path}\n"


def test_merging_before_the_lab_has_a_kubeconfig_is_refused(tmp_path):
    lab = Lab(loopback_spec(), tmp_path / "state")
    with pytest.raises(LifecycleError, match=r"kubeconfig does not exist yet — run `labctl create` first"):
        merge_kubeconfig_file(lab, tmp_path / "config")
    assert not (tmp_path / "config").exists()


def test_status_of_an_ssh_lab_probes_the_master_it_was_given(tmp_path, webui):
    lab = Lab(loopback_spec(port=webui), tmp_path / "state")
    t = ScriptedTransport().on("section nodes", stdout=probe())
    status = lab_status(lab, transport_factory=lambda: t)
    assert status.vms == [{"name": n, "state": "existing host"} for n in ("nfs", "master", "worker1")]
    assert [c.host for c in t.runs()] == ["master"]
    # Every check passes, vms-running included: the hosts given are not VMs labctl must start.
    assert all(c.ok for c in status.checks(lab.spec)), status.checks(lab.spec)


def test_create_on_libvirt_with_the_vms_already_running(tmp_path, monkeypatch, webui):
    """The Vagrant path of create with a fake provider: doctor sees the running VMs' memory as held
    already, the provider step says every VM runs, the plan runs on the hosts ssh-config gives."""
    from tests.test_doctor_boundaries import VAGRANT, fake_tools

    fake_tools(tmp_path, monkeypatch, vagrant=VAGRANT, virsh='echo "Running hypervisor: QEMU 8.2.2"')
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kube" / "config"))
    data = {
        "name": "loop", "provider": {"type": "libvirt", "libvirt": {"driver": "qemu"}},
        "network": {"subnet": "127.0.0.0/24", "metallb_pool": "127.0.0.2-127.0.0.5"},
        "nodes": {"master": {"name": "master", "ip": "127.0.0.100", "cpus": 2, "memory_mib": 2048},
                  "workers": [], "nfs": {"name": "nfs", "ip": "127.0.0.11", "cpus": 1, "memory_mib": 1024}},
        # No disk has room for 900 TiB of models: a sure warning, so doctor prints its whole report.
        "storage": {"models_size": "900Ti"},
        "apps": {"openwebui": {"port": webui}, "ollama": {"models": ["llama3.2:1b", "qwen2:0.5b"]}},
    }  # fmt: skip
    spec = LabSpec.from_dict(data)
    lab = FakeLab(spec, tmp_path / "state")
    lab.state_dir.mkdir(parents=True)
    lab.fake = FakeProvider(lab.state_dir, {"nfs": "running", "master": "running"})
    lab.fake.vagrantfile.write_text("# rendered before\n")
    t = answering().on("cat /etc/kubernetes/admin.conf", stdout=ADMIN)
    c, out = console()
    result = lifecycle.create(lab, c, transport_factory=lambda: t)
    text = out.getvalue()
    assert "the lab's VMs need 0 MiB more" in text  # both VMs run: their 3072 MiB are held already
    assert ("render", "the built-in default lab") in lab.fake.calls
    assert not any(call[0] == "up" for call in lab.fake.calls)
    assert "    skipped (every VM is already running)" in text
    assert {c.host for c in t.runs()} == {"master", "nfs"}
    assert result.kubeconfig == lab.kubeconfig and lab.ssh_config.exists()


def test_the_hosts_of_an_existing_lab(tmp_path):
    from labctl.providers.ssh import hosts_from_spec

    ssh_lab = Lab(loopback_spec(), tmp_path / "a")
    assert lifecycle.lab_hosts(ssh_lab, tmp_path / "log") == hosts_from_spec(ssh_lab.spec)
    vagrant_lab = FakeLab(loopback_spec("libvirt"), tmp_path / "b")
    vagrant_lab.fake = FakeProvider(vagrant_lab.state_dir, {"nfs": "running", "master": "running", "worker1": "running"})
    vagrant_lab.fake.hosts = lambda: {"master": "from-vagrant"}  # type: ignore[attr-defined]
    assert lifecycle.lab_hosts(vagrant_lab, tmp_path / "log") == {"master": "from-vagrant"}


def test_a_labs_vagrant_provider_lives_in_its_state_folder(tmp_path):
    lab = Lab(loopback_spec("libvirt"), tmp_path / "state")
    provider = lab.provider(tmp_path / "log")
    assert provider.vagrantfile == tmp_path / "state" / "Vagrantfile"
    assert lab.webui_url == "http://127.0.0.2:8080" and lab.context == "labctl-loop"
    assert lab.ssh_config == tmp_path / "state" / "ssh-config"
    assert Lab.of(lab.spec).state_dir.name == "loop"  # one folder per lab name
    assert Lab.of(lab.spec).source == "the built-in default lab"


def test_a_clean_preflight_prints_only_its_last_line(tmp_path):
    c, out = console()
    lifecycle.preflight(Lab(loopback_spec(), tmp_path), c)
    assert out.getvalue() == "doctor: 1 checks, 0 failed, 0 warnings\n"


def test_an_unreadable_exit_code_in_the_probe_counts_as_a_failure():
    assert parse_sections("@@nodes\nout\n@@rc garbage\n@@pods\n{}\n@@rc 0\n") == {"nodes": ("out", 1), "pods": ("{}", 0)}



def test_status_without_a_transport_given_uses_ssh(tmp_path):
    """Without a test transport, status logs in over SSH: on loopback port 1 nobody answers, and the
    status says the master is unreachable instead of crashing."""
    key = tmp_path / "id_test"
    key.write_text("not a key: the connection is refused before it is read\n")
    data = json.loads(loopback_spec().model_dump_json())
    for n in [data["nodes"]["master"], data["nodes"]["nfs"], *data["nodes"]["workers"]]:
        n["ssh_port"], n["ssh_key"] = 1, str(key)
    spec = LabSpec.from_dict({k: v for k, v in data.items() if k in ("name", "provider", "network", "nodes", "apps")})
    status = lab_status(Lab(spec, tmp_path / "state"))
    assert status.cluster_error.startswith("unreachable: master: "), status.cluster_error


def test_ssh_transport_without_a_key_file_reports_the_refused_connection():
    """A host without ssh_key (provider ssh with the agent or the default keys, which lab.yaml allows)
    is connected to, not crashed on: fabric 3.2.3 connection.py iterates key_filename, which must
    never be None."""
    from labctl.transport.base import Host
    from labctl.transport.ssh import SSHTransport

    transport = SSHTransport()
    try:
        result = transport.run(Host(name="m", address="127.0.0.1", port=1), "true", timeout=5)
    finally:
        transport.close()
    assert not result.ok and result.error


def test_the_users_kubeconfig_is_the_first_of_kubeconfig(tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    assert user_kubeconfig_path() == tmp_path / "a"
    monkeypatch.setenv("KUBECONFIG", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert user_kubeconfig_path() == tmp_path / ".kube" / "config"


def test_a_lab_never_created_says_so_and_asks_no_one(tmp_path):
    lab = FakeLab(loopback_spec("libvirt"), tmp_path / "state")
    lab.fake = FakeProvider(lab.state_dir, dict.fromkeys(("nfs", "master", "worker1"), "running"))
    t = ScriptedTransport().on("section nodes", stdout=probe())
    status = lab_status(lab, transport_factory=lambda: t)
    assert t.runs() == [] and lab.fake.calls == []
    assert [(c.name, c.ok, c.detail) for c in status.checks(lab.spec)] == [("lab-created", False, NOT_CREATED)]
    assert format_status(status, lab.spec) == "Lab loop (provider libvirt): not created yet — run `labctl create`\n"


def test_ctrl_c_after_the_run_still_stops_the_background_pull(tmp_path, monkeypatch):
    """Ctrl-C while create fetches the kubeconfig (the runner has returned): the image pull's
    `on_interrupt` still runs on the nodes where its start step ran, then the interrupt goes on (130)."""
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kube" / "config"))
    lab = Lab.of(loopback_spec(), state_dir=tmp_path / "state")

    class CtrlCAtTheKubeconfig(ScriptedTransport):
        def run(self, host, script, **kw):  # type: ignore[no-untyped-def, override]
            if script == "cat /etc/kubernetes/admin.conf":  # fetch_kubeconfig, after the run
                raise KeyboardInterrupt
            if script.startswith("for ref in") and "crictl inspecti" in script:  # the start step's check
                return Result(host.name, 1)  # images missing: the pull starts
            return super().run(host, script, **kw)

    t = CtrlCAtTheKubeconfig()
    with pytest.raises(KeyboardInterrupt):
        lifecycle.create(lab, console()[0], transport_factory=lambda: t)
    stopped = sorted(c.host for c in t.runs() if "stopped the background image pull" in c.script)
    assert stopped == ["master", "worker1"]  # the Kubernetes nodes, not the NFS server
    assert t.closed
