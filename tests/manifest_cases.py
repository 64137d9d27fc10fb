"""Every bundle the apps layer can render, shared by the manifest, policy and validator tests."""

from __future__ import annotations

from typing import Any

from labctl.manifests import Target, deploy_target, load_objects, render_bundles
from labctl.secrets import LabSecrets
from labctl.spec import LabSpec

# Fixed values: golden files stay stable and tests can look for the value to prove it never leaks.
TEST_SECRETS = LabSecrets(
    webui_secret_key="test-webui-secret-key-0123456789", grafana_admin_password="test-grafana-password-abc"
)

GPU_NODES = {
    "gpu_worker": {"name": "gpu1", "ip": "192.168.33.102", "cpus": 8, "memory_mib": 16384, "pci": "0000:01:00.0"}
}


def spec_with(options: dict[str, Any] | None = None, **top: Any) -> LabSpec:
    data: dict[str, Any] = dict(top)
    if options:
        data.setdefault("apps", {})["options"] = options
    if options and options.get("gpu"):
        data["provider"] = {"type": "libvirt"}
        data["nodes"] = GPU_NODES
    return LabSpec.from_dict(data)


ALL_OPTIONS = {
    "gpu": True,
    "autoscaling": True,
    "monitoring": True,
    "ingress": True,
    "ingress_tls": True,
    "openai_secret": "openai-upstream",
}

# name → (spec, target)
CASES: dict[str, tuple[LabSpec, Target]] = {
    "default": (LabSpec.default(), Target()),
    "gpu": (spec_with({"gpu": True}), Target()),
    "autoscaling": (spec_with({"autoscaling": True}), Target()),
    "monitoring": (spec_with({"monitoring": True}), Target()),
    "ingress": (spec_with({"ingress": True}), Target()),
    "ingress-tls-openai": (spec_with({"ingress": True, "ingress_tls": True, "openai_secret": "openai-upstream"}), Target()),
    "ollama-exposed": (spec_with(apps={"ollama": {"expose": True}}), Target()),
    # Every option a lab accepts together: gpu + autoscaling is refused (one passed-through GPU cannot
    # serve the autoscaler's second replica), so the lab case leaves autoscaling out.
    "all-options": (spec_with({k: v for k, v in ALL_OPTIONS.items() if k != "autoscaling"}), Target()),
    # Everything on the master (its taint removed by the control-plane playbook), node-local volumes included.
    "no-workers": (spec_with({"monitoring": True}, nodes={"workers": []}), Target()),
    "deploy-alice": (LabSpec.default(), deploy_target("alice")),
    # Issue 16: what real clusters and rooms need — the ClusterRole only when asked, other
    # ingress controllers, an offline room with a pull Secret.
    "deploy-carol-cluster-rbac-traefik": (
        spec_with({"monitoring": True, "ingress": True, "ingress_tls": True, "ingress_class": "traefik"}),
        deploy_target("carol", cluster_rbac=True, ingress_controller="traefik"),
    ),
    "nginx-inc-ingress": (spec_with({"ingress": True, "ingress_controller": "nginx-inc"}), Target()),
    "gateway-api-route": (spec_with({"gateway": "infra/shared", "ingress": True}), Target()),
    "deploy-dave-gateway": (spec_with({"gateway": "shared"}), deploy_target("dave")),
    "offline-pull-secret": (
        spec_with({"monitoring": True, "image_pull_secret": "hub-login"}, offline=True),
        Target(offline=True),
    ),
    "deploy-bob-all": (
        spec_with({k: v for k, v in ALL_OPTIONS.items() if k != "gpu"}),
        deploy_target("bob", storage_class="standard", data_storage_class="local-path", gpu=True),
    ),
}


def bundles(case: str) -> dict[str, str]:
    spec, target = CASES[case]
    return render_bundles(spec, TEST_SECRETS, target)


def objects(case: str) -> list[dict[str, Any]]:
    return [obj for text in bundles(case).values() for obj in load_objects(text)]
