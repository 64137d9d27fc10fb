"""Shared fixtures. Tier markers are declared in pyproject.toml ([tool.pytest.ini_options])."""

from __future__ import annotations

import os

import pytest

from labctl.spec import LabSpec

# provider.arch: auto follows the host. Pin the host the tests pretend to be (an amd64 Linux machine,
# like the one the golden files were made on) so that results do not depend on the machine running
# them; tests of other hosts (Apple Silicon) set these themselves (labctl/arch.py).
os.environ.setdefault("LABCTL_HOST_ARCH", "amd64")
os.environ.setdefault("LABCTL_HOST_OS", "linux")


@pytest.fixture
def default_spec() -> LabSpec:
    return LabSpec.default()
