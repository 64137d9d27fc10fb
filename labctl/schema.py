"""The JSON Schema of lab.yaml, generated from the models (`labctl schema`, editors via `labctl init`).

Pydantic writes types, ranges, enums, defaults, required keys and "no unknown keys" from the models;
the checks our validators make on single values (names, sizes, PCI and model names, the MetalLB
range, dotted addresses) become ``pattern``s here, and the rules that depend on provider.type become
if/then conditionals, so an editor flags them while typing too. What compares values across the
file (an address outside the subnet, two nodes with one name, overlapping ranges) stays with
`labctl validate`; tests/test_schema.py lists those cases.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic.json_schema import GenerateJsonSchema

from labctl.spec import LabSpec
from labctl.spec_checks import (
    BOX_NAME,
    BOX_VERSION_PART,
    DNS_LABEL,
    KEEP_ALIVE,
    LIBVIRT_NAME,
    OLLAMA_NAME,
    PCI_ADDRESS,
    POSIX_USER,
    QUANTITY,
)

SCHEMA_ID = "https://labctl.dev/schema/lab-v1alpha1.json"
SCHEMA_FILE = "lab.schema.json"  # what `labctl init` writes beside lab.yaml
# The modeline `labctl init` puts first in lab.yaml. A relative path: the YAML language server
# resolves it against the YAML file's own folder (yaml-language-server
# src/languageservice/services/yamlSchemaService.ts, getSchemaForResource), so it works offline.
MODELINE = f"# yaml-language-server: $schema={SCHEMA_FILE}"

_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4 = rf"{_OCTET}(\.{_OCTET}){{3}}"
_PATTERNS = {
    "ipv4": rf"^{IPV4}$",
    "ipv4network": rf"^{IPV4}/(3[0-2]|[12]?[0-9])$",
}


def _whole(pattern: re.Pattern[str] | str, *, empty: bool = False) -> str:
    """A full-match Python pattern as a JSON Schema ``pattern`` (a search, in ECMAScript syntax):
    anchored at both ends, without named groups. The end is ``(?![\\s\\S])``, not ``$``: in
    Python (the jsonschema package) ``$`` also matches before a final newline, and a value ending
    in one is exactly what must not pass (it would split a rendered command in two)."""
    text = pattern if isinstance(pattern, str) else pattern.pattern
    body = re.sub(r"\(\?P<\w+>", "(", text)
    return "^(?:" + body + ")" + ("?" if empty else "") + r"(?![\s\S])"


_LABEL = re.sub(r"\(\?P<\w+>", "(", DNS_LABEL.pattern)
_VERSION_PART = re.sub(r"\(\?P<\w+>", "(", BOX_VERSION_PART.pattern)
# A validator's function name (labctl.spec_checks, labctl.spec) → the pattern it enforces on one value.
_VALIDATOR_PATTERNS = {
    "dns_label": _whole(DNS_LABEL),
    "quantity": _whole(QUANTITY),
    "posix_user": _whole(POSIX_USER),
    "box_name": _whole(BOX_NAME, empty=True),
    "box_version": _whole(rf" *{_VERSION_PART} *(?:, *{_VERSION_PART} *)*", empty=True),
    "libvirt_name": _whole(LIBVIRT_NAME),
    "keep_alive": _whole(KEEP_ALIVE),
    # no '.' or '..' component, no empty one (so no '//' and no trailing '/')
    "export_path": _whole(r"(?!.*/\.{1,2}(?:/|(?![\s\S])))(?:/[A-Za-z0-9._-]+)+"),
    "dns_name": _whole(rf"(?=[\s\S]{{1,253}}(?![\s\S])){_LABEL}(?:\.{_LABEL})*"),
    "key_path": _whole(r"[^\x00-\x1f\x7f]{1,4096}"),
    "_pci": _whole(PCI_ADDRESS),
    "_pool": _whole(rf"\s*{IPV4}\s*-\s*{IPV4}\s*"),
}


# Values that show the shape of a key better than its default does (editors offer them).
EXAMPLES: dict[str, list[Any]] = {
    "Node.name": ["worker2"],
    "Node.ip": ["192.168.33.102"],
    "Node.cpus": [4],
    "Node.memory_mib": [8192],
    "Node.disk_gib": [40],
    "Node.ssh_user": ["ubuntu"],
    "Node.ssh_key": ["~/.ssh/id_ed25519"],
    "GpuNode.pci": ["0000:01:00.0"],
    "Network.metallb_pool": ["192.168.33.2-192.168.33.5"],
    "Storage.models_size": ["20Gi", "100Gi"],
    "Ollama.models": [["llama3.2:1b", "qwen2.5:0.5b"]],
    "Ollama.keep_alive": ["30m", "-1"],
    "OpenWebUI.address": ["192.168.33.3"],
    "Options.openai_secret": ["openai-upstream"],
}


class _LabSchema(GenerateJsonSchema):
    def function_after_schema(self, schema: Any) -> dict[str, Any]:
        return self._with_pattern(schema, super().function_after_schema(schema))

    def function_before_schema(self, schema: Any) -> dict[str, Any]:
        return self._with_pattern(schema, super().function_before_schema(schema))

    @staticmethod
    def _with_pattern(core: Any, out: dict[str, Any]) -> dict[str, Any]:
        function = core.get("function", {}).get("function")
        name = getattr(function, "__name__", "") or getattr(getattr(function, "__func__", None), "__name__", "")
        if name == "_models" and out.get("type") == "array":
            out["items"] = {**out.get("items", {}), "pattern": _whole(OLLAMA_NAME)}
            out["uniqueItems"] = True
        elif name in _VALIDATOR_PATTERNS:
            # An optional value (str | None) is an anyOf: the pattern belongs to its string branch.
            for branch in [out, *out.get("anyOf", [])]:
                if branch.get("type") == "string":
                    branch["pattern"] = _VALIDATOR_PATTERNS[name]
        return out


def _walk(node: Any) -> None:
    """Patterns for the address formats (not every validator checks "format"; a pattern it does)."""
    if isinstance(node, dict):
        fmt = node.get("format")
        if fmt in _PATTERNS and node.get("type") == "string":
            node.setdefault("pattern", _PATTERNS[fmt])
        for value in node.values():
            _walk(value)
    elif isinstance(node, list):
        for value in node:
            _walk(value)


def _descriptions(schema: dict[str, Any]) -> None:
    """Every property gets an explanation: its Field's description, else init's note (specfile)."""
    import labctl.spec as models
    from labctl.specfile import NOTES, _describe

    paths = {"LabSpec": ""}  # model name → its path in lab.yaml (for NOTES, which are keyed by path)
    paths.update({"Provider": "provider.", "Network": "network.", "Nodes": "nodes.", "Storage": "storage.",
                  "Apps": "apps.", "Ollama": "apps.ollama.", "OpenWebUI": "apps.openwebui.",
                  "Options": "apps.options.", "Libvirt": "provider.libvirt."})
    defs = {"LabSpec": schema, **schema.get("$defs", {})}
    for name, model_schema in defs.items():
        model = getattr(models, name, None)
        for key, prop in model_schema.get("properties", {}).items():
            path = paths[name] + key if name in paths else ""
            if path in NOTES:
                prop["description"] = NOTES[path]
            elif not prop.get("description") and model is not None:
                prop["description"] = _describe(model, key, path) or key.replace("_", " ")
            example = EXAMPLES.get(f"{name}.{key}")
            if example is None and name in ("NfsNode", "GpuNode"):
                example = EXAMPLES.get(f"Node.{key}")
            if example is not None:
                prop["examples"] = example


def _provider_is(kind: str, *, explicit: bool) -> dict[str, Any]:
    """A condition on provider.type; ``explicit=False`` also holds when the key is left out (the
    default, virtualbox)."""
    provider: dict[str, Any] = {"properties": {"type": {"const": kind}}}
    if explicit:
        return {"properties": {"provider": {**provider, "required": ["type"]}}, "required": ["provider"]}
    return {"properties": {"provider": provider}}


def _each_node(rule: dict[str, Any]) -> dict[str, Any]:
    return {"properties": {key: rule for key in ("master", "nfs", "gpu_worker")} | {"workers": {"items": rule}}}


def provider_rules() -> list[dict[str, Any]]:
    """The rules that depend on provider.type, as JSON Schema conditionals (the same ones
    ``labctl.spec_rules.cross_problems`` checks, so an editor shows them while typing):

    - virtualbox (also when provider.type is left out): no GPU worker, no PCI passthrough;
    - not libvirt: a ``provider.libvirt`` block may only repeat the defaults;
    - ssh: every node names its ``ssh_user`` and grows no disk. The default nodes have no
      ssh_user, so with ssh the file must write ``nodes.master``, ``nodes.nfs`` and ``nodes.workers``.
    """
    from labctl.spec import Libvirt

    libvirt_defaults = {key: {"const": value} for key, value in Libvirt().model_dump(mode="json").items()}
    ssh_node = {
        "anyOf": [
            {"type": "null"},
            {"required": ["ssh_user"], "properties": {"ssh_user": {"type": "string", "minLength": 1},
                                                      "disk_gib": {"type": "null"}}},
        ]
    }
    return [
        {
            "if": _provider_is("virtualbox", explicit=False),
            "then": {"properties": {"nodes": {"properties": {"gpu_worker": {"type": "null"}}}}},
        },
        {
            "if": _provider_is("libvirt", explicit=True),
            "else": {"properties": {"provider": {"properties": {"libvirt": {"properties": libvirt_defaults}}}}},
        },
        {
            "if": _provider_is("ssh", explicit=True),
            "then": {
                "required": ["nodes"],
                "properties": {"nodes": {"required": ["master", "nfs", "workers"], **_each_node(ssh_node)}},
            },
        },
    ]


def lab_schema() -> dict[str, Any]:
    """The JSON Schema a lab.yaml must satisfy, with descriptions and examples.

    Declared as draft-07: the YAML language server behind VS Code's YAML extension has long read
    "JSON Schema 7 and below" (redhat-developer/yaml-language-server README), and every keyword
    pydantic emits here (``$ref`` into ``$defs`` is a plain JSON pointer) means the same in draft-07."""
    schema = LabSpec.model_json_schema(schema_generator=_LabSchema)
    _walk(schema)
    _descriptions(schema)
    example = LabSpec.default().model_dump(mode="json", exclude_none=True)
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": SCHEMA_ID,
        **schema,
        "title": "labctl lab.yaml",
        "description": "One self-hosted LLM lab (labctl). Every key is optional; `labctl validate` also checks "
        "what a schema cannot (addresses inside the subnet, unique names, non-overlapping ranges).",
        "examples": [example],
        "allOf": provider_rules(),
    }


def schema_json() -> str:
    return json.dumps(lab_schema(), indent=2, sort_keys=False) + "\n"
