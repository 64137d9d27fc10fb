"""The apps layer on real clusters and in real rooms (issue 16): what the shims never show.

Each test names the upstream fact it encodes, checked at the source.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from manifest_cases import CASES, TEST_SECRETS, objects, spec_with

from labctl.artefacts import build_artefacts
from labctl.manifests import load_objects, render_bundles
from labctl.plan import build_plan


def deployment(objs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == name)


def webui_env(objs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = deployment(objs, "open-webui")["spec"]["template"]["spec"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["containers"][0]["env"]}


# ---- item 5: offline rooms -------------------------------------------------------------------------
def test_without_an_upstream_open_webui_never_asks_openai() -> None:
    """ENABLE_OPENAI_API defaults to True in Open WebUI's config (open-webui backend/open_webui/config.py),
    so without it every model list waits on api.openai.com — in an offline room the page hangs."""
    assert webui_env(objects("default"))["ENABLE_OPENAI_API"] == "False"
    assert webui_env(objects("ingress-tls-openai"))["ENABLE_OPENAI_API"] == "True"


def test_offline_and_cache_labs_switch_open_webui_and_hugging_face_offline(tmp_path: Path) -> None:
    """OFFLINE_MODE turns off update checks and model downloads; HF_HUB_OFFLINE keeps the Hugging
    Face client from asking the hub (docs.openwebui.com tutorials/offline-mode)."""
    assert "OFFLINE_MODE" not in webui_env(objects("default"))
    offline = load_objects(render_bundles(spec_with(offline=True), TEST_SECRETS)["apps"])
    assert webui_env(offline)["OFFLINE_MODE"] == "True" and webui_env(offline)["HF_HUB_OFFLINE"] == "1"
    # create --cache: the artefact the playbook applies is rendered offline too.
    spec = spec_with()
    cached = build_artefacts(spec, tmp_path, secrets=TEST_SECRETS, offline=True)["apps"].content.decode()
    assert webui_env(load_objects(cached))["HF_HUB_OFFLINE"] == "1"
    online = build_artefacts(spec, tmp_path, secrets=TEST_SECRETS)["apps"].content.decode()
    assert "HF_HUB_OFFLINE" not in online


def test_the_embedding_model_baked_in_the_image_is_seeded_onto_the_data_volume() -> None:
    """open-webui's Dockerfile pre-downloads the embedding model (SENTENCE_TRANSFORMERS_HOME and
    HF_HOME), Whisper (WHISPER_MODEL_DIR) and the tiktoken encoding (TIKTOKEN_CACHE_DIR), all below
    /app/backend/data/cache — inside DATA_DIR, the folder our data volume is mounted on, which hides
    the image's copies. An init container copies them onto the volume once."""
    for case in ("default", "deploy-alice"):
        pod = deployment(objects(case), "open-webui")["spec"]["template"]["spec"]
        init = next(c for c in pod["initContainers"] if c["name"] == "seed-embedding-model")
        assert init["image"] == pod["containers"][0]["image"], "the copy comes from the same image"
        script = init["args"][0]
        assert "/app/backend/data/cache/$part" in script and "embedding/models whisper/models tiktoken" in script
        mount = next(m for m in init["volumeMounts"] if m["name"] == "data")
        assert mount["mountPath"] == "/seed", "mounting on DATA_DIR would hide the source"


def test_seed_script_copies_once_and_only_what_the_image_has(tmp_path: Path) -> None:
    pod = deployment(objects("default"), "open-webui")["spec"]["template"]["spec"]
    script = next(c for c in pod["initContainers"] if c["name"] == "seed-embedding-model")["args"][0]
    image, volume = tmp_path / "image", tmp_path / "volume"
    local = script.replace("/app/backend/data", str(image / "data")).replace("/seed", str(volume))
    run = lambda: subprocess.run(["sh", "-c", local], capture_output=True, text=True, check=True).stdout  # noqa: E731
    assert "embedding/models: this image carries none" in run() and not (volume / "cache").exists()
    model = image / "data" / "cache" / "embedding" / "models" / "all-MiniLM-L6-v2"
    model.mkdir(parents=True)
    (model / "weights.bin").write_text("w")
    (image / "data" / "cache" / "tiktoken").mkdir()
    (image / "data" / "cache" / "tiktoken" / "cl100k").write_text("t")
    out = run()
    assert "embedding/models: seeded" in out and "tiktoken: seeded" in out and "whisper/models: this image carries none" in out
    assert (volume / "cache" / "embedding" / "models" / "all-MiniLM-L6-v2" / "weights.bin").read_text() == "w"
    assert (volume / "cache" / "tiktoken" / "cl100k").read_text() == "t"
    assert not list(volume.rglob("*.partial"))
    # an interrupted copy leaves a .partial folder: the next start replaces it, not nests into it
    (volume / "cache" / "whisper" / "models.partial" / "half").mkdir(parents=True)
    whisper = image / "data" / "cache" / "whisper" / "models"
    whisper.mkdir(parents=True)
    (whisper / "base.bin").write_text("b")
    assert "whisper/models: seeded" in run()
    assert sorted(p.name for p in (volume / "cache" / "whisper" / "models").iterdir()) == ["base.bin"]
    assert not list(volume.rglob("*.partial"))
    assert "embedding/models: already on the volume" in run()


# ---- item 6: openai_secret in a create lab ---------------------------------------------------------
def test_create_stops_right_after_apply_when_the_openai_secret_is_missing() -> None:
    spec = spec_with({"openai_secret": "openai-upstream"})
    steps = [s.id for s in build_plan(spec, include_provider=False).steps]
    at = steps.index("apps.check-openai-secret")
    assert steps[at - 1] == "apps.apply-apps" and steps[at + 1] == "apps.wait-for-apps"
    step = next(s for s in build_plan(spec, include_provider=False).steps if s.id == "apps.check-openai-secret")
    run = step.commands[0].run
    # The name is set once, shell-quoted (the merge of #10 and #16), and the printed command uses it.
    assert "\nsecret=openai-upstream\n" in run
    assert "kubectl -n llm create secret generic $secret --from-literal=OPENAI_API_BASE_URL=" in run
    assert "apps.check-openai-secret" not in [s.id for s in build_plan(spec_with(), include_provider=False).steps]


def test_the_openai_check_and_the_mirror_step_pass_shellcheck(tmp_path: Path) -> None:
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.skip("SHELLCHECK MISSING: apt-get install shellcheck (CI installs it)")
    spec = spec_with({"openai_secret": "openai-upstream", "registry_mirror": "http://10.0.0.5:5000"})
    steps = build_plan(spec, include_provider=False).steps
    wanted = ("apps.check-openai-secret", "registry-mirror.containerd-docker-io-mirror")
    blocks = [b for s in steps if s.id in wanted for b in (s.commands[0].check, s.commands[0].run)]
    assert len(blocks) == 4
    for i, block in enumerate(blocks):
        path = tmp_path / f"block{i}.sh"
        path.write_text("#!/bin/bash\nset -euo pipefail\n" + block)
        result = subprocess.run([exe, "-s", "bash", str(path)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


# ---- item 11: Pod Security ---------------------------------------------------------------------------
HARDENED = {"prometheus", "grafana", "blackbox-exporter"}


def pods() -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for case in CASES:
        for obj in objects(case):
            if obj["kind"] in ("Deployment", "Job", "DaemonSet"):
                out.append((case, obj["metadata"]["name"], obj["spec"]["template"]["spec"]))
    return out


def restricted_problems(name: str, pod: dict[str, Any], *, lab_init: bool) -> list[str]:
    """The Pod Security 'restricted' profile's checks for what we render (kubernetes.io
    pod-security-standards): seccomp RuntimeDefault, no privilege escalation, drop ALL, non-root."""
    out = []
    if pod.get("securityContext", {}).get("seccompProfile", {}).get("type") != "RuntimeDefault":
        out.append(f"{name}: pod seccompProfile RuntimeDefault")
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        out.append(f"{name}: runAsNonRoot")
    for c in pod["containers"] + ([] if lab_init else pod.get("initContainers", [])):
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{name}/{c['name']}: allowPrivilegeEscalation false")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            out.append(f"{name}/{c['name']}: drop ALL")
        if sc.get("runAsNonRoot") is False or sc.get("runAsUser") == 0:
            out.append(f"{name}/{c['name']}: runs as root")
    return out


def test_every_pod_that_can_run_hardened_does() -> None:
    seen = set()
    for case, name, pod in pods():
        if name in HARDENED or name.startswith("ollama-pull-"):
            seen.add(name.split("-pull-")[0] if name.startswith("ollama-pull-") else name)
            # Lab mode only: the chown init container of a hostPath volume (root, CHOWN alone).
            lab_init = not case.startswith("deploy")
            assert restricted_problems(name, pod, lab_init=lab_init) == [], case
            assert pod.get("automountServiceAccountToken") is not True or name == "prometheus"
    assert seen == HARDENED | {"ollama"}


def test_root_images_take_what_they_can() -> None:
    """Ollama and Open WebUI run as root in their images: no runAsNonRoot, but seccomp
    RuntimeDefault and no privilege escalation — Pod Security 'baseline' admits them."""
    for case, name, pod in pods():
        if name in ("ollama", "open-webui"):
            assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", case
            for c in pod["containers"] + pod.get("initContainers", []):
                assert c["securityContext"]["allowPrivilegeEscalation"] is False, (case, c["name"])


def test_the_restricted_check_can_fail() -> None:
    pod = {"securityContext": {}, "containers": [{"name": "x", "securityContext": {"runAsUser": 0}}]}
    assert len(restricted_problems("x", pod, lab_init=False)) == 5


# ---- item 9: auth off on an install that has users ---------------------------------------------------
def test_validate_warns_that_auth_off_locks_existing_users_out_and_gives_the_way_out(tmp_path: Path, monkeypatch) -> None:
    """Open WebUI: "turning off authentication is only possible for fresh installations without any
    existing users" (docs.openwebui.com getting-started/advanced-topics/env-configuration, WEBUI_AUTH)."""
    from click.testing import CliRunner

    from labctl.cli import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "lab.yaml").write_text("apps:\n  openwebui:\n    auth: false\n")
    result = CliRunner().invoke(cli, ["validate"])
    assert result.exit_code == 0, result.output
    warning = next(line for line in result.output.splitlines() if line.startswith("warning: apps.openwebui.auth"))
    assert "/var/lib/labctl/llm/open-webui-data on worker1" in warning and "Way out: set auth: true" in warning
    (tmp_path / "lab.yaml").write_text("apps:\n  openwebui:\n    auth: true\n")
    assert "apps.openwebui.auth" not in CliRunner().invoke(cli, ["validate"]).output


# ---- item 7: registries that rate-limit ----------------------------------------------------------------
def _source_answering(answers: list[tuple[int, dict[str, str]]]) -> tuple[Any, list[float], list[str]]:
    """A cache Source whose httpx client answers from a list (httpx.MockTransport: no socket at all)."""
    import httpx

    from labctl.cache_fetch import Source

    slept: list[float] = []
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        status, headers = answers.pop(0)
        return httpx.Response(status, headers=headers, content=b"manifest" if status == 200 else b"")

    source = Source(sleep=slept.append)
    source._client = httpx.Client(transport=httpx.MockTransport(handler))
    return source, slept, seen


def test_cache_fill_honours_retry_after_on_429() -> None:
    """Docker Hub answers 429 with Retry-After once an address passes its anonymous pull limit
    (about 10 an hour; manifest requests count). The fill waits what it is told and asks again."""
    url = "https://registry.test/v2/ollama/ollama/manifests/0.40.1"
    source, slept, seen = _source_answering([(429, {"Retry-After": "7"}), (503, {}), (200, {})])
    assert source.read(url) == b"manifest"
    assert slept == [7.0, 60.0] and len(seen) == 3  # no header: 30 s × attempt


def test_cache_fill_gives_up_on_a_long_rate_limit_with_the_way_out() -> None:
    from labctl.cache_needs import CacheError

    source, slept, _ = _source_answering([(429, {"Retry-After": "3600"})])
    with pytest.raises(CacheError, match=r"HTTP 429, the registry asks to wait 3600 s .* --mirror"):
        source.read("https://registry.test/v2/x/manifests/1")
    assert slept == []
    source, slept, _ = _source_answering([(429, {"Retry-After": "1"})] * 4)
    with pytest.raises(CacheError, match="HTTP 429"):
        source.read("https://registry.test/v2/x/manifests/1")
    assert slept == [1.0, 1.0, 1.0]


def test_retry_after_as_an_http_date() -> None:
    from datetime import datetime, timedelta
    from email.utils import format_datetime

    from labctl.cache_fetch import retry_after_seconds

    later = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    assert 85 <= retry_after_seconds(later, default=1) <= 90
    assert retry_after_seconds("soon", default=5) == 5 and retry_after_seconds(None, default=4) == 4


# containerd 2.x `containerd config default`, the registry part (the 2.x layout: cri.v1.images).
CONTAINERD_2_DEFAULT = """version = 3
[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = 'registry.k8s.io/pause:3.10.2'
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = '/etc/containerd/certs.d:/etc/docker/certs.d'
    [plugins.'io.containerd.cri.v1.images'.image_decryption]
      key_model = 'node'
  [plugins.'io.containerd.cri.v1.runtime']
    enable_cdi = true
"""


def _mirror_step(mirror: str) -> Any:
    spec = spec_with({"registry_mirror": mirror})
    return next(s for s in build_plan(spec, include_provider=False).steps if s.id.endswith("containerd-docker-io-mirror"))


def test_registry_mirror_writes_hosts_toml_and_a_single_config_path(tmp_path: Path) -> None:
    """containerd 2.x's default config_path lists two folders joined by ':', which its transfer-service
    pull path takes as one folder (so hosts.toml is never read): labctl sets it to certs.d alone.
    Run for real against a copy of the default config, with containerd and systemctl as shims."""
    step = _mirror_step("https://mirror.gcr.io")
    assert {c.host for c in step.commands} == {"master", "worker1"}
    etc = tmp_path / "etc" / "containerd"
    etc.mkdir(parents=True)
    (etc / "config.toml").write_text(CONTAINERD_2_DEFAULT)
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "containerd").write_text(f'#!/bin/sh\n# SHIM: config dump prints the file\ncat "{etc}/config.toml"\n')
    (shims / "systemctl").write_text(f'#!/bin/sh\n# SHIM\necho "$@" >> "{tmp_path}/systemctl.log"\n')
    for shim in shims.iterdir():
        shim.chmod(0o755)
    env = {"PATH": f"{shims}:/usr/bin:/bin"}

    def bash(script: str) -> subprocess.CompletedProcess[str]:
        local = script.replace("/etc/containerd", str(etc))
        return subprocess.run(["bash", "-c", "set -euo pipefail\n" + local], capture_output=True, text=True, env=env)

    commands = step.commands[0]
    assert bash(commands.check).returncode != 0
    run = bash(commands.run)
    assert run.returncode == 0, run.stderr
    hosts = (etc / "certs.d" / "docker.io" / "hosts.toml").read_text()
    assert '[host."https://mirror.gcr.io"]' in hosts and 'server = "https://registry-1.docker.io"' in hosts
    config = (etc / "config.toml").read_text()
    assert f"config_path = \"{etc}/certs.d\"" in config and "docker/certs.d" not in config
    assert config.count("config_path") == 1 and "key_model = 'node'" in config
    assert (tmp_path / "systemctl.log").read_text() == "restart containerd\n"
    assert bash(commands.check).returncode == 0, "a second run skips the step"


def test_registry_mirror_off_by_default_and_validated() -> None:
    from labctl.spec import SpecError

    assert not any(s.id.endswith("containerd-docker-io-mirror") for s in build_plan(spec_with(), include_provider=False).steps)
    for bad in ("mirror.gcr.io", "https://m'; rm -rf /", "ftp://x"):
        with pytest.raises((SpecError, ValueError)):
            spec_with({"registry_mirror": bad})


def test_image_pull_secret_on_every_pod() -> None:
    spec = spec_with({"image_pull_secret": "hub-login", "monitoring": True})
    for obj in load_objects(render_bundles(spec, TEST_SECRETS)["apps"]):
        if obj["kind"] in ("Deployment", "Job"):
            assert obj["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "hub-login"}], obj["metadata"]["name"]


def test_docker_hub_warning_counts_pulls_per_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """For doctor / versions --check to call, against Docker Hub's ~10 anonymous pulls an hour: a
    DaemonSet's image counts once per node, an app's once. Calico comes from quay.io now
    (labctl.lab_pins.CALICO_REGISTRY), which leaves Ollama (+ Grafana with monitoring): no warning;
    were Calico still on Docker Hub, its three images on both nodes would make the warning fire."""
    from labctl import lab_pins
    from labctl.registries import docker_hub_pulls, docker_hub_warning

    default = spec_with()
    assert docker_hub_pulls(default) == 1  # ollama
    assert docker_hub_pulls(spec_with({"monitoring": True})) == 2  # + grafana
    assert docker_hub_warning(default) is None
    monkeypatch.setattr(lab_pins, "CALICO_REGISTRY", "docker.io/calico")
    assert docker_hub_pulls(default) == 2 * 2 + 1 + 1  # cni, node on 2 nodes; kube-controllers; ollama
    warning = docker_hub_warning(default)
    assert warning and "6 image pulls from Docker Hub" in warning and "registry_mirror" in warning
    assert docker_hub_warning(default, cache=True) is None
    assert docker_hub_warning(spec_with({"registry_mirror": "https://mirror.gcr.io"})) is None


# ---- item 8: node disks on libvirt -------------------------------------------------------------------
def test_validate_says_when_a_libvirt_node_disk_is_too_small(tmp_path: Path, monkeypatch) -> None:
    """The libvirt box's disk is 10 GiB; worker1 holds Ollama's and Open WebUI's images (GBs each),
    compressed in containerd's content store and unpacked as snapshots."""
    from click.testing import CliRunner

    from labctl.cli import cli
    from labctl.disk_sizing import node_disk_need_gib, node_image_keys

    spec = spec_with(provider={"type": "libvirt"})
    worker = spec.nodes.workers[0]
    need = node_disk_need_gib(spec, worker)
    assert need > 10 and need % 5 == 0
    assert node_disk_need_gib(spec, spec.nodes.master) <= 10, "the master runs no apps image"
    assert "ollama" in node_image_keys(spec, worker) and "ollama" not in node_image_keys(spec, spec.nodes.master)
    assert "kube-apiserver" not in node_image_keys(spec, worker)
    assert node_disk_need_gib(spec, worker, tarballs=True) > need
    assert node_disk_need_gib(spec, worker, {"ollama": 8192}) > need, "measured sizes replace the estimates"

    monkeypatch.chdir(tmp_path)

    def lab(worker_disk: int | None) -> str:
        disk = "" if worker_disk is None else f", disk_gib: {worker_disk}"
        return (
            "provider:\n  type: libvirt\nnodes:\n  workers:\n"
            f"    - {{name: worker1, ip: 192.168.33.101, cpus: 4, memory_mib: 8192{disk}}}\n"
        )

    (tmp_path / "lab.yaml").write_text(lab(10))  # a disk given in lab.yaml, too small
    out = CliRunner().invoke(cli, ["validate"]).output
    line = next(ln for ln in out.splitlines() if "nodes.workers[0].disk_gib" in ln)
    assert f"set nodes.workers[0].disk_gib: {need}" in line and "has 10 GiB" in line
    assert "nodes.master.disk_gib" not in out
    (tmp_path / "lab.yaml").write_text(lab(need))
    assert "disk_gib" not in CliRunner().invoke(cli, ["validate"]).output
    (tmp_path / "lab.yaml").write_text(lab(None))  # no disk_gib: labctl sizes it (labctl.figures.node_disk_gib)
    assert "disk_gib" not in CliRunner().invoke(cli, ["validate"]).output
    (tmp_path / "lab.yaml").write_text("provider:\n  type: virtualbox\n")
    assert "disk_gib" not in CliRunner().invoke(cli, ["validate"]).output
