"""The fake `vagrant` (tests/doubles/fakevagrant/vagrant, a TEST DOUBLE) first on PATH, and what it saw."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

BIN = Path(__file__).resolve().parent / "doubles" / "fakevagrant"


@dataclass
class FakeVagrant:
    calls_file: Path

    def calls(self) -> list[dict[str, Any]]:
        if not self.calls_file.exists():
            return []
        return [json.loads(line) for line in self.calls_file.read_text().splitlines()]

    def commands(self) -> list[list[str]]:
        return [c["argv"] for c in self.calls()]


@pytest.fixture
def fake_vagrant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeVagrant:
    calls = tmp_path / "vagrant-calls.jsonl"
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_VAGRANT_CALLS", str(calls))
    for name in ("FAKE_VAGRANT_FAIL", "FAKE_VAGRANT_PROGRESS", "FAKE_VAGRANT_UP_SECONDS", "FAKE_VAGRANT_PROXY",
                 "FAKE_VAGRANT_UP_LOG", "FAKE_VAGRANT_FPCOLLISION_SECONDS", "LABCTL_VAGRANT_SERIAL"):
        monkeypatch.delenv(name, raising=False)
    return FakeVagrant(calls)
