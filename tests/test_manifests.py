"""Rendering of the apps layer: bundles, artefacts, secrets, sizing, options, deploy mode, golden files."""

from __future__ import annotations

import copy
import os
import stat
from pathlib import Path

import pytest
from manifest_cases import CASES, TEST_SECRETS, bundles, objects, spec_with

from labctl.artefacts import REMOTE_DIR, build_artefacts
from labctl.manifests import (
    ManifestError,
    Target,
    deploy_target,
    load_objects,
    render_bundles,
)
from labctl.placement import ollama_resources, pull_job_name
from labctl.secrets import LabSecrets, load_or_create, secrets_path
from labctl.spec import LabSpec

GOLDEN = Path(__file__).parent / "golden" / "manifests"


def by_kind(objs: list[dict], kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[dict], kind: str, name: str) -> dict:
    found = by_kind(objs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def container(deployment: dict, name: str | None = None) -> dict:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return containers[0] if name is None else next(c for c in containers if c["name"] == name)


def env_of(c: dict) -> dict[str, dict]:
    return {e["name"]: e for e in c.get("env", [])}


# ---- golden ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("bundle", ["metallb-config", "storage", "apps"])
def test_default_bundle_matches_golden_file(bundle: str) -> None:
    text = bundles("default")[bundle]
    path = GOLDEN / f"default-{bundle}.yaml"
    if os.environ.get("LABCTL_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} missing — run with LABCTL_UPDATE_GOLDEN=1 once and review the diff"
    assert text == path.read_text(encoding="utf-8"), f"{bundle} changed — review, then LABCTL_UPDATE_GOLDEN=1"


# ---- artefact contract with the playbooks ----------------------------------------------------------
def test_build_artefacts_names_destinations_and_secret_marking(tmp_path: Path) -> None:
    arts = build_artefacts(LabSpec.default(), tmp_path, secrets=TEST_SECRETS)
    assert list(arts) == ["metallb-config", "storage", "apps"]
    for name, art in arts.items():
        assert art.name == name
        assert art.dest == f"{REMOTE_DIR}/{name}.yaml"
    assert arts["apps"].secret and arts["apps"].mode == 0o600
    assert not arts["storage"].secret and not arts["metallb-config"].secret
    assert b"test-webui-secret-key" not in arts["apps"].content  # base64 in a Secret, never a literal
    assert not secrets_path(tmp_path).exists(), "injected secrets must not be written"


def test_build_artefacts_generates_secrets_once_per_lab(tmp_path: Path) -> None:
    first = build_artefacts(LabSpec.default(), tmp_path)["apps"].content
    path = secrets_path(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = build_artefacts(LabSpec.default(), tmp_path)["apps"].content
    assert first == second, "a second render must reuse the stored secret"
    other = build_artefacts(LabSpec.default(), tmp_path / "other-lab")["apps"].content
    assert other != first, "each lab has its own secret"


def test_secrets_file_mode_is_repaired_and_values_never_repr(tmp_path: Path) -> None:
    secrets = load_or_create(tmp_path)
    path = secrets_path(tmp_path)
    path.chmod(0o644)
    again = load_or_create(tmp_path)
    assert again == secrets
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secrets.webui_secret_key not in repr(secrets) and secrets.webui_secret_key not in str(secrets)


def test_corrupt_secrets_file_is_a_one_line_error(tmp_path: Path) -> None:
    from labctl.secrets import SecretsError

    secrets_path(tmp_path).write_text("{not json")
    with pytest.raises(SecretsError, match="unreadable lab secrets"):
        load_or_create(tmp_path)


def test_storage_class_keeps_data_across_rebuilds() -> None:
    sc = one(objects("default"), "StorageClass", "nfs-csi")
    assert sc["provisioner"] == "nfs.csi.k8s.io"
    assert sc["parameters"] == {
        "server": "192.168.33.11",
        "share": "/srv/nfs/lab",
        "subDir": "${pvc.metadata.namespace}/${pvc.metadata.name}",
        "onDelete": "retain",
    }
    assert sc["reclaimPolicy"] == "Retain"
    assert sc["mountOptions"] == ["nfsvers=4.1"]
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    deleting = render_bundles(spec_with(storage={"on_delete": "delete"}), TEST_SECRETS)["storage"]
    sc = load_objects(deleting)[0]
    assert sc["reclaimPolicy"] == "Delete" and sc["parameters"]["onDelete"] == "delete"


def test_metallb_pool_from_spec() -> None:
    objs = objects("default")
    pool = by_kind(objs, "IPAddressPool")[0]
    assert pool["spec"]["addresses"] == ["192.168.33.2-192.168.33.5"]
    assert pool["metadata"]["namespace"] == "metallb-system"
    adv = by_kind(objs, "L2Advertisement")[0]
    assert adv["spec"]["ipAddressPools"] == [pool["metadata"]["name"]]
    custom = render_bundles(spec_with(network={"metallb_pool": "192.168.33.20-192.168.33.29"}), TEST_SECRETS)
    assert load_objects(custom["metallb-config"])[0]["spec"]["addresses"] == ["192.168.33.20-192.168.33.29"]


# ---- core apps --------------------------------------------------------------------------------------
def test_ollama_deployment_from_spec() -> None:
    spec = spec_with(apps={"ollama": {"keep_alive": "-1", "num_parallel": 4, "max_loaded_models": 2}})
    objs = load_objects(render_bundles(spec, TEST_SECRETS)["apps"])
    dep = one(objs, "Deployment", "ollama")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    c = container(dep)
    assert c["image"] == "ollama/ollama:0.40.1"
    env = {k: v.get("value") for k, v in env_of(c).items()}
    assert env["OLLAMA_HOST"] == "0.0.0.0:11434"
    assert env["OLLAMA_KEEP_ALIVE"] == "-1" and env["OLLAMA_NUM_PARALLEL"] == "4"
    assert env["OLLAMA_MAX_LOADED_MODELS"] == "2"
    assert "OLLAMA_NOPRUNE" not in env
    mount = c["volumeMounts"][0]
    assert mount["mountPath"] == env["OLLAMA_MODELS"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/api/version"
    assert c["livenessProbe"]["initialDelaySeconds"] >= 60
    pvc = one(objs, "PersistentVolumeClaim", "ollama-models")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["storageClassName"] == "nfs-csi"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "20Gi"
    svc = one(objs, "Service", "ollama")
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["ports"][0]["port"] == 11434


def test_ollama_resources_follow_the_smallest_worker() -> None:
    # 8 GiB / 4 CPU: 8192 − (1024 + 819) − 64 − 2048 = 4237 → 4096 Mi; CPU 4 − 1 = 3.
    r = ollama_resources(LabSpec.default())
    assert (r.memory_limit, r.memory_request, r.cpu_limit, r.cpu_request) == ("4096Mi", "2048Mi", "3000m", "1500m")
    small = spec_with(
        nodes={
            "workers": [
                {"name": "worker1", "ip": "192.168.33.101", "cpus": 4, "memory_mib": 8192},
                {"name": "worker2", "ip": "192.168.33.102", "cpus": 2, "memory_mib": 6144},
            ]
        }
    )
    # worker2 holds no Open WebUI: 6144 − (1024 + 614) − 64 = 4442 → 4352; worker1 (the data node)
    # 8192 − 1843 − 64 − 2048 = 4237 → 4096 is the tighter one. CPU from the smallest: 2 − 1 = 1.
    r = ollama_resources(small)
    assert (r.memory_limit, r.cpu_limit) == ("4096Mi", "1000m")
    tiny = spec_with(nodes={"workers": [{"name": "w", "ip": "192.168.33.101", "cpus": 1, "memory_mib": 2048}]})
    assert ollama_resources(tiny).memory_limit == "1024Mi"  # floor


def test_memory_limits_on_the_ollama_node_fit_the_node() -> None:
    """Issue 16 item 10: with monitoring, Prometheus (1Gi), Grafana and blackbox land on the worker
    that holds Open WebUI; Ollama's limit used to leave room only for Open WebUI, and the limits
    added up to 9.6 GiB on an 8 GiB node."""
    from labctl.placement import SYSTEM_RESERVE_FRACTION, SYSTEM_RESERVE_MIB, data_node

    def mib(q: str) -> int:
        return int(q[:-2]) * (1024 if q.endswith("Gi") else 1)

    for options in ({}, {"monitoring": True}):
        spec = spec_with(options)
        node = data_node(spec)
        objs = load_objects(render_bundles(spec, TEST_SECRETS)["apps"])
        limits = sum(
            mib(c["resources"]["limits"]["memory"])
            for o in objs
            if o["kind"] in ("Deployment", "Job")
            for c in o["spec"]["template"]["spec"]["containers"]
        )
        reserve = SYSTEM_RESERVE_MIB + int(node.memory_mib * SYSTEM_RESERVE_FRACTION)
        assert limits <= node.memory_mib - reserve, (options, limits)
    r = ollama_resources(spec_with({"monitoring": True}))
    assert r.memory_limit == "2560Mi"


def test_model_pull_job_pulls_every_model_with_retries() -> None:
    spec = spec_with(apps={"ollama": {"models": ["llama3.2:1b", "qwen2.5:0.5b", "nomic-embed-text"]}})
    objs = load_objects(render_bundles(spec, TEST_SECRETS)["apps"])
    jobs = by_kind(objs, "Job")
    assert len(jobs) == 1
    job = jobs[0]
    assert job["metadata"]["name"] == pull_job_name(["llama3.2:1b", "qwen2.5:0.5b", "nomic-embed-text"])
    assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["ttlSecondsAfterFinished"] > 0
    c = container(job)
    assert c["image"].startswith("quay.io/curl/curl:")
    env = {k: v.get("value") for k, v in env_of(c).items()}
    assert env["MODELS"] == "llama3.2:1b qwen2.5:0.5b nomic-embed-text"
    assert env["OLLAMA_URL"] == "http://ollama.llm.svc:11434"
    script = c["args"][0]
    for needle in ("/api/pull", "--max-time", "/api/tags", "PULL_ATTEMPTS", '"status":"success"'):
        assert needle in script
    # A different model list is a different Job (pod templates are immutable).
    assert pull_job_name(["llama3.2:1b"]) != job["metadata"]["name"]


def test_model_pull_script_passes_shellcheck(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck; .ci/run installs it)")
    job = by_kind(objects("default"), "Job")[0]
    script = tmp_path / "pull.sh"
    script.write_text("#!/bin/sh\n" + container(job)["args"][0])
    result = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_open_webui_deployment_secret_and_storage() -> None:
    objs = objects("default")
    dep = one(objs, "Deployment", "open-webui")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    c = container(dep)
    assert c["image"] == "ghcr.io/open-webui/open-webui:v0.11.4"
    assert c["ports"][0]["containerPort"] == 8080
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["readinessProbe"]["httpGet"]["path"] == "/health/db"
    env = env_of(c)
    assert env["OLLAMA_BASE_URL"]["value"] == "http://ollama.llm.svc:11434"
    assert env["WEBUI_AUTH"]["value"] == "True"
    assert env["WEBUI_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "open-webui-secret",
        "key": "WEBUI_SECRET_KEY",
    }
    secret = one(objs, "Secret", "open-webui-secret")
    import base64

    assert base64.b64decode(secret["data"]["WEBUI_SECRET_KEY"]).decode() == TEST_SECRETS.webui_secret_key
    # DATA_DIR (webui.db + the vector store, both SQLite) is on a node-local volume, not the NFS class.
    pvc = one(objs, "PersistentVolumeClaim", "open-webui-data")
    assert pvc["spec"]["storageClassName"] == "" and pvc["spec"]["volumeName"] == "open-webui-data-llm"
    pv = one(objs, "PersistentVolume", "open-webui-data-llm")
    assert pv["spec"]["hostPath"]["path"] == "/var/lib/labctl/llm/open-webui-data"
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv["spec"]["claimRef"] == {"namespace": "llm", "name": "open-webui-data"}
    node_terms = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert node_terms["values"] == ["worker1"]
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert env["DATA_DIR"]["value"] in mounts
    svc = one(objs, "Service", "open-webui")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["metadata"]["annotations"]["metallb.io/loadBalancerIPs"] == "192.168.33.2"
    assert svc["spec"]["ports"][0]["port"] == 8080 and svc["spec"]["ports"][0]["targetPort"] == "http"


def pinned_nodes(objs: list[dict]) -> dict[str, list[str]]:
    """Node-local PersistentVolume name → the node names its nodeAffinity allows."""
    return {
        pv["metadata"]["name"]: pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"]
        for pv in by_kind(objs, "PersistentVolume")
    }


def test_without_workers_node_local_volumes_and_sizing_use_the_master() -> None:
    objs = objects("no-workers")
    pins = pinned_nodes(objs)
    # Open WebUI's data and the monitoring volumes: all on the master, the only node pods can run on.
    assert "open-webui-data-llm" in pins and len(pins) >= 3
    assert set(map(tuple, pins.values())) == {("master",)}
    spec, _ = CASES["no-workers"]
    # Ollama is sized for the master (8 GiB / 4 CPUs) it shares with Open WebUI and monitoring:
    # 8192 − 1843 − 64 − 2048 − 1600 = 2637 → 2560 Mi.
    r = ollama_resources(spec)
    assert (r.memory_limit, r.cpu_limit) == ("2560Mi", "3000m")
    small_master = spec_with(nodes={"workers": [], "master": {"name": "cp", "ip": "192.168.33.100", "cpus": 2, "memory_mib": 6144}})
    # 6144 − 1638 − 64 − 2048 = 2394 → 2304 Mi.
    assert (ollama_resources(small_master).memory_limit, ollama_resources(small_master).cpu_limit) == ("2304Mi", "1000m")
    assert set(map(tuple, pinned_nodes(load_objects(render_bundles(small_master, TEST_SECRETS)["apps"])).values())) == {("cp",)}


def test_a_gpu_worker_alone_holds_the_data_and_sizes_ollama() -> None:
    # The GPU worker is a worker: the control plane keeps its taint, so nothing may be pinned to the master.
    spec = LabSpec.from_dict(
        {
            "provider": {"type": "libvirt"},
            "nodes": {
                "workers": [],
                "gpu_worker": {"name": "gpu1", "ip": "192.168.33.102", "cpus": 2, "memory_mib": 6144, "pci": "0000:01:00.0"},
            },
        }
    )
    assert set(map(tuple, pinned_nodes(load_objects(render_bundles(spec, TEST_SECRETS)["apps"])).values())) == {("gpu1",)}
    assert ollama_resources(spec).memory_limit == "2304Mi"  # the GPU worker's 6 GiB, not the master's 8


def test_open_webui_address_port_and_auth_from_spec() -> None:
    spec = spec_with(apps={"openwebui": {"address": "192.168.33.4", "port": 80, "auth": False}})
    objs = load_objects(render_bundles(spec, TEST_SECRETS)["apps"])
    svc = one(objs, "Service", "open-webui")
    assert svc["metadata"]["annotations"]["metallb.io/loadBalancerIPs"] == "192.168.33.4"
    assert svc["spec"]["ports"][0]["port"] == 80
    assert env_of(container(one(objs, "Deployment", "open-webui")))["WEBUI_AUTH"]["value"] == "False"


def test_exposed_ollama_gets_the_next_free_pool_address() -> None:
    svc = one(objects("ollama-exposed"), "Service", "ollama")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert svc["metadata"]["annotations"]["metallb.io/loadBalancerIPs"] == "192.168.33.3"
    one_address = spec_with(network={"metallb_pool": "192.168.33.2-192.168.33.2"}, apps={"ollama": {"expose": True}})
    with pytest.raises(ManifestError, match=r"apps\.ollama\.expose"):
        render_bundles(one_address, TEST_SECRETS)


# ---- options -----------------------------------------------------------------------------------------
def test_default_renders_no_option_objects() -> None:
    kinds = {o["kind"] for o in objects("default")}
    assert not kinds & {"HorizontalPodAutoscaler", "Ingress", "RuntimeClass", "DaemonSet", "ClusterRole"}


def test_gpu_option() -> None:
    objs = objects("gpu")
    rc = one(objs, "RuntimeClass", "nvidia")
    assert rc["handler"] == "nvidia"
    ds = one(objs, "DaemonSet", "nvidia-device-plugin-daemonset")
    assert container(ds)["image"] == "nvcr.io/nvidia/k8s-device-plugin:v0.20.0"
    assert ds["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "gpu1"}
    pod = one(objs, "Deployment", "ollama")["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["nodeSelector"] == {"kubernetes.io/hostname": "gpu1"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    # Sized from the 16 GiB GPU worker, where Open WebUI never runs (its volume pins it to worker1):
    # 16384 − (1024 + 1638) − 64 (pull Job) = 13658 → 13568 Mi.
    assert pod["containers"][0]["resources"]["limits"]["memory"] == "13568Mi"


def test_autoscaling_option_matches_the_seed() -> None:
    objs = objects("autoscaling")
    hpa = one(objs, "HorizontalPodAutoscaler", "ollama")
    assert hpa["apiVersion"] == "autoscaling/v2"
    # The seed's 2–10, capped in the lab by what its nodes hold (labctl/capacity.py; tests/test_capacity.py)
    from labctl.capacity import autoscaling_fit

    fit = autoscaling_fit(CASES["autoscaling"][0])
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, fit.max_replicas)
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["spec"]["behavior"]["scaleUp"]["policies"][0] == {"type": "Percent", "value": 100, "periodSeconds": 15}
    down = hpa["spec"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] == 60
    assert down["policies"][0]["type"] == "Percent" and down["policies"][0]["value"] == 50
    dep = one(objs, "Deployment", "ollama")
    assert "replicas" not in dep["spec"], "the HPA owns the replica count; apply must not reset it"
    assert env_of(container(dep))["OLLAMA_NOPRUNE"]["value"] == "true"


def test_monitoring_option() -> None:
    import json

    objs = objects("monitoring")
    images = {container(d)["image"] for d in by_kind(objs, "Deployment")}
    assert {"quay.io/prometheus/prometheus:v3.15.0", "grafana/grafana:13.2.3", "quay.io/prometheus/blackbox-exporter:v0.27.0"} <= images
    for claim in ("prometheus-data", "grafana-data"):
        assert one(objs, "PersistentVolumeClaim", claim)["spec"]["storageClassName"] == ""
    dashboard = json.loads(one(objs, "ConfigMap", "grafana-dashboard-ollama")["data"]["ollama.json"])
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    assert "container_cpu_usage_seconds_total" in exprs and "container_memory_working_set_bytes" in exprs
    assert "probe_duration_seconds" in exprs
    prom = one(objs, "ConfigMap", "prometheus-config")["data"]["prometheus.yml"]
    assert "ollama-generate-probe" in prom
    grafana = container(one(objs, "Deployment", "grafana"))
    assert env_of(grafana)["GF_SECURITY_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "grafana-admin"
    one(objs, "ClusterRole", "labctl-prometheus-llm")


def test_prometheus_reads_cadvisor_at_the_kubelet_with_nodes_metrics_only() -> None:
    """The kubelet authorizes /metrics/* as nodes/metrics and every other path (exec, run, attach)
    as nodes/proxy (kubernetes/kubernetes pkg/kubelet/server/auth.go, GetRequestAttributes), and
    the API server's node proxy needs nodes/proxy itself. So: scrape https://<node>:10250/metrics/cadvisor
    directly, and never grant nodes/proxy (Kubernetes RBAC good practices: nodes/proxy reaches exec)."""
    import yaml

    objs = objects("monitoring")
    rules = one(objs, "ClusterRole", "labctl-prometheus-llm")["rules"]
    granted = {(r, v) for rule in rules for r in rule["resources"] for v in rule["verbs"]}
    assert granted == {("nodes", "get"), ("nodes", "list"), ("nodes", "watch"), ("nodes/metrics", "get")}
    prom = yaml.safe_load(one(objs, "ConfigMap", "prometheus-config")["data"]["prometheus.yml"])
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == "kubelet-cadvisor")
    assert job["metrics_path"] == "/metrics/cadvisor" and job["scheme"] == "https"
    assert "relabel_configs" not in job, "the target stays the node's own address, not the API server's proxy"
    assert job["tls_config"] == {"insecure_skip_verify": True}  # kubeadm's kubelet cert is self-signed
    for case in CASES:
        for obj in objects(case):
            if obj["kind"] in ("ClusterRole", "Role"):
                assert not any("nodes/proxy" in r["resources"] for r in obj["rules"]), case


def test_deploy_renders_no_cluster_scoped_object_unless_asked() -> None:
    spec, _ = CASES["all-options"]
    plain = load_objects(render_bundles(spec, TEST_SECRETS, deploy_target("alice", gpu=False))["apps"])
    assert [o for o in plain if "namespace" not in o["metadata"]] == []
    prom = one(plain, "ConfigMap", "prometheus-config")["data"]["prometheus.yml"]
    assert "kubelet-cadvisor" not in prom and "ollama-generate-probe" in prom
    assert one(plain, "Deployment", "prometheus")["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    asked = load_objects(render_bundles(spec, TEST_SECRETS, deploy_target("alice", cluster_rbac=True))["apps"])
    assert {o["kind"] for o in asked if "namespace" not in o["metadata"]} == {"ClusterRole", "ClusterRoleBinding"}


def test_ingress_option_with_tls_and_openai_upstream() -> None:
    objs = objects("ingress-tls-openai")
    ing = one(objs, "Ingress", "open-webui")
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["rules"][0]["host"] == "webui.lab.local"
    assert ing["spec"]["tls"] == [{"hosts": ["webui.lab.local"], "secretName": "webui-tls"}]
    env = env_of(container(one(objs, "Deployment", "open-webui")))
    for key in ("OPENAI_API_BASE_URL", "OPENAI_API_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "openai-upstream", "key": key}
    plain = one(objects("ingress"), "Ingress", "open-webui")
    assert "tls" not in plain["spec"]


# ---- deploy mode / multi-user ------------------------------------------------------------------------
def test_deploy_mode_renders_only_namespaced_apps() -> None:
    b = bundles("deploy-alice")
    assert list(b) == ["apps"]
    objs = load_objects(b["apps"])
    assert not by_kind(objs, "Namespace") and not by_kind(objs, "PersistentVolume")
    for o in objs:
        assert o["metadata"]["namespace"] == "alice", o["metadata"]["name"]
    assert env_of(container(one(objs, "Deployment", "open-webui")))["OLLAMA_BASE_URL"]["value"] == (
        "http://ollama.alice.svc:11434"
    )
    assert one(objs, "Service", "open-webui")["spec"]["type"] == "ClusterIP"
    pvc = one(objs, "PersistentVolumeClaim", "ollama-models")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"] and "storageClassName" not in pvc["spec"]


def test_deploy_mode_gpu_and_classes() -> None:
    objs = objects("deploy-bob-all")
    assert not by_kind(objs, "DaemonSet") and not by_kind(objs, "RuntimeClass")
    pod = one(objs, "Deployment", "ollama")["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "nvidia" and "nodeSelector" not in pod
    assert one(objs, "PersistentVolumeClaim", "ollama-models")["spec"]["storageClassName"] == "standard"
    assert one(objs, "PersistentVolumeClaim", "ollama-models")["spec"]["accessModes"] == ["ReadWriteMany"]
    assert one(objs, "PersistentVolumeClaim", "open-webui-data")["spec"]["storageClassName"] == "local-path"
    no_rc = render_bundles(LabSpec.default(), TEST_SECRETS, deploy_target("carol", gpu=True, gpu_runtime_class=False))
    pod = one(load_objects(no_rc["apps"]), "Deployment", "ollama")["spec"]["template"]["spec"]
    assert "runtimeClassName" not in pod and pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_students_side_by_side_do_not_clash() -> None:
    spec, _ = CASES["all-options"]

    def cluster_scoped(ns: str, mode: str) -> set[tuple[str, str]]:
        target = Target(namespace=ns) if mode == "lab" else deploy_target(ns)
        objs = load_objects(render_bundles(spec, TEST_SECRETS, target)["apps"])
        return {(o["kind"], o["metadata"]["name"]) for o in objs if "namespace" not in o["metadata"]}

    alice, bob = cluster_scoped("alice", "deploy"), cluster_scoped("bob", "deploy")
    assert alice == bob == set(), "deploy mode renders no cluster-scoped object unless --cluster-rbac"

    def with_rbac(ns: str) -> set[tuple[str, str]]:
        objs = load_objects(render_bundles(spec, TEST_SECRETS, deploy_target(ns, cluster_rbac=True))["apps"])
        return {(o["kind"], o["metadata"]["name"]) for o in objs if "namespace" not in o["metadata"]}

    alice, bob = with_rbac("alice"), with_rbac("bob")
    assert alice and not alice & bob
    # Lab mode, two namespaces: only the identical RuntimeClass is shared (safe: same content).
    lab_a, lab_b = cluster_scoped("alice", "lab"), cluster_scoped("bob", "lab")
    assert lab_a & lab_b == {("RuntimeClass", "nvidia")}


# ---- render_all ---------------------------------------------------------------------------------------
def test_render_all_writes_bundles_0600_and_prints_no_secret(tmp_path: Path, monkeypatch) -> None:
    from click.testing import CliRunner

    from labctl.cli import cli

    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(cli, ["render", "--with-secrets", "-o", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    for name in ("metallb-config", "storage", "apps"):
        path = tmp_path / "out" / "manifests" / f"{name}.yaml"
        assert path.exists()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = load_or_create(tmp_path / "home" / "llm-lab")
    assert stored.webui_secret_key not in result.output
    import base64

    assert base64.b64encode(stored.webui_secret_key.encode()).decode() not in result.output
    apps = load_objects((tmp_path / "out" / "manifests" / "apps.yaml").read_text())
    secret = one(apps, "Secret", "open-webui-secret")
    assert base64.b64decode(secret["data"]["WEBUI_SECRET_KEY"]).decode() == stored.webui_secret_key


def test_injected_secrets_are_used_verbatim() -> None:
    other = LabSecrets(webui_secret_key="another", grafana_admin_password="x")
    a = render_bundles(LabSpec.default(), TEST_SECRETS)["apps"]
    b = render_bundles(LabSpec.default(), other)["apps"]
    assert a != b and copy.copy(a) == bundles("default")["apps"]
