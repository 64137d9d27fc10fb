"""The critical path of the seed lab's create: the limit no scheduler can beat. Pure arithmetic.

The create is written as a graph of tasks in real seconds, built from the same figures the
simulator uses (create_figures.yaml). A task is either a download on a node's link (size / bandwidth)
or a fixed duration; it starts when every task it depends on has finished. The dependencies are
the ones that hold for any plan:

- on each node, node prep keeps its order (containerd from its release, the pkgs.k8s.io key, apt
  lists, the Kubernetes packages), as the overlapping runner keeps each host's steps in file order;
- an image can be pulled on a node as soon as containerd is there (the background pull), and no
  sooner; a pod is ready ``start`` seconds after its images, its manifest's apply and its node's
  join (Deployments: after the pod network is Ready on their node);
- kubeadm init needs the packages and the control-plane images; a join needs init; Calico, MetalLB,
  csi-driver-nfs, metrics-server and the apps are applied in the playbooks' own order (the apps after
  the address pool and the StorageClass), the model download starts when Ollama answers.

Two lower bounds, the larger one is the critical path:

1. the longest chain through the graph, each download alone on its link;
2. per link: everything that must cross it (``bytes / bandwidth``), plus the shortest possible lead-in
   before its first download and the shortest tail after its last one. On a node with several
   gigabytes of images this bound is the one that binds: the downloads cannot go faster than the link.
"""

from __future__ import annotations

from dataclasses import dataclass, field

K8S = ("master", "worker1")
WORKERS = ("worker1",)
CP_IMAGES = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kube-proxy",
    "etcd",
    "coredns/coredns",
    "pause",
)


@dataclass
class Task:
    name: str
    seconds: float
    deps: tuple[str, ...] = ()
    link: str | None = None  # a download: the link it crosses
    mb: float = 0.0


@dataclass
class CriticalPath:
    total: float  # real seconds
    chain: list[tuple[str, float]]  # (task or summary, seconds) in order
    bound: str  # "chain" or "link <name>"
    longest_chain: float
    link_bounds: dict[str, float] = field(default_factory=dict)


class Graph:
    def __init__(self, mbit: float, link_mode: str) -> None:
        self.mbit, self.link_mode = mbit, link_mode
        self.tasks: dict[str, Task] = {}

    def fixed(self, name: str, seconds: float, *deps: str) -> str:
        self.tasks[name] = Task(name, float(seconds), tuple(deps))
        return name

    def download(self, name: str, host: str, mb: float, *deps: str) -> str:
        link = host if self.link_mode == "per-host" else "uplink"
        self.tasks[name] = Task(name, mb * 8 / self.mbit, tuple(deps), link, mb)
        return name

    def all_of(self, name: str, *deps: str) -> str:
        return self.fixed(name, 0, *deps)


def build_graph(figures: dict, *, mbit: float, link: str, models: tuple[str, ...] = ("llama3.2:1b",)) -> Graph:
    g = Graph(mbit, link)
    d = {k: float(v["value"]) for k, v in figures["durations_s"].items()}
    apt, images = figures["apt"], figures["images"]
    curl = {r["match"]: float(r["mb"]) for r in figures["curl"]}
    small = curl["https://*"]
    pkgs = ["kubeadm", "kubelet", "kubectl", "cri-tools", "kubernetes-cni"]
    debs_mb = sum(float(apt["packages"][p]["mb"]) for p in pkgs)
    per_pkg = float(apt["install_fixed_s_per_package"]["value"])
    first = apt["lists_first_update"]

    def img(host: str, key: str, after: str) -> str:
        return g.download(f"{host}: pull {key}", host, float(images.get(key, images["default"])["mb"]), after)

    ready_prep, containerd, joined = {}, {}, {}
    for h in K8S:
        containerd[h] = g.download(
            f"{h}: containerd + runc", h, curl["*/containerd-*-linux-*.tar.gz"] + curl["*/runc.*64"] + 3 * small
        )
        key = g.download(f"{h}: pkgs.k8s.io key", h, small, containerd[h])
        lists = g.download(f"{h}: apt lists", h, float(first["mb"]), key)
        upd = g.fixed(f"{h}: apt update", float(first["fixed_s"]), lists)
        debs = g.download(f"{h}: Kubernetes debs", h, debs_mb, upd)
        ready_prep[h] = g.fixed(f"{h}: install Kubernetes packages", per_pkg * len(pkgs), debs)
    nfs_lists = g.download("nfs: apt lists", "nfs", float(first["mb"]))
    nfs_upd = g.fixed("nfs: apt update", float(first["fixed_s"]), nfs_lists)
    nfs_debs = g.download("nfs: NFS server debs", "nfs", float(apt["packages"]["nfs-kernel-server"]["mb"]), nfs_upd)
    nfs_ready = g.fixed("nfs: install NFS server", per_pkg, nfs_debs)

    pulled: dict[tuple[str, str], str] = {}

    def image_on(host: str, key: str) -> str:
        if (host, key) not in pulled:
            pulled[host, key] = img(host, key, containerd[host])
        return pulled[host, key]

    init = g.fixed(
        "master: kubeadm init", d["kubeadm_init"], ready_prep["master"], *(image_on("master", k) for k in CP_IMAGES)
    )
    joined["master"] = init
    for w in WORKERS:
        joined[w] = g.fixed(f"{w}: kubeadm join", d["kubeadm_join"], init, ready_prep[w])

    def workload(name: str, applied: str, *extra: str, hosts_ready: dict[str, str] | None = None) -> str:
        spec = figures["workloads"][name]
        hosts = {"k8s": K8S, "workers": WORKERS, "control_plane": ("master",)}[spec["nodes"]]
        ends = []
        for h in hosts:
            gate = (hosts_ready or joined)[h]
            ends.append(g.fixed(f"{h}: {name} ready", d[spec["start"]], applied, gate, *extra,
                                *(image_on(h, k) for k in spec["images"])))  # fmt: skip
        return g.all_of(f"{name} ready", *ends)

    fetch_calico = g.download("master: fetch Calico manifest", "master", small, init)
    calico_applied = g.fixed("apply Calico", d["kubectl_apply"], fetch_calico)
    calico = workload("calico-node", calico_applied)
    proxy = workload("kube-proxy", init)
    node_ready = {h: g.all_of(f"{h}: node Ready", f"{h}: calico-node ready", f"{h}: kube-proxy ready") for h in K8S}
    nodes_ready = g.all_of("every node Ready", calico, proxy, *node_ready.values())
    controllers = workload("calico-kube-controllers", calico_applied, hosts_ready=node_ready)
    cni_done = g.all_of("Calico playbook done", nodes_ready, controllers)

    fetch_metallb = g.download("master: fetch MetalLB manifest", "master", small, cni_done)
    metallb_applied = g.fixed("apply MetalLB", d["kubectl_apply"], fetch_metallb)
    controller = workload("metallb-controller", metallb_applied, hosts_ready=node_ready)
    speaker = workload("metallb-speaker", metallb_applied)
    pool = g.fixed("apply address pool", d["kubectl_apply"], controller, speaker)

    fetch_csi = g.download("master: fetch csi-driver-nfs manifests", "master", 4 * small, cni_done, nfs_ready)
    csi_applied = g.fixed("apply csi-driver-nfs", d["kubectl_apply"], fetch_csi)
    csi = g.all_of("csi-driver-nfs ready", workload("csi-nfs-controller", csi_applied, hosts_ready=node_ready),
                   workload("csi-nfs-node", csi_applied))  # fmt: skip
    sc = g.fixed("apply StorageClass", d["kubectl_apply"], csi)
    fetch_ms = g.download("master: fetch metrics-server manifest", "master", small, sc)
    ms_applied = g.fixed("apply metrics-server", d["kubectl_apply"], fetch_ms)
    ms = workload("metrics-server", ms_applied, hosts_ready=node_ready)

    apps_applied = g.fixed("apply the apps bundle", d["kubectl_apply"], pool, ms)
    ollama = workload("ollama", apps_applied, csi, hosts_ready=node_ready)
    webui = workload("open-webui", apps_applied, hosts_ready=node_ready)
    job_image = image_on(WORKERS[0], "curl/curl")
    model_mb = sum(float(figures["models"][m]["mb"]) for m in models)
    model = g.download(f"{WORKERS[0]}: Ollama pulls {', '.join(models)}", WORKERS[0], model_mb, ollama, job_image)
    job = g.fixed("model Job completes", d["model_job_finish"], model)
    g.all_of("lab ready", job, webui)
    return g


def critical_path(figures: dict, *, mbit: float, link: str = "per-host") -> CriticalPath:
    return solve(build_graph(figures, mbit=mbit, link=link))


def solve(g: Graph) -> CriticalPath:
    order = _topological(g.tasks)
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for name in order:
        t = g.tasks[name]
        start, prev = 0.0, None
        for dep in t.deps:
            if finish[dep] > start:
                start, prev = finish[dep], dep
        finish[name] = start + t.seconds
        via[name] = prev
    # tail[name]: the longest time from name's end to the end of the whole create
    tail: dict[str, float] = {n: 0.0 for n in order}
    for name in reversed(order):
        t = g.tasks[name]
        for dep in t.deps:
            tail[dep] = max(tail[dep], tail[name] + t.seconds)
    end = max(finish, key=lambda n: finish[n])
    chain = _walk(end, via, g, finish)
    longest = finish[end]
    bounds: dict[str, float] = {}
    best, bound = longest, "chain"
    for link in sorted({t.link for t in g.tasks.values() if t.link}):
        downloads = [t for t in g.tasks.values() if t.link == link]
        head = min(finish[t.name] - t.seconds for t in downloads)
        crossing = sum(t.seconds for t in downloads)
        tl = min(tail[t.name] for t in downloads)
        bounds[link] = head + crossing + tl
        if bounds[link] > best:
            best, bound = bounds[link], f"link {link}"
            first = min(downloads, key=lambda t: finish[t.name] - t.seconds)
            last = min(downloads, key=lambda t: tail[t.name])
            lead = _walk(via[first.name], via, g, finish) if via[first.name] else []
            mb = sum(t.mb for t in downloads)
            chain = [
                *lead,
                (f"every download on {link}'s link, back to back: {mb:,.0f} MB at {g.mbit:g} Mbit/s", crossing),
            ]
            chain += _tail_chain(last.name, g, tail)
    return CriticalPath(best, chain, bound, longest, bounds)


def _topological(tasks: dict[str, Task]) -> list[str]:
    import graphlib

    return list(graphlib.TopologicalSorter({n: t.deps for n, t in tasks.items()}).static_order())


def _walk(end: str | None, via: dict, g: Graph, finish: dict) -> list[tuple[str, float]]:
    chain = []
    while end is not None:
        chain.append((end, g.tasks[end].seconds))
        end = via[end]
    return [c for c in reversed(chain) if c[1] > 0]


def _tail_chain(start: str, g: Graph, tail: dict) -> list[tuple[str, float]]:
    """The longest path after ``start`` (its successors, greedily by the largest remaining tail)."""
    succ: dict[str, list[str]] = {}
    for t in g.tasks.values():
        for dep in t.deps:
            succ.setdefault(dep, []).append(t.name)
    chain, node = [], start
    while succ.get(node):
        node = max(succ[node], key=lambda n: tail[n] + g.tasks[n].seconds)
        if g.tasks[node].seconds > 0:
            chain.append((node, g.tasks[node].seconds))
    return chain


def format_chain(cp: CriticalPath) -> str:
    lines = [f"  bound: {cp.bound}; longest dependency chain {cp.longest_chain / 60:.1f} min; per-link bounds "
             + ", ".join(f"{k} {v / 60:.1f} min" for k, v in cp.link_bounds.items())]  # fmt: skip
    t = 0.0
    for name, seconds in cp.chain:
        t += seconds
        lines.append(f"  {t / 60:6.1f} min  +{seconds:6.1f} s  {name}")
    return "\n".join(lines)
