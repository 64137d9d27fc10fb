"""Lifecycle pieces that need no VM: step selection, kubeconfig rewrite/merge, the status probe's
parsing, verify's checks, the lab lock, ssh-config and `vagrant status` parsing, provider ssh hosts."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
from pathlib import Path

import pytest
import yaml

from labctl import lifecycle
from labctl.errors import LifecycleError
from labctl.kubeconfig import merge_kubeconfig, merge_kubeconfig_file, remove_from_kubeconfig, rewrite_kubeconfig
from labctl.lab import Lab, ssh_argv
from labctl.lablock import LabBusy, LabLock
from labctl.plan import build_plan
from labctl.providers.ssh import hosts_from_spec
from labctl.providers.vagrant import (
    VagrantError,
    VagrantProvider,
    console_line,
    format_ssh_config,
    hosts_from_ssh_config,
    parse_machine_readable_status,
    parse_ssh_config,
)
from labctl.spec import LabSpec
from labctl.status import (
    EndpointCheck,
    LabStatus,
    cluster_probe_script,
    endpoint_checks,
    format_status,
    parse_sections,
    summarize_nodes,
    summarize_pods,
)

ADMIN_CONF = """\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: Q0EtREFUQQ==
    server: https://10.0.2.15:6443
  name: kubernetes
contexts:
- context:
    cluster: kubernetes
    user: kubernetes-admin
  name: kubernetes-admin@kubernetes
current-context: kubernetes-admin@kubernetes
kind: Config
preferences: {}
users:
- name: kubernetes-admin
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
"""


# ---- --only ---------------------------------------------------------------------------------------
def test_only_keeps_matching_steps_and_marks_the_others_skipped_loudly(default_spec, tmp_path):
    plan = build_plan(default_spec, state_dir=tmp_path)
    picked = lifecycle.select_steps(plan, ["node-prep.write-hosts-file", "nfs-server.*"])
    assert [s.id for s in picked.steps] == [s.id for s in plan.steps]  # nothing disappears from the run
    ran = [s.id for s in picked.steps if not s.skip_reason]
    assert ran[0] == "provider.up"
    assert "node-prep.write-hosts-file" in ran
    assert all(i == "provider.up" or i == "node-prep.write-hosts-file" or i.startswith("nfs-server.") for i in ran)
    skipped = picked.step("control-plane.initialise-control-plane")
    assert skipped.skip_reason.startswith("not selected by --only")


def test_only_keeps_the_offline_reason_of_network_steps(tmp_path):
    spec = LabSpec.from_dict({"offline": True})
    picked = lifecycle.select_steps(build_plan(spec, state_dir=tmp_path), ["nfs-server.*"])
    assert "offline" in picked.step("nfs-server.install-nfs-server").skip_reason


def test_only_with_an_unknown_step_is_refused_before_anything_runs(default_spec, tmp_path):
    with pytest.raises(LifecycleError, match="matches no step"):
        lifecycle.select_steps(build_plan(default_spec, state_dir=tmp_path), ["node-prep.no-such-step"])


def test_no_only_means_the_plan_unchanged(default_spec, tmp_path):
    plan = build_plan(default_spec, state_dir=tmp_path)
    assert lifecycle.select_steps(plan, []) is plan


# ---- kubeconfig -------------------------------------------------------------------------------------
def test_kubeconfig_points_at_the_lab_address_under_lab_specific_names():
    out = yaml.safe_load(rewrite_kubeconfig(ADMIN_CONF, "llm-lab", "https://192.168.33.100:6443"))
    assert out["clusters"] == [
        {"name": "labctl-llm-lab", "cluster": {"certificate-authority-data": "Q0EtREFUQQ==", "server": "https://192.168.33.100:6443"}}
    ]
    assert out["users"][0]["name"] == "labctl-llm-lab-admin"
    assert out["users"][0]["user"]["client-key-data"] == "S0VZ"
    assert out["current-context"] == "labctl-llm-lab"
    assert out["contexts"][0]["context"] == {"cluster": "labctl-llm-lab", "user": "labctl-llm-lab-admin"}


def test_not_a_kubeconfig_is_an_error():
    with pytest.raises(LifecycleError, match="not a kubeconfig"):
        rewrite_kubeconfig("just: text\n", "x", "https://1.2.3.4:6443")


def test_two_labs_merge_side_by_side_without_switching_the_users_context():
    mine = "apiVersion: v1\nkind: Config\ncurrent-context: work\nclusters: [{name: work, cluster: {server: https://w}}]\nusers: [{name: me, user: {}}]\ncontexts: [{name: work, context: {cluster: work, user: me}}]\n"
    a = rewrite_kubeconfig(ADMIN_CONF, "a", "https://10.1.0.100:6443")
    b = rewrite_kubeconfig(ADMIN_CONF, "b", "https://10.2.0.100:6443")
    merged = yaml.safe_load(merge_kubeconfig(merge_kubeconfig(mine, a), b))
    assert [c["name"] for c in merged["contexts"]] == ["work", "labctl-a", "labctl-b"]
    assert merged["current-context"] == "work"
    # Re-merging a rebuilt lab replaces its entries instead of adding duplicates.
    again = yaml.safe_load(merge_kubeconfig(yaml.safe_dump(merged), rewrite_kubeconfig(ADMIN_CONF, "a", "https://10.1.0.99:6443")))
    assert [c["name"] for c in again["clusters"]].count("labctl-a") == 1
    assert next(c for c in again["clusters"] if c["name"] == "labctl-a")["cluster"]["server"] == "https://10.1.0.99:6443"
    # Removing one lab leaves the other and the user's own entries alone.
    left = yaml.safe_load(remove_from_kubeconfig(yaml.safe_dump(again), "a"))
    assert [c["name"] for c in left["contexts"]] == ["work", "labctl-b"]
    assert remove_from_kubeconfig(yaml.safe_dump(left), "a") is None  # nothing left to remove


def test_merge_into_an_empty_file_sets_the_context():
    merged = yaml.safe_load(merge_kubeconfig(None, rewrite_kubeconfig(ADMIN_CONF, "a", "https://h:6443")))
    assert merged["current-context"] == "labctl-a"


def test_merge_kubeconfig_file_is_private(tmp_path, default_spec):
    lab = Lab.of(default_spec, state_dir=tmp_path / "state")
    lab.kubeconfig.parent.mkdir(parents=True)
    lab.kubeconfig.write_text(rewrite_kubeconfig(ADMIN_CONF, "llm-lab", "https://h:6443"))
    target = tmp_path / "home" / ".kube" / "config"
    merge_kubeconfig_file(lab, target)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert "labctl-llm-lab" in target.read_text()


# ---- status probe -----------------------------------------------------------------------------------
NODES = {
    "items": [
        {
            "metadata": {"name": "master", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.36.4"}},
        },
        {
            "metadata": {"name": "worker1", "labels": {}},
            "status": {"conditions": [{"type": "Ready", "status": "False"}], "nodeInfo": {"kubeletVersion": "v1.36.4"}},
        },
    ]
}
PODS = {
    "items": [
        {"metadata": {"namespace": "llm", "name": "ollama-7d9f-abcde"}, "status": {"phase": "Running", "containerStatuses": [{"ready": True, "restartCount": 1}]}},
        {"metadata": {"namespace": "llm", "name": "open-webui-5c4-xyz"}, "status": {"phase": "Pending", "containerStatuses": [{"ready": False, "restartCount": 0}]}},
        {"metadata": {"namespace": "default", "name": "something-else"}, "status": {"phase": "Running"}},
    ]
}


def probe_output(**overrides: tuple[str, int]) -> str:
    sections = {
        "nodes": (json.dumps(NODES), 0),
        "pods": (json.dumps(PODS), 0),
        "webui_lb": ("192.168.33.2", 0),
        "ollama_version": ('{"version":"0.40.1"}', 0),
        "ollama_tags": ('{"models":[{"name":"llama3.2:1b"}]}', 0),
        **overrides,
    }
    return "".join(f"@@{k}\n{v}\n@@rc {rc}\n" for k, (v, rc) in sections.items())


def test_parse_sections_round_trip():
    got = parse_sections(probe_output(webui_lb=("", 1)))
    assert got["webui_lb"] == ("", 1)
    assert got["ollama_version"] == ('{"version":"0.40.1"}', 0)
    assert json.loads(got["nodes"][0]) == NODES


def test_nodes_and_key_pods():
    nodes = summarize_nodes(json.dumps(NODES))
    assert nodes == [
        {"name": "master", "ready": True, "roles": ["control-plane"], "version": "v1.36.4"},
        {"name": "worker1", "ready": False, "roles": [], "version": "v1.36.4"},
    ]
    pods = summarize_pods(json.dumps(PODS))
    assert [p["name"] for p in pods] == ["ollama-7d9f-abcde", "open-webui-5c4-xyz"]
    assert pods[0]["restarts"] == 1 and pods[1]["ready"] is False


def test_endpoint_checks_all_good(default_spec):
    webui = EndpointCheck("open-webui-health", True, "answered 200")
    checks = {c.name: c for c in endpoint_checks(default_spec, parse_sections(probe_output()), webui)}
    assert checks["metallb-address"].ok and checks["ollama-version"].detail == "Ollama 0.40.1"
    assert checks["ollama-models"].ok


def test_endpoint_checks_report_each_problem_honestly(default_spec):
    webui = EndpointCheck("open-webui-health", False, "unreachable")
    sections = parse_sections(
        probe_output(
            webui_lb=("192.168.33.3", 0),
            ollama_version=("curl: (7) Failed to connect to 10.96.0.10 port 11434", 7),
            ollama_tags=("curl: (7) Failed", 7),
        )
    )
    checks = {c.name: c for c in endpoint_checks(default_spec, sections, webui)}
    assert not checks["metallb-address"].ok and "expected 192.168.33.2" in checks["metallb-address"].detail
    assert not checks["ollama-version"].ok and checks["ollama-version"].detail.startswith("unreachable: curl: (7)")
    assert not checks["ollama-models"].ok


def test_missing_model_fails(default_spec):
    sections = parse_sections(probe_output(ollama_tags=('{"models":[]}', 0)))
    webui = EndpointCheck("open-webui-health", True, "ok")
    models = next(c for c in endpoint_checks(default_spec, sections, webui) if c.name == "ollama-models")
    assert not models.ok and "missing: llama3.2:1b" in models.detail


def test_verify_checks_cover_vms_nodes_pods_and_endpoints(default_spec):
    status = LabStatus("llm-lab", "virtualbox", vms=[{"name": "master", "state": "running"}, {"name": "nfs", "state": "poweroff"}])
    status.nodes = summarize_nodes(json.dumps(NODES))
    status.pods = summarize_pods(json.dumps(PODS))
    checks = {c.name: c for c in status.checks(default_spec)}
    assert not checks["vms-running"].ok and "nfs" in checks["vms-running"].detail
    assert not checks["nodes-ready"].ok and "worker1" in checks["nodes-ready"].detail
    assert not checks["key-pods-ready"].ok and "open-webui" in checks["key-pods-ready"].detail
    text = format_status(status, default_spec)
    assert "FAIL  nodes-ready" in text and "worker1" in text


def test_unreachable_cluster_is_a_failure_not_an_empty_pass(default_spec):
    status = LabStatus("llm-lab", "libvirt", vms=[{"name": "master", "state": "running"}], cluster_error="unreachable: x")
    checks = status.checks(default_spec)
    assert [c.name for c in checks] == ["vms-running", "nodes-ready"]
    assert not checks[1].ok and checks[1].detail == "unreachable: x"
    assert json.loads(json.dumps(status.to_dict(default_spec)))["cluster_error"] == "unreachable: x"


def test_probe_script_is_valid_bash(default_spec, tmp_path):
    script = tmp_path / "probe.sh"
    script.write_text(cluster_probe_script(default_spec))
    assert os.system(f"bash -n {script}") == 0


# ---- the lab lock -----------------------------------------------------------------------------------
def _hold(state: str, ready, release) -> None:  # runs in another process
    with LabLock(Path(state), "demo", "labctl create"):
        ready.set()
        release.wait(20)


def test_a_second_create_on_the_same_lab_is_refused_naming_the_pid(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    other = ctx.Process(target=_hold, args=(str(tmp_path), ready, release))
    other.start()
    try:
        assert ready.wait(20)
        with pytest.raises(LabBusy, match=rf"PID {other.pid}, labctl create"):
            LabLock(tmp_path, "demo").acquire()
        # Another lab (its own folder) is not blocked.
        with LabLock(tmp_path / "other-lab", "other"):
            pass
    finally:
        release.set()
        other.join(20)
    with LabLock(tmp_path, "demo"):  # free again once the holder has ended
        pass


# ---- Vagrant output parsing ---------------------------------------------------------------------
SSH_CONFIG = """\
Host nfs
  HostName 192.168.121.158
  User vagrant
  Port 22
  UserKnownHostsFile /dev/null
  IdentityFile /lab/.vagrant/machines/nfs/libvirt/private_key
  IdentitiesOnly yes

Host master
  HostName 127.0.0.1
  User vagrant
  Port 2222
  IdentityFile "/home/a b/.vagrant/machines/master/virtualbox/private_key"
"""


def test_ssh_config_to_hosts(default_spec):
    spec = LabSpec.from_dict({"nodes": {"workers": []}})
    hosts = hosts_from_ssh_config(spec, parse_ssh_config(SSH_CONFIG))
    assert hosts["master"].address == "127.0.0.1" and hosts["master"].port == 2222
    assert hosts["master"].key_file == Path("/home/a b/.vagrant/machines/master/virtualbox/private_key")
    assert hosts["master"].lab_ip == "192.168.33.100"
    assert hosts["master"].verify_host_key is False
    assert hosts["nfs"].roles == ("nfs",)
    with pytest.raises(VagrantError, match="worker1"):
        hosts_from_ssh_config(default_spec, parse_ssh_config(SSH_CONFIG))


def test_ssh_config_written_back_quotes_paths_with_spaces():
    parsed = parse_ssh_config(SSH_CONFIG)
    text = format_ssh_config(parsed)
    assert '  IdentityFile "/home/a b/.vagrant/machines/master/virtualbox/private_key"' in text
    assert parse_ssh_config(text) == parsed


def test_machine_readable_status():
    text = (
        "1700000000,nfs,metadata,provider,libvirt\n"
        "1700000000,nfs,provider-name,libvirt\n1700000000,nfs,state,running\n"
        "1700000000,master,provider-name,libvirt\n1700000000,master,state,shutoff\n"
        "1700000000,,ui,info,Current machine states:\n"
    )
    states = parse_machine_readable_status(text)
    assert [(s.name, s.state, s.running) for s in states] == [("nfs", "running", True), ("master", "shutoff", False)]


def test_console_shows_headlines_and_logs_the_rest():
    assert console_line("==> master: Creating image (snapshot of base box volume).\n") == "    master: Creating image (snapshot of base box volume)."
    assert console_line("==> master:  -- Name:              e2e_master\n") is None
    assert console_line("    master: SSH address: 192.168.121.27:22\n") is None
    assert console_line("Bringing machine 'nfs' up with 'libvirt' provider...\n") is None


def test_destroy_without_a_vagrantfile_is_already_done(tmp_path, default_spec):
    provider = VagrantProvider(default_spec, tmp_path / "never-created", log_path=tmp_path / "log")
    assert provider.destroy() == 0.0
    assert [s.state for s in provider.status()] == ["not_created"] * 3


def test_render_writes_the_vagrantfile_into_the_lab_folder(tmp_path, default_spec):
    provider = VagrantProvider(default_spec, tmp_path / "lab", log_path=tmp_path / "log")
    path = provider.render("lab.yaml")
    assert path == tmp_path / "lab" / "Vagrantfile"
    assert 'config.vm.define "master"' in path.read_text()


# ---- provider ssh -----------------------------------------------------------------------------------
def test_provider_ssh_hosts_come_from_the_spec(tmp_path):
    spec = LabSpec.from_dict(
        {
            "provider": {"type": "ssh", "verify_host_keys": True},
            "nodes": {
                "master": {"name": "master", "ip": "192.168.33.100", "cpus": 2, "memory_mib": 2048, "ssh_user": "ubuntu", "ssh_port": 2200, "ssh_key": "~/.ssh/lab"},
                "workers": [],
                "nfs": {"name": "nfs", "ip": "192.168.33.11", "cpus": 1, "memory_mib": 1024, "ssh_user": "admin"},
            },
        }
    )
    hosts = hosts_from_spec(spec)
    assert hosts["master"].address == "192.168.33.100" and hosts["master"].port == 2200
    assert hosts["master"].user == "ubuntu" and hosts["master"].verify_host_key is True
    assert hosts["master"].key_file == Path("~/.ssh/lab").expanduser()
    assert hosts["nfs"].key_file is None and hosts["nfs"].roles == ("nfs",)
    lab = Lab.of(spec, state_dir=tmp_path)
    assert ssh_argv(lab, "master", ["uptime"]) == [
        "ssh", "-p", "2200", "-i", str(Path("~/.ssh/lab").expanduser()), "ubuntu@192.168.33.100", "uptime"
    ]
    with pytest.raises(LifecycleError, match="no node 'db'"):
        ssh_argv(lab, "db")


def test_ssh_to_a_vagrant_lab_uses_the_saved_ssh_config(tmp_path, default_spec):
    lab = Lab.of(default_spec, state_dir=tmp_path)
    with pytest.raises(LifecycleError, match="run `labctl create`"):
        ssh_argv(lab, "master")
    lab.ssh_config.write_text(SSH_CONFIG)
    assert ssh_argv(lab, "master") == ["ssh", "-F", str(lab.ssh_config), "master"]
