"""The warm cache per architecture: an arm64 round trip against the loopback fake upstream
(tests/fakeupstream.py serves amd64 and arm64 of every image, .deb and the box), then a second
architecture into the same folder, `cache status` naming what it serves, the plan's seeding steps and
`labctl lock --cache` for arm64."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from labctl import cache_fetch as cache_mod
from labctl.arch import with_arch
from labctl.cache_fill import fill_cache
from labctl.cache_scan import inspect_cache, known_digests, scan, served_arches, status_table
from labctl.cli import cli
from labctl.plan import build_plan
from labctl.spec import LabSpec
from tests.fakeupstream import FakeUpstream, Serving


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory):
    fake = FakeUpstream(LabSpec.default(), tmp_path_factory.mktemp("upstream"))
    serving = Serving(fake)
    yield fake, serving
    serving.stop()


@pytest.fixture(scope="module")
def arm64_filled(upstream, tmp_path_factory: pytest.TempPathFactory) -> Path:
    fake, serving = upstream
    root = tmp_path_factory.mktemp("cache-arm64")
    report = fill_cache(with_arch(LabSpec.default(), "arm64"), root, upstreams=fake.upstreams(serving.base))
    assert not report.failed, report.summary()
    return root


def arm64() -> LabSpec:
    return with_arch(LabSpec.default(), "arm64")


def image_arch(archive: Path) -> str:
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = json.loads(tar.extractfile(f"blobs/sha256/{index['manifests'][0]['digest'].split(':')[1]}").read())  # type: ignore[union-attr]
        config = json.loads(tar.extractfile(f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}").read())  # type: ignore[union-attr]
    return config["architecture"]


def test_arm64_fill_gets_arm64_debs_images_and_box(arm64_filled: Path, upstream) -> None:
    fake, _ = upstream
    assert [r.item.name for r in scan(arm64(), arm64_filled) if not r.ok] == []
    debs = sorted(p.name for p in (arm64_filled / "debs").glob("*.deb"))
    assert "kubeadm_1.36.4-1.1_arm64.deb" in debs
    assert not [n for n in debs if not n.endswith("_arm64.deb")]  # nothing of the other architecture
    assert "Architecture: arm64" in (arm64_filled / "debs" / "Packages").read_text()
    tars = sorted((arm64_filled / "images").glob("*.tar"))
    assert tars and all(p.name.endswith(".arm64.tar") for p in tars)
    assert {image_arch(p) for p in tars} == {"arm64"}  # linux/arm64 was picked from every index
    box = next((arm64_filled / "boxes").glob("*.box"))
    assert box.name == "bento_ubuntu-24.04-202510.26.0-virtualbox.arm64.box"
    assert box.read_bytes().startswith(b"TEST DOUBLE arm64 vagrant box")
    assert any(r.endswith("/providers/virtualbox/arm64/vagrant.box") for r in fake.requests)
    provider = json.loads(box.with_suffix(".json").read_text())["versions"][0]["providers"][0]
    # Vagrant 2.4+ with box_architecture "arm64" only takes an entry of that architecture.
    assert provider["architecture"] == "arm64" and provider["default_architecture"] is True


def test_status_names_the_architectures_a_cache_serves(arm64_filled: Path) -> None:
    text, complete = status_table(arm64(), arm64_filled)
    assert complete
    assert "(arm64):" in text.splitlines()[0]
    assert text.rstrip().splitlines()[-1].startswith("architectures: amd64 ")
    assert "arm64 complete (this lab) — serves arm64" in text
    have, need = served_arches(LabSpec.default(), arm64_filled)["amd64"]
    assert 0 < have < need  # the models and add-on manifests serve both; the rest is arm64's
    # An amd64 lab finds this cache incomplete (exit 1 from `cache status`).
    assert status_table(LabSpec.default(), arm64_filled)[1] is False


def test_plan_from_an_arm64_cache_imports_arm64_archives(arm64_filled: Path) -> None:
    info = inspect_cache(arm64_filled, arm64())
    assert info.images and all(f.path.endswith(".arm64.tar") for f in info.images)
    assert all(f.name.endswith("_arm64.deb") for f in info.debs)
    plan = build_plan(arm64(), include_provider=False, cache=info)
    step = next(s for s in plan.steps if s.id.endswith("import-images"))
    run = step.commands[0].run
    assert "ctr -n k8s.io images import --platform linux/arm64" in run
    assert "amd64" not in run


def test_lock_with_an_arm64_cache_records_arm64_digests(arm64_filled: Path, upstream) -> None:
    fake, _ = upstream
    digests = known_digests(arm64(), arm64_filled)
    index = json.loads(fake.manifests[("ollama/ollama", "0.40.1")][1])
    arm64_digest = next(m["digest"] for m in index["manifests"] if m["platform"]["architecture"] == "arm64")
    assert digests["images.ollama"] == arm64_digest


def test_cache_fill_arch_all_fills_both_into_one_folder(upstream, arm64_filled: Path, tmp_path, monkeypatch) -> None:
    """The CLI option, with the upstream hosts pointed at the loopback fake (Upstreams.default is the
    only place that names them)."""
    fake, serving = upstream
    root = tmp_path / "both"
    monkeypatch.setattr(cache_mod.Upstreams, "default", classmethod(lambda cls, arch="amd64": fake.upstreams(serving.base)))
    result = CliRunner().invoke(cli, ["cache", "fill", "--arch", "all", str(root)])
    assert result.exit_code == 0, result.output
    assert "==> amd64" in result.output and "==> arm64" in result.output
    served = served_arches(LabSpec.default(), root)
    assert set(served) == {"amd64", "arm64"}
    assert all(have == need > 0 for have, need in served.values()), served
    status = CliRunner().invoke(cli, ["cache", "status", str(root)])
    assert status.exit_code == 0, status.output
    assert "serves amd64, arm64" in status.output
    # Both architectures' files side by side, amd64 under the names caches always had.
    assert (root / "images" / "docker.io_ollama_ollama_0.40.1.tar").is_file()
    assert (root / "images" / "docker.io_ollama_ollama_0.40.1.arm64.tar").is_file()
    assert image_arch(root / "images" / "docker.io_ollama_ollama_0.40.1.tar") == "amd64"


def test_cache_fill_without_arch_fills_only_the_labs(upstream, tmp_path, monkeypatch) -> None:
    fake, serving = upstream
    monkeypatch.setattr(cache_mod.Upstreams, "default", classmethod(lambda cls, arch="amd64": fake.upstreams(serving.base)))
    result = CliRunner().invoke(cli, ["cache", "fill", "--only", "image", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert not list((tmp_path / "c" / "images").glob("*.arm64.tar"))


def test_default_upstreams_take_arm64_ubuntu_packages_from_ports() -> None:
    amd = cache_mod.Upstreams.default("amd64").apt
    arm = cache_mod.Upstreams.default("arm64").apt
    assert amd[1] == ("http://archive.ubuntu.com/ubuntu/", "dists/noble-updates/main/binary-amd64/Packages.gz")
    assert arm[1] == ("http://ports.ubuntu.com/ubuntu-ports/", "dists/noble-updates/main/binary-arm64/Packages.gz")
    assert amd[0] == arm[0]  # pkgs.k8s.io: one flat index for every architecture
