"""The lab.yaml reference (README) and `labctl init`'s comments cover every key the models accept.

Both are generated from the pydantic models, so a new field shows up by itself; these tests fail
when a field has no explanation (add ``description=`` to its Field) or is left out of the tables.
"""

from __future__ import annotations

import typing

from pydantic import BaseModel

from labctl.spec import GpuNode, LabSpec, NfsNode, Node
from labctl.specfile import NODE_SECTIONS, commented_lab_yaml, node_rows, reference_markdown, reference_rows

NODE_MODELS = (Node, NfsNode, GpuNode)


def submodel(annotation: typing.Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        for inner in (candidate, *typing.get_args(candidate)):
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return inner
    return None


def leaf_paths(model: type[BaseModel] = LabSpec, prefix: str = "") -> list[str]:
    """Every key of lab.yaml outside the node sections, found independently of specfile.py."""
    out = []
    for key, field in model.model_fields.items():
        sub = submodel(field.annotation)
        if sub is not None and issubclass(sub, Node):
            continue
        if sub is not None:
            out += leaf_paths(sub, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


def test_reference_lists_every_key_with_a_meaning() -> None:
    rows = {key: (kind, default, meaning) for key, kind, default, meaning in reference_rows()}
    assert sorted(rows) == sorted(leaf_paths())
    for key, (kind, default, meaning) in rows.items():
        assert kind and default, key
        assert meaning.strip(), f"{key} has no explanation — give its Field a description"


def test_reference_lists_every_node_key_with_a_meaning() -> None:
    rows = {key: meaning for key, _, _, meaning in node_rows()}
    expected = {key for model in NODE_MODELS for key in model.model_fields}
    assert set(rows) == expected
    for key, meaning in rows.items():
        assert meaning.strip(), f"node key {key} has no explanation — give its Field a description"
    # every node section of LabSpec is explained
    node_fields = {f"nodes.{k}" for k, f in LabSpec.model_fields["nodes"].annotation.model_fields.items()}  # type: ignore[union-attr]
    assert set(NODE_SECTIONS) == node_fields


def test_reference_markdown_is_a_well_formed_table() -> None:
    text = reference_markdown()
    for key in leaf_paths():
        assert f"| `{key}` |" in text
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = line.replace("\\|", "").split("|")
            assert len(cells) in (6, 7), line  # 4 or 5 columns


def test_defaults_in_the_reference_are_the_seed_lab() -> None:
    rows = {key: default for key, _, default, _ in reference_rows()}
    assert rows["network.subnet"] == '"192.168.33.0/24"'
    assert rows["network.metallb_pool"] == '"192.168.33.2-192.168.33.5"'
    assert rows["network.pod_cidr"] == '"10.10.0.0/16"'
    assert rows["provider.type"] == '"virtualbox"'
    text = reference_markdown()
    assert "| `nodes.master` | master | 192.168.33.100 | 4 | 8192 |" in text
    assert "| `nodes.nfs` | nfs | 192.168.33.11 | 1 | 1024 |" in text


def test_init_file_comments_every_key() -> None:
    uncommented = [
        line
        for line in commented_lab_yaml().splitlines()
        if line.strip() and not line.lstrip().startswith("#") and "#" not in line and not line.rstrip().endswith(":")
    ]
    assert uncommented == [], "keys without a comment in `labctl init`'s lab.yaml"
