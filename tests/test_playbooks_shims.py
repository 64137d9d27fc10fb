"""The fake API server behind the kubectl/kubeadm TEST DOUBLES (tests/shims/lib/fake_apiserver.py) can
say no: the ssh e2e test only means something if the doubles refuse what a real cluster refuses.
Run on the host, against a state file in tmp_path."""

from __future__ import annotations

import importlib.util
import json
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

SHIMS = Path(__file__).resolve().parent / "shims"


@pytest.fixture
def api(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("fake_apiserver_under_test", SHIMS / "lib" / "fake_apiserver.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "STATE", tmp_path / "apiserver.json")
    module.save({"objects": module.kubeadm_addons(), "nodes": ["master"], "tokens": [], "joins": [],
                 "service_cidr": "10.96.0.0/12", "pod_cidr": "10.10.0.0/16", "version": "test"})  # fmt: skip
    yield module
    sys.modules.pop(spec.name, None)


def kubectl(api, *argv: str, files: dict[str, str] | None = None) -> tuple[int, str, str]:
    return api.kubectl(list(argv), [{"name": n, "text": t} for n, t in (files or {}).items()])


def www(name: str) -> dict[str, str]:
    return {name: (SHIMS / "www" / name).read_text()}


POOL = """apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lab, namespace: metallb-system}
spec: {addresses: ["10.251.1.200-10.251.1.203"], autoAssign: false}
"""


def test_address_pool_is_refused_until_metallb_runs(api):
    ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: metallb-system}\n"
    assert kubectl(api, "apply", "-f", "ns.yaml", files={"ns.yaml": ns})[0] == 0
    code, _, err = kubectl(api, "apply", "--server-side", "-f", "pool.yaml", files={"pool.yaml": POOL})
    assert code == 1 and "failed calling webhook" in err and "connection refused" in err
    assert kubectl(api, "apply", "--server-side", "-f", "m.yaml", files=www("metallb-native.yaml"))[0] == 0
    assert kubectl(api, "apply", "--server-side", "-f", "pool.yaml", files={"pool.yaml": POOL})[0] == 0


def test_nodes_are_not_ready_without_the_pod_network(api):
    code, _, err = kubectl(api, "wait", "--for=condition=Ready", "node/master", "--timeout=5s")
    assert code == 1 and "timed out" in err
    assert kubectl(api, "apply", "--server-side", "-f", "c.yaml", files=www("calico.yaml"))[0] == 0
    assert kubectl(api, "wait", "--for=condition=Ready", "node/master", "--timeout=5s")[0] == 0
    code, _, err = kubectl(api, "get", "nodes", "master", "worker1")
    assert code == 1 and 'nodes "worker1" not found' in err


def test_diff_reports_a_change_until_it_is_applied(api):
    calico = www("calico.yaml")
    assert kubectl(api, "diff", "--server-side", "-f", "c.yaml", files=calico)[0] == 1
    kubectl(api, "apply", "--server-side", "-f", "c.yaml", files=calico)
    assert kubectl(api, "diff", "--server-side", "-f", "c.yaml", files=calico) == (0, "", "")
    changed = {"c.yaml": calico["calico.yaml"].replace('value: "Always"', 'value: "Never"')}
    code, out, _ = kubectl(api, "diff", "--server-side", "-f", "c.yaml", files=changed)
    assert code == 1 and "+" in out and "Never" in out


def test_namespaced_objects_need_their_namespace(api):
    svc = "apiVersion: v1\nkind: Service\nmetadata: {name: ollama, namespace: llm}\nspec: {ports: [{port: 11434}]}\n"
    code, _, err = kubectl(api, "apply", "-f", "s.yaml", files={"s.yaml": svc})
    assert code == 1 and 'namespaces "llm" not found' in err
    ns = "apiVersion: v1\nkind: Namespace\nmetadata: {name: llm}\n---\n"
    assert kubectl(api, "apply", "-f", "s.yaml", files={"s.yaml": ns + svc})[0] == 0


def test_jsonpath_answers_the_queries_the_playbooks_make(api):
    kubectl(api, "apply", "-f", "m.yaml", files=www("metallb-native.yaml"))
    kubectl(api, "apply", "-f", "p.yaml", files={"p.yaml": POOL})
    lb = (
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: ui\n  namespace: metallb-system\n"
        "  annotations: {metallb.io/loadBalancerIPs: 10.251.1.200}\nspec: {type: LoadBalancer, ports: [{port: 8080}]}\n"
    )
    kubectl(api, "apply", "-f", "lb.yaml", files={"lb.yaml": lb})
    code, out, _ = kubectl(api, "-n", "metallb-system", "get", "service", "ui", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip}")
    assert (code, out) == (0, "10.251.1.200")
    code, out, _ = kubectl(api, "-n", "metallb-system", "get", "service", "ui", "-o", "jsonpath={.spec.clusterIP}")
    assert code == 0 and out.startswith("10.")
    query = "jsonpath={.items[*].endpoints[*].addresses[*]}"
    code, out, _ = kubectl(api, "-n", "metallb-system", "get", "endpointslices", "-l", "kubernetes.io/service-name=metallb-webhook-service", "-o", query)
    assert code == 0 and out  # the webhook Service selects the controller Deployment
    code, out, _ = kubectl(api, "get", "node", "master", "-o", 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')
    assert (code, out) == (0, "False")
    code, _, err = kubectl(api, "get", "node", "master", "-o", "jsonpath={.items[1:2]}")
    assert code == 1 and "test double" in err  # unsupported syntax fails loudly instead of answering
    # {range}: how the control-plane step lists taints (kubeadm's NoSchedule taint on the master)
    code, out, _ = kubectl(api, "get", "node", "master", "-o", 'jsonpath={range .spec.taints[*]}{.key}:{.effect}{"\\n"}{end}')
    assert (code, out) == (0, "")  # this fixture's master was made without kubeadm's marks


def test_a_lone_control_plane_announces_load_balancer_addresses_only_without_the_exclude_label(api):
    """kubeadm marks the control plane (kubernetes/kubernetes@v1.36.4 markcontrolplane.go); MetalLB's
    speaker skips nodes labelled exclude-from-external-load-balancers (metallb/metallb@v0.16.1
    speaker/layer2_controller.go). The fake reproduces both, so the no-workers step is needed."""
    st = api.load()
    st["node_meta"] = {"master": api.control_plane_meta()}
    api.save(st)
    taints = 'jsonpath={range .spec.taints[*]}{.key}:{.effect}{"\\n"}{end}'
    assert kubectl(api, "get", "node", "master", "-o", taints)[1] == "node-role.kubernetes.io/control-plane:NoSchedule\n"
    assert api.announcing_nodes(api.load()) == []
    assert kubectl(api, "taint", "node", "master", "node-role.kubernetes.io/control-plane:NoSchedule-")[0] == 0
    assert kubectl(api, "taint", "node", "master", "node-role.kubernetes.io/control-plane:NoSchedule-")[0] == 1  # gone
    label = "node.kubernetes.io/exclude-from-external-load-balancers"
    assert label in kubectl(api, "get", "node", "master", "-o", "json")[1]
    assert kubectl(api, "label", "node", "master", f"{label}-")[0] == 0
    assert kubectl(api, "label", "node", "master", f"{label}-")[0] == 0  # absent: still fine, like kubectl
    assert label not in kubectl(api, "get", "node", "master", "-o", "json")[1]
    assert api.announcing_nodes(api.load()) == ["master"]


def test_join_needs_a_token_the_control_plane_issued(api):
    server = api.ThreadingHTTPServer(("127.0.0.1", 0), api.Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}/labctl-shim"

    def post(path: str, body: dict) -> int:
        req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status
        except urllib.error.HTTPError as err:
            return err.code

    try:
        join = {"token": "abcdef.0123456789abcdef", "ca_hash": "sha256:" + "0" * 64, "node": "worker1"}
        assert post("/join", join) == 403
        assert post("/token", {"token": join["token"]}) == 200
        assert post("/join", join) == 200
        assert post("/join", join) == 409  # a second node with that name
        state = api.load()
        assert state["joins"] == [{"node": "worker1", "token_id": "abcdef"}] and state["nodes"] == ["master", "worker1"]
    finally:
        server.shutdown()
        server.server_close()
