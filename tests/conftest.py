"""Shared fixtures. Tier markers are declared in pyproject.toml ([tool.pytest.ini_options])."""

from __future__ import annotations

import pytest

from labctl.spec import LabSpec


@pytest.fixture
def default_spec() -> LabSpec:
    return LabSpec.default()
