"""`labctl schema` (the JSON Schema of lab.yaml, from the models) agrees with `labctl validate`.

Every file in tests/malformed/ is a lab.yaml that validate rejects. The schema must reject each one
it can judge; the ones it cannot (the check needs the whole file, or happens before YAML becomes
data) are listed below with the reason — so the list cannot silently grow, and a case the schema
learns to judge must leave it. New malformed files are picked up by themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from labctl.cli import cli
from labctl.schema import lab_schema
from labctl.spec import LabSpec
from labctl.specfile import commented_lab_yaml

MALFORMED = Path(__file__).parent / "malformed"
FILES = sorted(MALFORMED.glob("*.yaml"))

NOT_YAML = "not YAML: the parser rejects it before there is data for a schema"
DUPLICATE_KEY = "YAML loaders keep the last of two equal keys; only labctl's loader refuses them"
WHOLE_FILE = "compares values across the file (subnet membership, uniqueness, overlaps): validate's cross-checks"
ORDER = "compares two addresses inside one value: no JSON Schema keyword orders addresses"
HOST_BITS = "a CIDR with host bits set matches the same pattern as a network address"

RANGE_ARITHMETIC = ("whether a network lies inside 10/8, 172.16/12 or 192.168/16 and leaves room for the nodes "
                    "is arithmetic on its addresses; a pattern over the dotted text cannot say it")
SCHEMA_CANNOT_JUDGE = {
    "invalid-yaml-indentation.yaml": NOT_YAML,
    "invalid-yaml-tab.yaml": NOT_YAML,
    "duplicate-yaml-key.yaml": DUPLICATE_KEY,
    "address-outside-subnet.yaml": WHOLE_FILE,
    "duplicate-addresses.yaml": WHOLE_FILE,
    "duplicate-names.yaml": WHOLE_FILE,
    "metallb-pool-outside-subnet.yaml": WHOLE_FILE,
    "metallb-pool-overlaps-node.yaml": WHOLE_FILE,
    "node-on-host-address.yaml": WHOLE_FILE,
    "node-on-network-address.yaml": WHOLE_FILE,
    "pod-overlaps-lab-subnet.yaml": WHOLE_FILE,
    "pod-overlaps-service.yaml": WHOLE_FILE,
    "pod-overlaps-vagrant-nat.yaml": WHOLE_FILE,
    "service-overlaps-vagrant-nat.yaml": WHOLE_FILE,
    "webui-address-outside-pool.yaml": WHOLE_FILE,
    "gpu-option-without-gpu-worker.yaml": WHOLE_FILE,
    "metallb-pool-reversed.yaml": ORDER,
    "subnet-host-bits-set.yaml": HOST_BITS,
    "metallb-pool-includes-broadcast.yaml": WHOLE_FILE,
    "metallb-pool-includes-network-address.yaml": WHOLE_FILE,
    "subnet-loopback.yaml": RANGE_ARITHMETIC,
    "subnet-public.yaml": RANGE_ARITHMETIC,
    "subnet-too-small.yaml": RANGE_ARITHMETIC,
}


def expected_kind(path: Path) -> str:
    return "warning" if path.read_text(encoding="utf-8").startswith("# expect-warning:") else "error"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = lab_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def schema_errors(validator: jsonschema.Draft7Validator, path: Path) -> list[str] | None:
    """The schema's complaints about a file, or None when the file is not YAML data at all."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, ValueError):  # ValueError: an integer past Python's 4300-digit limit
        return None
    return [e.message for e in validator.iter_errors(data)]


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_the_schema_rejects_every_malformed_file_it_can_judge(path: Path, validator) -> None:
    errors = schema_errors(validator, path)
    if expected_kind(path) == "warning":
        assert errors == [], f"{path.name} is only a warning for validate, the schema must accept it"
        return
    rejected = errors is None or bool(errors)
    if path.name in SCHEMA_CANNOT_JUDGE:
        assert not (errors is not None and errors), (
            f"{path.name} is listed as beyond the schema ({SCHEMA_CANNOT_JUDGE[path.name]}), but the schema "
            f"rejects it now: {errors[:1] if errors else ''} — remove it from SCHEMA_CANNOT_JUDGE"
        )
    else:
        assert rejected, (
            f"the schema accepts {path.name}, which validate rejects — teach labctl/schema.py the rule, or "
            "list the file in SCHEMA_CANNOT_JUDGE with the reason a JSON Schema cannot judge it"
        )


def test_the_list_names_only_files_that_exist() -> None:
    assert sorted(set(SCHEMA_CANNOT_JUDGE) - {f.name for f in FILES}) == []


def test_the_schema_accepts_good_labs(validator) -> None:
    for data in (
        LabSpec.default().model_dump(mode="json"),
        yaml.safe_load(commented_lab_yaml()),
        {},  # every key is optional
        {"provider": {"type": "libvirt"}, "nodes": {"gpu_worker": {"name": "gpu1", "ip": "192.168.33.102", "cpus": 4,
                                                                   "memory_mib": 8192, "pci": "0000:01:00.0"}},
         "apps": {"options": {"gpu": True}}},
        {"provider": {"type": "virtualbox", "libvirt": {"driver": "kvm"}}},  # the defaults repeated: validate accepts
        {"provider": {"type": "ssh"}, "nodes": {
            "master": {"name": "cp", "ip": "192.168.33.100", "cpus": 2, "memory_mib": 2048, "ssh_user": "ubuntu"},
            "workers": [{"name": "w1", "ip": "192.168.33.101", "cpus": 2, "memory_mib": 2048, "ssh_user": "ubuntu"}],
            "nfs": {"name": "nfs", "ip": "192.168.33.11", "cpus": 1, "memory_mib": 1024, "ssh_user": "ubuntu"}}},
    ):
        assert [e.message for e in validator.iter_errors(data)] == []
        LabSpec.from_dict(data)  # and labctl agrees they are good


def test_provider_rules_agree_with_validate(validator) -> None:
    """Each provider rule, one good and one bad lab, judged by both the schema and labctl."""
    from labctl.errors import SpecError

    ssh_nodes = {
        "master": {"name": "cp", "ip": "192.168.33.100", "cpus": 2, "memory_mib": 2048, "ssh_user": "u"},
        "workers": [],
        "nfs": {"name": "nfs", "ip": "192.168.33.11", "cpus": 1, "memory_mib": 1024, "ssh_user": "u"},
    }
    cases = [
        {"provider": {"type": "ssh"}},  # the default nodes name no ssh_user
        {"provider": {"type": "ssh"}, "nodes": {**ssh_nodes, "workers": [{"name": "w", "ip": "192.168.33.101", "cpus": 1,
                                                                         "memory_mib": 1024}]}},
        {"provider": {"type": "ssh"}, "nodes": {**ssh_nodes, "master": {**ssh_nodes["master"], "ssh_user": ""}}},
        {"nodes": {"gpu_worker": {"name": "g", "ip": "192.168.33.102", "cpus": 1, "memory_mib": 1024, "pci": "0000:01:00.0"}}},
        {"provider": {"type": "ssh", "libvirt": {"driver": "qemu"}}, "nodes": ssh_nodes},
    ]
    for data in cases:
        assert list(validator.iter_errors(data)), data
        with pytest.raises(SpecError):
            LabSpec.from_dict(data)


def test_every_key_has_a_description_and_node_keys_have_examples() -> None:
    schema = lab_schema()
    missing = [
        f"{name}.{key}"
        for name, model in {"LabSpec": schema, **schema["$defs"]}.items()
        for key, prop in model.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert missing == []
    node = schema["$defs"]["Node"]["properties"]
    assert node["ip"]["examples"] and node["name"]["examples"]
    assert schema["examples"][0]["nodes"]["master"]["ip"] == "192.168.33.100"


def test_cli_prints_the_schema() -> None:
    res = CliRunner().invoke(cli, ["schema"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == json.loads(json.dumps(lab_schema()))


def test_init_writes_the_modeline_and_the_schema_beside_lab_yaml(tmp_path: Path, monkeypatch, validator) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "labs").mkdir()
    res = CliRunner().invoke(cli, ["init", "-o", "labs/lab.yaml"])
    assert res.exit_code == 0, res.output
    text = (tmp_path / "labs" / "lab.yaml").read_text(encoding="utf-8")
    assert text.splitlines()[0] == "# yaml-language-server: $schema=lab.schema.json"
    written = json.loads((tmp_path / "labs" / "lab.schema.json").read_text(encoding="utf-8"))
    assert written == json.loads(json.dumps(lab_schema()))
    assert [e.message for e in validator.iter_errors(yaml.safe_load(text))] == []
    assert LabSpec.load(tmp_path / "labs" / "lab.yaml") == LabSpec.default()
