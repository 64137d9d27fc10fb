"""Putting a value into any string field of a LabSpec, with or without validation.

The escaping tests (tests/test_untrusted_*.py) need both: through ``LabSpec.from_dict`` (what a
user can do) and around it (``model_copy``: what a template would receive if a check were ever
loosened), so they prove the templates escape by construction, not by luck of the validators.
"""

from __future__ import annotations

import copy
from typing import Any

from labctl.spec import LabSpec

# Every free-form text field of lab.yaml that reaches a template, as (path, base lab).
# Literal fields (provider.type ...) and parsed ones (metallb_pool, pci) cannot hold arbitrary text.
BASE: dict[str, Any] = {
    "apiVersion": "labctl.dev/v1alpha1",
    "kind": "Lab",
    "apps": {"options": {"ingress": True, "ingress_tls": True, "openai_secret": "upstream", "monitoring": True}},
}
LIBVIRT: dict[str, Any] = {**BASE, "provider": {"type": "libvirt", "libvirt": {"management_network": "mgmt"}}}
SSH: dict[str, Any] = {
    **BASE,
    "provider": {"type": "ssh"},
    "nodes": {
        "master": {"name": "master", "ip": "192.168.33.100", "cpus": 4, "memory_mib": 8192, "ssh_user": "ubuntu"},
        "workers": [{"name": "worker1", "ip": "192.168.33.101", "cpus": 4, "memory_mib": 8192, "ssh_user": "ubuntu"}],
        "nfs": {"name": "nfs", "ip": "192.168.33.11", "cpus": 1, "memory_mib": 1024, "ssh_user": "ubuntu"},
    },
}
FIELDS: dict[str, dict[str, Any]] = {
    "name": BASE,
    "provider.box": BASE,
    "provider.box_version": BASE,
    "provider.libvirt.storage_pool": LIBVIRT,
    "provider.libvirt.management_network": LIBVIRT,
    "nodes.master.name": BASE,
    "nodes.workers[0].name": BASE,
    "nodes.nfs.name": BASE,
    "nodes.nfs.export": BASE,
    "nodes.master.ssh_user": SSH,
    "nodes.workers[0].ssh_user": SSH,
    "storage.class_name": BASE,
    "storage.models_size": BASE,
    "storage.webui_size": BASE,
    "apps.ollama.models[0]": BASE,
    "apps.ollama.keep_alive": BASE,
    "apps.options.ingress_host": BASE,
    "apps.options.ingress_tls_secret": BASE,
    "apps.options.openai_secret": BASE,
}


def _parts(path: str) -> list[str | int]:
    out: list[str | int] = []
    for part in path.split("."):
        name, _, index = part.partition("[")
        out.append(name)
        if index:
            out.append(int(index.rstrip("]")))
    return out


def as_data(path: str, value: str) -> dict[str, Any]:
    """lab.yaml data (a dict) for the field's base lab with the field set to ``value``."""
    data = _merged(LabSpec.default().model_dump(mode="json"), copy.deepcopy(FIELDS[path]))
    node: Any = data
    parts = _parts(path)
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    return data


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def bypassing_checks(path: str, value: str) -> LabSpec:
    """The field's base lab, validated, then the field replaced without any check."""
    spec = LabSpec.from_dict(copy.deepcopy(FIELDS[path]))
    return _replace(spec, _parts(path), value)


def _replace(obj: Any, parts: list[str | int], value: Any) -> Any:
    head, rest = parts[0], parts[1:]
    if isinstance(head, int):
        items = list(obj)
        items[head] = _replace(items[head], rest, value) if rest else value
        return items
    current = getattr(obj, head)
    new = _replace(current, rest, value) if rest else value
    return obj.model_copy(update={head: new})
