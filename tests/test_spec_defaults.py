"""The built-in default lab is the seed lab (FACTS.md), exactly."""

from __future__ import annotations

import ipaddress

from labctl.spec import LabSpec
from labctl.spec_warnings import spec_warnings
from labctl.specfile import commented_lab_yaml


def test_default_is_the_seed_lab(default_spec: LabSpec) -> None:
    nodes = {n.name: n for _, n in default_spec.all_nodes()}
    assert list(nodes) == ["nfs", "master", "worker1"]
    assert (str(nodes["master"].ip), nodes["master"].cpus, nodes["master"].memory_mib) == ("192.168.33.100", 4, 8192)
    assert (str(nodes["worker1"].ip), nodes["worker1"].cpus, nodes["worker1"].memory_mib) == ("192.168.33.101", 4, 8192)
    assert (str(nodes["nfs"].ip), nodes["nfs"].cpus, nodes["nfs"].memory_mib) == ("192.168.33.11", 1, 1024)
    assert default_spec.memory_mib() == 17 * 1024
    assert default_spec.network.pool_range() == (
        ipaddress.IPv4Address("192.168.33.2"),
        ipaddress.IPv4Address("192.168.33.5"),
    )
    assert str(default_spec.network.pod_cidr) == "10.10.0.0/16"
    assert str(default_spec.network.service_cidr) == "10.96.0.0/12"
    assert str(default_spec.webui_address) == "192.168.33.2"
    assert default_spec.apps.openwebui.port == 8080
    assert default_spec.storage.models_size == default_spec.storage.webui_size == "20Gi"
    assert default_spec.box == "bento/ubuntu-24.04"
    assert spec_warnings(default_spec) == []


def test_init_file_round_trips_to_the_default() -> None:
    text = commented_lab_yaml()
    assert LabSpec.from_yaml(text) == LabSpec.default()
    # every key line that is not a list item carries a value; comments explain the non-obvious ones
    assert "# virtualbox | libvirt | ssh" in text


def test_spec_is_frozen(default_spec: LabSpec) -> None:
    import pydantic
    import pytest

    with pytest.raises(pydantic.ValidationError):
        default_spec.name = "other"  # type: ignore[misc]
