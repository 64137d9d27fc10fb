"""The warm cache: real fetch code against a loopback stand-in for the upstreams (tests/fakeupstream.py),
then status, a file:// mirror, and the plan steps it turns on."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from labctl.cache_fetch import Source
from labctl.cache_fill import fill_cache
from labctl.cache_needs import CacheError, needed_items
from labctl.cache_scan import inspect_cache, known_digests, scan, status_table
from labctl.cli import cli
from labctl.plan import build_plan, load_playbooks
from labctl.spec import LabSpec
from labctl.versions import PINS
from tests.fakeupstream import FakeUpstream, Serving


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory):
    fake = FakeUpstream(LabSpec.default(), tmp_path_factory.mktemp("upstream"))
    serving = Serving(fake)
    yield fake, serving
    serving.stop()


@pytest.fixture(scope="module")
def filled(upstream, tmp_path_factory: pytest.TempPathFactory) -> Path:
    fake, serving = upstream
    root = tmp_path_factory.mktemp("cache")
    report = fill_cache(LabSpec.default(), root, upstreams=fake.upstreams(serving.base))
    assert not report.failed, report.summary()
    return root


def test_fill_fetches_every_needed_item_from_upstream(filled: Path) -> None:
    spec = LabSpec.default()
    rows = scan(spec, filled)
    assert [r.item.name for r in rows if not r.ok] == []
    kinds = {r.item.kind for r in rows}
    assert kinds == {"box", "deb", "image", "model", "manifest", "release"}
    # the pinned patterns picked the right .debs, not the decoys
    debs = sorted(p.name for p in (filled / "debs").glob("*.deb"))
    assert "kubeadm_1.36.4-1.1_amd64.deb" in debs
    assert not any(n.startswith(("kubeadm_1.36.3", "kubeadm_1.37")) for n in debs)
    assert "cri-tools_1.36.0-1.1_amd64.deb" in debs
    # containerd and runc are release files now (labctl.versions.release_downloads), not .debs
    assert not any(n.startswith(("containerd_", "runc_")) for n in debs)
    releases = sorted(p.name for p in (filled / "releases").iterdir())
    assert f"containerd-{PINS['containerd']}-linux-amd64.tar.gz" in releases
    assert f"runc-{PINS['runc']}.sha256sum" in releases and len(releases) == 5
    # the flat apt index covers every .deb and its digest
    sums = (filled / "debs" / "SHA256SUMS").read_text().splitlines()
    assert len(sums) == len(debs)
    for line in sums:
        digest, name = line.split()
        assert hashlib.sha256((filled / "debs" / name).read_bytes()).hexdigest() == digest
    assert "Filename: ./kubeadm_1.36.4-1.1_amd64.deb" in (filled / "debs" / "Packages").read_text()
    # box metadata lets `vagrant box add` register the pinned name and version
    meta = json.loads(next((filled / "boxes").glob("*.json")).read_text())
    assert meta["name"] == spec.box and meta["versions"][0]["version"] == spec.box_version


def test_image_archive_is_an_oci_layout_ctr_can_import(filled: Path) -> None:
    ref = "docker.io/ollama/ollama:0.40.1"
    path = filled / "images" / "docker.io_ollama_ollama_0.40.1.tar"
    with tarfile.open(path) as tar:
        names = set(tar.getnames())
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        assert "oci-layout" in names
        entry = index["manifests"][0]
        assert entry["annotations"]["io.containerd.image.name"] == ref
        manifest_bytes = tar.extractfile(f"blobs/sha256/{entry['digest'].split(':')[1]}").read()  # type: ignore[union-attr]
        manifest = json.loads(manifest_bytes)
        config = json.loads(tar.extractfile(f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}").read())  # type: ignore[union-attr]
        assert config["architecture"] == "amd64"  # the platform was picked from the index
        for layer in manifest["layers"]:
            data = tar.extractfile(f"blobs/sha256/{layer['digest'].split(':')[1]}").read()  # type: ignore[union-attr]
            assert "sha256:" + hashlib.sha256(data).hexdigest() == layer["digest"]


def test_fill_caches_kubeadms_images_and_those_named_in_the_addon_manifests(filled: Path) -> None:
    from tests.fakeupstream import ADDON_ONLY_IMAGES

    spec = LabSpec.default()
    names = {r.item.name for r in scan(spec, filled) if r.item.kind == "image" and r.ok}
    # kubeadm init's own images, at the versions kubeadm 1.36 uses
    for ref in (
        "registry.k8s.io/kube-apiserver:v1.36.4",
        "registry.k8s.io/kube-proxy:v1.36.4",
        "registry.k8s.io/etcd:3.6.8-0",
        "registry.k8s.io/coredns/coredns:v1.14.2",
        "registry.k8s.io/pause:3.10.2",
    ):
        assert ref in names
    # images only the add-on manifests name (read out of the fetched manifests, normalized)
    assert set(ADDON_ONLY_IMAGES) <= names
    for ref in ADDON_ONLY_IMAGES:
        assert (filled / "images" / f"{ref.replace('/', '_').replace(':', '_')}.tar").is_file()
    # an image both pinned and named in a manifest is fetched once, under its pinned key
    nfsplugin = [r for r in scan(spec, filled) if r.item.name == f"registry.k8s.io/sig-storage/nfsplugin:v{PINS['csi_driver_nfs']}"]
    assert [r.item.key for r in nfsplugin] == ["images.csi-nfsplugin"]
    # the seeding step imports them all on every Kubernetes node
    assert {f.name for f in inspect_cache(filled, spec).images} == names


def test_manifest_images_walks_pods_and_normalizes_references() -> None:
    from labctl.cache_needs import manifest_images, normalize_reference

    text = """
apiVersion: batch/v1
kind: CronJob
spec:
  jobTemplate:
    spec:
      template:
        spec:
          initContainers: [{name: a, image: busybox}]
          containers:
            - {name: b, image: "quay.io/metallb/speaker:v0.16.1"}
            - {name: c, image: "calico/node:v3.33.1"}
            - {name: d, image: "registry.k8s.io/pause:3.10.2@sha256:abc"}
            - {name: e, image: "localhost:5000/x/y"}
---
kind: CustomResourceDefinition
spec: {schema: {properties: {containers: {type: array, items: {type: object}}}}}
---
"""
    assert manifest_images(text) == [
        "docker.io/library/busybox:latest",
        "quay.io/metallb/speaker:v0.16.1",
        "docker.io/calico/node:v3.33.1",
        "registry.k8s.io/pause@sha256:abc",
        "localhost:5000/x/y:latest",
    ]
    assert normalize_reference("docker.io/ollama/ollama:0.40.1") == "docker.io/ollama/ollama:0.40.1"
    with pytest.raises(CacheError, match=r"calico\.yaml: not valid YAML"):
        manifest_images("a: [unclosed", "calico.yaml")


def test_status_of_a_cache_without_manifests_says_their_images_are_not_known_yet(tmp_path: Path) -> None:
    text, complete = status_table(LabSpec.default(), tmp_path)
    assert not complete
    assert "registry.k8s.io/etcd:3.6.8-0" in text  # pinned: always listed
    assert "csi-provisioner" not in text  # named only inside a manifest not fetched yet
    assert "listed once `cache fill` has fetched them" in text


def test_model_is_stored_in_ollamas_layout(filled: Path) -> None:
    manifest = filled / "models/manifests/registry.ollama.ai/library/llama3.2/1b"
    data = json.loads(manifest.read_text())
    for layer in [data["config"], *data["layers"]]:
        blob = filled / "models/blobs" / layer["digest"].replace(":", "-")
        assert blob.stat().st_size == layer["size"]


def test_second_fill_fetches_nothing(upstream, filled: Path) -> None:
    fake, serving = upstream
    before_bytes, before_requests = fake.bytes_served, len(fake.requests)
    report = fill_cache(LabSpec.default(), filled, upstreams=fake.upstreams(serving.base))
    assert report.fetched == [] and not report.failed
    assert len(report.kept) == len(needed_items(LabSpec.default(), filled))
    assert fake.bytes_served == before_bytes and len(fake.requests) == before_requests


def test_fill_from_a_file_mirror_copies_the_cache(filled: Path, tmp_path: Path) -> None:
    spec = LabSpec.default()
    src = Source()
    report = fill_cache(spec, tmp_path, mirror=filled.resolve().as_uri(), source=src)
    assert not report.failed, report.summary()
    assert all(r.ok for r in scan(spec, tmp_path))
    # every byte read from the mirror is an item's, plus the apt index read once to pick the .debs
    index = (filled / "debs" / "Packages").stat().st_size
    assert src.bytes_downloaded == sum(b for _, b in report.fetched) + index
    assert known_digests(spec, tmp_path) == known_digests(spec, filled)


def test_a_corrupted_download_is_refused(upstream, tmp_path: Path) -> None:
    fake, serving = upstream
    digest = next(iter(fake.blobs))
    good = fake.blobs[digest]
    fake.blobs[digest] = b"tampered" + good
    try:
        spec = LabSpec.default()
        report = fill_cache(spec, tmp_path, upstreams=fake.upstreams(serving.base), kinds={"image", "model"})
    finally:
        fake.blobs[digest] = good
    assert report.failed and "does not match" in report.failed[0][1]
    assert not list(tmp_path.rglob("*.part")), "a failed download leaves no partial file behind"


def test_status_lists_missing_items_and_exits_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["cache", "status", str(tmp_path)])
    assert result.exit_code == 1
    assert "MISSING" in result.output and "docker.io/ollama/ollama:0.40.1" in result.output
    assert "labctl cache fill" in result.output


def test_status_of_a_full_cache_exits_0_with_sizes(filled: Path) -> None:
    text, complete = status_table(LabSpec.default(), filled)
    assert complete and "MISSING" not in text
    assert "registry.k8s.io/sig-storage/csi-provisioner:v5.3.0" in text  # found in a cached manifest
    size = (filled / "images/docker.io_ollama_ollama_0.40.1.tar").stat().st_size
    assert any("ollama/ollama:0.40.1" in line and "present" in line for line in text.splitlines())
    result = CliRunner().invoke(cli, ["cache", "status", str(filled)])
    assert result.exit_code == 0, result.output
    assert size > 0


def test_plan_has_seeding_steps_only_with_a_cache(filled: Path) -> None:
    spec = LabSpec.default()
    # only the cache playbooks: the plan must not depend on other areas' playbooks to test this one
    books = [b for b in load_playbooks() if b.name.startswith("warm-cache")]
    cold = build_plan(spec, books, include_provider=False)
    warm = build_plan(spec, books, include_provider=False, cache=inspect_cache(filled, spec))
    seeding = {
        "warm-cache-packages.local-apt-repository",
        "warm-cache-seed.import-images",
        "warm-cache-seed.seed-models",
        "warm-cache-seed.place-addon-manifests",
    }
    assert not seeding & {s.id for s in cold.steps}
    assert seeding <= {s.id for s in warm.steps}
    ids = [s.id for s in warm.steps]
    assert ids.index("warm-cache-packages.local-apt-repository") < ids.index("warm-cache-seed.import-images")
    imp = warm.step("warm-cache-seed.import-images")
    assert imp.hosts == ("master", "worker1")
    # Each node imports only the images it runs (labctl.disk_sizing.node_image_keys).
    master, worker = (c.run for c in imp.commands)
    assert "/labctl-cache/images/docker.io_ollama_ollama_0.40.1.tar" in worker
    assert "docker.io_ollama_ollama" not in master and "open-webui" not in master
    assert "kube-apiserver" in master and "kube-apiserver" not in worker
    assert "calico_node" in master and "calico_node" in worker
    assert "rm -f" not in worker, "VirtualBox mounts the cache read-only: nothing to delete"
    libvirt = LabSpec.from_dict({"provider": {"type": "libvirt"}})
    warm_libvirt = build_plan(libvirt, books, include_provider=False, cache=inspect_cache(filled, libvirt))
    imp = warm_libvirt.step("warm-cache-seed.import-images")
    assert 'rm -f "$2"' in imp.commands[1].run, "libvirt's rsync copy is on the VM's disk: delete once imported"
    assert "! test -e '/labctl-cache/images/docker.io_ollama_ollama_0.40.1.tar'" in imp.commands[1].check
    seed = warm.step("warm-cache-seed.seed-models")
    assert seed.hosts == ("nfs",)
    assert "/srv/nfs/lab/llm/ollama-models" in seed.commands[0].run
    place = warm.step("warm-cache-seed.place-addon-manifests")
    assert place.hosts == ("master",)
    assert f"place 'csi-driver-nfs-v{PINS['csi_driver_nfs']}/csi-nfs-node.yaml'" in place.commands[0].run


def test_inspect_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="cache fill"):
        inspect_cache(tmp_path / "nope", LabSpec.default())


def test_cli_fill_from_mirror_then_create_dry_run_uses_the_cache(filled: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    dest = tmp_path / "classroom-cache"
    res = runner.invoke(cli, ["cache", "fill", str(dest), "--mirror", filled.resolve().as_uri()])
    assert res.exit_code == 0, res.output
    assert "fetched" in res.output and "FAILED" not in res.output
    again = runner.invoke(cli, ["cache", "fill", str(dest), "--mirror", filled.resolve().as_uri()])
    assert again.exit_code == 0 and "fetched 0 items" in again.output
    plan = runner.invoke(cli, ["create", "--dry-run", "--cache", str(dest)])
    assert plan.exit_code == 0, plan.output
    assert "warm-cache-seed.import-images" in plan.output and "warm-cache-seed.seed-models" in plan.output
    bad = runner.invoke(cli, ["cache", "fill", str(tmp_path / "x"), "--mirror", "ftp://nowhere"])
    assert bad.exit_code != 0 and "http://, https:// or file://" in bad.output


@pytest.mark.validators
def test_seeding_scripts_pass_shellcheck(filled: Path) -> None:
    import shutil
    import subprocess

    if not shutil.which("shellcheck"):
        pytest.skip("SHELLCHECK MISSING: apt-get install shellcheck (listed in .ci/run)")
    spec = LabSpec.default()
    books = [b for b in load_playbooks() if b.name.startswith("warm-cache")]
    plan = build_plan(spec, books, include_provider=False, cache=inspect_cache(filled, spec))
    scripts = [
        (s.id, kind, script)
        for s in plan.steps
        for c in s.commands
        for kind, script in (("check", c.check), ("run", c.run))
    ]
    assert len(scripts) == 12
    for step_id, kind, script in scripts:
        res = subprocess.run(
            ["shellcheck", "-s", "bash", "-"], input="#!/bin/bash\n" + script, capture_output=True, text=True
        )
        assert res.returncode == 0, f"{step_id} {kind}:\n{res.stdout}"


def test_lock_with_a_cache_records_digests(filled: Path, tmp_path: Path) -> None:
    import yaml

    lab = tmp_path / "lab.yaml"
    lab.write_text("name: llm-lab\n", encoding="utf-8")
    res = CliRunner().invoke(cli, ["lock", "-f", str(lab), "--cache", str(filled)])
    assert res.exit_code == 0, res.output
    digests = yaml.safe_load((tmp_path / "lab.lock.yaml").read_text())["digests"]
    manifest = (filled / "models/manifests/registry.ollama.ai/library/llama3.2/1b").read_bytes()
    assert digests["models.llama3.2:1b"] == "sha256:" + hashlib.sha256(manifest).hexdigest()
    with tarfile.open(filled / "images/docker.io_ollama_ollama_0.40.1.tar") as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    assert digests["images.ollama"] == index["manifests"][0]["digest"]
    assert digests["box.name"].startswith("sha256:")
    assert None not in digests.values()


def test_handout_with_a_cache_shows_the_seeding_steps_and_the_box_add(filled: Path) -> None:
    from labctl.handout import parse_markdown_commands, render

    spec = LabSpec.default()
    plan = build_plan(spec, cache=inspect_cache(filled, spec))
    text = render(spec, plan, "md", cache_dir=filled)
    parsed = {(step_id, kind) for step_id, _, kind, _ in parse_markdown_commands(text)}
    assert ("warm-cache-seed.import-images", "run") in parsed and ("warm-cache-seed.seed-models", "run") in parsed
    meta = next((filled / "boxes").glob("*.json")).resolve()
    assert f"`vagrant box add --force {meta}`" in text
    assert "downloaded by the first step" not in text


class RecordingVagrant:
    """TEST DOUBLE of the `vagrant` command for prepare_host_for_cache: answers `vagrant box list` with
    the boxes it was given, records `vagrant box add` calls with the metadata file they were handed
    (read while it exists), and fails the add when told to."""

    def __init__(self, listing: str = "", add_exit: int = 0) -> None:
        self.listing = listing
        self.add_exit = add_exit
        self.calls: list[list[str]] = []
        self.metadata: list[dict] = []

    def __call__(self, cmd, **kwargs):  # same keywords as subprocess.run
        import subprocess

        assert kwargs.get("capture_output") and kwargs.get("text")
        self.calls.append(list(cmd))
        if cmd[:3] == ["vagrant", "box", "list"]:
            return subprocess.CompletedProcess(cmd, 0, self.listing, "")
        if cmd[:3] == ["vagrant", "box", "add"]:
            self.metadata.append(json.loads(Path(cmd[-1]).read_text()))
            err = "" if self.add_exit == 0 else "The box failed to unpackage properly.\nchecksum mismatch"
            return subprocess.CompletedProcess(cmd, self.add_exit, "", err)
        raise AssertionError(f"unexpected command {cmd}")


def test_prepare_host_adds_the_cached_box_from_where_the_cache_is_now(filled: Path, tmp_path: Path) -> None:
    import shutil

    from labctl.cache_host import prepare_host_for_cache
    from labctl.cache_needs import box_file

    spec = LabSpec.default()
    moved = tmp_path / "usb stick" / "labcache"  # the cache copied elsewhere after `cache fill`
    shutil.copytree(filled / "boxes", moved / "boxes")
    vagrant = RecordingVagrant(listing="bento/ubuntu-24.04 (virtualbox, 202405.01.0)\n")  # an older version only
    message = prepare_host_for_cache(spec, moved, run=vagrant, env={"VAGRANT_HOME": "/tmp/vh"})
    assert [c[:3] for c in vagrant.calls] == [["vagrant", "box", "list"], ["vagrant", "box", "add"]]
    assert "--force" in vagrant.calls[1]
    meta = vagrant.metadata[0]
    assert meta["name"] == "bento/ubuntu-24.04" and meta["versions"][0]["version"] == "202510.26.0"
    entry = meta["versions"][0]["providers"][0]
    assert entry["name"] == "virtualbox"
    assert entry["url"] == (moved / box_file(spec)).resolve().as_uri()  # not the path `cache fill` wrote
    assert entry["checksum"] == hashlib.sha256((moved / box_file(spec)).read_bytes()).hexdigest()
    assert message.startswith("added box bento/ubuntu-24.04 202510.26.0 (virtualbox)")
    assert not Path(vagrant.calls[1][-1]).exists(), "the temporary metadata file is removed"


def test_prepare_host_skips_a_box_vagrant_already_has(filled: Path) -> None:
    from labctl.cache_host import prepare_host_for_cache

    vagrant = RecordingVagrant(listing="bento/ubuntu-24.04 (virtualbox, 202510.26.0, (amd64))\nother/box (libvirt, 1)\n")
    message = prepare_host_for_cache(LabSpec.default(), filled, run=vagrant)
    assert [c[:3] for c in vagrant.calls] == [["vagrant", "box", "list"]]
    assert "already added" in message


def test_prepare_host_reports_a_failed_add_and_a_missing_box(filled: Path, tmp_path: Path) -> None:
    from labctl.cache_host import prepare_host_for_cache

    with pytest.raises(CacheError, match=r"vagrant box add .* failed \(exit 1\): .*checksum mismatch"):
        prepare_host_for_cache(LabSpec.default(), filled, run=RecordingVagrant(add_exit=1))
    vagrant = RecordingVagrant()
    message = prepare_host_for_cache(LabSpec.default(), tmp_path, run=vagrant)  # a cache without the box
    assert vagrant.calls == [] and "`vagrant up` downloads it" in message
    ssh = LabSpec.from_dict(
        {
            "provider": {"type": "ssh"},
            "nodes": {
                "master": {"name": "master", "ip": "192.168.33.100", "cpus": 4, "memory_mib": 8192, "ssh_user": "u"},
                "workers": [],
                "nfs": {"name": "nfs", "ip": "192.168.33.11", "cpus": 1, "memory_mib": 1024, "ssh_user": "u"},
            },
        }
    )
    assert "no box to add" in prepare_host_for_cache(ssh, filled, run=vagrant) and vagrant.calls == []


def test_create_with_a_cache_adds_the_box_then_renders_the_vagrantfile_with_the_cache(
    filled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lifecycle.create's wiring, up to `vagrant up`: the box is added from the cache first, then the
    Vagrantfile is written with the cache folder; `vagrant up` (bring_up_hosts) is where the test stops."""
    import io

    from rich.console import Console as RichConsole

    from labctl import lifecycle
    from labctl.lab import Console, Lab

    events: list[tuple[str, str]] = []

    class StopBeforeVagrantUp(Exception):
        pass

    def recording_prepare(spec, cache_dir, *, env=None):  # TEST DOUBLE of prepare_host_for_cache
        events.append(("prepare", str(cache_dir)))
        return "box added (test double)"

    def stop_at_vagrant_up(lab, provider, console, step):  # TEST DOUBLE: no VMs on this machine
        events.append(("up", provider.vagrantfile.read_text(encoding="utf-8")))
        raise StopBeforeVagrantUp

    monkeypatch.setattr("labctl.cache.prepare_host_for_cache", recording_prepare)
    def recording_preflight(lab, console, **kwargs):  # TEST DOUBLE: doctor needs the cache folder (rsync check)
        events.append(("preflight", str(kwargs.get("cache_dir"))))

    monkeypatch.setattr(lifecycle, "preflight", recording_preflight)
    monkeypatch.setattr(lifecycle, "bring_up_hosts", stop_at_vagrant_up)
    spec = LabSpec.default()
    lab = Lab.of(spec, state_dir=tmp_path / "state")
    out = io.StringIO()
    console = Console(RichConsole(file=out, width=200))
    with pytest.raises(StopBeforeVagrantUp):
        lifecycle.create(lab, console, cache=inspect_cache(filled, spec))
    assert [e[0] for e in events] == ["preflight", "prepare", "up"]
    assert events[0][1] == events[1][1] == str(filled.resolve())
    assert f'config.vm.synced_folder "{filled.resolve()}", "/labctl-cache", mount_options: ["ro"]' in events[2][1]
    assert "Warm cache: box added (test double)" in out.getvalue()
    # without a cache: no box add, no cache folder in the Vagrantfile (a fresh lab folder, so that
    # create does not ask a real `vagrant status` about the Vagrantfile written above)
    events.clear()
    with pytest.raises(StopBeforeVagrantUp):
        lifecycle.create(Lab.of(spec, state_dir=tmp_path / "state-cold"), console)
    assert events[0] == ("preflight", "None")
    assert [e[0] for e in events] == ["preflight", "up"] and "/labctl-cache" not in events[1][1]


def _model_pull_job_script(spec: LabSpec, tmp_path: Path) -> tuple[str, dict[str, str]]:
    """The shell script and env of the model pre-pull Job, as the apps bundle renders them."""
    import yaml

    from labctl.manifests import render_bundles
    from labctl.secrets import load_or_create

    bundles = render_bundles(spec, load_or_create(tmp_path / "state"))
    docs = [d for text in bundles.values() for d in yaml.safe_load_all(text) if d]
    (job,) = [d for d in docs if d.get("kind") == "Job"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: str(e["value"]) for e in container["env"] if "value" in e}
    return container["args"][0].replace("/tmp/", f"{tmp_path}/"), env


@pytest.mark.parametrize("seeded", [True, False])
def test_model_pull_job_skips_a_model_already_on_the_volume(seeded: bool, tmp_path: Path) -> None:
    """The Job's own script against a loopback TEST DOUBLE of Ollama's API: a model seeded from the
    warm cache is listed by /api/tags and must not be pulled (a pull asks the registry for its
    manifest even when every blob is there); a missing one is pulled."""
    import subprocess
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    spec = LabSpec.default()
    script, env = _model_pull_job_script(spec, tmp_path)
    models = list(spec.apps.ollama.models)
    have = list(models) if seeded else []
    pulls: list[str] = []

    class FakeOllama(BaseHTTPRequestHandler):
        def _json(self, data: dict) -> None:
            body = json.dumps(data, separators=(",", ":")).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == "/api/version":
                self._json({"version": "0.40.1"})
            else:
                self._json({"models": [{"name": m, "model": m} for m in have]})

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            pulls.append(body["model"])
            have.append(body["model"])
            self._json({"status": "success"})

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOllama)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env.update(OLLAMA_URL=f"http://127.0.0.1:{server.server_address[1]}", PATH="/usr/bin:/bin")
        res = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert res.returncode == 0, res.stdout + res.stderr
    assert pulls == ([] if seeded else models)
    assert "all models present" in res.stdout
    if seeded:
        assert "already there, not pulling" in res.stdout


@pytest.mark.parametrize("options", [{}, {"monitoring": True, "autoscaling": True, "ingress": True}])
def test_every_image_the_labs_own_manifests_run_is_in_the_cache_list(options: dict, tmp_path: Path) -> None:
    """The lab's own bundles (Ollama, Open WebUI, the pull Job, the options) name no image the warm
    cache would not fetch — else a warm create would pull it."""
    from labctl.cache_needs import manifest_images
    from labctl.manifests import render_bundles
    from labctl.secrets import load_or_create

    spec = LabSpec.from_dict({"apps": {"options": options}})
    bundles = render_bundles(spec, load_or_create(tmp_path))
    used = {ref for text in bundles.values() for ref in manifest_images(text)}
    assert used, "the bundles name no image at all: the walk is broken"
    cached = {item.name for item in needed_items(spec) if item.kind == "image"}
    assert used - cached == set()
