"""What a wrapped tool call costs in the simulated world (see create_sim.py for the world itself).

``decide(sim, host, tool, argv)`` is called by the simulator's HTTP handler for every call of
apt-get, curl, kubeadm, kubectl, crictl and ctr on a node. It waits as long as the real tool would
(downloads on the node's link, fixed durations from the figures, readiness of workloads), then
answers ``{}`` (run the test double now: it does the real bookkeeping) or ``{"exit": n, "stderr":
...}`` (fail as the real tool would, e.g. a ``kubectl wait`` whose ``--timeout`` passed first).
"""

from __future__ import annotations

import os
import re

from benchmarks.create_sim import Simulation, glob, parse_duration

# What `kubeadm config images pull` / `kubeadm init` fetch (kubeadm config images list, v1.36).
CONTROL_PLANE_IMAGES = [
    "registry.k8s.io/kube-apiserver", "registry.k8s.io/kube-controller-manager", "registry.k8s.io/kube-scheduler",
    "registry.k8s.io/kube-proxy", "registry.k8s.io/etcd", "registry.k8s.io/coredns/coredns", "registry.k8s.io/pause",
]  # fmt: skip
# kubelet's package depends on kubernetes-cni (FACTS.md #18); apt fetches it with kubelet.
APT_DEPENDS = {"kubelet": ["kubernetes-cni"]}
# `kubectl wait`/`rollout status` targets → workloads of create_figures.yaml
ROLLOUT_TARGETS = {
    "daemonset/calico-node": "calico-node",
    "deployment/calico-kube-controllers": "calico-kube-controllers",
    "deployment/coredns": "coredns",
    "deployment/controller": "metallb-controller",
    "daemonset/speaker": "metallb-speaker",
    "deployment/csi-nfs-controller": "csi-nfs-controller",
    "daemonset/csi-nfs-node": "csi-nfs-node",
    "deployment/metrics-server": "metrics-server",
}
TIMED_OUT = "error: timed out waiting for the condition"


def positional(argv: list[str], takes_value: tuple[str, ...] = ()) -> list[str]:
    """Arguments that are not options (an option in ``takes_value`` swallows the next argument)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in takes_value:
            skip = True
        elif not a.startswith("-"):
            out.append(a)
    return out


def decide(sim: Simulation, host: str, tool: str, argv: list[str]) -> dict:
    handler = {
        "apt-get": apt_get, "curl": curl, "kubeadm": kubeadm, "kubectl": kubectl, "crictl": crictl, "ctr": ctr,
        "sleep": sleep,
    }  # fmt: skip
    return handler[tool](sim, host, argv) if tool in handler else {}


def sleep_real(sim: Simulation, seconds: float) -> None:
    sim.sleep(sim.real(seconds))


def sleep(sim: Simulation, host: str, argv: list[str]) -> dict:
    """The playbooks' polling `sleep N`: N real seconds of the simulated world, then exit 0."""
    total = 0.0
    for arg in argv:
        m = re.fullmatch(r"(\d+(?:\.\d*)?)([smhd]?)", arg)
        if not m:
            return {"exit": 1, "stderr": f"sleep: invalid time interval '{arg}'\n"}
        total += float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    sim.poll_sleep(sim.real(total))
    return {"exit": 0}


def apt_get(sim: Simulation, host: str, argv: list[str]) -> dict:
    words = positional(argv, ("-o", "-c", "-t"))
    apt = sim.figures["apt"]
    if words[:1] == ["update"]:
        with sim.lock:
            first = sim.apt_updates[host] == 0
            sim.apt_updates[host] += 1
        entry = apt["lists_first_update" if first else "lists_later_update"]
        sim.download(host, "apt lists", float(entry["mb"]))
        sleep_real(sim, entry["fixed_s"])
    elif words[:1] == ["install"]:
        names = [w.split("=", 1)[0] for w in words[1:]]
        for name in list(names):
            names += [d for d in APT_DEPENDS.get(name, []) if d not in names]
        known = apt["packages"]
        mb = sum(float(known[n]["mb"]) if n in known else float(apt["default_package_mb"]["value"]) for n in names)
        sim.download(host, "debs " + " ".join(names), mb)
        sleep_real(sim, apt["install_fixed_s_per_package"]["value"] * len(names))
    return {}


def curl(sim: Simulation, host: str, argv: list[str]) -> dict:
    urls = [a for a in argv if a.startswith("https://")]
    if not urls:  # in-cluster http:// addresses (verify): answered by the double at once
        return {}
    for rule in sim.figures["curl"]:
        if glob(rule["match"], urls[0]):
            sim.download(host, os.path.basename(urls[0]), float(rule["mb"]))
            break
    return {}


def kubeadm(sim: Simulation, host: str, argv: list[str]) -> dict:
    words = positional(argv)
    if words[:3] == ["config", "images", "pull"]:
        sim.pull(host, CONTROL_PLANE_IMAGES)
    elif words[:1] == ["init"]:
        sim.pull(host, CONTROL_PLANE_IMAGES)  # kubeadm init pulls whatever is missing
        sim.sleep(sim.duration("kubeadm_init"))
        sim.join(host)
        sim.apply(["kube-proxy", "coredns"])
    elif words[:1] == ["join"]:
        sim.sleep(sim.duration("kubeadm_join"))
        sim.join(host)
    return {}


def crictl(sim: Simulation, host: str, argv: list[str]) -> dict:
    words = positional(argv, ("--creds", "--auth", "--username", "-r", "--runtime-endpoint", "-i", "--image-endpoint"))
    if words[:1] == ["pull"] and len(words) > 1:
        sim.pull(host, [words[-1]])
    return {}


def ctr(sim: Simulation, host: str, argv: list[str]) -> dict:
    words = positional(argv, ("-n", "--namespace", "--address", "-a", "--platform", "--user", "-u"))
    if len(words) >= 3 and words[0] in ("images", "image", "i") and words[1] == "pull":
        sim.pull(host, [words[-1]])
    return {}


def _flag(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
    return None


def kubectl(sim: Simulation, host: str, argv: list[str]) -> dict:
    words = positional(argv, ("-n", "--namespace", "-f", "--filename", "-o", "--output", "-l", "--selector"))
    if words[:1] == ["apply"]:
        manifest = os.path.basename((_flag(argv, "-f") or _flag(argv, "--filename") or "").rstrip("/"))
        names = [
            n
            for n, w in sim.workloads.items()
            if w.spec["applied_by"] != "kubeadm-init" and glob(w.spec["applied_by"], manifest)
        ]
        sleep_real(sim, sim.figures["durations_s"]["kubectl_apply"]["value"])
        sim.apply(names)
        return {}
    if words[:1] not in (["wait"], ["rollout"]):
        return {}
    timeout = parse_duration(_flag(argv, "--timeout") or "30s")
    condition = _flag(argv, "--for") or ""
    targets = [w for w in words[1:] if "/" in w]
    if condition == "condition=Failed":
        # Nothing fails in this world: kubectl sits out its timeout, then the double answers.
        sleep_real(sim, timeout)
        return {}
    nodes = [t.split("/", 1)[1] for t in targets if t.startswith("node/")]
    if nodes:
        ok = sim._wait(lambda: all(sim.node_ready(n) for n in nodes), sim.real(timeout))
        return {} if ok else {"exit": 1, "stderr": TIMED_OUT + "\n"}
    names = [ROLLOUT_TARGETS[t] for t in targets if t in ROLLOUT_TARGETS]
    names += ["model-pull" for t in targets if re.fullmatch(r"job/ollama-pull-.*", t)]
    if _flag(argv, "-n") == "llm" and "deployment" in words and "--all" in argv:
        names += ["ollama", "open-webui"]
    names = [n for n in names if sim.workloads[n].applied is not None]
    if not names:
        return {}  # unknown or not applied: the double answers (not found, or ready)
    ok = sim.wait_ready(names, sim.real(timeout))
    return {} if ok else {"exit": 1, "stderr": TIMED_OUT + "\n"}
