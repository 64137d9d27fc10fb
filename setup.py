"""Copies the top-level template folders into the package when a wheel is built.

pyproject.toml holds all metadata; this file only exists because setuptools cannot map folders
outside the package into package data declaratively (and it precompiles the playbook templates,
see labctl.plan). Editable installs do not need the copy:
labctl.resources finds the folders beside the package.
"""

import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

FOLDERS = ("vagrant", "ansible-free-playbooks", "manifests")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        root = Path(__file__).resolve().parent
        for name in FOLDERS:
            target = Path(self.build_lib) / "labctl" / "_data" / name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(root / name, target)
        # The playbook templates, compiled to Python once here instead of on every `labctl` start
        # (labctl.plan explains the naming). Needs jinja2, pyyaml and pydantic at build time
        # (pyproject.toml's build-system.requires).
        sys.path.insert(0, str(root))
        from labctl.plan import load_playbooks, precompile_templates

        target = Path(self.build_lib) / "labctl" / "_data" / "compiled-templates"
        if target.exists():
            shutil.rmtree(target)
        precompile_templates(target, load_playbooks(root / "ansible-free-playbooks"))


setup(cmdclass={"build_py": BuildWithData})
