"""An installed labctl (wheel layout) finds its own templates, not a look-alike in site-packages.

`pipx install .` builds a wheel; setup.py's build step copies vagrant/, ansible-free-playbooks/ and
manifests/ into labctl/_data/. This test runs that same build step (``setup.py build_py``, no network,
in a copy of the source so the checkout stays clean) into a fresh folder that stands for
site-packages, puts a decoy ``vagrant`` package beside it (python-vagrant installs one; an earlier
labctl took it for its template folder), and runs the installed CLI from there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("vagrant", "ansible-free-playbooks", "manifests")


def test_built_package_carries_and_uses_its_templates(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py"):
        shutil.copy(REPO / name, source / name)
    for name in ("labctl", *SHIPPED):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "_data"))
    site = tmp_path / "site-packages"
    build = subprocess.run(
        [sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(site)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert build.returncode == 0, build.stderr
    for name in SHIPPED:
        original = sorted(p.relative_to(REPO / name) for p in (REPO / name).rglob("*") if p.is_file())
        copied = sorted(p.relative_to(site / "labctl" / "_data" / name) for p in (site / "labctl" / "_data" / name).rglob("*") if p.is_file())
        assert copied == [p for p in original if "__pycache__" not in p.parts], f"{name}/ not shipped whole"

    decoy = site / "vagrant"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("# stands for python-vagrant's package\n", encoding="utf-8")

    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "LABCTL_HOME": str(tmp_path / "home")}

    def labctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "labctl.cli", *args],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    where = subprocess.run(
        [sys.executable, "-c", "import labctl.resources as r; print(r.__file__); print(r.vagrant_dir())"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    assert where[0].startswith(str(site)), "the test did not run the built copy"
    assert where[1] == str(site / "labctl" / "_data" / "vagrant")

    dry = labctl("create", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.startswith("Plan for lab 'llm-lab' (provider virtualbox): ")
    rendered = labctl("render", "-o", "out")
    assert rendered.returncode == 0, rendered.stderr
    assert (work / "out" / "Vagrantfile").read_text(encoding="utf-8").startswith("# -*- mode: ruby -*-")
