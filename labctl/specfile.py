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


def commented_lab_yaml(spec: LabSpec | None = None) -> str:
    spec = spec or LabSpec.default()
    data = spec.model_dump(mode="json")
    out: list[str] = [HEADER.rstrip()]
    _emit(LabSpec, data, 0, "", out)
    return "\n".join(out) + "\n"
