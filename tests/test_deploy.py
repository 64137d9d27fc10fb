"""`labctl deploy` against a kubectl TEST DOUBLE (tests/doubles/kubectl_test_double.py) on PATH.

The double records every call and answers the preflight queries from a cluster described in JSON;
the tests check the one-line errors, that nothing is created when the preflight fails, and that
`kubectl apply` receives the right bundle on stdin.
"""

from __future__ import annotations

import base64
import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from labctl.cli import cli
from labctl.secrets import load_or_create

DOUBLE = Path(__file__).parent / "doubles" / "kubectl_test_double.py"


class Cluster:
    """A fake cluster: the state the double answers from, and the calls it recorded."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **state: Any) -> None:
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        wrapper = self.bin / "kubectl"
        wrapper.write_text(f'#!/bin/sh\n# TEST DOUBLE of kubectl\nexec "{sys.executable}" "{DOUBLE}" "$@"\n')
        wrapper.chmod(0o755)
        self.state_path = tmp_path / "cluster.json"
        self.log_path = tmp_path / "kubectl-calls.jsonl"
        self.kubeconfig = tmp_path / "kubeconfig"
        self.kubeconfig.write_text("apiVersion: v1\nkind: Config\n# test kubeconfig, never printed\n")
        self.kubeconfig.chmod(0o600)
        self.home = tmp_path / "labctl-home"
        cluster = {
            "namespaces": ["default", "kube-system"],
            "storageclasses": [{"name": "local-path", "default": True}, {"name": "nfs", "provisioner": "nfs.csi.k8s.io"}],
            "nodes": [{"name": "node1"}],
            "runtimeclasses": [],
            "apiservices": [],
            "secrets": {},
        }
        cluster.update(state)
        self.state_path.write_text(json.dumps(cluster))
        monkeypatch.setenv("PATH", str(self.bin))
        monkeypatch.setenv("KUBECTL_TEST_DOUBLE_STATE", str(self.state_path))
        monkeypatch.setenv("KUBECTL_TEST_DOUBLE_LOG", str(self.log_path))
        monkeypatch.setenv("LABCTL_HOME", str(self.home))
        monkeypatch.chdir(tmp_path)

    def calls(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]

    def mutating(self) -> list[list[str]]:
        return [c["args"] for c in self.calls() if c["args"][0] in ("create", "apply")]

    def applied(self) -> list[dict[str, Any]]:
        applies = [c for c in self.calls() if c["args"][0] == "apply"]
        assert len(applies) == 1
        return [d for d in yaml.safe_load_all(applies[0]["stdin"]) if d]

    def deploy(self, *args: str, lab: str | None = None) -> Any:
        cmd = ["deploy", "--kubeconfig", str(self.kubeconfig), *args]
        if lab is not None:
            Path("lab.yaml").write_text(lab)
        return CliRunner().invoke(cli, cmd)


def error_line(result: Any) -> str:
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_deploy_creates_namespace_and_applies_the_apps_bundle(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch)
    result = cluster.deploy("--namespace", "alice", "--context", "classroom")
    assert result.exit_code == 0, result.output
    assert ["create", "namespace", "alice"] in cluster.mutating()
    for call in cluster.calls():
        assert call["flags"] == {"--kubeconfig": str(cluster.kubeconfig), "--context": "classroom"}
    objs = cluster.applied()
    assert {o["metadata"]["namespace"] for o in objs if o["kind"] != "ClusterRole"} == {"alice"}
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objs}
    assert {("Deployment", "ollama"), ("Deployment", "open-webui"), ("Secret", "open-webui-secret")} <= kinds
    assert not any(o["kind"] in ("Namespace", "PersistentVolume", "StorageClass") for o in objs)
    pvc = next(o for o in objs if o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"] == "ollama-models")
    assert pvc["spec"]["storageClassName"] == "local-path"  # the cluster's default, resolved by the preflight
    assert "deployment/ollama created" in result.output
    assert "port-forward svc/open-webui 8080:8080" in result.output
    # The secret: stored 0600 per (lab, context, namespace), sent only on stdin, never printed.
    state = cluster.home / "llm-lab" / "deploy" / "classroom--alice"
    assert stat.S_IMODE((state / "secrets.json").stat().st_mode) == 0o600
    key = load_or_create(state).webui_secret_key
    secret = next(o for o in objs if o["kind"] == "Secret")
    assert base64.b64decode(secret["data"]["WEBUI_SECRET_KEY"]).decode() == key
    assert key not in result.output and base64.b64encode(key.encode()).decode() not in result.output
    assert all(key not in " ".join(c["argv"]) for c in cluster.calls())
    assert "never printed" not in result.output  # the kubeconfig's content stays put


def test_redeploy_keeps_the_same_secret(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch, namespaces=["alice"])
    assert cluster.deploy("--namespace", "alice").exit_code == 0
    first = [c["stdin"] for c in cluster.calls() if c["args"][0] == "apply"]
    assert cluster.deploy("--namespace", "alice").exit_code == 0
    second = [c["stdin"] for c in cluster.calls() if c["args"][0] == "apply"]
    assert len(second) == 2 and second[1] == first[0]
    assert ["create", "namespace", "alice"] not in cluster.mutating()


def test_students_side_by_side(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch)
    lab = "apps:\n  options:\n    monitoring: true\n"
    assert cluster.deploy("--namespace", "alice", "--cluster-rbac", lab=lab).exit_code == 0
    assert cluster.deploy("--namespace", "bob", "--cluster-rbac", lab=lab).exit_code == 0
    applies = [c for c in cluster.calls() if c["args"][0] == "apply"]
    docs = [[d for d in yaml.safe_load_all(c["stdin"]) if d] for c in applies]
    names = [{(d["kind"], d["metadata"]["name"]) for d in ds if "namespace" not in d["metadata"]} for ds in docs]
    assert names[0] and not names[0] & names[1], "cluster-scoped names must differ per student"
    assert {d["metadata"]["namespace"] for d in docs[1] if "namespace" in d["metadata"]} == {"bob"}
    keys = [next(d for d in ds if d["kind"] == "Secret")["data"]["WEBUI_SECRET_KEY"] for ds in docs]
    assert keys[0] != keys[1], "each student's Open WebUI gets its own signing key"


def test_dry_run_creates_nothing(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch)
    result = cluster.deploy("--namespace", "alice", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would create namespace alice" in result.output
    assert cluster.mutating() == [["apply", "--dry-run=client", "-n", "alice", "-f", "-"]]
    assert "nothing was created" in result.output
    cluster2_state = json.loads(cluster.state_path.read_text())
    assert "alice" not in cluster2_state["namespaces"]
    assert not (cluster.home / "llm-lab" / "deploy").exists(), "a dry run stores no secret"


def test_dry_run_in_existing_namespace_asks_the_server(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch, namespaces=["alice"])
    result = cluster.deploy("--namespace", "alice", "--dry-run")
    assert result.exit_code == 0, result.output
    assert cluster.mutating() == [["apply", "--dry-run=server", "-n", "alice", "-f", "-"]]
    assert "(server dry run)" in result.output


def test_no_kubectl_on_path(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch)
    (cluster.bin / "kubectl").unlink()
    result = cluster.deploy()
    assert result.exit_code == 1
    assert "kubectl not found on PATH" in error_line(result)


def test_missing_kubeconfig(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch)
    cluster.kubeconfig.unlink()
    result = cluster.deploy()
    assert result.exit_code == 1 and "--kubeconfig" in error_line(result)
    assert cluster.calls() == []


def test_unknown_storage_class_stops_before_anything_is_created(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch)
    result = cluster.deploy("--namespace", "alice", "--storage-class", "fast-ssd")
    assert result.exit_code == 1
    line = error_line(result)
    assert "--storage-class" in line and "fast-ssd" in line and "local-path, nfs" in line
    assert cluster.mutating() == []


def test_no_default_storage_class(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch, storageclasses=[{"name": "slow"}])
    result = cluster.deploy()
    assert result.exit_code == 1
    assert "no default storage class" in error_line(result) and "slow" in error_line(result)
    assert cluster.mutating() == []


def test_nfs_data_class_gets_a_note(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch)
    result = cluster.deploy("--storage-class", "nfs")
    assert result.exit_code == 0, result.output
    assert "note: storage class nfs is NFS" in result.output
    result = cluster.deploy("--storage-class", "nfs", "--data-storage-class", "local-path")
    assert "note:" not in result.output
    pvc = next(
        o
        for o in yaml.safe_load_all([c for c in cluster.calls() if c["args"][0] == "apply"][-1]["stdin"])
        if o and o["metadata"]["name"] == "open-webui-data"
    )
    assert pvc["spec"]["storageClassName"] == "local-path"


def test_gpu_requested_but_none_allocatable(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch)
    result = cluster.deploy("--gpu")
    assert result.exit_code == 1
    assert "no node has allocatable nvidia.com/gpu" in error_line(result)
    assert cluster.mutating() == []


def test_gpu_with_device_plugin_and_runtime_class(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(
        tmp_path, monkeypatch, nodes=[{"name": "cpu1"}, {"name": "gpu1", "gpus": 2}], runtimeclasses=["nvidia"]
    )
    result = cluster.deploy("--gpu", "--namespace", "alice")
    assert result.exit_code == 0, result.output
    assert "ok: 2 allocatable nvidia.com/gpu" in result.output
    ollama = next(o for o in cluster.applied() if o["kind"] == "Deployment" and o["metadata"]["name"] == "ollama")
    pod = ollama["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_gpu_without_runtime_class_notes_it(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch, nodes=[{"name": "gpu1", "gpus": 1}])
    result = cluster.deploy("--gpu")
    assert result.exit_code == 0, result.output
    assert "no RuntimeClass nvidia" in result.output
    ollama = next(o for o in cluster.applied() if o["kind"] == "Deployment" and o["metadata"]["name"] == "ollama")
    assert "runtimeClassName" not in ollama["spec"]["template"]["spec"]


def test_autoscaling_needs_metrics_api(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch)
    result = cluster.deploy("--storage-class", "nfs", lab="apps:\n  options:\n    autoscaling: true\n")
    assert result.exit_code == 1 and "metrics-server" in error_line(result)
    assert cluster.mutating() == []


def test_autoscaling_on_k3s_local_path_is_refused_with_the_fix(tmp_path: Path, monkeypatch) -> None:
    """k3s: local-path is the default class and metrics-server ships with it, so the old preflight
    passed, and the ReadWriteMany models claim never bound. local-path-provisioner refuses every
    access mode but ReadWriteOnce(Pod) ("NodePath only supports ReadWriteOnce and ReadWriteOncePod",
    rancher/local-path-provisioner provisioner.go)."""
    lab = "apps:\n  options:\n    autoscaling: true\n"
    cluster = Cluster(tmp_path, monkeypatch, apiservices=["v1beta1.metrics.k8s.io"])
    result = cluster.deploy(lab=lab)
    assert result.exit_code == 1
    line = error_line(result)
    assert "storage class local-path" in line and "ReadWriteOnce" in line and "--storage-class" in line and "nfs" in line
    assert cluster.mutating() == []
    result = cluster.deploy("--storage-class", "nfs", lab=lab)
    assert result.exit_code == 0, result.output
    pvc = next(o for o in cluster.applied() if o["metadata"]["name"] == "ollama-models")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"] and pvc["spec"]["storageClassName"] == "nfs"


# ---- a student with rights only in their own namespace --------------------------------------------
STUDENT = {"user": "namespace-only", "own_namespaces": ["alice"], "namespaces": ["default", "alice"]}


def test_namespace_only_student_deploys_everything_with_cannot_check_notes(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch, **STUDENT)
    lab = "apps:\n  options:\n    monitoring: true\n"
    result = cluster.deploy("--namespace", "alice", "--storage-class", "nfs", "--gpu", lab=lab)
    assert result.exit_code == 0, result.output
    assert "cannot check storage class nfs (you may not list StorageClasses) — using it as given" in result.output
    assert "cannot check allocatable GPUs" in result.output and "cannot check namespace alice" in result.output
    assert "monitoring without --cluster-rbac" in result.output
    # Asked first, never run into a Forbidden: every cluster-wide get was preceded by a "no".
    gets = [c["args"] for c in cluster.calls() if c["args"][0] == "get"]
    assert all(a[1] == "secret" for a in gets), gets
    objs = cluster.applied()
    assert all("namespace" in o["metadata"] for o in objs), "no cluster-scoped object unless --cluster-rbac"
    pvc = next(o for o in objs if o["metadata"]["name"] == "ollama-models")
    assert pvc["spec"]["storageClassName"] == "nfs"


def test_namespace_only_student_without_storage_class_gets_the_default(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch, **STUDENT)
    result = cluster.deploy("--namespace", "alice")
    assert result.exit_code == 0, result.output
    assert "cannot check the cluster's default storage class" in result.output
    pvc = next(o for o in cluster.applied() if o["metadata"]["name"] == "ollama-models")
    assert "storageClassName" not in pvc["spec"]


def test_cluster_rbac_is_checked_before_anything_is_created(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch, **STUDENT)
    lab = "apps:\n  options:\n    monitoring: true\n"
    result = cluster.deploy("--namespace", "alice", "--cluster-rbac", lab=lab)
    assert result.exit_code == 1
    line = error_line(result)
    assert "--cluster-rbac: you may not create clusterroles, create clusterrolebindings, list nodes, get nodes/metrics" in line
    assert cluster.mutating() == []


def test_partial_apply_names_every_object_that_failed(tmp_path: Path, monkeypatch) -> None:
    """kubectl apply goes on after an object is refused and exits 1 at the end; the old deploy
    printed only the last stderr line, so a Prometheus without its ClusterRole looked like a failure
    of something else. Here RBAC says yes but the objects are refused at apply (an admission policy)."""
    cluster = Cluster(tmp_path, monkeypatch, **STUDENT, cannot=[])
    state = json.loads(cluster.state_path.read_text())
    state["user"] = "admin"
    state["refuse_kinds"] = ["ClusterRole", "ClusterRoleBinding"]
    cluster.state_path.write_text(json.dumps(state))
    lab = "apps:\n  options:\n    monitoring: true\n"
    result = cluster.deploy("--namespace", "alice", "--cluster-rbac", lab=lab)
    assert result.exit_code == 1
    line = error_line(result)
    assert "partial: 2 object(s) failed" in line
    assert "ClusterRole/labctl-prometheus-alice, ClusterRoleBinding/labctl-prometheus-alice" in line
    assert "deployment/prometheus created" in result.output  # what did apply is still shown


def test_restricted_pod_security_is_refused_before_anything_is_created(tmp_path: Path, monkeypatch) -> None:
    labels = {"alice": {"pod-security.kubernetes.io/enforce": "restricted"}}
    cluster = Cluster(tmp_path, monkeypatch, namespaces=["alice"], namespace_labels=labels)
    result = cluster.deploy("--namespace", "alice")
    assert result.exit_code == 1
    assert "enforces Pod Security 'restricted'" in error_line(result) and "baseline" in error_line(result)
    assert cluster.mutating() == []
    labels["alice"]["pod-security.kubernetes.io/enforce"] = "baseline"
    state = json.loads(cluster.state_path.read_text())
    state["namespace_labels"] = labels
    cluster.state_path.write_text(json.dumps(state))
    result = cluster.deploy("--namespace", "alice")
    assert result.exit_code == 0 and "Pod Security 'baseline'" in result.output


INGRESS = "apps:\n  options:\n    ingress: true\n    ingress_class: {cls}\n"


def test_ingress_annotations_follow_the_ingress_class_controller(tmp_path: Path, monkeypatch) -> None:
    classes = {"traefik": "traefik.io/ingress-controller", "nginx": "nginx.org/ingress-controller"}
    cluster = Cluster(tmp_path, monkeypatch, ingressclasses=classes)
    assert cluster.deploy(lab=INGRESS.format(cls="traefik")).exit_code == 0
    ing = next(o for o in cluster.applied() if o["kind"] == "Ingress")
    assert ing["spec"]["ingressClassName"] == "traefik"
    assert not any(k.startswith("nginx") for k in ing["metadata"].get("annotations", {}))
    # F5's NGINX Ingress Controller also calls its class "nginx" but reads only nginx.org/* annotations.
    assert cluster.deploy(lab=INGRESS.format(cls="nginx")).exit_code == 0
    ing = [o for c in cluster.calls() if c["args"][0] == "apply" for o in yaml.safe_load_all(c["stdin"]) if o][-1]
    assert ing["metadata"]["annotations"]["nginx.org/websocket-services"] == "open-webui"
    assert not any(k.startswith("nginx.ingress.kubernetes.io") for k in ing["metadata"]["annotations"])


def test_missing_ingress_class_is_refused_with_the_classes_there(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch, ingressclasses={"traefik": "traefik.io/ingress-controller"})
    result = cluster.deploy(lab=INGRESS.format(cls="nginx"))
    assert result.exit_code == 1
    assert "no IngressClass 'nginx' (it has: traefik)" in error_line(result)
    assert cluster.mutating() == []


def test_openai_secret_must_exist(tmp_path: Path, monkeypatch) -> None:
    lab = "apps:\n  options:\n    openai_secret: openai-upstream\n"
    cluster = Cluster(tmp_path, monkeypatch, namespaces=["alice"])
    result = cluster.deploy("--namespace", "alice", lab=lab)
    assert result.exit_code == 1 and "create secret generic openai-upstream" in error_line(result)
    state = json.loads(cluster.state_path.read_text())
    state["secrets"] = {"alice": ["openai-upstream"]}
    cluster.state_path.write_text(json.dumps(state))
    assert cluster.deploy("--namespace", "alice", lab=lab).exit_code == 0


def test_namespace_creation_forbidden(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch, forbid_create_namespace=True)
    result = cluster.deploy("--namespace", "alice")
    assert result.exit_code == 1
    line = error_line(result)
    assert "cannot create namespace alice" in line and "Forbidden" in line and "administrator" in line
    assert not any(c[0] == "apply" for c in cluster.mutating())


def test_unreachable_cluster(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch, unreachable=True)
    result = cluster.deploy()
    assert result.exit_code == 1
    assert "was refused" in error_line(result)


def test_bad_namespace_name(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch)
    result = cluster.deploy("--namespace", "Alice_Smith")
    assert result.exit_code == 1 and "--namespace" in error_line(result)
    assert cluster.calls() == []


def test_partial_apply_parser_reads_real_kubectl_lines() -> None:
    """kubectl apply prints `<resource>[.<group>]/<name> <verb>` per object (created, configured,
    unchanged, serverside-applied, with a dry-run suffix); every bundle object not listed failed."""
    from labctl.deploy import _not_applied

    bundle = "\n---\n".join(
        f"apiVersion: v1\nkind: {kind}\nmetadata:\n  name: {name}"
        for kind, name in [
            ("Deployment", "ollama"),
            ("Service", "ollama"),
            ("ClusterRole", "labctl-prometheus-alice"),
            ("HorizontalPodAutoscaler", "ollama"),
            ("Job", "ollama-pull-1a2b3c4d"),
        ]
    )
    stdout = (
        "deployment.apps/ollama configured\n"
        "service/ollama unchanged\n"
        "horizontalpodautoscaler.autoscaling/ollama serverside-applied\n"
        "job.batch/ollama-pull-1a2b3c4d created (server dry run)\n"
    )
    assert _not_applied(bundle, stdout) == ["ClusterRole/labctl-prometheus-alice"]
    assert _not_applied(bundle, stdout + "clusterrole.rbac.authorization.k8s.io/labctl-prometheus-alice created\n") == []


GATEWAY = "apps:\n  options:\n    gateway: {gw}\n    ingress_host: chat.example.org\n"


def test_gateway_api_route_checks_the_gateway(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch, namespaces=["alice", "infra"], gateways={"infra": ["shared"]})
    result = cluster.deploy("--namespace", "alice", lab=GATEWAY.format(gw="infra/missing"))
    assert result.exit_code == 1 and "no Gateway 'missing' in namespace infra" in error_line(result)
    assert cluster.mutating() == []
    result = cluster.deploy("--namespace", "alice", lab=GATEWAY.format(gw="infra/shared"))
    assert result.exit_code == 0, result.output
    assert "must allow routes from alice" in result.output
    route = next(o for o in cluster.applied() if o["kind"] == "HTTPRoute")
    assert route["spec"]["parentRefs"] == [{"name": "shared", "namespace": "infra"}]
    assert route["spec"]["hostnames"] == ["chat.example.org"]


def test_gateway_in_a_namespace_the_student_cannot_read(tmp_path: Path, monkeypatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch, **STUDENT, gateways={"infra": ["shared"]})
    result = cluster.deploy("--namespace", "alice", lab=GATEWAY.format(gw="infra/shared"))
    assert result.exit_code == 0, result.output
    assert "cannot check Gateway infra/shared (you may not read Gateways in infra)" in result.output


def test_image_pull_secret_missing_is_a_note_not_an_error(tmp_path: Path, monkeypatch) -> None:
    """The kubelet pulls anonymously when an imagePullSecrets entry names no Secret: deploy goes on
    and says how to create it (a logged-in Docker Hub account gets 100 pulls an hour, not 10)."""
    lab = "apps:\n  options:\n    image_pull_secret: hub-login\n"
    cluster = Cluster(tmp_path, monkeypatch, namespaces=["alice"])
    result = cluster.deploy("--namespace", "alice", lab=lab)
    assert result.exit_code == 0, result.output
    assert "create secret docker-registry hub-login" in result.output
    pods = [o for o in cluster.applied() if o["kind"] in ("Deployment", "Job")]
    assert pods and all(o["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "hub-login"}] for o in pods)
    state = json.loads(cluster.state_path.read_text())
    state["secrets"] = {"alice": ["hub-login"]}
    cluster.state_path.write_text(json.dumps(state))
    assert "docker-registry" not in cluster.deploy("--namespace", "alice", lab=lab).output


def test_student_who_cannot_read_the_namespace_gets_a_pod_security_probe(tmp_path: Path, monkeypatch) -> None:
    """Pod Security admission enforces on Pods, not on Deployments: under 'restricted' the apply
    succeeds and no pod is ever created. A student cannot read the namespace's label, so deploy asks
    the API server with a server-side dry run of the pods before it applies anything."""
    labels = {"alice": {"pod-security.kubernetes.io/enforce": "restricted"}}
    cluster = Cluster(tmp_path, monkeypatch, **STUDENT, namespace_labels=labels)
    result = cluster.deploy("--namespace", "alice")
    assert result.exit_code == 1
    line = error_line(result)
    assert "enforces a Pod Security level its pods do not meet" in line and "violates PodSecurity" in line
    assert [c for c in cluster.mutating() if c[0] == "apply"] == []
    probes = [c for c in cluster.calls() if c["args"][:2] == ["create", "--dry-run=server"]]
    kinds = {d["kind"] for d in yaml.safe_load_all(probes[0]["stdin"]) if d}
    assert kinds == {"Pod"}
    # baseline (or no label): the probe passes and the deploy goes on
    state = json.loads(cluster.state_path.read_text())
    state["namespace_labels"] = {"alice": {"pod-security.kubernetes.io/enforce": "baseline"}}
    cluster.state_path.write_text(json.dumps(state))
    assert cluster.deploy("--namespace", "alice").exit_code == 0
