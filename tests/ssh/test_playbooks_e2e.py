"""Every playbook, end to end, over real SSH on three netns nodes (master, worker1, nfs).

The lab spec's addresses are the nodes' own (10.251.<slot>.0/24, chosen by tests/sshnodes.py), so
every rendered command names the node it really runs on. The runner and SSH transport are the real
ones (labctl.runner.Runner, labctl.transport.ssh.SSHTransport); the artefacts are the real bundles
(labctl.artefacts.build_artefacts).

Network-bound steps are NOT skipped: the lab is online (offline: false) and the whole chain runs
against node-side TEST DOUBLES (tests/shims, see its docstring for the list and the reason for
each): apt-get installs .debs holding doubles of containerd/kubeadm/kubelet/kubectl with the real
dpkg, curl serves hand-written stand-ins for the upstream manifests (tests/shims/www), kubeadm
starts a fake API server on the master that the kubectl doubles of every node talk to. What this
test proves is therefore the playbooks' shell, ordering, idempotence, guards and secret handling on
real machines over real SSH — not that Kubernetes comes up (that is the libvirt e2e tier).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from rich.console import Console

from labctl.artefacts import build_artefacts
from labctl.images import image_plan
from labctl.plan import build_plan
from labctl.runner import Runner
from labctl.spec import LabSpec
from labctl.transport.ssh import SSHTransport
from labctl.versions import PINS
from tests.shims import SEEDED_SWAP, calls, node_files, release_bodies

pytestmark = pytest.mark.ssh

NAMES = ["master", "worker1", "nfs"]
APP_PULL_SECONDS = 5  # Ollama's and Open WebUI's images "download" this long (crictl double)
# Longer than 14 characters: `exportfs -v` then prints the client on its own line (the check follows it).
EXPORT = "/srv/nfs/lab-volumes"


def routes(spec: LabSpec) -> tuple[dict, dict]:
    """URL → response body for the curl double. Addresses are globs: the nodes' subnet is only known
    once they run, and in-cluster URLs are checked against the fake cluster's Services instead."""
    k8s_minor = ".".join(PINS["kubernetes"].split(".")[:2])
    csi = PINS["csi_driver_nfs"]
    table: dict = {
        f"https://pkgs.k8s.io/core:/stable:/v{k8s_minor}/deb/Release.key": "Release.key",
        f"https://raw.githubusercontent.com/projectcalico/calico/v{PINS['calico']}/manifests/calico.yaml": "calico.yaml",
        f"https://raw.githubusercontent.com/metallb/metallb/v{PINS['metallb']}/config/manifests/metallb-native.yaml": "metallb-native.yaml",
        f"https://github.com/kubernetes-sigs/metrics-server/releases/download/v{PINS['metrics_server']}/components.yaml": "metrics-server.yaml",
        # In-cluster addresses: answered only when the fake cluster has a Service with a backend there.
        "http://*:11434/api/version": {"file": "ollama-version.json", "service": True},
        "http://*:11434/api/tags": {"file": "ollama-tags.json", "service": True},
        f"http://*:{spec.apps.openwebui.port}/health": {"file": "webui-health.json", "service": True},
    }
    for name in ("rbac-csi-nfs.yaml", "csi-nfs-driverinfo.yaml", "csi-nfs-controller.yaml", "csi-nfs-node.yaml"):
        table[f"https://raw.githubusercontent.com/kubernetes-csi/csi-driver-nfs/v{csi}/deploy/v{csi}/{name}"] = name
    tags = {"models": [{"name": m, "model": m, "size": 1} for m in spec.apps.ollama.models]}
    bodies = {"ollama-tags.json": json.dumps(tags).encode()}
    for url, body in release_bodies().items():  # containerd and runc release assets (test doubles)
        name = "release-" + url.rsplit("/", 1)[1]
        table[url] = name
        bodies[name] = body
    return table, bodies


def netns_spec(nodes) -> LabSpec:
    ip = {n: nodes[n].address for n in NAMES}
    prefix = ip["master"].rsplit(".", 1)[0]
    node = {"cpus": 2, "memory_mib": 2048, "ssh_user": nodes["master"].user}
    return LabSpec.from_dict(
        {
            "name": "netns-lab",
            "provider": {"type": "ssh"},
            "network": {"subnet": f"{prefix}.0/24", "metallb_pool": f"{prefix}.200-{prefix}.203"},
            "nodes": {
                "master": {"name": "master", "ip": ip["master"], **node},
                "workers": [{"name": "worker1", "ip": ip["worker1"], **node}],
                "nfs": {"name": "nfs", "ip": ip["nfs"], **node, "cpus": 1, "memory_mib": 1024, "export": EXPORT},
            },
        }
    )


def run(nodes, spec: LabSpec, plan, tmp_path: Path, label: str):
    out = io.StringIO()
    transport = SSHTransport()
    try:
        runner = Runner(
            transport,
            nodes.hosts(),
            log_path=tmp_path / f"{label}.log",
            artefacts=build_artefacts(spec, tmp_path / "state"),
            console=Console(file=out, force_terminal=False, width=200),
        )
        report = runner.run(plan, {})
    finally:
        transport.close()
    return report, out.getvalue(), (tmp_path / f"{label}.log").read_text()


def statuses(report) -> dict[tuple[str, str], str]:
    return {(s.step_id, o.host): o.status for s in report.steps for o in s.outcomes}


def test_all_playbooks_run_end_to_end_then_a_rerun_skips_everything(ssh_nodes, tmp_path):
    files = node_files(*routes(LabSpec.default()))
    # Ollama's image "downloads" (crictl double) for a few seconds and then until the apps layer's
    # wait step asks for it: the test sees the background pull overlap the bootstrap, and the wait wait.
    # Open WebUI's downloads as long, but nothing waits for it (the model download does not need it).
    shape = {"seconds": {"ollama/ollama": APP_PULL_SECONDS, "open-webui": APP_PULL_SECONDS}, "hold": ["ollama/ollama"]}
    files["/etc/labctl-shims/image-pulls.json"] = (json.dumps(shape).encode(), 0o644)
    nodes = ssh_nodes(NAMES, files=files)
    spec = netns_spec(nodes)
    plan = build_plan(spec, include_provider=False)
    assert not any(s.skip_reason for s in plan.steps), "the lab is online: no step may be skipped by the profile"

    first, console1, log1 = run(nodes, spec, plan, tmp_path, "first")
    done1 = statuses(first)
    # /etc/hosts already names every node (the fixture writes it). Waits and verifications pass their
    # quick check at once (the fake cluster is "ready" as soon as an object exists). Every step that
    # changes something had work to do.
    assert {st for (sid, _), st in done1.items() if sid == "node-prep.write-hosts-file"} == {"skipped"}
    waits = {sid for sid, _ in done1 if sid.startswith("verify.") or ".wait-" in sid}
    assert len(waits) == 15  # 10 + one image wait per layer (control plane, Calico, MetalLB, storage, apps)
    not_done = sorted(k for k, st in done1.items() if st != "done" and k[0] not in waits | {"node-prep.write-hosts-file"})
    assert not_done == [], f"steps that did not run on the first run: {not_done}"
    assert len(first.steps) == len(plan.steps)

    second, console2, log2 = run(nodes, spec, plan, tmp_path, "second")
    not_skipped = sorted(k for k, st in statuses(second).items() if st != "skipped")
    assert not_skipped == [], f"the second run did work again: {not_skipped}"
    step = {s.step_id: s for s in second.steps}
    assert step["node-prep.disable-swap"].outcomes[0].reason == "swap already off and not in /etc/fstab"

    # --- the join token: created on the master, used by the worker, never shown or logged
    api = json.loads(nodes.read("master", "/var/lib/labctl-shims/apiserver.json"))
    assert len(api["tokens"]) == 1, "one token for one join; the re-run must not create another"
    token = api["tokens"][0]
    assert api["joins"] == [{"node": "worker1", "token_id": token.split(".")[0]}]
    for text in (console1, log1, console2, log2):
        assert token not in text and token.split(".")[1] not in text
        # Nor any other bootstrap token (kubeadm init prints one unless told --skip-token-print).
        assert not re.search(r"\b[a-z0-9]{6}\.[a-z0-9]{16}\b", text)
    assert "--token <value withheld>" in log1
    assert "<redacted:join_command>" in log1 or "<secret capture join_command: not logged>" in log1
    assert "$LABCTL_JOIN_COMMAND" in log1  # the script names the variable, the value travels on stdin

    # --- what the doubles were asked to do
    ip = {n: nodes[n].address for n in NAMES}
    init = [c for c in calls(nodes.read("master", "/var/log/labctl-shims/kubeadm.log")) if c[:1] == ["init"]]
    assert len(init) == 1
    assert f"--apiserver-advertise-address={ip['master']}" in init[0]
    assert f"--apiserver-cert-extra-sans={ip['master']},master" in init[0]
    assert {"--pod-network-cidr=10.10.0.0/16", "--service-cidr=10.96.0.0/12", "--node-name=master", "--skip-token-print"} <= set(init[0])
    join = [c for c in calls(nodes.read("worker1", "/var/log/labctl-shims/kubeadm.log")) if c[:1] == ["join"]]
    assert join == [["join", f"{ip['master']}:6443", "--token", "<token>", "--discovery-token-ca-cert-hash", join[0][5], "--node-name=worker1"]]
    for name in ("master", "worker1"):
        assert nodes.read(name, "/etc/default/kubelet").decode() == f"KUBELET_EXTRA_ARGS=--node-ip={ip[name]}\n"
        assert nodes.read(name, "/var/lib/labctl-shims/swaps").decode().strip() == ""
        fstab = nodes.read(name, "/etc/fstab").decode()
        assert f"# disabled by labctl (the kubelet needs swap off): {SEEDED_SWAP}\tnone\tswap" in fstab
        toml = nodes.read(name, "/etc/containerd/config.toml").decode()
        runc = toml.split("containerd.runtimes.runc.options]", 1)[1].split("[", 1)[0]
        assert "SystemdCgroup = true" in runc and "SystemdCgroup = false" not in toml
        versions = nodes.exec(name, "dpkg-query -W -f='${Package}=${Version}\\n' kubeadm kubelet kubectl cri-tools", check=True).stdout
        kube = PINS["kubernetes"]
        assert sorted(versions.split()) == sorted(
            [f"kubeadm={kube}-1.1", f"kubelet={kube}-1.1", f"kubectl={kube}-1.1", f"cri-tools={PINS['cri_tools']}-1.1"]
        )
        assert set(nodes.exec(name, "apt-mark showhold", check=True).stdout.split()) == {"cri-tools", "kubeadm", "kubelet", "kubectl"}
        # containerd and runc from their (checksum-verified) release files, not from a .deb
        assert f"v{PINS['containerd']}" in nodes.exec(name, "/usr/local/bin/containerd --version", check=True).stdout
        assert f"runc version {PINS['runc']}" in nodes.exec(name, "/usr/local/sbin/runc --version", check=True).stdout
        assert "ExecStart=/usr/local/bin/containerd" in nodes.read(name, "/etc/systemd/system/containerd.service").decode()
        assert {"overlay", "br_netfilter"} <= set(nodes.read(name, "/var/lib/labctl-shims/modules").decode().split())
    assert "kubeadm" not in nodes.exec("nfs", "ls /usr/bin").stdout.split(), "the NFS VM is not a Kubernetes node"

    # --- the background image pull (labctl.images, 26-image-pull.yaml), seen by the crictl double
    images = image_plan(spec)
    kubeadm_init = next(c["time"] for c in log_entries(nodes, "master", "kubeadm") if c["argv"][:1] == ["init"])
    apply_apps = next(c["time"] for c in log_entries(nodes, "master", "kubectl") if "/etc/labctl/apps.yaml" in c["argv"])
    for name in ("master", "worker1"):
        pulls = [c for c in log_entries(nodes, name, "crictl") if c["argv"][:1] == ["pull"]]
        started = [c for c in pulls if not c.get("done")]
        # every image of the node's list pulled once, the first before the control plane exists
        assert sorted(c["argv"][1] for c in started) == sorted(images.pulls(name))
        assert all(c["ok"] for c in pulls if c.get("done"))
        assert min(c["time"] for c in started) < kubeadm_init, f"{name}: the background pull started late"
    awaited = images.awaited("worker1", "apps")
    ollama_done = next(
        c["time"] for c in log_entries(nodes, "worker1", "crictl") if c.get("done") and "ollama/ollama" in c["argv"][1]
    )
    assert any("ollama/ollama" in ref for ref in awaited) and not any("open-webui" in ref for ref in awaited)
    # Started early, awaited late: kubeadm init ran while Ollama was still downloading, and the apps
    # were applied only once it was there (the apps layer's wait step waited for it, not for Open WebUI).
    assert kubeadm_init < ollama_done < apply_apps
    assert done1[("apps.wait-for-apps-images", "worker1")] == "done"  # it ran: it had to wait
    assert f"worker1: apps images: {len(awaited)} of {len(awaited)} present, 0 failed" in log1
    pull_log = nodes.read("worker1", "/var/log/labctl-image-pull.log").decode()
    assert "finished: 0 failed" in pull_log and "pulled ghcr.io/open-webui/open-webui" in pull_log

    # --- objects the fake cluster received
    objects = api["objects"]
    env = {e["name"]: e.get("value") for e in objects["DaemonSet/kube-system/calico-node"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CALICO_IPV4POOL_CIDR"] == str(spec.network.pod_cidr)
    assert env["IP_AUTODETECTION_METHOD"] == f"cidr={spec.network.subnet}"
    # the shim manifest names docker.io/calico (as Calico's did before v3.31.0): applied from quay.io
    calico = [objects["DaemonSet/kube-system/calico-node"], objects["Deployment/kube-system/calico-kube-controllers"]]
    assert [c["image"] for o in calico for c in o["spec"]["template"]["spec"]["containers"]] == [
        f"quay.io/calico/node:v{PINS['calico']}",
        f"quay.io/calico/kube-controllers:v{PINS['calico']}",
    ]
    args = objects["Deployment/kube-system/metrics-server"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args.count("--kubelet-insecure-tls") == 1
    assert "IPAddressPool/metallb-system/" + objects_named(objects, "IPAddressPool")[0] in objects
    assert objects["StorageClass//" + spec.storage.class_name]["parameters"]["share"] == EXPORT
    assert "Deployment/llm/ollama" in objects and "Service/llm/open-webui" in objects

    # --- the NFS export and the user's kubeconfig
    assert nodes.read("nfs", "/etc/exports").decode().splitlines()[-1] == f"{EXPORT} {spec.network.subnet}(rw,sync,no_subtree_check,no_root_squash)"
    assert nodes.exec("nfs", f"stat -c '%U:%G %a' {EXPORT}", check=True).stdout.strip() == "nobody:nogroup 777"
    owner = nodes.exec("master", "stat -c '%U %a' /home/vagrant/.kube/config", check=True).stdout.strip()
    assert owner == "vagrant 600"


def log_entries(nodes, name: str, tool: str) -> list[dict]:
    """The JSON lines a node-side double recorded (tests/shims/lib/shimlib.record)."""
    text = nodes.read(name, f"/var/log/labctl-shims/{tool}.log").decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def objects_named(objects: dict, kind: str) -> list[str]:
    return [k.split("/", 2)[2] for k in objects if k.startswith(kind + "/")]
