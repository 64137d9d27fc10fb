"""`labctl init`'s lab.yaml: the default spec written out with every key commented.

Generated from the models themselves (values from ``LabSpec.default()``, comments from each
field's description and type), so the file a student edits can never drift from what labctl accepts.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel

from labctl.spec import LabSpec

HEADER = """\
# lab.yaml — one self-hosted LLM lab. Every key is optional: what you leave out takes the value
# shown here (the seed lab). Check it with `labctl validate`, preview with `labctl create --dry-run`.
"""

# Longer explanations for keys whose field description is not enough on its own.
NOTES: dict[str, str] = {
    "name": "the lab's name: its state folder, Vagrant VM group and kubeconfig context",
    "offline": "skip every step that needs the internet (air-gapped demos, tests) — said loudly, never silent",
    "provider.type": "virtualbox | libvirt | ssh (machines that already exist)",
    "network.subnet": "the host-only network; VirtualBox needs it in /etc/vbox/networks.conf",
    "network.pod_cidr": "must not overlap the subnet, the service CIDR or 10.0.2.0/24 (Vagrant NAT)",
    "nodes.workers": "add a worker by adding an item; names and addresses must be unique",
    "nodes.gpu_worker": 'libvirt only: {name, ip, cpus, memory_mib, pci: "0000:01:00.0"}',
    "storage.on_delete": "retain keeps models on the NFS export when a volume is deleted",
    "apps.ollama.models": "pulled once onto the shared volume by a Job",
}


def _describe(model: type[BaseModel], key: str, path: str) -> str:
    if path in NOTES:
        return NOTES[path]
    field = model.model_fields[key]
    if field.description:
        return field.description
    ann = field.annotation
    if typing.get_origin(ann) is typing.Literal:
        return " | ".join(str(a) for a in typing.get_args(ann))
    return ""


def _model_of(model: type[BaseModel], key: str) -> type[BaseModel] | None:
    ann = model.model_fields[key].annotation
    for cand in (ann, *typing.get_args(ann)):
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            return cand
    if isinstance(ann, types.UnionType):
        for cand in typing.get_args(ann):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                return cand
    return None


def _scalar(value: Any) -> str:
    return (
        json.dumps(value)
        if isinstance(value, str) and (not value or ":" in value or value[0] in "*&!{[#")
        else ("null" if value is None else "true" if value is True else "false" if value is False else str(value))
    )


def _emit(model: type[BaseModel], data: dict[str, Any], indent: int, prefix: str, out: list[str]) -> None:
    pad = "  " * indent
    for key, value in data.items():
        path = f"{prefix}{key}"
        note = _describe(model, key, path)
        comment = f"  # {note}" if note else ""
        sub = _model_of(model, key)
        if isinstance(value, dict) and sub is not None:
            out.append(f"{pad}{key}:{comment}")
            _emit(sub, value, indent + 1, f"{path}.", out)
        elif isinstance(value, list) and value and isinstance(value[0], dict) and sub is not None:
            out.append(f"{pad}{key}:{comment}")
            for item in value:
                lines: list[str] = []
                _emit(sub, item, indent + 2, f"{path}.", lines)
                first, *rest = lines
                out.append(f"{pad}  - {first.lstrip()}")
                out.extend(rest)
        elif isinstance(value, list):
            out.append(f"{pad}{key}: [{', '.join(_scalar(v) for v in value)}]{comment}")
        else:
            out.append(f"{pad}{key}: {_scalar(value)}{comment}")


def commented_lab_yaml(spec: LabSpec | None = None, *, modeline: str = "") -> str:
    """The lab as commented YAML; ``modeline`` (labctl.schema.MODELINE) goes first, where editors look."""
    spec = spec or LabSpec.default()
    data = spec.model_dump(mode="json")
    out: list[str] = []
    if modeline:
        out += [modeline, "# ^ editors with a YAML language server (VS Code's YAML extension) check this file against",
                "#   the schema beside it while you type; refresh it after upgrading: labctl schema > lab.schema.json"]
    out.append(HEADER.rstrip())
    _emit(LabSpec, data, 0, "", out)
    return "\n".join(out) + "\n"


# ---- the lab.yaml reference (docs/reference/lab-yaml.md) ---------------------------------------------------------------
NODE_SECTIONS = {
    "nodes.master": "the Kubernetes control plane",
    "nodes.workers": "a list: one item per Kubernetes worker",
    "nodes.nfs": "the NFS server holding the shared volumes (not a Kubernetes node)",
    "nodes.gpu_worker": "optional worker with a GPU passed through (libvirt only); absent by default",
}


def _type_name(annotation: Any) -> str:
    import ipaddress
    from pathlib import Path

    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is list:
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    if origin in (typing.Union, types.UnionType):
        parts = [a for a in typing.get_args(annotation) if a is not type(None)]
        text = " or ".join(_type_name(a) for a in parts)
        return text + (" or null" if len(parts) < len(typing.get_args(annotation)) else "")
    names = {
        bool: "true/false",
        int: "integer",
        str: "text",
        ipaddress.IPv4Address: "IPv4 address",
        ipaddress.IPv4Network: "IPv4 network",
        Path: "file path",
    }
    if annotation in names:
        return names[annotation]
    return getattr(annotation, "__name__", str(annotation))


def _default_at(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def reference_rows() -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) for every key of lab.yaml except the node keys (node_rows)."""
    data = LabSpec.default().model_dump(mode="json")
    rows: list[tuple[str, str, str, str]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for key, field in model.model_fields.items():
            path = f"{prefix}{key}"
            if path in NODE_SECTIONS:
                continue
            sub = _model_of(model, key)
            if sub is not None:
                walk(sub, f"{path}.")
                continue
            default = _default_at(data, path)
            shown = "—" if field.is_required() else json.dumps(default)
            rows.append((path, _type_name(field.annotation), shown, _describe(model, key, path)))

    walk(LabSpec, "")
    return rows


def node_rows() -> list[tuple[str, str, str, str]]:
    """(key, type, default, meaning) for the keys of one node; nfs-only and GPU-only keys say so."""
    from labctl.spec import GpuNode, NfsNode, Node

    rows = []
    for model, only in ((Node, ""), (NfsNode, "nodes.nfs only: "), (GpuNode, "nodes.gpu_worker only: ")):
        for key, field in model.model_fields.items():
            if model is not Node and key in Node.model_fields:
                continue
            shown = "required" if field.is_required() else json.dumps(field.default, default=str)
            rows.append((key, _type_name(field.annotation), shown, only + (field.description or "")))
    return rows


def reference_markdown() -> str:
    """The lab.yaml reference (docs/reference/lab-yaml.md, via labctl.docgen), generated from the models."""
    spec = LabSpec.default()
    out = [
        "| key | type | default | meaning |",
        "|---|---|---|---|",
        *_table_rows(reference_rows()),
        "",
        "Nodes: " + "; ".join(f"`{k}` is {v}" for k, v in NODE_SECTIONS.items()) + ". Each node has these keys:",
        "",
        "| node key | type | default | meaning |",
        "|---|---|---|---|",
        *_table_rows(node_rows()),
        "",
        "Default nodes (the seed lab):",
        "",
        "| node | name | ip | cpus | memory_mib |",
        "|---|---|---|---|---|",
        *(f"| `{p}` | {n.name} | {n.ip} | {n.cpus} | {n.memory_mib} |" for p, n in spec.all_nodes()),
    ]
    return "\n".join(out) + "\n"


def _table_rows(rows: list[tuple[str, str, str, str]]) -> list[str]:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")  # a bare | would end the Markdown table cell

    out = []
    for key, kind, default, meaning in rows:
        shown = default if default in ("—", "required") else f"`{default}`"
        out.append(f"| `{key}` | {cell(kind)} | {cell(shown)} | {cell(meaning)} |")
    return out
