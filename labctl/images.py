"""Which container images each Kubernetes node will pull, so they can be pulled in the background
as soon as containerd runs (ansible-free-playbooks/26-image-pull.yaml) instead of when each pod is
scheduled, layer after layer.

The list is computed, never typed in by hand per node:

- kubeadm's own images for the pinned Kubernetes version: what ``kubeadm config images list``
  prints (kubernetes/kubernetes cmd/kubeadm/app/images/images.go, GetControlPlaneImages:
  kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, coredns, pause, etcd; tags
  pinned in labctl.lock.images). The static pods run on the control plane only; kube-proxy is a
  DaemonSet on every node, pause is every pod's sandbox, CoreDNS tolerates the control-plane taint.
- the pinned upstream add-on manifests (Calico, MetalLB, csi-driver-nfs, metrics-server): read out
  of the files themselves when the warm cache holds them (``labctl.cache.manifest_images``), else
  from :data:`PINNED_ADDON_WORKLOADS`, what those files at the pinned tags say.
- the rendered apps bundle (labctl.manifests.render_bundles): Ollama, Open WebUI, the model pull
  Job's curl image, and the options' images.

Placement follows the workload, as the scheduler would: a DaemonSet runs on every node whose taints
it tolerates; a Deployment or Job may land on any node it tolerates — that cannot be known before it
is scheduled, so every such node pulls it; ``nodeSelector: kubernetes.io/hostname`` pins one node.
kubeadm taints the control plane ``node-role.kubernetes.io/control-plane:NoSchedule`` (the old
``master`` key is no longer set), and the lab removes that taint when there are no workers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from labctl.spec import LabSpec

# The background job on each node (26-image-pull.yaml; the wait steps read the same files).
PULL_DIR = "/var/lib/labctl/image-pull"
PULL_LOG = "/var/log/labctl-image-pull.log"
# Parallel `crictl pull`s per node: a few overlap the registry round trips without splitting a
# laptop's bandwidth so thin that the image needed first arrives last.
PULL_CONCURRENCY = 3
# How long a layer's step waits for its images before going ahead anyway (the kubelet then pulls).
WAIT_SECONDS = 1800

# In the order the playbooks apply them; each wait step names its layer.
LAYERS = ("control-plane", "calico", "load-balancer", "storage", "apps")
CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane"
WORKLOAD_KINDS = ("DaemonSet", "Deployment", "StatefulSet", "ReplicaSet", "Job", "CronJob", "Pod")

# Where a workload may run: "control-plane" (static pods), "every-node" (a DaemonSet tolerating the
# control-plane taint), "any-node" (a Deployment tolerating it: may land anywhere), "schedulable"
# (the nodes without that taint), "node:<name>" (pinned by hostname).
Where = str


@dataclass(frozen=True)
class Workload:
    layer: str
    source: str  # where the list was read: "kubeadm", an add-on file name, "apps bundle"
    kind: str
    name: str
    where: Where
    images: tuple[str, ...]
    # Whether its layer's wait step waits for these images (see first_needed): the layer's first
    # critical work needs them. The others are still pulled in the background, after these.
    awaited: bool = True


@dataclass(frozen=True)
class NodeImage:
    ref: str
    layer: str
    why: str  # "DaemonSet calico-node (calico-v3.33.0.yaml): runs on every node"
    cached: bool = False  # imported from the warm cache: already present, not pulled
    awaited: bool = True  # its layer's wait step waits for it (Workload.awaited)


@dataclass(frozen=True)
class ImagePlan:
    """node name → the images it needs, each once, in layer order (what is needed first is pulled first)."""

    by_node: dict[str, tuple[NodeImage, ...]]
    concurrency: int = PULL_CONCURRENCY

    def pulls(self, node: str) -> list[str]:
        """What the background job pulls on ``node``: everything it needs but the warm cache's images."""
        return [i.ref for i in self.by_node.get(node, ()) if not i.cached]

    def layer(self, node: str, layer: str) -> list[str]:
        """The images ``layer``'s pods need on ``node`` (its wait step waits for these)."""
        if layer not in LAYERS:
            raise ValueError(f"unknown image layer {layer!r}: one of {', '.join(LAYERS)}")
        return [i.ref for i in self.by_node.get(node, ()) if i.layer == layer and not i.cached]

    def awaited(self, node: str, layer: str) -> list[str]:
        """What ``layer``'s wait step on ``node`` waits for: the layer's images its first critical work
        needs (for the apps, the model download Job's and Ollama's, not Open WebUI's)."""
        waited = set(self.layer(node, layer))
        return [i.ref for i in self.by_node.get(node, ()) if i.ref in waited and i.awaited]

    def all_refs(self) -> set[str]:
        return {i.ref for images in self.by_node.values() for i in images}

    def to_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "log": PULL_LOG,
            "nodes": {
                node: [
                    {"image": i.ref, "layer": i.layer, "why": i.why, "cached": i.cached, "awaited": i.awaited}
                    for i in images
                ]
                for node, images in self.by_node.items()
            },
        }

    def to_text(self) -> str:
        return images_text(self.to_dict())


def images_text(data: dict[str, Any]) -> str:
    """The plan's and the handout's image list, from ImagePlan.to_dict()."""
    lines = [
        f"Images each node pulls in the background (up to {data['concurrency']} at a time; log on the node: {data['log']}):"
    ]
    for node, images in data["nodes"].items():
        cached = sum(1 for i in images if i["cached"])
        lines.append(
            f"  {node}: {len(images) - cached} to pull" + (f", {cached} from the warm cache" if cached else "")
        )
        lines += [f"    {i['image']}  [{_needed_by(i)}] {i['why']}" for i in images]
    return "\n".join(lines) + "\n"


def _needed_by(image: dict[str, Any]) -> str:
    """The "Needed by" text: "apps", "apps, cached", "apps, not awaited" (pulled, not waited for)."""
    extra = ", cached" if image["cached"] else ("" if image.get("awaited", True) else ", not awaited")
    return image["layer"] + extra


HANDOUT_INTRO = (
    "Right after containerd is installed, each node starts pulling every image it will need, a few at a time, "
    "while the cluster is being built (step `image-pull.start-background-pull`; progress in `{log}` on the node). "
    "Each later layer waits only for its own images, and the apps only for those the model download needs "
    "(Ollama's, the Job's): Open WebUI's keeps downloading meanwhile. "
    "An image the warm cache brings is imported, not pulled."
)


def images_markdown(data: dict[str, Any]) -> list[str]:
    """The handout's "Images each node pulls" section (Markdown lines)."""
    out = ["### Images each node pulls", "", HANDOUT_INTRO.format(log=data["log"]), ""]
    for node, images in data["nodes"].items():
        out += [f"**{node}** ({len(images)} images)", "", "| Image | Needed by | Why this node |", "|---|---|---|"]
        out += [f"| `{i['image']}` | {_needed_by(i)} | {i['why']} |" for i in images]
        out.append("")
    return out


def images_html(data: dict[str, Any]) -> list[str]:
    """The same section in HTML, every value escaped."""
    import html

    e = html.escape
    intro = e(HANDOUT_INTRO.format(log=data["log"])).replace("`", "")
    out = ["<h3>Images each node pulls</h3>", f"<p>{intro}</p>"]
    for node, images in data["nodes"].items():
        out.append(f"<p><strong>{e(node)}</strong> ({len(images)} images)</p>")
        out.append("<table><thead><tr><th>Image</th><th>Needed by</th><th>Why this node</th></tr></thead><tbody>")
        out += [
            f"<tr><td><code>{e(i['image'])}</code></td><td>{e(_needed_by(i))}</td><td>{e(i['why'])}</td></tr>"
            for i in images
        ]
        out.append("</tbody></table>")
    return out


# ---- what the pinned upstream manifests run --------------------------------------------------------
# Used when the manifests themselves are not at hand (no warm cache): the workloads each file
# declares, checked at the source on 2026-12-03 (stored snapshots; where the snapshot is a branch and
# not the pinned tag, it says so — with a warm cache the lab's own files are read instead):
#   projectcalico/calico manifests/calico.yaml (master @0039c9c): DaemonSet calico-node (init
#     containers from calico/cni, tolerates every NoSchedule taint), Deployment
#     calico-kube-controllers (tolerates node-role.kubernetes.io/control-plane);
#   metallb/metallb config/manifests/metallb-native.yaml (main @022228b): Deployment controller (no
#     toleration), DaemonSet speaker (tolerates only the old node-role.kubernetes.io/master key);
#   kubernetes-csi/csi-driver-nfs deploy/v4.13.4/csi-nfs-controller.yaml (Deployment, tolerates
#     control-plane) and csi-nfs-node.yaml (DaemonSet, tolerates everything): the sidecar tags below;
#   kubernetes-sigs/metrics-server v0.9.0 components.yaml: Deployment, no toleration.
# kubeadm: kubernetes/kubernetes cmd/kubeadm/app/images/images.go (@008b365) GetControlPlaneImages.
# The csi-driver-nfs sidecar tags belong to that release: tests/test_images.py fails when the pin
# moves without this table.
CSI_NFS_SIDECARS_FOR = "4.13.4"
CSI_NFS_SIDECARS = {
    "csi-provisioner": "registry.k8s.io/sig-storage/csi-provisioner:v6.3.0",
    "csi-resizer": "registry.k8s.io/sig-storage/csi-resizer:v2.2.0",
    "csi-snapshotter": "registry.k8s.io/sig-storage/csi-snapshotter:v8.6.0",
    "livenessprobe": "registry.k8s.io/sig-storage/livenessprobe:v2.19.0",
    "csi-node-driver-registrar": "registry.k8s.io/sig-storage/csi-node-driver-registrar:v2.17.0",
}


def _pinned_refs(spec: LabSpec) -> dict[str, str]:
    """lab_pins.images, each reference in its full form (lab_pins is the one place the kubeadm and
    add-on tags are pinned; a spec only adds app images to it)."""
    from labctl.cache_needs import normalize_reference
    from labctl.lab_pins import images

    return {key: normalize_reference(ref) for key, ref in images(spec).items()}


def pinned_addon_workloads(spec: LabSpec) -> list[Workload]:
    from labctl.cache_needs import addon_files

    pins = _pinned_refs(spec)
    files = {key: rel.rsplit("/", 1)[-1] for key, rel, _ in addon_files()}
    calico, metallb = files["manifests.calico.url"], files["manifests.metallb.url"]
    ms = files["manifests.metrics-server.url"]
    s = CSI_NFS_SIDECARS
    return [
        Workload("calico", calico, "DaemonSet", "calico-node", "every-node", (pins["calico-cni"], pins["calico-node"])),
        Workload(
            "calico", calico, "Deployment", "calico-kube-controllers", "any-node", (pins["calico-kube-controllers"],)
        ),
        Workload("load-balancer", metallb, "Deployment", "controller", "schedulable", (pins["metallb-controller"],)),
        Workload("load-balancer", metallb, "DaemonSet", "speaker", "schedulable", (pins["metallb-speaker"],)),
        Workload(
            "storage",
            "csi-nfs-controller.yaml",
            "Deployment",
            "csi-nfs-controller",
            "any-node",
            (s["csi-provisioner"], s["csi-resizer"], s["csi-snapshotter"], s["livenessprobe"], pins["csi-nfsplugin"]),
        ),
        Workload(
            "storage",
            "csi-nfs-node.yaml",
            "DaemonSet",
            "csi-nfs-node",
            "every-node",
            (s["livenessprobe"], s["csi-node-driver-registrar"], pins["csi-nfsplugin"]),
        ),
        Workload("storage", ms, "Deployment", "metrics-server", "schedulable", (pins["metrics-server"],)),
    ]


# ---- reading workloads out of manifests -------------------------------------------------------------
def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "Pod":
        return spec
    if obj.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return ((spec.get("template") or {}).get("spec")) or {}


def placement(obj: dict[str, Any]) -> Where:
    """Where a workload's pods may run (see the module's docstring)."""
    pod = _pod_spec(obj)
    host = (pod.get("nodeSelector") or {}).get("kubernetes.io/hostname")
    if isinstance(host, str) and host:
        return f"node:{host}"
    tolerates = any(
        isinstance(t, dict)
        and t.get("effect") in (None, "", "NoSchedule")
        and ((t.get("operator") == "Exists" and not t.get("key")) or t.get("key") == CONTROL_PLANE_TAINT)
        for t in pod.get("tolerations") or []
    )
    if obj.get("kind") == "DaemonSet":
        return "every-node" if tolerates else "schedulable"
    return "any-node" if tolerates else "schedulable"


def workloads_in(text: str, layer: str, source: str) -> list[Workload]:
    """Every workload a manifest declares, with its images (labctl.cache.manifest_images, per
    document) and placement."""
    import re

    import yaml

    from labctl.cache_needs import manifest_images

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out = []
    for part in re.split(r"(?m)^---[ \t]*$", text):
        doc = yaml.load(part, Loader=loader)
        if not isinstance(doc, dict) or doc.get("kind") not in WORKLOAD_KINDS:
            continue
        refs = manifest_images(part, source)
        if refs:
            name = str((doc.get("metadata") or {}).get("name", "?"))
            out.append(Workload(layer, source, str(doc["kind"]), name, placement(doc), tuple(refs)))
    return out


ADDON_LAYERS = {
    "manifests.calico.url": "calico",
    "manifests.metallb.url": "load-balancer",
    "manifests.csi-driver-nfs.url": "storage",
    "manifests.metrics-server.url": "storage",
}


def addon_workloads(spec: LabSpec, cache_root: Path | None = None) -> list[Workload]:
    """The add-ons' workloads: read from the manifests in the warm cache when it holds every one of
    them (the exact files the lab applies), else the pinned table."""
    from labctl.cache_needs import addon_files

    files = addon_files()
    if cache_root is not None and all((cache_root / rel).is_file() for _, rel, _ in files):
        out: list[Workload] = []
        for key, rel, _ in files:
            path = cache_root / rel
            out += workloads_in(path.read_text(encoding="utf-8"), ADDON_LAYERS[key], path.name)
        return out
    return pinned_addon_workloads(spec)


def kubeadm_workloads(spec: LabSpec) -> list[Workload]:
    """kubeadm's images (GetControlPlaneImages) and where kubeadm runs each."""
    pins = _pinned_refs(spec)
    static = tuple(pins[k] for k in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd"))
    return [
        Workload("control-plane", "kubeadm", "static Pod", "control plane", "control-plane", static),
        Workload("control-plane", "kubeadm", "DaemonSet", "kube-proxy", "every-node", (pins["kube-proxy"],)),
        Workload("control-plane", "kubeadm", "sandbox", "pause", "every-node", (pins["pause"],)),
        Workload("control-plane", "kubeadm", "Deployment", "coredns", "any-node", (pins["coredns"],)),
    ]


def apps_workloads(spec: LabSpec) -> list[Workload]:
    """The rendered apps bundle's workloads. The secrets in it do not change any image: render with
    placeholders so that planning never reads or creates the lab's real ones."""
    from labctl.manifests import Target, render_bundles
    from labctl.secrets import LabSecrets

    key = spec.model_dump_json()
    if key not in _APPS_SEEN:  # one render per lab spec and process: plans are built many times
        placeholders = LabSecrets(webui_secret_key="x" * 64, grafana_admin_password="x" * 24)
        text = render_bundles(spec, placeholders, Target())["apps"]
        _APPS_SEEN.clear()
        first = first_needed(text)
        _APPS_SEEN[key] = [
            w if not first or (w.kind, w.name) in first else replace(w, awaited=False)
            for w in workloads_in(text, "apps", "apps bundle")
        ]
    return list(_APPS_SEEN[key])


_APPS_SEEN: dict[str, list[Workload]] = {}


def first_needed(text: str) -> set[tuple[str, str]]:
    """(kind, name) of the bundle's workloads its first critical work needs: every Job (the model
    download: the longest work of the layer, which 80-apps.yaml waits for last) and the workloads
    behind the Services a Job's container calls (Ollama: the Job asks its API to pull the models, so
    it cannot start before Ollama runs). Read from the bundle: a Service named in a Job's env, command
    or args as a host (``http://ollama.llm.svc:11434``), and the Deployments/StatefulSets whose pod
    labels match that Service's selector. The rest (Open WebUI) is pulled after these and awaited by
    the rollout wait, as the kubelet pulls what is missing. Empty when the bundle has no Job: then
    every workload is awaited, as before."""
    import re

    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    docs = [d for d in (yaml.load(p, Loader=loader) for p in re.split(r"(?m)^---[ \t]*$", text)) if isinstance(d, dict)]
    jobs = [d for d in docs if d.get("kind") == "Job"]
    if not jobs:
        return set()
    called: list[str] = []  # the strings a Job's containers are given
    for job in jobs:
        pod = _pod_spec(job)
        for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
            called += [str(e.get("value", "")) for e in c.get("env") or [] if isinstance(e, dict)]
            called += [str(a) for a in (c.get("command") or []) + (c.get("args") or [])]
    first = {("Job", str((j.get("metadata") or {}).get("name", "?"))) for j in jobs}
    for svc in (d for d in docs if d.get("kind") == "Service"):
        name = str((svc.get("metadata") or {}).get("name", ""))
        selector = (svc.get("spec") or {}).get("selector") or {}
        host = re.compile(rf"(?<![\w.-]){re.escape(name)}(?=[.:/]|$)", re.M)
        if not name or not selector or not any(host.search(s) for s in called):
            continue
        for d in docs:
            labels = ((((d.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels")) or {}
            if d.get("kind") in ("Deployment", "StatefulSet") and selector.items() <= labels.items():
                first.add((str(d["kind"]), str((d.get("metadata") or {}).get("name", "?"))))
    return first


_WHERE_TEXT = {
    "control-plane": "control plane only",
    "every-node": "runs on every node",
    "any-node": "may be scheduled on any node",
    "schedulable": "may be scheduled on any node without the control-plane taint",
}


def nodes_where(spec: LabSpec, where: Where) -> list[str]:
    from labctl.placement import schedulable_nodes

    k8s = [n.name for _, n in spec.all_nodes() if "k8s" in spec.roles_of(n)]
    if where == "control-plane":
        return [spec.nodes.master.name]
    if where in ("every-node", "any-node"):
        return k8s
    if where == "schedulable":
        return [n.name for n in schedulable_nodes(spec)]
    if where.startswith("node:"):
        return [n for n in k8s if n == where.removeprefix("node:")]
    raise ValueError(f"unknown placement {where!r}")


def image_plan(spec: LabSpec, cache: Any = None) -> ImagePlan:
    """Every image each Kubernetes node needs. ``cache``: the warm cache (labctl.cache.CacheInfo) —
    the images it imports on a node count as present there."""
    root = Path(cache.host_dir) if cache is not None and getattr(cache, "host_dir", "") else None
    workloads = kubeadm_workloads(spec) + addon_workloads(spec, root) + apps_workloads(spec)
    cached: dict[str, set[str]] = {}
    if cache is not None:
        for node, files in getattr(cache, "images_by_node", {}).items():
            cached[node] = {f.name for f in files}
    by_node: dict[str, list[NodeImage]] = {n.name: [] for _, n in spec.all_nodes() if "k8s" in spec.roles_of(n)}
    for layer in LAYERS:
        # within a layer, what its wait step waits for is pulled first
        for w in sorted((w for w in workloads if w.layer == layer), key=lambda w: not w.awaited):
            for node in nodes_where(spec, w.where):
                have = {i.ref for i in by_node[node]}
                for ref in w.images:
                    if ref not in have:
                        have.add(ref)
                        why = f"{w.kind} {w.name} ({w.source}): {_WHERE_TEXT.get(w.where, 'pinned to this node')}"
                        by_node[node].append(NodeImage(ref, layer, why, ref in cached.get(node, set()), w.awaited))
    return ImagePlan({node: tuple(images) for node, images in by_node.items()})


def image_context(spec: LabSpec, cache: Any = None) -> dict[str, Any]:
    """What the playbooks see (labctl.plan.template_context): ``images`` (this module's ImagePlan:
    ``images.pulls(node.name)``, ``images.layer(node.name, "calico")``) and ``image_pull`` (where the
    job keeps its files and log, how many pulls at once, how long a layer waits)."""
    return {
        "images": LazyImagePlan(spec, cache),
        "image_pull": {"dir": PULL_DIR, "log": PULL_LOG, "concurrency": PULL_CONCURRENCY, "wait_seconds": WAIT_SECONDS},
    }


class LazyImagePlan:
    """The ImagePlan, computed the first time a template asks for it. The manifest templates share
    the playbooks' context, and the apps bundle this plan reads is itself rendered from it."""

    def __init__(self, spec: LabSpec, cache: Any = None) -> None:
        self._args = (spec, cache)
        self._plan: ImagePlan | None = None

    def computed(self) -> bool:
        """Whether a step asked for it: a plan without the pull's steps carries no image list."""
        return self._plan is not None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if self._plan is None:
            self._plan = image_plan(*self._args)
        return getattr(self._plan, name)
