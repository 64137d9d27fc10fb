"""The background pull's image list (labctl.images) against what the lab really runs.

Every image named in the pinned add-on manifests, in the rendered apps bundle and in kubeadm's list
for the pinned version (kubernetes/kubernetes cmd/kubeadm/app/images/images.go GetControlPlaneImages:
apiserver, controller-manager, scheduler, kube-proxy, coredns, pause, etcd) is in the plan's list, and
nothing else is. Manifests read with labctl.cache.manifest_images, the same parser the warm cache uses.
csi-driver-nfs sidecar tags: kubernetes-csi/csi-driver-nfs@v4.13.4 deploy/v4.13.4/csi-nfs-{controller,node}.yaml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from labctl.cache import CacheInfo, addon_files, manifest_images
from labctl.images import (
    CSI_NFS_SIDECARS,
    CSI_NFS_SIDECARS_FOR,
    apps_workloads,
    first_needed,
    image_plan,
    kubeadm_workloads,
)
from labctl.lock import images as lock_images
from labctl.manifests import render_bundles
from labctl.plan import build_plan
from labctl.secrets import LabSecrets
from labctl.spec import LabSpec
from labctl.versions import PINS

WWW = Path(__file__).resolve().parent / "shims" / "www"
GOLDEN = Path(__file__).resolve().parent / "golden" / "vagrant"
SECRETS = LabSecrets(webui_secret_key="k" * 64, grafana_admin_password="p" * 24)


def kubeadm_list() -> set[str]:
    pins = lock_images(LabSpec.default())
    keys = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy", "coredns", "pause", "etcd")
    return {pins[k] for k in keys}


def bundle_images(spec: LabSpec) -> set[str]:
    return set(manifest_images(render_bundles(spec, SECRETS)["apps"]))


def cache_with_manifests(tmp_path: Path) -> Path:
    """A warm cache holding the add-on manifests (the test doubles' copies, named as the cache names them)."""
    names = {
        "calico-v": "calico.yaml",
        "metallb-native-v": "metallb-native.yaml",
        "metrics-server-v": "metrics-server.yaml",
    }
    for _, rel, _ in addon_files():
        base = rel.rsplit("/", 1)[-1]
        src = WWW / next((f for prefix, f in names.items() if base.startswith(prefix)), base)
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, tmp_path / rel)
    return tmp_path


def test_with_the_manifests_at_hand_the_list_is_exactly_kubeadm_manifests_and_bundle(tmp_path):
    spec = LabSpec.default()
    root = cache_with_manifests(tmp_path)
    in_manifests = {ref for _, rel, _ in addon_files() for ref in manifest_images((root / rel).read_text())}
    plan = image_plan(spec, CacheInfo(host_dir=str(root)))
    assert plan.all_refs() == kubeadm_list() | in_manifests | bundle_images(spec)


def test_without_the_manifests_the_pinned_table_gives_the_same_set_plus_the_sidecars():
    spec = LabSpec.default()
    pins = lock_images(spec)
    addons = {pins[k] for k in ("calico-cni", "calico-node", "calico-kube-controllers", "metallb-controller",
                                "metallb-speaker", "csi-nfsplugin", "metrics-server")}  # fmt: skip
    assert image_plan(spec).all_refs() == kubeadm_list() | addons | set(CSI_NFS_SIDECARS.values()) | bundle_images(spec)


def test_the_sidecar_table_belongs_to_the_pinned_csi_driver():
    assert PINS["csi_driver_nfs"] == CSI_NFS_SIDECARS_FOR, "csi-driver-nfs moved: update labctl.images.CSI_NFS_SIDECARS"


def test_options_add_their_images_from_the_bundle():
    spec = LabSpec.load(GOLDEN / "gpu-libvirt.yaml")
    refs = image_plan(spec).all_refs()
    assert bundle_images(spec) <= refs
    assert {ref for w in apps_workloads(spec) for ref in w.images} == bundle_images(spec)


def test_each_node_pulls_what_runs_there():
    spec = LabSpec.default()
    plan = image_plan(spec)
    master, worker = set(plan.pulls("master")), set(plan.pulls("worker1"))
    pins = lock_images(spec)
    static = {pins[k] for k in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")}
    assert static <= master and not static & worker  # static pods on the control plane only
    assert {pins["kube-proxy"], pins["pause"], pins["calico-node"], pins["csi-nfsplugin"]} <= master & worker
    # Tainted control plane: MetalLB (no control-plane toleration upstream) and the apps stay off it.
    assert not {pins["metallb-speaker"], pins["ollama"], pins["open-webui"]} & master
    assert {pins["metallb-speaker"], pins["ollama"], pins["open-webui"], pins["curl"]} <= worker
    # The order is the order of need: the control plane's first, the apps' last.
    layers = [i.layer for i in plan.by_node["worker1"]]
    assert layers == sorted(layers, key=["control-plane", "calico", "load-balancer", "storage", "apps"].index)


def test_a_lab_without_workers_pulls_everything_on_the_master():
    spec = LabSpec.from_dict({"nodes": {"workers": []}})
    plan = image_plan(spec)
    assert set(plan.pulls("master")) == plan.all_refs()


def test_warm_cache_images_count_as_pulled(tmp_path):
    from labctl.cache import CachedFile

    spec = LabSpec.default()
    ollama = lock_images(spec)["ollama"]
    cache = CacheInfo(host_dir=str(tmp_path), images_by_node={"worker1": (CachedFile(ollama, "images/o.tar", 1),)})
    plan = image_plan(spec, cache)
    assert ollama not in plan.pulls("worker1") and ollama not in plan.layer("worker1", "apps")
    assert any(i.ref == ollama and i.cached for i in plan.by_node["worker1"])


def test_the_plan_carries_the_list_in_text_json_and_scripts():
    spec = LabSpec.default()
    plan = build_plan(spec)
    assert plan.images == image_plan(spec).to_dict()
    assert "Images each node pulls in the background" in plan.to_text()
    assert '"images"' in plan.to_json()
    start = plan.step("image-pull.start-background-pull")
    for cmd in start.commands:
        for ref in image_plan(spec).pulls(cmd.host):
            assert ref in cmd.run and ref in cmd.check
    assert [w.name for w in kubeadm_workloads(spec)] == ["control plane", "kube-proxy", "pause", "coredns"]


def test_the_apps_wait_only_for_what_the_model_download_needs_and_pull_it_first():
    """The model Job calls Ollama's Service: the Job's and Ollama's images are awaited and pulled
    before Open WebUI's, which stays in the list (pulled, not awaited)."""
    spec = LabSpec.default()
    pins = lock_images(spec)
    plan = image_plan(spec)
    assert plan.awaited("worker1", "apps") == [pins["ollama"], pins["curl"]]
    assert plan.layer("worker1", "apps") == [pins["ollama"], pins["curl"], pins["open-webui"]]
    assert plan.pulls("worker1")[-1] == pins["open-webui"]
    assert "[apps, not awaited]" in plan.to_text()
    kinds = {(w.kind, w.awaited) for w in apps_workloads(spec)}
    assert kinds == {("Deployment", True), ("Job", True), ("Deployment", False)}
    # every other layer still waits for all of its images
    assert plan.awaited("worker1", "storage") == plan.layer("worker1", "storage")


BUNDLE = """
kind: Service
metadata: {name: api}
spec: {selector: {app: api}}
---
kind: Deployment
metadata: {name: api-server}
spec: {template: {metadata: {labels: {app: api, tier: x}}, spec: {containers: [{image: a}]}}}
---
kind: Deployment
metadata: {name: web}
spec: {template: {metadata: {labels: {app: web}}, spec: {containers: [{image: w}]}}}
---
kind: Service
metadata: {name: web}
spec: {selector: {app: web}}
---
kind: Job
metadata: {name: fill}
spec: {template: {spec: {containers: [{image: c, args: ["curl http://api.ns.svc:80/x"], env: [{name: U, value: "webfoo"}]}]}}}
"""


def test_first_needed_follows_the_services_a_job_calls():
    # api's Service is called by the Job (as a host), so its Deployment is awaited; "webfoo" is not web
    assert first_needed(BUNDLE) == {("Job", "fill"), ("Deployment", "api-server")}
    # no Job: nothing singled out, every workload of the layer is awaited as before
    assert first_needed(BUNDLE.rsplit("---", 1)[0]) == set()
