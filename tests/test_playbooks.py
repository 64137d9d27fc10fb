"""The playbooks as data: build_plan on the default lab, a 3-worker lab, a GPU lab and an offline lab.

Facts in (a LabSpec), commands out (the Plan): no host is touched. What runs where, in which order,
with which addresses, and that secrets only ever travel as variables.
"""

from __future__ import annotations

import re

import pytest

from labctl.context import nodes_for
from labctl.plan import build_plan, load_playbooks
from labctl.resources import playbooks_dir
from labctl.spec import LabSpec
from labctl.versions import PINS

EXPECTED_STEPS = [
    "node-prep.write-hosts-file",
    "node-prep.disable-swap",
    "node-prep.load-kernel-modules",
    "node-prep.set-kernel-parameters",
    "node-prep.install-containerd",
    "node-prep.configure-containerd-systemd-cgroup",
    "node-prep.add-kubernetes-apt-repository",
    "node-prep.install-kubernetes-packages",
    "node-prep.set-kubelet-node-ip",
    "nfs-server.install-nfs-server",
    "nfs-server.create-export-folder",
    "nfs-server.export-folder-to-lab",
    "image-pull.start-background-pull",
    "control-plane.wait-for-control-plane-images",
    "control-plane.pull-control-plane-images",
    "control-plane.initialise-control-plane",
    "control-plane.write-user-kubeconfig",
    "control-plane.create-join-command",
    "workers.join-cluster",
    "workers.wait-until-registered",
    "cni-calico.wait-for-calico-images",
    "cni-calico.fetch-calico-manifest",
    "cni-calico.apply-calico",
    "cni-calico.wait-for-calico",
    "cni-calico.wait-for-nodes-ready",
    "load-balancer.wait-for-load-balancer-images",
    "load-balancer.fetch-metallb-manifest",
    "load-balancer.apply-metallb",
    "load-balancer.wait-for-metallb-webhook",
    "load-balancer.apply-address-pool",
    "storage.wait-for-storage-images",
    "storage.fetch-csi-driver-nfs-manifests",
    "storage.apply-csi-driver-nfs",
    "storage.apply-default-storage-class",
    "storage.fetch-metrics-server-manifest",
    "storage.apply-metrics-server",
    "apps.wait-for-apps-images",
    "apps.apply-apps",
    "apps.wait-for-apps",
    "apps.wait-for-model-download",
    "verify.nodes-ready",
    "verify.system-pods-running",
    "verify.ollama-answers",
    "verify.open-webui-answers",
]
GPU_STEPS = [
    "node-prep.install-nvidia-driver",
    "node-prep.add-nvidia-container-toolkit-repository",
    "node-prep.install-nvidia-container-toolkit",
]


def three_workers() -> LabSpec:
    return LabSpec.from_dict(
        {
            "network": {"subnet": "192.168.40.0/24", "pod_cidr": "10.20.0.0/16", "metallb_pool": "192.168.40.2-192.168.40.9"},
            "nodes": {
                "master": {"name": "cp", "ip": "192.168.40.10", "cpus": 2, "memory_mib": 4096},
                "workers": [{"name": f"w{i}", "ip": f"192.168.40.{20 + i}", "cpus": 2, "memory_mib": 4096} for i in (1, 2, 3)],
                "nfs": {"name": "store", "ip": "192.168.40.30", "cpus": 1, "memory_mib": 1024},
            },
            "provider": {"host_memory_budget_mib": 65536},
        }
    )


def gpu_libvirt() -> LabSpec:
    return LabSpec.from_dict(
        {
            "provider": {"type": "libvirt"},
            "nodes": {"gpu_worker": {"name": "gpu1", "ip": "192.168.33.102", "cpus": 4, "memory_mib": 8192, "pci": "0000:01:00.0"}},
            "apps": {"options": {"gpu": True}},
        }
    )


def offline() -> LabSpec:
    return LabSpec.from_dict({"offline": True})


def no_workers() -> LabSpec:
    return LabSpec.from_dict({"nodes": {"workers": []}})


def big_disks() -> LabSpec:
    return LabSpec.from_dict(
        {
            "nodes": {
                "master": {"name": "master", "ip": "192.168.33.100", "cpus": 4, "memory_mib": 8192, "disk_gib": 40},
                "nfs": {"name": "nfs", "ip": "192.168.33.11", "cpus": 1, "memory_mib": 1024, "disk_gib": 100},
            }
        }
    )


LABS = {
    "default": LabSpec.default,
    "three-workers": three_workers,
    "gpu-libvirt": gpu_libvirt,
    "offline": offline,
    "no-workers": no_workers,
    "big-disks": big_disks,
}


@pytest.fixture(scope="module")
def plans():
    return {name: build_plan(make(), include_provider=False) for name, make in LABS.items()}


def by_host(step, host: str):
    return next(c for c in step.commands if c.host == host)


# ---- shape ------------------------------------------------------------------------------------------
def test_default_lab_runs_the_expected_steps_in_order(plans):
    assert [s.id for s in plans["default"].steps] == EXPECTED_STEPS


def test_gpu_steps_only_with_the_gpu_option_and_only_on_the_gpu_worker(plans):
    ids = [s.id for s in plans["gpu-libvirt"].steps]
    # (libvirt: the Kubernetes nodes' disks are sized from their images, and grown first)
    assert ids == ["node-prep.grow-root-filesystem", *EXPECTED_STEPS[:9], *GPU_STEPS, *EXPECTED_STEPS[9:]]
    for step_id in GPU_STEPS:
        step = plans["gpu-libvirt"].step(step_id)
        assert step.hosts == ("gpu1",)
        assert step.network
    assert "nvidia-ctk runtime configure --runtime=containerd" in plans["gpu-libvirt"].step(GPU_STEPS[2]).commands[0].run
    assert not set(GPU_STEPS) & {s.id for s in plans["default"].steps}
    # The GPU worker is a worker like the others: it is prepared, joins, and its kubelet gets its address.
    assert "gpu1" in plans["gpu-libvirt"].step("workers.join-cluster").hosts
    assert "--node-ip=192.168.33.102" in by_host(plans["gpu-libvirt"].step("node-prep.set-kubelet-node-ip"), "gpu1").run


def test_only_vms_with_disk_gib_grow_their_root_file_system(plans):
    """On VirtualBox only the VMs that set disk_gib; on libvirt also every Kubernetes node, whose
    disk labctl sizes from its images when lab.yaml does not (labctl.figures.node_disk_gib)."""
    grow = "node-prep.grow-root-filesystem"
    assert [s.id for s in plans["big-disks"].steps] == [grow, *EXPECTED_STEPS]
    step = plans["big-disks"].step(grow)
    assert step.hosts == ("nfs", "master")  # lab order (nfs first); worker1 keeps the box's disk size: not in the step at all
    assert not step.network  # the offline e2e lab runs it; growpart is installed only where missing
    assert plans["gpu-libvirt"].step(grow).hosts == tuple(n.name for n in nodes_for(gpu_libvirt(), "k8s"))
    for name in LABS:
        if name not in ("big-disks", "gpu-libvirt"):
            assert grow not in {s.id for s in plans[name].steps}, name


@pytest.mark.parametrize("lab", LABS)
def test_every_step_has_a_check_a_purpose_and_its_own_done_reason(plans, lab):
    for step in plans[lab].steps:
        assert step.purpose, f"{step.id}: say why the step exists (the handout prints it)"
        assert step.done_reason and step.done_reason != "already done", f"{step.id}: say why it is skipped"
        assert step.sudo and step.timeout >= 60
        for cmd in step.commands:
            assert cmd.check.strip(), f"{step.id} on {cmd.host}: every step is guarded by a check"
            assert cmd.run.strip()
            assert "{{" not in cmd.run + cmd.check and "{%" not in cmd.run + cmd.check


def test_steps_target_the_right_hosts(plans):
    plan = plans["three-workers"]
    k8s = ("cp", "w1", "w2", "w3")
    assert plan.step("node-prep.write-hosts-file").hosts == ("store", *k8s)
    for step in plan.steps:
        if step.playbook == "node-prep" and step.id != "node-prep.write-hosts-file":
            assert step.hosts == k8s, step.id
        elif step.playbook == "nfs-server":
            assert step.hosts == ("store",), step.id
        elif step.playbook == "workers":
            assert step.hosts == ("w1", "w2", "w3"), step.id
        elif step.id == "image-pull.start-background-pull":
            assert step.hosts == k8s, step.id  # every Kubernetes node pulls its own images
        elif step.id.endswith("-images") and ".wait-for-" in step.id:
            # each node waits for its own images of that layer: the control plane's on cp only; MetalLB's
            # (its speaker does not tolerate the control-plane taint) and the apps' on the workers only
            expected = {"control-plane": ("cp",), "load-balancer": k8s[1:], "apps": k8s[1:]}.get(step.playbook, k8s)
            assert step.hosts == expected, step.id
        elif step.playbook != "node-prep":
            assert step.hosts == ("cp",), step.id


TAINT_STEP = "control-plane.allow-workloads-on-control-plane"


def test_a_lab_without_workers_untaints_the_control_plane_and_joins_nobody(plans):
    ids = [s.id for s in plans["no-workers"].steps]
    # Right after the login user's kubeconfig, long before the apps are scheduled; nothing joins.
    assert ids == [
        *EXPECTED_STEPS[: EXPECTED_STEPS.index("control-plane.create-join-command")],
        TAINT_STEP,
        *[
            s
            for s in EXPECTED_STEPS[EXPECTED_STEPS.index("control-plane.create-join-command") + 1 :]
            if not s.startswith("workers.")
        ],
    ]
    step = plans["no-workers"].step(TAINT_STEP)
    assert step.hosts == ("master",) and step.sudo and not step.network
    (cmd,) = step.commands
    # Done = the NoSchedule taint is absent; kubectl failing (API down) fails the check, not passes it.
    assert "taints=$(kubectl get node master -o jsonpath=" in cmd.check
    assert "if grep -qxF node-role.kubernetes.io/control-plane:NoSchedule <<<\"$taints\"; then exit 1; fi" in cmd.check
    assert "kubectl taint node master node-role.kubernetes.io/control-plane:NoSchedule-" in cmd.run
    assert "KUBECONFIG=/etc/kubernetes/admin.conf" in cmd.check and "KUBECONFIG=/etc/kubernetes/admin.conf" in cmd.run
    # With any worker (a GPU worker counts) the control plane keeps its taint: the step is not in the plan.
    for lab in ("default", "three-workers", "gpu-libvirt", "offline"):
        assert TAINT_STEP not in {s.id for s in plans[lab].steps}, lab


def test_every_playbook_file_is_numbered_and_titled():
    books = load_playbooks()
    ours = [
        "10-node-prep.yaml", "20-nfs-server.yaml", "30-control-plane.yaml", "40-workers.yaml", "50-cni-calico.yaml",
        "60-load-balancer.yaml", "70-storage.yaml", "80-apps.yaml", "90-verify.yaml",
    ]  # fmt: skip
    # Other concerns (e.g. the warm cache, `when: cache`) may slot their own files in between.
    assert [b.path.name for b in books if b.path.name in ours] == ours
    for book in books:
        assert book.spec.title and book.spec.purpose.strip()


# ---- addresses and ranges -----------------------------------------------------------------------------
@pytest.mark.parametrize("lab", ["default", "three-workers"])
def test_kubeadm_init_uses_the_lab_addresses_and_ranges(plans, lab):
    spec = LABS[lab]()
    master = spec.nodes.master
    run = plans[lab].step("control-plane.initialise-control-plane").commands[0].run
    flags = set(run.replace("\\\n", " ").split())
    assert {
        "kubeadm",
        "init",
        f"--kubernetes-version=v{PINS['kubernetes']}",
        f"--node-name={master.name}",
        f"--apiserver-advertise-address={master.ip}",
        f"--apiserver-cert-extra-sans={master.ip},{master.name}",
        f"--pod-network-cidr={spec.network.pod_cidr}",
        f"--service-cidr={spec.network.service_cidr}",
        "--skip-token-print",
    } == flags
    assert plans[lab].step("control-plane.initialise-control-plane").commands[0].check == "[ -f /etc/kubernetes/admin.conf ]"


def test_kubelet_node_ip_is_each_hosts_own_address(plans):
    spec = three_workers()
    step = plans["three-workers"].step("node-prep.set-kubelet-node-ip")
    for _, node in spec.all_nodes():
        if node.name == "store":
            continue
        cmd = by_host(step, node.name)
        line = f"KUBELET_EXTRA_ARGS=--node-ip={node.ip}"
        assert f"echo '{line}' > /etc/default/kubelet" in cmd.run
        assert line in cmd.check
        others = [str(n.ip) for _, n in spec.all_nodes() if n.name != node.name]
        assert not any(ip in cmd.run for ip in others)


def test_hosts_file_lists_every_node(plans):
    spec = three_workers()
    cmd = plans["three-workers"].step("node-prep.write-hosts-file").commands[0]
    for _, node in spec.all_nodes():
        assert f"grep -qxF '{node.ip} {node.name}' /etc/hosts" in cmd.check
        assert f"echo '{node.ip} {node.name}' >> /etc/hosts" in cmd.run


@pytest.mark.parametrize("lab", ["default", "three-workers"])
def test_calico_pool_is_the_pod_cidr_and_autodetection_is_the_lab_subnet(plans, lab):
    spec = LABS[lab]()
    cmd = plans[lab].step("cni-calico.fetch-calico-manifest").commands[0]
    for text in (cmd.run, cmd.check):
        assert f'value: "{spec.network.pod_cidr}"' in text
        assert f'value: "cidr={spec.network.subnet}"' in text
    assert f"/calico/v{PINS['calico']}/manifests/calico.yaml" in cmd.run
    # The manifest is applied only after it was edited (same file), and before calico-node is waited for.
    apply = plans[lab].step("cni-calico.apply-calico").commands[0].run
    assert f"-f /etc/labctl/addons/calico-v{PINS['calico']}-lab.yaml" in apply


def test_nfs_export_is_for_the_lab_subnet_with_the_options_csi_needs(plans):
    spec = three_workers()
    run = plans["three-workers"].step("nfs-server.export-folder-to-lab").commands[0].run
    assert f"echo '{spec.nodes.nfs.export} {spec.network.subnet}(rw,sync,no_subtree_check,no_root_squash)' >> /etc/exports" in run
    assert "exportfs -ra" in run


def test_workers_are_waited_for_by_name(plans):
    check = plans["three-workers"].step("control-plane.create-join-command").commands[0].check
    assert "kubectl get nodes w1 w2 w3 >/dev/null" in check
    ready = plans["three-workers"].step("cni-calico.wait-for-nodes-ready").commands[0].run
    assert "kubectl wait --for=condition=Ready node/cp node/w1 node/w2 node/w3 --timeout=10m" in ready


def test_verify_checks_the_spec_addresses(plans):
    spec = three_workers()
    check = plans["three-workers"].step("verify.open-webui-answers").commands[0].check
    assert f"= '{spec.webui_address}' ]" in check
    assert f"http://{spec.webui_address}:{spec.apps.openwebui.port}/health" in check
    ollama = plans["three-workers"].step("verify.ollama-answers").commands[0].check
    for model in spec.apps.ollama.models:
        assert f'"name":"{model}"' in ollama


# ---- secrets -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("lab", [lab for lab in LABS if lab != "no-workers"])  # no-workers: no join step
def test_the_join_command_is_only_ever_a_variable(plans, lab):
    plan = plans[lab]
    capture = plan.step("control-plane.create-join-command")
    assert (capture.capture, capture.secret, capture.capture_check) == ("join_command", True, True)
    assert capture.commands[0].run == "kubeadm token create --print-join-command --ttl=1h"
    for step in plan.steps:
        for cmd in step.commands:
            text = cmd.check + cmd.run
            assert "--token" not in text and "discovery-token-ca-cert-hash" not in text, step.id
            if "LABCTL_JOIN_COMMAND" in text:
                assert step.uses == ("join_command",), step.id
    join = plan.step("workers.join-cluster")
    assert join.uses == ("join_command",)
    for cmd in join.commands:
        assert 'read -r -a join_command <<<"$LABCTL_JOIN_COMMAND"' in cmd.run
        assert f'"${{join_command[@]}}" --node-name={cmd.host}' in cmd.run
        assert cmd.check == "[ -f /etc/kubernetes/kubelet.conf ]"


def test_uploaded_artefacts_are_the_three_bundles_and_checks_read_them(plans):
    from labctl.artefacts import REMOTE_DIR
    from labctl.manifests import DEFAULT_NAMESPACE, LAB_BUNDLES

    uploads = {name: s for s in plans["default"].steps for name in s.upload}
    assert set(uploads) == set(LAB_BUNDLES) == {"metallb-config", "storage", "apps"}
    for name, step in uploads.items():
        path = f"{REMOTE_DIR}/{name}.yaml"
        assert f"kubectl diff --server-side -f {path} >/dev/null" in step.commands[0].check
        assert f"kubectl apply --server-side -f {path}" in step.commands[0].run
    # The apps playbooks wait in the namespace the manifests put the apps in.
    for step_id in ("apps.wait-for-apps", "verify.ollama-answers"):
        assert f"-n {DEFAULT_NAMESPACE} " in plans["default"].step(step_id).commands[0].run


# ---- pins and offline ----------------------------------------------------------------------------------
def test_playbooks_name_no_version_themselves():
    """Every version comes from labctl.versions (rendered); a literal one in a playbook would drift."""
    pinned = {v for k, v in PINS.items() if re.match(r"^\d", v)}
    for path in sorted(playbooks_dir().glob("[1-9]*.yaml")):
        text = path.read_text()
        for version in pinned:
            assert version not in text, f"{path.name} names version {version}: use {{{{ versions.<key> }}}}"


def test_pinned_versions_reach_the_commands(plans):
    runs = {s.id: s.commands[0].run for s in plans["default"].steps}
    kube = PINS["kubernetes"]
    assert f"'kubeadm={kube}-{PINS['kubernetes_deb_revision']}'" in runs["node-prep.install-kubernetes-packages"]
    assert "apt-mark hold kubeadm kubelet kubectl" in runs["node-prep.install-kubernetes-packages"]
    c = PINS["containerd"]
    assert f"https://github.com/containerd/containerd/releases/download/v{c}/containerd-{c}-linux-amd64.tar.gz" in runs["node-prep.install-containerd"]
    assert f"https://github.com/opencontainers/runc/releases/download/v{PINS['runc']}/runc.amd64" in runs["node-prep.install-containerd"]
    assert f"https://pkgs.k8s.io/core:/stable:/v{'.'.join(kube.split('.')[:2])}/deb/" in runs["node-prep.add-kubernetes-apt-repository"]
    assert f"/metallb/v{PINS['metallb']}/config/manifests/metallb-native.yaml" in runs["load-balancer.fetch-metallb-manifest"]
    assert f"/csi-driver-nfs/v{PINS['csi_driver_nfs']}/deploy/v{PINS['csi_driver_nfs']}/" in runs["storage.fetch-csi-driver-nfs-manifests"]
    assert f"/metrics-server/releases/download/v{PINS['metrics_server']}/components.yaml" in runs["storage.fetch-metrics-server-manifest"]
    assert "- --kubelet-insecure-tls" in runs["storage.fetch-metrics-server-manifest"]


def test_offline_lab_skips_exactly_the_steps_that_need_the_internet(plans):
    plan = plans["offline"]
    assert [s.id for s in plan.steps] == EXPECTED_STEPS
    skipped = {s.id for s in plan.steps if s.skip_reason}
    assert skipped == {s.id for s in plan.steps if s.network}
    for step in plan.steps:
        if step.skip_reason:
            assert "offline" in step.skip_reason
    # What an offline lab still does: prepare the nodes, the export, the control plane and the joins.
    assert {
        "node-prep.disable-swap", "node-prep.configure-containerd-systemd-cgroup", "node-prep.set-kubelet-node-ip",
        "nfs-server.export-folder-to-lab", "control-plane.initialise-control-plane", "control-plane.create-join-command",
        "workers.join-cluster",
    }.isdisjoint(skipped)  # fmt: skip
    # Everything that downloads (apt, curl, image pulls) is network-bound.
    for step in plans["default"].steps:
        text = " ".join(c.run for c in step.commands)
        # (curl followed by / or : is the image quay.io/curl/curl:<tag> in an image list, not the command)
        if re.search(r"\bcurl\b(?![/:])|apt-get (update|install)|images pull|crictl pull", text):
            assert step.network, f"{step.id} downloads but is not marked network: true"
        if step.network:
            assert step.retries or "wait" in step.id or step.playbook in ("verify", "apps") or "apply" in step.id, step.id
    assert not plans["default"].steps[0].skip_reason


def test_with_cached_packages_node_prep_uses_only_the_local_repository():
    from labctl.cache_scan import CachedFile, CacheInfo

    lab = LabSpec.default()
    cached = CacheInfo(host_dir="/srv/labctl-cache", debs=(CachedFile("kubeadm_1.36.4-1.1_amd64.deb", "debs/x", 1),))
    warm = build_plan(lab, include_provider=False, cache=cached)
    cold = build_plan(lab, include_provider=False)
    assert {s.id for s in cold.steps} - {s.id for s in warm.steps} == {"node-prep.add-kubernetes-apt-repository"}
    for step in warm.steps:
        if step.id.startswith("node-prep."):
            for c in step.commands:
                assert "Timeout=600 update" not in c.run and "pkgs.k8s.io" not in c.run, step.id
    assert "apt-get -o DPkg::Lock::Timeout=600 install" in cold.step("node-prep.install-kubernetes-packages").commands[0].run
    # a cache without .debs (05-warm-cache-packages does not run): packages come from the network as usual
    no_debs = build_plan(lab, include_provider=False, cache=CacheInfo(host_dir="/srv/labctl-cache"))
    assert "node-prep.add-kubernetes-apt-repository" in {s.id for s in no_debs.steps}
    assert "curl -fsSL" in no_debs.step("node-prep.install-containerd").commands[0].run


def test_containerd_and_runc_come_from_their_releases_verified_or_from_the_cache():
    """Ubuntu's noble-updates keeps only its newest containerd (FACTS.md #19); the GitHub releases keep
    every version. Asset names as containerd/containerd@v2.2.7 Makefile (containerd-<v>-linux-<arch>.tar.gz
    + .sha256sum) and opencontainers/runc script/release_build.sh (runc.<arch>, runc.sha256sum) write them."""
    from labctl.cache_scan import CachedFile, CacheInfo
    from labctl.versions import release_downloads

    lab = LabSpec.default()
    step = build_plan(lab, include_provider=False).step("node-prep.install-containerd")
    assert step.network
    run = step.commands[0].run
    for d in release_downloads("amd64"):
        assert f"curl -fsSL --retry 3 -o '{d.file}.part' '{d.url}'" in run
    c = PINS["containerd"]
    assert f"verify 'containerd-{c}-linux-amd64.tar.gz.sha256sum' 'containerd-{c}-linux-amd64.tar.gz'" in run
    assert "verify 'runc-" in run and "'runc.amd64'" in run
    # nothing is unpacked before both checksums passed
    assert run.index("verify 'runc-") < run.index("tar -C /usr/local -xzf")
    assert "apt-get" not in run
    releases = tuple(CachedFile(d.file, f"releases/{d.file}", 1) for d in release_downloads("amd64"))
    warm = build_plan(lab, include_provider=False, cache=CacheInfo(host_dir="/srv/c", releases=releases))
    wstep = warm.step("node-prep.install-containerd")
    assert not wstep.network and "curl" not in wstep.commands[0].run
    assert f"cp '/labctl-cache/releases/containerd-{c}-linux-amd64.tar.gz'" in wstep.commands[0].run


def test_an_offline_lab_with_cached_packages_installs_them_instead_of_skipping():
    from labctl.cache_scan import CachedFile, CacheInfo
    from labctl.versions import release_downloads

    installs = {"node-prep.install-containerd", "node-prep.install-kubernetes-packages"}
    releases = tuple(CachedFile(d.file, f"releases/{d.file}", 1) for d in release_downloads("amd64"))
    cached = CacheInfo(
        host_dir="/srv/labctl-cache", debs=(CachedFile("kubeadm_1.36.4-1.1_amd64.deb", "debs/x", 1),), releases=releases
    )
    warm = build_plan(offline(), include_provider=False, cache=cached)
    for step_id in installs:
        assert not warm.step(step_id).network and not warm.step(step_id).skip_reason, step_id
    cold = build_plan(offline(), include_provider=False)
    for step_id in installs:
        assert cold.step(step_id).network and "offline" in cold.step(step_id).skip_reason, step_id
    # Steps that download with or without a cache stay skipped in an offline lab.
    assert warm.step("cni-calico.fetch-calico-manifest").skip_reason


def test_containerd_sandbox_image_is_kubeadms_pause(plans):
    step = plans["default"].step("node-prep.configure-containerd-systemd-cgroup")
    ref = f"registry.k8s.io/pause:{PINS['pause']}"
    for c in step.commands:
        assert f'"= \\"{ref}\\""' in c.run  # what the awk edit writes
        assert "registry\\.k8s\\.io/pause:" + PINS["pause"] in c.check  # what the check demands of `config dump`


def test_a_fact_must_be_captured_by_an_earlier_step_the_lab_runs(tmp_path):
    """`uses` is checked against the steps this lab actually runs, so a capture dropped by `when:` is
    an error, while a using step with no hosts in this lab (no workers) needs no fact."""
    from labctl.errors import PlaybookError

    def write(capture_when: str) -> None:
        (tmp_path / "10-a.yaml").write_text(
            "title: A\nsteps:\n"
            f"  - {{name: make, title: Make, hosts: control_plane, when: '{capture_when}', run: echo x, capture: token}}\n"
        )
        (tmp_path / "20-b.yaml").write_text(
            "title: B\nsteps:\n  - {name: use, title: Use, hosts: workers, run: 'echo \"$LABCTL_TOKEN\"', uses: [token]}\n"
        )

    write("false")
    with pytest.raises(PlaybookError, match=r"20-b.yaml: step use: uses fact 'token' that no earlier step captures"):
        build_plan(LabSpec.default(), load_playbooks(tmp_path), include_provider=False)
    no_workers = LabSpec.from_dict({"nodes": {"workers": []}})
    assert [s.id for s in build_plan(no_workers, load_playbooks(tmp_path), include_provider=False).steps] == []
    write("true")
    assert [s.id for s in build_plan(LabSpec.default(), load_playbooks(tmp_path), include_provider=False).steps] == [
        "a.make",
        "b.use",
    ]


def test_a_lab_without_workers_also_drops_the_exclude_from_load_balancers_label(plans):
    """kubeadm labels the control plane node.kubernetes.io/exclude-from-external-load-balancers
    (kubernetes/kubernetes@v1.36.4: cmd/kubeadm/app/phases/markcontrolplane/markcontrolplane.go,
    labelsToAdd) and MetalLB's speaker skips nodes with that label unless --ignore-exclude-lb is set
    (metallb/metallb@v0.16.1: speaker/main.go flag, speaker/layer2_controller.go shouldAnnounce).
    Without workers the step removes it, and the check fails while the label is there."""
    (cmd,) = plans["no-workers"].step(TAINT_STEP).commands
    label = "node.kubernetes.io/exclude-from-external-load-balancers"
    assert f"kubectl label node master {label}-" in cmd.run
    assert f"if grep -qF '\"{label}\"' <<<\"$labels\"; then exit 1; fi" in cmd.check
    # the run verifies its own result: the label must be gone afterwards
    assert cmd.run.rstrip().endswith("fi") and "still carries" in cmd.run


def test_every_apt_call_waits_for_the_dpkg_lock(plans):
    """Cloud-image boxes keep unattended-upgrades (FACTS.md #22): an apt call that does not wait for
    the dpkg lock fails at random on first boot. Every apt-get in every rendered script waits."""
    seen = 0
    for plan in plans.values():
        for step in plan.steps:
            for c in step.commands:
                for line in (c.check + "\n" + c.run).splitlines():
                    if re.search(r"\bapt-get\s", line):
                        seen += 1
                        assert "-o DPkg::Lock::Timeout=600" in line, f"{step.id}: {line.strip()}"
    assert seen >= 8


def test_crictl_is_installed_explicitly_and_held(plans):
    """Since Kubernetes 1.32 the pkgs.k8s.io kubeadm package no longer depends on cri-tools
    (FACTS.md #18), so the image pre-pull check (`crictl inspecti`) would never pass."""
    run = plans["default"].step("node-prep.install-kubernetes-packages").commands[0].run
    assert f"'cri-tools={PINS['cri_tools']}-{PINS['kubernetes_deb_revision']}'" in run
    assert "apt-mark hold kubeadm kubelet kubectl cri-tools" in run
    check = plans["default"].step("node-prep.install-kubernetes-packages").commands[0].check
    assert "cri-tools 2>/dev/null" in check and "grep -qx cri-tools" in check


def test_the_gpu_worker_gets_the_driver_and_a_reboot_before_the_toolkit(plans):
    """The device plugin needs the host driver's libnvidia-ml (FACTS.md #17); the toolkit is not the
    driver. The driver step is the only one that reboots, and nvidia-smi is its check."""
    plan = plans["gpu-libvirt"]
    ids = [s.id for s in plan.steps]
    assert ids.index("node-prep.install-nvidia-driver") < ids.index("node-prep.install-nvidia-container-toolkit")
    step = plan.step("node-prep.install-nvidia-driver")
    assert step.reboot and step.hosts == ("gpu1",) and step.network
    (cmd,) = step.commands
    assert "nvidia-smi -L" in cmd.check
    assert f"ubuntu-drivers install --gpgpu nvidia:{PINS['nvidia_driver']}" in cmd.run
    assert f"nvidia-utils-{PINS['nvidia_driver']}" in cmd.run
    assert [s.id for s in plan.steps if s.reboot] == ["node-prep.install-nvidia-driver"]
    assert "reboots the host after its run" in plan.to_text()
    assert not any(s.reboot for s in plans["default"].steps)
