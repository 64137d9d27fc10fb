"""`labctl versions --check` against the loopback fake upstream (tests/fakeupstream.py), never the real
hosts: LABCTL_UPSTREAM / --upstream sends every lookup there. Each kind of pin (manifest URL, image
tag, box version, apt package version) is shown found, then made missing (or moved) upstream."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from labctl import upstream_check as uc
from labctl.cli import cli
from labctl.lab_pins import images, manifests, packages
from labctl.spec import LabSpec
from labctl.versions import PINS, release_downloads
from tests.fakeupstream import FakeUpstream, Serving


@pytest.fixture
def upstream(tmp_path: Path):
    fake = FakeUpstream(LabSpec.default(), tmp_path / "up")
    serving = Serving(fake)
    yield fake, serving.base
    serving.stop()


def invoke(base: str, *args: str):
    return CliRunner().invoke(cli, ["versions", "--check", *args], env={"LABCTL_UPSTREAM": base})


def row(rows: list[uc.Row], prefix: str) -> uc.Row:
    return next(r for r in rows if r.pin.startswith(prefix))


def test_everything_pinned_exists_exit_0_one_table(upstream, tmp_path, monkeypatch):
    fake, base = upstream
    monkeypatch.chdir(tmp_path)  # no lab.yaml: the built-in default lab
    result = invoke(base)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["PIN", "WHERE", "STATUS", "NEWEST", "SEEN"]
    csi_files = 4
    releases = len(release_downloads())
    expected = len(manifests()) - 1 + csi_files + releases + len(images(LabSpec.default())) + 1 + len(packages())
    assert len(lines) == 1 + expected + 1  # header, one row per pin, the summary
    assert all(" ok " in line for line in lines[1:-1])
    assert lines[-1] == f"all {expected} pinned downloads exist upstream"
    # labctl.registries: Calico comes from quay.io, so the default lab stays under Docker Hub's limit
    # for a shared NAT address (Ollama only); with Calico on Docker Hub, the warning says so.
    assert "Docker Hub" not in result.stderr
    monkeypatch.setattr("labctl.lab_pins.CALICO_REGISTRY", "docker.io/calico")
    result = invoke(base)
    assert "warning: this lab makes 6 image pulls from Docker Hub" in result.stderr
    assert "apps.options.registry_mirror" in result.stderr
    # every lookup went to the fake upstream (the real hosts were never asked)
    assert any(p.startswith("/v2/") for p in fake.requests) and "/apt/Packages" in fake.requests
    assert f"/vc/{LabSpec.default().box}" in fake.requests


def test_missing_and_moved_pins_are_named_and_exit_1(upstream):
    fake, base = upstream
    spec = LabSpec.default()
    calico_path = manifests()["calico"][1].replace("https://raw.githubusercontent.com", "/raw")
    del fake.files[calico_path]
    ms_path = manifests()["metrics-server"][1].replace("https://github.com", "/gh")
    fake.moved[ms_path] = "/gh/elsewhere/components.yaml"
    ollama_ref = images(spec)["ollama"]
    fake.manifests.pop(("ollama/ollama", PINS["ollama"]))
    fake.box_versions = ["202401.01.0", "202601.01.0"]
    packages_index = fake.files["/apt/Packages"].decode().split("\n\n")
    fake.files["/apt/Packages"] = "\n\n".join(s for s in packages_index if "Package: cri-tools" not in s).encode()
    runc_path = f"/gh/opencontainers/runc/releases/download/v{PINS['runc']}/runc.amd64"
    del fake.files[runc_path]

    rows = uc.check(spec, base=base)
    assert uc.exit_code(rows) == uc.EXIT_PROBLEM == 1
    assert row(rows, "calico ").status == "missing"
    moved = row(rows, "metrics-server 0.9.0 (manifest)")
    assert moved.status == "moved" and "elsewhere" in moved.note
    assert row(rows, "ollama (image)").status == "missing" and row(rows, "ollama (image)").where == ollama_ref
    box = row(rows, f"{spec.box} {spec.box_version}")
    assert box.status == "missing" and box.newest == "202601.01.0"
    assert row(rows, "cri-tools=").status == "missing"
    assert row(rows, "runc 1.3").status == "missing" and row(rows, "runc 1.3").where.endswith("/runc.amd64")
    assert row(rows, "containerd 2").status == "ok"  # the archive is still there
    assert row(rows, "kubeadm=").status == "ok"
    text = uc.summary(rows)
    assert "5 missing" in text and "1 moved" in text

    result = invoke(base, "--upstream", base)
    assert result.exit_code == 1
    assert "missing" in result.stdout and "update labctl/versions.py" in result.stderr


def test_newest_seen_comes_from_the_release_and_the_tag_list(upstream):
    fake, base = upstream
    fake.latest_releases["projectcalico/calico"] = "v3.34.2"
    fake.extra_tags["ollama/ollama"] = ["0.41.0", "0.9.9", "latest", "0.41.0-rc1"]
    rows = uc.check(LabSpec.default(), base=base)
    assert row(rows, "calico ").newest == "3.34.2"
    # only tags shaped like the pin count: not "latest", not a release candidate
    assert row(rows, "ollama (image)").newest == "0.41.0"
    assert row(rows, "kubeadm=").newest == "1.37.1-1.1"  # the index's newest, beside the pinned 1.36.4-*


def test_the_libvirt_box_pin_shows_when_it_may_be_cleaned_up():
    """The cloud-image box project deletes a version once 5 newer exist and it is older than 183 days."""
    import datetime as dt

    from labctl.versions import all_pins, box_version_date, expiry_note

    pin = next(p for p in all_pins() if p.key == "box_libvirt_version")
    built = box_version_date(pin.version)
    assert built is not None
    gone = (built + dt.timedelta(days=183)).isoformat()
    assert expiry_note(pin).startswith(f"may be deleted upstream from {gone}")
    result = CliRunner().invoke(cli, ["versions"])
    line = next(line for line in result.stdout.splitlines() if line.startswith("box_libvirt_version"))
    assert f"may be deleted upstream from {gone}" in line and f"checked {pin.checked}" in line
    # bento's versions are not build dates: no expiry is claimed for them
    assert expiry_note(next(p for p in all_pins() if p.key == "box_virtualbox_version")) == ""


def test_offline_says_so_with_its_own_exit_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with socket.socket() as s:  # a loopback port with nothing listening: every lookup is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = invoke(f"http://127.0.0.1:{port}")
    assert result.exit_code == uc.EXIT_OFFLINE == 3, result.output
    assert "offline: no upstream answered" in result.stderr
    assert "PIN" not in result.stdout


def test_without_upstream_the_real_hosts_would_be_asked_and_only_pkgs_k8s_io_for_apt():
    """What a real --check would ask (computed, not sent): the registries' and GitHub's own hosts."""
    up = uc._real_upstreams()
    from labctl.versions import kubernetes_minor

    assert [base for base, _ in up.apt] == [f"https://pkgs.k8s.io/core:/stable:/v{kubernetes_minor()}/deb/"]
    assert up.registries["docker.io"] == "https://registry-1.docker.io" and not up.url_rewrites
    fake = uc.upstreams_at("http://127.0.0.1:9")
    assert all(v.startswith("http://127.0.0.1:9") for v in [*fake.registries.values(), *fake.url_rewrites.values()])
