"""The ssh tier: real OpenSSH nodes in network namespaces (tests/sshnodes.py). Every test here is
marked ``ssh``; the ``ssh_nodes`` fixture starts nodes and tears them all down after the test."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # `tests.sshnodes` from any rootdir

from tests.sshnodes import NodeSet, NodesUnavailable, start_nodes

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.ssh)


@pytest.fixture
def ssh_nodes(tmp_path: Path) -> Iterator[Callable[..., NodeSet]]:
    """Factory: ``ssh_nodes(["master", "worker1"], files={path: (bytes, mode)})`` → a running NodeSet.

    Skips loudly, naming the missing piece, when this machine cannot run netns nodes (not root,
    no debootstrap, ...). CI runs as root with every package installed, so there it runs."""
    started: list[NodeSet] = []

    def factory(names: list[str], *, files: dict[str, tuple[bytes, int]] | None = None, **kw) -> NodeSet:
        try:
            nodes = start_nodes(names, tmp_path / f"nodes{len(started)}", files=files, **kw)
        except NodesUnavailable as err:
            pytest.skip(f"SSH NODES UNAVAILABLE on this machine: {err}")
        started.append(nodes)
        return nodes

    yield factory
    for nodes in started:
        nodes.close()
