"""Policy over every object of every bundle the apps layer renders (default, each option, all
options, deploy mode): pinned images, resources and probes everywhere, only Open WebUI reachable
from outside the cluster, secrets only through Secret objects."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from manifest_cases import CASES, TEST_SECRETS, objects

ALL = [(case, obj) for case in CASES for obj in objects(case)]
IDS = [f"{case}:{obj['kind']}/{obj['metadata']['name']}" for case, obj in ALL]
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}
PROBE_WAIVER = "labctl.dev/probes-waived"
SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|API_KEY|APIKEY|PRIVATE|CREDENTIAL)", re.IGNORECASE)
# A tag after the last '/', not a registry port: name:tag or name:tag@sha256:...
PINNED_IMAGE = re.compile(r"^[a-z0-9.\-/]+(:[0-9]+)?/?[a-z0-9._\-/]*:(?!latest$)[A-Za-z0-9._\-]+(@sha256:[0-9a-f]{64})?$")


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj["kind"] not in WORKLOAD_KINDS:
        return None
    template = obj["spec"]["jobTemplate"]["spec"]["template"] if obj["kind"] == "CronJob" else obj["spec"]["template"]
    return template["spec"]


def pod_annotations(obj: dict[str, Any]) -> dict[str, str]:
    return obj["spec"]["template"].get("metadata", {}).get("annotations", {})


def all_containers(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for c in spec.get("initContainers", []):
        yield "init", c
    for c in spec["containers"]:
        yield "main", c


def image_problems(obj: dict[str, Any]) -> list[str]:
    return [
        f"{c['image']}: pin a version tag (never :latest or untagged)"
        for _, c in all_containers(pod_spec(obj))
        if not PINNED_IMAGE.match(c["image"])
    ]


def resource_problems(obj: dict[str, Any]) -> list[str]:
    out = []
    for _, c in all_containers(pod_spec(obj)):
        res = c.get("resources", {})
        for section in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(res.get(section, {})):
                out.append(f"{c['name']}: needs {section} for cpu and memory")
    return out


def probe_problems(obj: dict[str, Any]) -> list[str]:
    reason = pod_annotations(obj).get(PROBE_WAIVER, "")
    if reason:
        return [] if len(reason.split()) >= 5 else [f"{PROBE_WAIVER} must explain why, got {reason!r}"]
    return [
        f"{c['name']}: add readiness and liveness probes or a {PROBE_WAIVER} reason"
        for kind, c in all_containers(pod_spec(obj))
        # init containers cannot have probes; they must finish for the pod to start
        if kind == "main" and not ("readinessProbe" in c and "livenessProbe" in c)
    ]


def exposure_problems(obj: dict[str, Any], ollama_exposed: bool = False) -> list[str]:
    out = []
    spec = pod_spec(obj)
    if spec is not None:
        out += [f"pod {flag}" for flag in ("hostNetwork", "hostPID", "hostIPC") if spec.get(flag)]
        out += [
            f"{c['name']}: hostPort exposes the pod outside the cluster"
            for _, c in all_containers(spec)
            for port in c.get("ports", [])
            if "hostPort" in port
        ]
    if obj["kind"] == "Service":
        kind = obj["spec"].get("type", "ClusterIP")
        name = obj["metadata"]["name"]
        if kind == "NodePort" or (kind != "ClusterIP" and name != "open-webui" and not (name == "ollama" and ollama_exposed)):
            out.append(f"Service {name} is {kind}")
    if obj["kind"] == "Ingress":
        backends = {p["backend"]["service"]["name"] for r in obj["spec"]["rules"] for p in r["http"]["paths"]}
        if backends != {"open-webui"}:
            out.append(f"Ingress routes to {sorted(backends)}")
    if obj["kind"] == "HTTPRoute":
        backends = {b["name"] for r in obj["spec"]["rules"] for b in r.get("backendRefs", [])}
        if backends != {"open-webui"}:
            out.append(f"HTTPRoute routes to {sorted(backends)}")
    return out


def secret_env_problems(obj: dict[str, Any]) -> list[str]:
    out = []
    for _, c in all_containers(pod_spec(obj)):
        for env in c.get("env", []):
            if SECRET_NAME.search(env["name"]) and "secretKeyRef" not in env.get("valueFrom", {}):
                out.append(f"{env['name']}: must come from a Secret (valueFrom.secretKeyRef)")
            value = str(env.get("value", ""))
            if TEST_SECRETS.webui_secret_key in value or TEST_SECRETS.grafana_admin_password in value:
                out.append(f"{env['name']}: carries a secret value")
    return out


workloads = [(case, obj) for case, obj in ALL if pod_spec(obj) is not None]
workload_ids = [f"{case}:{obj['kind']}/{obj['metadata']['name']}" for case, obj in workloads]


def test_the_policy_sees_every_kind_of_workload() -> None:
    assert {obj["kind"] for _, obj in workloads} >= {"Deployment", "Job", "DaemonSet"}
    assert len(ALL) > 100


@pytest.mark.parametrize("case,obj", workloads, ids=workload_ids)
def test_workload_policy(case: str, obj: dict[str, Any]) -> None:
    problems = image_problems(obj) + resource_problems(obj) + probe_problems(obj) + secret_env_problems(obj)
    assert problems == []


@pytest.mark.parametrize("case,obj", ALL, ids=IDS)
def test_only_open_webui_is_exposed_outside_the_cluster(case: str, obj: dict[str, Any]) -> None:
    spec, _ = CASES[case]
    assert exposure_problems(obj, spec.apps.ollama.expose) == []


def test_probe_waivers_are_only_for_jobs_and_the_device_plugin() -> None:
    waived = {obj["metadata"]["name"] for _, obj in workloads if PROBE_WAIVER in pod_annotations(obj)}
    assert waived and all(n.startswith("ollama-pull-") or n == "nvidia-device-plugin-daemonset" for n in waived)


def _bad_deployment() -> dict[str, Any]:
    import copy

    return copy.deepcopy(next(o for _, o in ALL if o["kind"] == "Deployment" and o["metadata"]["name"] == "ollama"))


def test_each_check_can_fail() -> None:
    obj = _bad_deployment()
    c = obj["spec"]["template"]["spec"]["containers"][0]
    for image in ("ollama/ollama:latest", "ollama/ollama", "registry.local:5000/ollama"):
        c["image"] = image
        assert image_problems(obj), image
    del c["resources"]["limits"]["memory"]
    assert resource_problems(obj)
    del c["livenessProbe"]
    assert probe_problems(obj)
    obj["spec"]["template"]["metadata"]["annotations"] = {PROBE_WAIVER: "none"}
    assert probe_problems(obj), "a waiver needs a real reason"
    c["ports"][0]["hostPort"] = 11434
    assert exposure_problems(obj)
    c["env"].append({"name": "OPENAI_API_KEY", "value": "sk-123"})
    assert secret_env_problems(obj)
    svc = {"kind": "Service", "metadata": {"name": "ollama"}, "spec": {"type": "NodePort"}}
    assert exposure_problems(svc, ollama_exposed=True)
    svc["spec"]["type"] = "LoadBalancer"
    assert exposure_problems(svc) and not exposure_problems(svc, ollama_exposed=True)
    grafana = {"kind": "Service", "metadata": {"name": "grafana"}, "spec": {"type": "LoadBalancer"}}
    assert exposure_problems(grafana)
    route = {"kind": "HTTPRoute", "metadata": {"name": "x"}, "spec": {"rules": [{"backendRefs": [{"name": "grafana"}]}]}}
    assert exposure_problems(route)


def test_no_secret_value_appears_outside_secret_objects() -> None:
    import base64

    needles = [TEST_SECRETS.webui_secret_key, TEST_SECRETS.grafana_admin_password]
    needles += [base64.b64encode(n.encode()).decode() for n in needles]
    for case, obj in ALL:
        if obj["kind"] == "Secret":
            continue
        text = str(obj)
        for needle in needles:
            assert needle not in text, f"{case}: {obj['kind']}/{obj['metadata']['name']} carries a secret value"


def test_every_object_is_labelled_as_ours() -> None:
    for case, obj in ALL:
        assert obj["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "labctl", (
            f"{case}: {obj['kind']}/{obj['metadata']['name']}"
        )
