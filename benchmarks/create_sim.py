"""The simulated world behind bench_create.py: download links, images on nodes, a tiny cluster.

The netns test nodes run the real playbooks with the test doubles of tests/shims. For the benchmark,
the slow tools on the nodes (apt-get, curl, kubeadm, kubectl, crictl, ctr) are wrapped by
``create_shims/bench-wrapper``: before running the double, the wrapper asks this simulator (an HTTP
server on the test bridge's host address) how long the real tool would take, and waits for that
answer. Everything that takes time in a real create is decided here, from the figures table
(create_figures.yaml), in simulated seconds (real seconds / ``scale``):

- **Links.** Each download is a transfer on a link. ``link="per-host"``: every node has its own link
  of ``mbit`` (the issue's model: bandwidth shared per host); ``"shared"``: one laptop uplink for
  all nodes. Concurrent transfers on one link share it equally (processor sharing, as parallel TCP
  streams do), advanced by a clock thread every ``TICK`` seconds.
- **Images.** Per node: absent, pulling (one transfer, joined by every later puller, as containerd
  de-duplicates content fetches) or present. ``crictl pull``/``ctr images pull`` (the background
  pulls) and the kubelet (a workload's pods) use the same store.
- **Workloads.** ``kubectl apply`` of a known manifest applies its workloads (figures
  ``workloads``); their pods start pulling on their nodes (DaemonSets once the node joined,
  Deployments once it is Ready), and they become ready ``start`` seconds after their last image,
  their ``after`` workloads and (except calico-node) the node's CNI. ``kubectl wait``/``rollout
  status`` blocks until ready or its own ``--timeout``, then fails like kubectl, or lets the double
  answer.

**The clock is virtual, and the runner's own overhead does not count.** On this shared build machine
a step's SSH round trips and the doubles' start-up cost far more than a real one would (and vary
with the load), so the simulated clock only runs while the create is *waiting*: while at least one
runner command is in flight (the harness counts them in ``Transport.run``) and every one of them is
blocked in this simulator (a download, a fixed duration, a ``kubectl wait``, a ``sleep``). While a
step is doing anything else, or the runner is between steps, the clock stands still, and so do the
downloads. The reported create time is the virtual clock at the end: the create as if the runner
cost nothing, which is what the critical path assumes too. (A wrapper call counts as a runner
command's when the process descends from the SSH session, not from a detached background job; a
background job, e.g. the image pull, is taken as busy from the end of one of its calls to the start
of its next, up to BACKGROUND_GAP real seconds, and the clock stands still then too.)
"""

from __future__ import annotations

import fnmatch
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TICK = 0.005  # simulated seconds between link updates
# After a background job's call returns, the job is busy (its own overhead: the next double's
# start-up) until its next call arrives; the clock stands still meanwhile, at most this long (real s).
BACKGROUND_GAP = 3.0
# A polling `sleep` in a playbook returns once its time is up AND something happened in this world
# since it began (a download ended, a workload changed, another command called in), or at the latest
# this many real-world seconds later: a poll that could only see the same state is skipped, which
# saves wall time on this machine and delays what the poller notices by at most this much.
POLL_CAP_REAL_S = 10.0
UNKNOWN = "default"


def image_key(ref: str) -> str:
    """Repository of an image reference without registry, tag or digest: what create_figures.yaml
    keys images by (``docker.io/calico/node:v3.33.0`` → ``calico/node``)."""
    ref = ref.split("@", 1)[0]
    last = ref.rsplit("/", 1)
    if ":" in last[-1]:
        ref = ref.rsplit(":", 1)[0]
    parts = ref.split("/")
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    if parts[:1] == ["library"]:
        parts = parts[1:]
    return "/".join(parts)


def parse_duration(text: str) -> float:
    """kubectl's --timeout value (``5s``, ``10m``, ``1h``, ``25m``) in seconds."""
    total, found = 0.0, False
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s)?", text):
        found = True
        total += float(number) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "": 1}[unit]
    return total if found else 30.0


@dataclass
class Transfer:
    what: str
    host: str
    link: str
    mb: float
    left_mb: float
    start: float
    end: float | None = None


@dataclass
class Workload:
    name: str
    spec: dict
    applied: float | None = None
    started: float | None = None  # every image present and every dependency met
    ready: float | None = None
    model_transfer: Transfer | None = None
    pulls: dict[str, float] = field(default_factory=dict)  # host → when its pods started pulling


class Simulation:
    """All state, behind one lock; times are virtual seconds (``now()``, simulated scale)."""

    def __init__(
        self,
        figures: dict,
        *,
        mbit: float,
        link: str,
        hosts: dict[str, tuple[str, ...]],
        scale: float,
        models: list[str],
        gated: bool = True,
    ) -> None:
        self.figures, self.mbit, self.link_mode, self.scale, self.models = figures, mbit, link, scale, models
        self.hosts = hosts  # name → roles (control_plane, workers, nfs, k8s)
        self.lock = threading.Condition()
        self.transfers: list[Transfer] = []
        self.images: dict[str, dict[str, Transfer]] = {h: {} for h in hosts}
        self.joined: dict[str, float] = {}
        self.workloads = {name: Workload(name, dict(spec)) for name, spec in figures["workloads"].items()}
        self.apt_updates: dict[str, int] = {h: 0 for h in hosts}
        self.unknown: set[str] = set()
        self.events: list[tuple[float, str, str]] = []  # (time, host, what) for the report
        self.v = 0.0  # the virtual clock
        self.inflight = 0  # runner commands in flight (Transport.run)
        self.blocked = 0  # wrapper calls of runner commands blocked here
        self.gated = gated  # False: the clock always runs (unit tests, no runner)
        self.gaps: list[float] = []  # real deadlines of background jobs between two calls
        self.epoch = 0  # bumped by every event a poller could notice
        self._stop = threading.Event()
        self._clock = threading.Thread(target=self._run_clock, daemon=True)
        self._clock.start()

    # ---- figures
    def real(self, seconds: float) -> float:
        """A real-world duration from the figures, in simulated seconds."""
        return seconds / self.scale

    def duration(self, name: str) -> float:
        return self.real(self.figures["durations_s"][name]["value"])

    def image_mb(self, ref: str) -> float:
        key = image_key(ref)
        entry = self.figures["images"].get(key)
        if entry is None:
            self.unknown.add(key)
            entry = self.figures["images"][UNKNOWN]
        return float(entry["mb"])

    def nodes_of(self, selector: str) -> list[str]:
        return [h for h, roles in self.hosts.items() if selector in roles]

    # ---- links
    def _link_of(self, host: str) -> str:
        return host if self.link_mode == "per-host" else "uplink"

    def _start_transfer(self, host: str, what: str, mb: float) -> Transfer:
        now = self.v
        t = Transfer(what, host, self._link_of(host), mb, mb, now, now if mb <= 0 else None)
        self.transfers.append(t)
        self.events.append((now, host, f"start {what} ({mb:g} MB)"))
        return t

    def _run_clock(self) -> None:
        last = time.monotonic()
        rate_mb = self.mbit / 8 * self.scale  # MB per simulated second
        while not self._stop.wait(TICK):
            with self.lock:
                real = time.monotonic()
                dt, last = real - last, real
                if not self.waiting():
                    continue
                self.v += dt
                now = self.v
                active: dict[str, list[Transfer]] = {}
                for t in self.transfers:
                    if t.end is None:
                        active.setdefault(t.link, []).append(t)
                for group in active.values():
                    share = rate_mb * dt / len(group)
                    for t in group:
                        t.left_mb -= share
                        if t.left_mb <= 0:
                            t.end = now
                            self.epoch += 1
                            self.events.append((now, t.host, f"done {t.what}"))
                self._advance_workloads(now)
                self.lock.notify_all()

    def waiting(self) -> bool:
        """Whether the whole create is waiting on this simulator (the clock runs only then)."""
        if not self.gated:
            return True
        real = time.monotonic()
        self.gaps = [g for g in self.gaps if g > real]
        return self.inflight > 0 and self.blocked >= self.inflight and not self.gaps

    def background_call(self, starting: bool) -> None:
        """A detached job's call starts (ends the gap its previous call opened) or ends (opens one)."""
        with self.lock:
            if starting:
                if self.gaps:
                    self.gaps.pop(0)
            else:
                self.gaps.append(time.monotonic() + BACKGROUND_GAP)

    def now(self) -> float:
        return self.v

    def command(self, delta: int) -> None:
        """A runner command starts (+1) or ends (-1) (called by the harness's transport)."""
        with self.lock:
            self.inflight += delta
            self.lock.notify_all()

    def sleep(self, seconds: float) -> None:
        end = self.v + seconds
        self._wait(lambda: self.v >= end)

    def poll_sleep(self, seconds: float) -> None:
        """A playbook's polling sleep (see POLL_CAP_REAL_S)."""
        with self.lock:
            start, end = self.epoch, self.v + seconds
            cap = end + self.real(POLL_CAP_REAL_S)
        self._wait(lambda: self.v >= end and (self.epoch != start or self.v >= cap))

    def bump(self) -> None:
        with self.lock:
            self.epoch += 1
            self.lock.notify_all()

    def close(self) -> None:
        self._stop.set()
        self._clock.join(timeout=2)

    def _wait(self, predicate, timeout: float | None = None) -> bool:
        """Block until predicate() holds (under the lock) or timeout simulated seconds pass."""
        deadline = None if timeout is None else self.v + timeout
        with self.lock:
            while not predicate():
                if deadline is not None and self.v >= deadline:
                    return False
                self.lock.wait(timeout=0.05)
            return True

    def download(self, host: str, what: str, mb: float) -> None:
        with self.lock:
            t = self._start_transfer(host, what, mb)
        self._wait(lambda: t.end is not None)

    # ---- images
    def _pull(self, host: str, ref: str) -> Transfer:
        """Start (or join) the pull of an image on a host; caller holds the lock."""
        key = image_key(ref)
        t = self.images[host].get(key)
        if t is None:
            t = self.images[host][key] = self._start_transfer(host, f"image {key}", self.image_mb(ref))
        return t

    def pull(self, host: str, refs: list[str]) -> None:
        with self.lock:
            pulls = [self._pull(host, r) for r in refs]
        self._wait(lambda: all(t.end is not None for t in pulls))

    def present(self, host: str, ref: str) -> bool:
        t = self.images[host].get(image_key(ref))
        return t is not None and t.end is not None

    # ---- workloads
    def apply(self, names: list[str]) -> None:
        with self.lock:
            now = self.v
            for name in names:
                w = self.workloads[name]
                if w.applied is None:
                    w.applied = now
                    self.epoch += 1
                    self.events.append((now, "cluster", f"applied {name}"))
            self._advance_workloads(now)

    def node_ready(self, host: str) -> bool:
        cni = self.workloads["calico-node"]
        return cni.ready is not None and host in self.joined

    def _advance_workloads(self, now: float) -> None:
        for w in self.workloads.values():
            if w.applied is None or w.ready is not None:
                continue
            hosts = self._hosts_of(w)
            for h in hosts:
                if h in w.pulls:
                    continue
                can = h in self.joined if w.spec["kind"] == "daemonset" else self.node_ready(h)
                if can:
                    w.pulls[h] = now
                    for ref in w.spec["images"]:
                        self._pull(h, ref)
            if w.started is None:
                deps = [self.workloads[d] for d in w.spec.get("after", [])]
                if w.name != "calico-node" and w.name != "kube-proxy" and not all(self.node_ready(h) for h in hosts):
                    continue
                if len(w.pulls) < len(hosts) or not all(d.ready is not None for d in deps):
                    continue
                if not all(self.present(h, r) for h in hosts for r in w.spec["images"]):
                    continue
                w.started = now
                if w.spec.get("downloads_model"):
                    mb = sum(float(self.figures["models"][m]["mb"]) for m in self.models)
                    w.model_transfer = self._start_transfer(hosts[0], "models " + " ".join(self.models), mb)
            if w.started is not None:
                base = w.started
                if w.model_transfer is not None:
                    if w.model_transfer.end is None:
                        continue
                    base = w.model_transfer.end
                if now >= base + self.duration(w.spec["start"]):
                    w.ready = now
                    self.epoch += 1
                    self.events.append((now, "cluster", f"ready {w.name}"))

    def _hosts_of(self, w: Workload) -> list[str]:
        return self.nodes_of(w.spec["nodes"])

    def wait_ready(self, names: list[str], timeout: float) -> bool:
        ws = [self.workloads[n] for n in names]
        return self._wait(lambda: all(w.ready is not None for w in ws), timeout)

    def join(self, host: str) -> None:
        with self.lock:
            self.joined[host] = self.v
            self.epoch += 1
            self._advance_workloads(self.v)


class Handler(BaseHTTPRequestHandler):
    """POST /run {host, tool, argv} → {} (run the double now) or {exit, stderr} (answer for it)."""

    sim: Simulation
    decide: Any  # create_commands.decide(sim, host, tool, argv) -> dict

    def do_POST(self) -> None:  # http.server calls do_<METHOD>
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        sim, foreground = type(self).sim, body.get("foreground")
        if body["tool"] != "sleep":
            sim.bump()  # a command called in: what it does next may be what a poller waits for
        if foreground:
            with sim.lock:
                sim.blocked += 1
        else:
            sim.background_call(starting=True)
        try:
            answer = type(self).decide(sim, body["host"], body["tool"], body["argv"])
        finally:
            if foreground:
                with sim.lock:
                    sim.blocked -= 1
            else:
                sim.background_call(starting=False)
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:  # quiet: the benchmark prints its own table
        pass


def serve(sim: Simulation, decide, address: str) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"sim": sim, "decide": staticmethod(decide)})
    server = ThreadingHTTPServer((address, 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def glob(pattern: str, text: str) -> bool:
    return fnmatch.fnmatchcase(text, pattern)
