"""Autoscaling and GPUs against what the lab's nodes can hold (issue #12 items 3 and 9).

Facts in (a LabSpec), numbers out: the HPA's minimum must fit beside the system pods, its maximum is
capped by what fits, a lab that cannot hold two replicas is refused by validation, and `labctl
validate` says what the lab holds. The GPU option passes one GPU through, so it cannot serve an
autoscaler's second replica: the combination is refused.
"""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from labctl.capacity import MIN_REPLICAS, autoscaling_fit, node_rooms
from labctl.cli import cli
from labctl.errors import SpecError
from labctl.manifests import Target, deploy_target, load_objects, render_bundles
from labctl.spec import LabSpec
from tests.manifest_cases import GPU_NODES, TEST_SECRETS


def lab(**over: Any) -> LabSpec:
    data = LabSpec.default().model_dump(mode="json")
    data["apps"]["options"]["autoscaling"] = True
    for key, value in over.items():
        data["nodes"][key] = value
    return LabSpec.from_dict(data)


def cpu_m(value: str) -> int:
    return int(value.removesuffix("m")) if value.endswith("m") else int(float(value) * 1000)


def ollama(spec: LabSpec, target: Target | None = None) -> tuple[dict, dict]:
    objs = load_objects(render_bundles(spec, TEST_SECRETS, target or Target())["apps"])
    dep = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "ollama")
    hpa = next(o for o in objs if o["kind"] == "HorizontalPodAutoscaler")
    return dep["spec"]["template"]["spec"]["containers"][0]["resources"], hpa["spec"]


def test_on_the_default_4_cpu_worker_the_minimum_fits_beside_the_system_pods():
    spec = lab()
    fit = autoscaling_fit(spec)
    (room,) = node_rooms(spec, spec.nodes.workers)
    resources, hpa = ollama(spec)
    request = cpu_m(resources["requests"]["cpu"])
    # Two replicas' requests fit in what the worker has left after calico, csi, CoreDNS, metrics-server
    # and Open WebUI (the seed's sizing, half of 3 CPUs each, did not leave that room).
    assert MIN_REPLICAS * request <= room.cpu_m < 4000
    assert MIN_REPLICAS * int(resources["requests"]["memory"].removesuffix("Mi")) <= room.memory_mib
    assert hpa["minReplicas"] == MIN_REPLICAS and hpa["maxReplicas"] == fit.max_replicas <= 10
    # The maximum is what fits, not the seed's 10.
    assert fit.max_replicas * request <= room.cpu_m < (fit.max_replicas + 1) * request
    # The limit still lets a replica alone use the node.
    assert cpu_m(resources["limits"]["cpu"]) == 3000


def test_more_workers_hold_more_replicas():
    one = autoscaling_fit(lab())
    two = autoscaling_fit(
        lab(workers=[
            {"name": "worker1", "ip": "192.168.33.101", "cpus": 4, "memory_mib": 8192},
            {"name": "worker2", "ip": "192.168.33.102", "cpus": 4, "memory_mib": 8192},
        ])
    )  # fmt: skip
    assert two.max_replicas > one.max_replicas


def test_a_lab_too_small_for_two_replicas_is_refused_naming_the_field():
    with pytest.raises(SpecError) as info:
        lab(workers=[{"name": "worker1", "ip": "192.168.33.101", "cpus": 1, "memory_mib": 2048}])
    text = str(info.value)
    assert "apps.options.autoscaling:" in text and "do not fit beside the system pods" in text
    assert "worker1" in text and "autoscaling: false" in text


def test_gpu_and_autoscaling_together_are_refused():
    data: dict[str, Any] = {
        "provider": {"type": "libvirt"},
        "nodes": GPU_NODES,
        "apps": {"options": {"gpu": True, "autoscaling": True}},
    }
    with pytest.raises(SpecError) as info:
        LabSpec.from_dict(data)
    assert "apps.options.autoscaling: with gpu: true every Ollama replica needs the one passed-through GPU" in str(
        info.value
    )


def test_validate_says_what_the_lab_can_hold(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lab.yaml").write_text("apps:\n  options:\n    autoscaling: true\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 0, result.output
    fit = autoscaling_fit(LabSpec.load(tmp_path / "lab.yaml"))
    assert f"autoscaling: Ollama 2-{fit.max_replicas} replicas, each requesting {fit.cpu_request_m}m CPU" in result.stdout
    assert "worker1" in result.stdout.splitlines()[-1]


def test_deploying_to_another_cluster_keeps_the_seed_range():
    """labctl cannot know another cluster's nodes: deploy keeps 2–10 and the default requests."""
    _, hpa = ollama(lab(), deploy_target("alice"))
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
