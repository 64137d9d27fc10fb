"""Real `vagrant validate` on every rendered Vagrantfile (tier 2, marker ``validators``).

What this machine has: Debian's vagrant 2.3.4 and the vagrant-libvirt plugin; no VirtualBox.
What we found by trying it:
- `vagrant validate` checks the provider block of the default provider (VAGRANT_DEFAULT_PROVIDER)
  and rejects unknown settings there ("The following settings shouldn't exist: ..."). With
  `--ignore-provider` it skips provider blocks altogether, so these tests do NOT pass it.
- For virtualbox it only needs `VBoxManage --version` to answer: a test shim on PATH does that.
- For libvirt it needs neither libvirtd nor /dev/kvm.
- It does not need the box: VAGRANT_HOME is a fresh temporary folder without boxes, and stays so.
- VAGRANT_CHECKPOINT_DISABLE=1 keeps Vagrant from asking HashiCorp for its own updates, so the
  test makes no network connection at all.

A deliberately broken template (a typo'd provider option) must fail, for each provider, so the
validator is known to be able to say no.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from test_vagrantfile_golden import CACHE_CASES, CASES, spec_for  # tests/ is on sys.path (rootdir conftest)

from labctl.render import render_vagrantfile
from labctl.resources import vagrant_dir
from labctl.spec import LabSpec

pytestmark = pytest.mark.validators

VBOXMANAGE_SHIM = """#!/bin/sh
# TEST SHIM, not VirtualBox: answers `VBoxManage --version` so that `vagrant validate` can check the
# virtualbox provider block on a machine without VirtualBox. Anything else is refused loudly.
case "$1" in
  --version|-v) echo "7.0.20r163906" ;;
  *) echo "VBoxManage test shim: refusing '$*'" >&2; exit 1 ;;
esac
"""

# Extra labs beyond the golden cases: the e2e settings (libvirt under TCG) and the optional switches.
EXTRA_SPECS = {
    "libvirt-qemu-synced": {
        "provider": {"type": "libvirt", "synced_folder": True, "libvirt": {"driver": "qemu"}},
        "nodes": {"nfs": {"name": "nfs", "ip": "192.168.33.11", "cpus": 1, "memory_mib": 1024, "disk_gib": 40}},
    },
    "virtualbox-full-clones": {"provider": {"linked_clones": False, "boot_timeout": 1800}},
}


@pytest.fixture(scope="module")
def vagrant() -> str:
    path = shutil.which("vagrant")
    if path is None:
        pytest.skip("vagrant is not installed (apt-get install vagrant vagrant-libvirt; .ci/run does)")
    return path


@pytest.fixture(scope="module")
def shim_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("shim-bin")
    shim = folder / "VBoxManage"
    shim.write_text(VBOXMANAGE_SHIM, encoding="utf-8")
    shim.chmod(0o755)
    return folder


def vagrant_validate(
    vagrant: str, vagrantfile_text: str, provider: str, work: Path, shim_bin: Path
) -> subprocess.CompletedProcess[str]:
    lab = work / "lab"
    lab.mkdir(parents=True)
    (lab / "Vagrantfile").write_text(vagrantfile_text, encoding="utf-8")
    home = work / "vagrant-home"  # outside /root, empty: proves validate needs no box
    env = {
        **os.environ,
        "PATH": f"{shim_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "VAGRANT_HOME": str(home),
        "VAGRANT_CWD": str(lab),
        "VAGRANT_DEFAULT_PROVIDER": provider,
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        "VAGRANT_NO_COLOR": "1",
    }
    env.pop("VAGRANT_EXPERIMENTAL", None)  # the Vagrantfile itself must turn on what it needs
    result = subprocess.run(
        [vagrant, "validate"], cwd=lab, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    boxes = home / "boxes"
    assert not boxes.exists() or not any(boxes.iterdir()), "vagrant validate downloaded a box"
    return result


def all_specs() -> dict[str, LabSpec]:
    specs = {case: spec_for(case)[0] for case in CASES}
    specs.update({name: LabSpec.from_dict(data) for name, data in EXTRA_SPECS.items()})
    return specs


@pytest.mark.parametrize("case", [*CASES, *EXTRA_SPECS])
def test_rendered_vagrantfile_passes_vagrant_validate(case: str, vagrant: str, shim_bin: Path, tmp_path: Path) -> None:
    spec = all_specs()[case]
    result = vagrant_validate(vagrant, render_vagrantfile(spec), spec.provider.type, tmp_path, shim_bin)
    assert result.returncode == 0, f"vagrant validate failed for {case}:\n{result.stdout}\n{result.stderr}"
    assert "Vagrantfile validated successfully." in result.stdout
    # The provider block was really checked, not ignored.
    assert "Ignoring provider config" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("case", "good", "typo", "complaint"),
    [
        ("three-workers", "vb.linked_clone =", "vb.linked_clon =", "linked_clon"),
        ("gpu-libvirt", "machine_virtual_size =", "machine_virtual_sise =", "machine_virtual_sise"),
        # not only provider blocks: Vagrant's own settings are checked too
        ("default", "config.vm.box_check_update =", "config.vm.box_check_updates =", "box_check_updates"),
    ],
)
def test_broken_template_fails_vagrant_validate(
    case: str, good: str, typo: str, complaint: str, vagrant: str, shim_bin: Path, tmp_path: Path
) -> None:
    broken_dir = tmp_path / "vagrant-broken"
    shutil.copytree(vagrant_dir(), broken_dir)
    template = broken_dir / "Vagrantfile.j2"
    original = template.read_text(encoding="utf-8")
    assert good in original, f"the template no longer contains {good!r}; update this test"
    template.write_text(original.replace(good, typo), encoding="utf-8")
    spec = spec_for(case)[0]
    text = render_vagrantfile(spec, template_dir=broken_dir)
    assert typo in text
    result = vagrant_validate(vagrant, text, spec.provider.type, tmp_path / "run", shim_bin)
    assert result.returncode != 0, f"vagrant validate accepted a broken Vagrantfile:\n{result.stdout}"
    output = result.stdout + result.stderr
    assert "The following settings shouldn't exist" in output
    assert complaint in output


@pytest.mark.parametrize("case", list(CACHE_CASES))
def test_vagrantfile_with_a_warm_cache_passes_vagrant_validate(
    case: str, vagrant: str, shim_bin: Path, tmp_path: Path
) -> None:
    spec = spec_for(CACHE_CASES[case][0])[0]
    cache = tmp_path / "labcache"
    cache.mkdir()
    text = render_vagrantfile(spec, cache_dir=cache)
    assert f'"{cache}", "/labctl-cache"' in text
    result = vagrant_validate(vagrant, text, spec.provider.type, tmp_path / "run", shim_bin)
    assert result.returncode == 0, f"vagrant validate failed for {case}:\n{result.stdout}\n{result.stderr}"
    assert "Vagrantfile validated successfully." in result.stdout
    # With the cache folder gone (USB stick unplugged after class), the Vagrantfile must still load:
    # halt, up and destroy validate it too.
    cache.rmdir()
    gone = vagrant_validate(vagrant, text, spec.provider.type, tmp_path / "run-gone", shim_bin)
    assert gone.returncode == 0, f"{gone.stdout}\n{gone.stderr}"
    # ...and that is the File.directory? guard's doing: without it, validate checks the folder and fails
    unguarded = re.sub(r"if File\.directory\?\(.*\)$", "if true", text, flags=re.M)
    assert "File.directory?" not in unguarded and f'synced_folder "{cache}"' in unguarded
    broken = vagrant_validate(vagrant, unguarded, spec.provider.type, tmp_path / "run-unguarded", shim_bin)
    assert broken.returncode != 0, broken.stdout
    assert "host path of the shared folder is missing" in broken.stdout + broken.stderr
