"""No raw template text reaches a reader: every prose field of a step (title, purpose, done reason,
skip reason) is rendered with the same context as its commands, in every output the plan has —
`plan` (text and JSON), `handout` (Markdown and HTML) — for several shapes of lab.

Issue #15 found `{{ versions.pause }}`, `{{ master.ip }}` ... printed verbatim in six step
explanations, and a golden file that protected the bug. These tests read whole documents, so a
Jinja marker left anywhere (prose or command) fails them.
"""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from labctl.cli import cli
from labctl.handout import render
from labctl.plan import build_plan
from labctl.spec import LabSpec

# "{{ x }}" / "{% if %}" / "{# note #}": what Jinja would have consumed had the text been rendered.
MARKUP = re.compile(r"\{\{|\{%|\{#|\}\}|%\}")

LABS = {
    "default": LabSpec.default,
    "no-workers": lambda: LabSpec.from_dict({"nodes": {"workers": []}}),
    "gpu-libvirt": lambda: LabSpec.from_dict(
        {
            "provider": {"type": "libvirt"},
            "nodes": {"gpu_worker": {"name": "gpu1", "ip": "192.168.33.102", "cpus": 4, "memory_mib": 8192, "pci": "0000:01:00.0"}},
            "apps": {"options": {"gpu": True}},
        }
    ),
    "three-workers": lambda: LabSpec.from_dict(
        {
            "network": {"subnet": "192.168.40.0/24", "pod_cidr": "10.20.0.0/16", "metallb_pool": "192.168.40.2-192.168.40.9"},
            "nodes": {
                "master": {"name": "cp", "ip": "192.168.40.10", "cpus": 2, "memory_mib": 4096},
                "workers": [{"name": f"w{i}", "ip": f"192.168.40.{20 + i}", "cpus": 2, "memory_mib": 4096} for i in (1, 2, 3)],
                "nfs": {"name": "store", "ip": "192.168.40.30", "cpus": 1, "memory_mib": 1024},
            },
            "provider": {"host_memory_budget_mib": 65536},
        }
    ),
    "offline": lambda: LabSpec.from_dict({"offline": True}),
}


def leftovers(text: str) -> list[str]:
    """Each line that still carries Jinja markup (empty when the text is fully rendered)."""
    return [line.strip()[:160] for line in text.splitlines() if MARKUP.search(line)]


def test_the_detector_sees_every_kind_of_marker() -> None:
    # The checks below are only as good as this: each form the bug took, and the statement forms.
    for raw in ("pause:{{ versions.pause }}", "{{ nfs.name }}:{{ nfs.export }}", "{% if cache %}x{% endif %}", "{# c #}"):
        assert leftovers(f"prose\n{raw}\n"), raw
    assert leftovers("plain text, a $VAR and ${VAR}, a {dict: 1}\n") == []


@pytest.mark.parametrize("lab", sorted(LABS))
def test_every_prose_field_of_every_step_is_rendered(lab: str) -> None:
    spec = LABS[lab]()
    plan = build_plan(spec)
    bad = [
        f"{s.id}.{name}: {value[:120]!r}"
        for s in plan.steps
        for name, value in (("title", s.title), ("purpose", s.purpose), ("done_reason", s.done_reason), ("skip_reason", s.skip_reason))
        if MARKUP.search(value)
    ]
    assert bad == []
    # the rendering uses the lab's own values: the control-plane step names this lab's master address
    init = plan.step("control-plane.initialise-control-plane") if any(s.id == "control-plane.initialise-control-plane" for s in plan.steps) else None
    if init is not None:
        assert str(spec.nodes.master.ip) in init.purpose


@pytest.mark.parametrize("lab", sorted(LABS))
@pytest.mark.parametrize("fmt", ["md", "html"])
def test_handout_has_no_template_text(lab: str, fmt: str) -> None:
    spec = LABS[lab]()
    text = render(spec, build_plan(spec), fmt)
    assert leftovers(text) == []


@pytest.mark.parametrize("lab", sorted(LABS))
def test_plan_text_and_json_have_no_template_text(lab: str) -> None:
    plan = build_plan(LABS[lab]())
    assert leftovers(plan.to_text()) == []
    doc = json.loads(plan.to_json())
    strings: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str):
            strings.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(doc)
    assert [s[:120] for s in strings if MARKUP.search(s)] == []


def test_cli_outputs_have_no_template_text() -> None:
    """The commands a newcomer types (`plan`, `plan --output json`, `handout`, `handout --format html`)."""
    runner = CliRunner()
    for args in (["plan"], ["plan", "--output", "json"], ["handout"], ["handout", "--format", "html"]):
        res = runner.invoke(cli, args)
        assert res.exit_code == 0, (args, res.output)
        assert leftovers(res.output) == [], args


def test_storage_purpose_names_this_labs_export() -> None:
    # one of the six purposes that printed raw text: it now names the NFS VM, its export and onDelete
    spec = LABS["three-workers"]()
    step = next(s for s in build_plan(spec).steps if "StorageClass points at" in s.purpose)
    assert f"{spec.nodes.nfs.name}:{spec.nodes.nfs.export}" in step.purpose
    assert f"onDelete {spec.storage.on_delete}" in step.purpose
