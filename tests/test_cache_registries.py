"""Issue #16 item 7: Calico comes from quay.io, and the warm cache holds exactly what the cluster asks for.

Calico publishes each release to docker.io/calico and quay.io/calico (projectcalico/calico v3.32.1
release/internal/registry/registry.go) and its manifests/calico.yaml names quay.io since v3.31.0
(projectcalico/calico#10025). The lab applies the manifest after 50-cni-calico's edit, which also
rewrites a docker.io/calico image (an older or mirrored copy) to quay.io/calico; the warm cache
must fill and import those rewritten names, or a warm create would still pull from Docker Hub.
These tests run the rendered edit with bash on the cached manifest and compare names.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from labctl.cache_fill import fill_cache
from labctl.cache_needs import manifest_images, needed_items
from labctl.cache_scan import inspect_cache
from labctl.lab_pins import images, lab_reference
from labctl.plan import build_plan, load_playbooks
from labctl.spec import LabSpec
from labctl.versions import PINS
from tests.fakeupstream import FakeUpstream, Serving

CALICO = PINS["calico"]


@pytest.fixture(scope="module")
def calico_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Add-on manifests and images only (no box, .debs or models), from the loopback upstream whose
    Calico manifest names docker.io/calico, as manifests before v3.31.0 did."""
    spec = LabSpec.default()
    fake = FakeUpstream(spec, tmp_path_factory.mktemp("upstream"))
    serving = Serving(fake)
    try:
        root = tmp_path_factory.mktemp("cache")
        report = fill_cache(spec, root, upstreams=fake.upstreams(serving.base), kinds={"manifest", "image"})
    finally:
        serving.stop()
    assert not report.failed, report.summary()
    assert "image: docker.io/calico/node" in (root / f"addons/calico-v{CALICO}.yaml").read_text()
    return root


def edited_calico_manifest(spec: LabSpec, cache: Path, upstream_text: str, workdir: Path) -> str:
    """Run the lab's fetch-calico-manifest step (as rendered for the control plane) with bash on
    ``upstream_text``, in ``workdir`` instead of /etc/labctl/addons; return the copy the lab applies."""
    plan = build_plan(spec, load_playbooks(), include_provider=False, cache=inspect_cache(cache, spec))
    script = plan.step("cni-calico.fetch-calico-manifest").commands[0].run
    assert "/etc/labctl/addons" in script
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"calico-v{CALICO}.yaml").write_text(upstream_text)  # present: the step downloads nothing
    res = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script.replace("/etc/labctl/addons", str(workdir))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return (workdir / f"calico-v{CALICO}-lab.yaml").read_text()


@pytest.mark.parametrize("upstream_registry", ["docker.io/calico", "quay.io/calico", "calico"])
def test_every_calico_image_the_cluster_pulls_is_what_the_cache_imports(
    calico_cache: Path, tmp_path: Path, upstream_registry: str
) -> None:
    """Whatever registry the given manifest names for Calico (docker.io, quay.io as upstream does
    since v3.31.0, or a bare `calico/` that means Docker Hub), the applied copy asks for
    quay.io/calico, and each of those names is an image the warm cache holds and every node imports."""
    spec = LabSpec.default()
    cached_text = (calico_cache / f"addons/calico-v{CALICO}.yaml").read_text()
    given = cached_text.replace("docker.io/calico/", f"{upstream_registry}/")
    applied = manifest_images(edited_calico_manifest(spec, calico_cache, given, tmp_path / "addons"))
    calico_refs = [ref for ref in applied if "/calico/" in ref]
    assert calico_refs == [f"quay.io/calico/cni:v{CALICO}", f"quay.io/calico/node:v{CALICO}"]

    info = inspect_cache(calico_cache, spec)
    held = {f.name for f in info.images}
    assert set(applied) - held == set(), "the cluster would pull these although a warm cache was given"
    for node, files in info.images_by_node.items():
        assert set(calico_refs) <= {f.name for f in files}, f"{node} would pull Calico"
    # The names the cache fills are the lock's names: nothing from Docker Hub for Calico.
    needed = {item.name for item in needed_items(spec, calico_cache) if item.kind == "image"}
    assert not {ref for ref in needed if ref.startswith("docker.io/calico/")}
    assert {images(spec)["calico-cni"], images(spec)["calico-node"]} == set(calico_refs)


def test_the_playbooks_rewrite_and_lab_reference_agree(tmp_path: Path) -> None:
    """One rule on two sides: labctl.lab_pins.lab_reference (the cache) and the sed in
    50-cni-calico (the cluster) map the same references to the same names; other images are left alone."""
    spec = LabSpec.default()
    refs = [
        "docker.io/calico/node:v3.33.0",
        '"calico/typha:v3.33.0"',
        "'docker.io/calico/apiserver:v3.33.0'",
        "quay.io/calico/cni:v3.33.0",
        "docker.io/library/busybox:1.37",
        "registry.k8s.io/pause:3.10.2",
        "docker.io/someone/calico:1",  # a repository *named* calico elsewhere is not Calico's
    ]
    manifest = (
        "# - name: CALICO_IPV4POOL_CIDR\n#   value: \"192.168.0.0/16\"\n- name: IP\n  value: \"autodetect\"\n"
        "containers:\n" + "".join(f"  - name: c{i}\n    image: {ref}\n" for i, ref in enumerate(refs))
    )
    cache = tmp_path / "cache"
    cache.mkdir()
    edited = edited_calico_manifest(spec, cache, manifest, tmp_path / "addons")
    from labctl.cache_needs import normalize_reference

    assert manifest_images(f"containers:\n{edited.split('containers:', 1)[1]}") == [
        lab_reference(normalize_reference(ref.strip("'\""))) for ref in refs
    ]
    assert lab_reference("docker.io/calico/node:v1") == "quay.io/calico/node:v1"
    assert lab_reference("docker.io/someone/calico:1") == "docker.io/someone/calico:1"


def test_the_step_refuses_a_manifest_whose_calico_images_it_cannot_rewrite(tmp_path: Path) -> None:
    """An image the edit does not recognise (here: in a flow mapping, not on a line of its own)
    must stop the step rather than let the cluster pull Calico from Docker Hub."""
    spec = LabSpec.default()
    plan = build_plan(spec, load_playbooks(), include_provider=False)
    script = plan.step("cni-calico.fetch-calico-manifest").commands[0].run
    work = tmp_path / "addons"
    work.mkdir()
    (work / f"calico-v{CALICO}.yaml").write_text(
        "# - name: CALICO_IPV4POOL_CIDR\n#   value: \"192.168.0.0/16\"\n- name: IP\n  value: \"autodetect\"\n"
        "containers:\n  - {name: n, image: 'docker.io/calico/node:v1'}\n  - image: calico/cni:v1\n"
    )
    res = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script.replace("/etc/labctl/addons", str(work))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert res.returncode == 1
    assert "still name Docker Hub" in res.stderr and "'docker.io/calico/node:v1'" in res.stderr
    assert shutil.which("bash")
