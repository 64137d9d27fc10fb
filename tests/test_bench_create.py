"""benchmarks/bench_create.py: the figures table, the critical-path arithmetic, the simulated links and
the command model, and (ssh tier) one whole simulated create at a tiny scale. The benchmark's
timings are not asserted (they depend on the machine); its structure and arithmetic are."""

from __future__ import annotations

import math
import threading
import time

import pytest

from benchmarks.bench_create import is_pull_step, load_figures, report_markdown, zero_figures
from benchmarks.create_commands import decide
from benchmarks.create_critical import K8S, critical_path
from benchmarks.create_sim import Simulation, image_key, parse_duration

FIGURES = load_figures()
ROLES = {"master": ("control_plane", "k8s"), "worker1": ("workers", "k8s"), "nfs": ("nfs",)}


def sim(figures: dict = FIGURES, *, mbit: float = 8.0, link: str = "per-host", scale: float = 1.0) -> Simulation:
    return Simulation(figures, mbit=mbit, link=link, hosts=ROLES, scale=scale, models=["llama3.2:1b"], gated=False)


def test_every_figure_names_its_source_and_every_workload_image_has_a_size():
    for section in ("images", "models", "durations_s"):
        for name, entry in FIGURES[section].items():
            assert str(entry.get("source", "")).strip(), f"{section}.{name} has no source"
    for name, entry in FIGURES["apt"]["packages"].items():
        assert entry["source"], name
    for rule in FIGURES["curl"]:
        assert rule["source"], rule["match"]
    for name, w in FIGURES["workloads"].items():
        assert w["start"] in FIGURES["durations_s"], name
        for image in w["images"]:
            assert image in FIGURES["images"], f"workload {name}: image {image} has no figure"


@pytest.mark.parametrize(
    ("ref", "key"),
    [
        ("docker.io/calico/node:v3.33.0", "calico/node"),
        ("registry.k8s.io/coredns/coredns:v1.14.2", "coredns/coredns"),
        ("registry.k8s.io/etcd:3.6.8-0", "etcd"),
        ("ollama/ollama:0.40.1", "ollama/ollama"),
        ("ghcr.io/open-webui/open-webui:v0.11.4", "open-webui/open-webui"),
        ("quay.io/metallb/speaker@sha256:" + "0" * 64, "metallb/speaker"),
        ("localhost:5000/library/pause", "pause"),
    ],
)
def test_image_key_strips_registry_tag_and_digest(ref, key):
    assert image_key(ref) == key


def test_kubectl_timeouts_parse_like_kubectl():
    assert parse_duration("5s") == 5
    assert parse_duration("25m") == 1500
    assert parse_duration("1h30m") == 5400


def test_pull_steps_are_recognised_and_kubeadms_own_pull_is_not():
    assert is_pull_step("image-pull.start-background-pull")
    assert is_pull_step("apps.wait-for-apps-images")
    assert is_pull_step("cni-calico.wait-for-calico-images")
    assert not is_pull_step("control-plane.pull-control-plane-images")
    assert not is_pull_step("apps.wait-for-apps")
    assert not is_pull_step("apps.wait-for-model-download")


def _worker_link_mb(figures: dict) -> float:
    """Every byte worker1 must download, summed here independently of create_critical's graph."""
    apt, images, curl = figures["apt"], figures["images"], {r["match"]: r["mb"] for r in figures["curl"]}
    prep = curl["*/containerd-*-linux-*.tar.gz"] + curl["*/runc.*64"] + 4 * curl["https://*"]
    prep += apt["lists_first_update"]["mb"]
    prep += sum(apt["packages"][p]["mb"] for p in ("kubeadm", "kubelet", "kubectl", "cri-tools", "kubernetes-cni"))
    keys = {image for w in figures["workloads"].values() if w["nodes"] in ("workers", "k8s") for image in w["images"]}
    return prep + sum(images[k]["mb"] for k in keys) + figures["models"]["llama3.2:1b"]["mb"]


@pytest.mark.parametrize("mbit", [50, 200])
def test_critical_path_is_the_larger_bound_and_its_chain_adds_up(mbit):
    cp = critical_path(FIGURES, mbit=mbit)
    assert cp.total == pytest.approx(max(cp.longest_chain, *cp.link_bounds.values()))
    assert sum(seconds for _, seconds in cp.chain) == pytest.approx(cp.total)
    assert set(cp.link_bounds) == {*K8S, "nfs"}
    # The worker's link carries every byte it needs; at these figures that bound is the binding one.
    assert cp.bound == "link worker1"
    crossing = [s for name, s in cp.chain if name.startswith("every download on worker1")]
    assert crossing == [pytest.approx(_worker_link_mb(FIGURES) * 8 / mbit)]


def test_critical_path_scales_with_bandwidth_and_vanishes_without_figures():
    slow, fast = critical_path(FIGURES, mbit=50), critical_path(FIGURES, mbit=200)
    download_slow = slow.link_bounds["worker1"]
    assert fast.total < slow.total
    # Four times the bandwidth: the worker's download time is a quarter (its fixed lead-in/tail stay).
    mb = _worker_link_mb(FIGURES)
    assert download_slow - fast.link_bounds["worker1"] == pytest.approx(mb * 8 / 50 - mb * 8 / 200)
    assert critical_path(zero_figures(FIGURES), mbit=50).total == 0
    # One laptop uplink for every node: more bytes on one link than on worker1's alone.
    assert critical_path(FIGURES, mbit=50, link="shared").total > slow.total


def _timed_downloads(s: Simulation, jobs: list[tuple[str, float]]) -> list[float]:
    ends = [0.0] * len(jobs)
    start = time.monotonic()

    def one(i: int, host: str, mb: float) -> None:
        s.download(host, f"test {i}", mb)
        ends[i] = time.monotonic() - start

    threads = [threading.Thread(target=one, args=(i, h, mb)) for i, (h, mb) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    return ends


def test_a_link_is_shared_by_its_concurrent_downloads():
    """8 Mbit/s at scale 1 = 1 MB per simulated second. Two 0.4 MB downloads on one node's link take
    0.8 s together; the same on another node's link runs beside them at full rate."""
    s = sim()
    try:
        a, b, other = _timed_downloads(s, [("worker1", 0.4), ("worker1", 0.4), ("master", 0.4)])
    finally:
        s.close()
    assert a == pytest.approx(0.8, abs=0.25) and b == pytest.approx(0.8, abs=0.25)
    assert other == pytest.approx(0.4, abs=0.2)
    shared = sim(link="shared")
    try:
        ends = _timed_downloads(shared, [("worker1", 0.4), ("master", 0.4)])
    finally:
        shared.close()
    assert min(ends) == pytest.approx(0.8, abs=0.25)  # one uplink: both nodes split it


def test_kubectl_wait_fails_at_its_timeout_until_the_workload_is_ready_then_passes_to_the_double():
    s = sim(scale=100.0)  # 1 real second = 0.01 s here
    try:
        assert decide(s, "master", "kubeadm", ["init", "--node-name=master"]) == {}
        assert decide(s, "worker1", "kubeadm", ["join", "10.0.0.1:6443"]) == {}
        assert (
            decide(
                s, "master", "kubectl", ["apply", "--server-side", "-f", "/etc/labctl/addons/calico-v3.33.0-lab.yaml"]
            )
            == {}
        )
        assert s.workloads["calico-node"].applied is not None
        assert set(s.workloads["calico-node"].pulls) == {"master", "worker1"}  # DaemonSet: every joined node
        assert s.workloads["calico-kube-controllers"].pulls == {}  # Deployment: waits for a Ready node
        early = decide(
            s, "master", "kubectl", ["-n", "kube-system", "rollout", "status", "daemonset/calico-node", "--timeout=1s"]
        )
        assert early["exit"] == 1 and "timed out" in early["stderr"]
        late = decide(
            s, "master", "kubectl", ["-n", "kube-system", "rollout", "status", "daemonset/calico-node", "--timeout=15m"]
        )
        assert late == {}
        assert s.node_ready("worker1") and s.workloads["calico-kube-controllers"].pulls
        # Calico's images crossed each node's link once, whoever asked for them.
        pulls = [e for e in s.events if e[2].startswith("start image calico/node")]
        assert sorted(h for _, h, _ in pulls) == ["master", "worker1"]
    finally:
        s.close()


def test_report_puts_before_after_and_the_critical_path_side_by_side():
    creates = {"before@50": [30.0, 31.0, 29.0], "after@50": [20.0, 21.0, 22.0]}
    results = {"creates": creates, "walls": {"before@50": [70.0] * 3}, "unknown_images": ["x/y"]}
    text = report_markdown(FIGURES, results, [50.0], ["before", "after"], link="per-host", scale=20)
    row = next(line for line in text.splitlines() if line.startswith("| 50 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    cp = critical_path(FIGURES, mbit=50)
    before, after = 30 * 20, 21 * 20  # medians, in real seconds
    assert cells[1] == f"{cp.total / 60:.1f} min ({cp.total / 20:.1f} s)"
    assert cells[2:4] == [f"{before / 60:.1f} min (30.0 s)", f"{after / 60:.1f} min (21.0 s)"]
    assert cells[4] == f"{after / before:.2f}" and cells[5] == f"{after / cp.total:.2f}"
    assert "every download on worker1's link" in text and "x/y" in text and "before@50 70.0" in text


@pytest.mark.ssh
def test_a_whole_simulated_create_runs_cleanly_and_the_model_follows_ollama(tmp_path):
    """The seed plan, every step, on three netns nodes with the wrapped doubles, at a tiny scale."""
    from benchmarks.bench_create import one_run
    from tests.sshnodes import NodesUnavailable

    try:
        result = one_run("before", 200, FIGURES, link="per-host", scale=2000, workdir=tmp_path)
    except NodesUnavailable as e:
        pytest.skip(f"netns SSH nodes unavailable: {e}")
    assert result.wall > 0 and result.create > 0 and len(result.steps) >= 30
    when = {what: t for t, host, what in result.events}
    assert when["applied ollama"] <= when["start image ollama/ollama (2147 MB)"]
    assert when["ready ollama"] <= when["start models llama3.2:1b (1300 MB)"] <= when["ready model-pull"]
    hosts_pulling_calico = {h for _, h, what in result.events if what.startswith("start image calico/node")}
    assert hosts_pulling_calico == {"master", "worker1"}
    assert not math.isnan(result.wall) and result.unknown_images == []
