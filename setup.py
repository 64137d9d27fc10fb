"""Copies the top-level template folders into the package when a wheel is built.

pyproject.toml holds all metadata; this file only exists because setuptools cannot map folders
outside the package into package data declaratively. Editable installs do not need the copy:
labctl.resources finds the folders beside the package.
"""

import shutil
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


setup(cmdclass={"build_py": BuildWithData})
