"""A lab without workers, every playbook end to end over real SSH (master + nfs netns nodes, the
node-side TEST DOUBLES of tests/shims). kubeadm's double marks the control plane as kubeadm does
(kubernetes/kubernetes@v1.36.4 markcontrolplane.go: the NoSchedule taint and the
exclude-from-external-load-balancers label), and the fake API server answers a LoadBalancer address
only while some node may announce it (metallb/metallb@v0.16.1 speaker/layer2_controller.go skips
nodes with that label). So verify's check of Open WebUI's address passes only because the
control-plane playbook removed the label as well as the taint (issue #12 item 1)."""

from __future__ import annotations

import json

import pytest

from labctl.plan import build_plan
from labctl.spec import LabSpec
from tests.shims import node_files
from tests.ssh.test_playbooks_e2e import EXPORT, routes, run, statuses

pytestmark = pytest.mark.ssh
NAMES = ["master", "nfs"]


def spec_without_workers(nodes) -> LabSpec:
    ip = {n: nodes[n].address for n in NAMES}
    prefix = ip["master"].rsplit(".", 1)[0]
    node = {"cpus": 2, "memory_mib": 2048, "ssh_user": nodes["master"].user}
    return LabSpec.from_dict(
        {
            "name": "netns-solo",
            "provider": {"type": "ssh"},
            "network": {"subnet": f"{prefix}.0/24", "metallb_pool": f"{prefix}.200-{prefix}.203"},
            "nodes": {
                "master": {"name": "master", "ip": ip["master"], **node},
                "workers": [],
                "nfs": {"name": "nfs", "ip": ip["nfs"], **node, "cpus": 1, "memory_mib": 1024, "export": EXPORT},
            },
        }
    )


def test_a_lab_without_workers_announces_open_webui_from_the_control_plane(ssh_nodes, tmp_path):
    nodes = ssh_nodes(NAMES, files=node_files(*routes(LabSpec.default())))
    spec = spec_without_workers(nodes)
    plan = build_plan(spec, include_provider=False)
    assert "control-plane.allow-workloads-on-control-plane" in {s.id for s in plan.steps}

    report, console, _ = run(nodes, spec, plan, tmp_path, "first")
    done = statuses(report)
    assert done[("control-plane.allow-workloads-on-control-plane", "master")] == "done"
    assert done[("verify.open-webui-answers", "master")] in ("done", "skipped"), console
    state = json.loads(nodes.read("master", "/var/lib/labctl-shims/apiserver.json"))
    meta = state["node_meta"]["master"]
    assert "node.kubernetes.io/exclude-from-external-load-balancers" not in meta["labels"]
    assert "node-role.kubernetes.io/control-plane" in meta["labels"]  # the role label stays
    assert meta["taints"] == []

    second, _, _ = run(nodes, spec, plan, tmp_path, "second")
    assert statuses(second)[("control-plane.allow-workloads-on-control-plane", "master")] == "skipped"
