"""Where the readable source folders live: vagrant/, ansible-free-playbooks/, manifests/.

In a source checkout (``pip install -e .``) they are the top-level folders of the repository. In a
wheel (``pipx install .``) the build copies them into ``labctl/_data/`` (see setup.py), so the
installed tool carries exactly the files a student reads on GitHub.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_FOLDERS = ("vagrant", "ansible-free-playbooks", "manifests")


@cache
def folder(name: str) -> Path:
    if name not in _FOLDERS:
        raise KeyError(name)
    here = Path(__file__).resolve().parent
    # The wheel's copy first. The checkout's folder only counts beside pyproject.toml: in an
    # installed labctl, here.parent is site-packages, where e.g. python-vagrant's `vagrant`
    # package would otherwise pass for our vagrant/ folder.
    candidates = [here / "_data" / name]
    if (here.parent / "pyproject.toml").is_file():
        candidates.append(here.parent / name)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"labctl's {name}/ folder is missing from {here.parent} and {here / '_data'} — reinstall labctl"
    )


def vagrant_dir() -> Path:
    return folder("vagrant")


def precompiled_templates_dir() -> Path | None:
    """The playbook templates compiled to Python by the wheel build (labctl.plan), or None in a checkout."""
    folder = Path(__file__).resolve().parent / "_data" / "compiled-templates"
    return folder if folder.is_dir() else None


def playbooks_dir() -> Path:
    return folder("ansible-free-playbooks")


def manifests_dir() -> Path:
    return folder("manifests")
