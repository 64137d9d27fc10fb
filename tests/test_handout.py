"""The handout is the plan: its commands, parsed back out of the Markdown (and out of the HTML), are
exactly the commands of the Plan `create` runs — and these tests do fail when they are not.

Golden file: tests/golden/handout/default.md. After an intended change, regenerate with
    LABCTL_UPDATE_GOLDEN=1 python3 -m pytest tests/test_handout.py
and review `git diff tests/golden/handout/`.
"""

from __future__ import annotations

import dataclasses
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from labctl.cli import cli
from labctl.handout import group_commands, parse_markdown_commands, render
from labctl.plan import Plan, build_plan
from labctl.spec import LabSpec

GOLDEN = Path(__file__).parent / "golden" / "handout"
HANDOUT_SOURCE = Path(__file__).resolve().parents[1] / "labctl" / "handout.py"
# The provider step names the lab's state folder; pin it so the golden file is the same everywhere.
STATE_HOME = "/home/student/.local/share/labctl"


@pytest.fixture(autouse=True)
def _fixed_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABCTL_HOME", STATE_HOME)


def plan_commands(plan: Plan) -> list[tuple[str, tuple[str, ...], str, str]]:
    """What the handout must contain: per step, per group of identical hosts, check, run, on_interrupt."""
    out = []
    for step in plan.steps:
        for hosts, cmd in group_commands(step.commands):
            if cmd.check:
                out.append((step.id, tuple(hosts), "check", cmd.check))
            out.append((step.id, tuple(hosts), "run", cmd.run))
            if cmd.on_interrupt:
                out.append((step.id, tuple(hosts), "on_interrupt", cmd.on_interrupt))
    return out


def mismatches(parsed: list, expected: list) -> list[str]:
    problems = []
    for i, (got, want) in enumerate(zip(parsed, expected, strict=False)):
        if got != want:
            problems.append(f"block {i}: handout has {got[:3]} {got[3][:60]!r}, plan has {want[:3]} {want[3][:60]!r}")
    if len(parsed) != len(expected):
        problems.append(f"handout has {len(parsed)} command blocks, the plan {len(expected)}")
    return problems


SPECS = {
    "default": LabSpec.default(),
    "three-workers-libvirt": LabSpec.from_dict(
        {
            "provider": {"type": "libvirt"},
            "nodes": {
                "workers": [
                    {"name": f"worker{i}", "ip": f"192.168.33.{100 + i}", "cpus": 2, "memory_mib": 4096}
                    for i in (1, 2, 3)
                ]
            },
            "apps": {"ollama": {"models": ["llama3.2:1b", "qwen2.5:0.5b"]}},
        }
    ),
}


@pytest.mark.parametrize("case", sorted(SPECS))
def test_markdown_commands_are_exactly_the_plans(case: str) -> None:
    spec = SPECS[case]
    plan = build_plan(spec)
    parsed = parse_markdown_commands(render(spec, plan, "md"))
    expected = plan_commands(plan)
    assert len(expected) > 40
    assert mismatches(parsed, expected) == []


def test_the_equality_check_catches_a_changed_command() -> None:
    spec = LabSpec.default()
    plan = build_plan(spec)
    text = render(spec, plan, "md")
    # 1. a handout edited by hand (one command changed) is caught
    target = plan.step("node-prep.disable-swap").commands[0].run.splitlines()[0]
    tampered = text.replace(target, target + " # edited", 1)
    assert tampered != text
    assert mismatches(parse_markdown_commands(tampered), plan_commands(plan)) != []
    # 2. a handout from another plan (one host's command differs) is caught, hosts included
    step = plan.steps[3]
    changed = dataclasses.replace(
        step, commands=(dataclasses.replace(step.commands[0], run=step.commands[0].run + "\ntrue"), *step.commands[1:])
    )
    other = dataclasses.replace(plan, steps=(*plan.steps[:3], changed, *plan.steps[4:]))
    assert mismatches(parse_markdown_commands(render(spec, other, "md")), plan_commands(plan)) != []
    # 3. a dropped step is caught
    fewer = dataclasses.replace(plan, steps=plan.steps[:-1])
    assert mismatches(parse_markdown_commands(render(spec, fewer, "md")), plan_commands(plan)) != []


def test_no_command_is_copied_into_the_handout_code() -> None:
    """The handout writes no command of its own: no line of any plan script appears in handout.py."""
    source = HANDOUT_SOURCE.read_text(encoding="utf-8")
    plan = build_plan(LabSpec.default())
    lines = {line.strip() for s in plan.steps for c in s.commands for line in (c.check + "\n" + c.run).splitlines()}
    copied = sorted(line for line in lines if len(line) > 25 and line in source)
    assert copied == []


def test_uploads_are_named_never_shown() -> None:
    spec = LabSpec.default()
    plan = build_plan(spec)
    text = render(spec, plan, "md")
    uploading = [s for s in plan.steps if s.upload]
    assert uploading, "the default plan uploads the manifests bundles"
    for step in uploading:
        for name in step.upload:
            assert f"`{name}`" in text
    assert "WEBUI_SECRET_KEY:" not in text and "kind: Secret" not in text


def test_handout_has_prerequisites_machines_urls_checks_and_troubleshooting() -> None:
    spec = LabSpec.default()
    text = render(spec, build_plan(spec), "md")
    assert "* 192.168.33.0/24" in text  # the networks.conf line
    for host in ("| master | 192.168.33.100 |", "| worker1 | 192.168.33.101 |", "| nfs | 192.168.33.11 |"):
        assert host in text
    assert "<http://192.168.33.2:8080>" in text
    assert "kubectl get nodes -o wide" in text
    for topic in ("host-only network", "10.0.2.15", "swap", "webhook", "99%"):
        assert topic in text


def test_golden_default_handout() -> None:
    spec = LabSpec.default()
    text = render(spec, build_plan(spec), "md")
    golden = GOLDEN / "default.md"
    if os.environ.get("LABCTL_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text, encoding="utf-8")
    assert golden.exists(), f"{golden} is missing — run with LABCTL_UPDATE_GOLDEN=1 to create it"
    assert text == golden.read_text(encoding="utf-8"), (
        "the default handout changed — if intended, regenerate with LABCTL_UPDATE_GOLDEN=1 and review "
        "`git diff tests/golden/handout/`"
    )


# ---- HTML ------------------------------------------------------------------------------------------
class _Blocks(HTMLParser):
    """Collects (step id, label text, <pre> text) from the handout's HTML."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[tuple[str, str, str]] = []
        self.step = ""
        self.label = ""
        self._in: str | None = None
        self._buf: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section" and a.get("class") == "step":
            self.step = a.get("id") or ""
        elif tag == "p" and a.get("class") == "label":
            self._in, self._buf = "label", []
        elif tag == "pre" and self.step:
            self._in, self._buf = "pre", []

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self.step = ""
        elif tag == "p" and self._in == "label":
            self.label, self._in = "".join(self._buf), None
        elif tag == "pre" and self._in == "pre":
            self.blocks.append((self.step, self.label, "".join(self._buf)))
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self._buf.append(data)


def test_html_commands_are_exactly_the_plans_and_escaped() -> None:
    spec = LabSpec.default()
    plan = build_plan(spec)
    page = render(spec, plan, "html")
    parser = _Blocks()
    parser.feed(page)
    parsed = []
    for step_id, label, script in parser.blocks:
        m = re.match(r"On (.+) — (check|run|on_interrupt):$", label)
        assert m, label
        parsed.append((step_id, tuple(h.strip() for h in m.group(1).split(",")), m.group(2), script))
    assert mismatches(parsed, plan_commands(plan)) == []
    # scripts full of < > & " survive only because they are escaped
    assert any("<" in c.run or ">" in c.run for s in plan.steps for c in s.commands)
    body = page.split("<body>", 1)[1]
    assert "<<" not in body and "2>/dev/null" not in body and "2&gt;/dev/null" in body
    # self-contained: no external stylesheet, script or image
    assert not re.search(r"<(link|script|img)\b", page)
    assert "@media print" in page


def test_cli_writes_both_formats(tmp_path: Path) -> None:
    runner = CliRunner()
    md = runner.invoke(cli, ["handout"])
    assert md.exit_code == 0, md.output
    assert md.output.startswith("# Workshop handout")
    out = tmp_path / "handout.html"
    res = runner.invoke(cli, ["handout", "--format", "html", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text().startswith("<!DOCTYPE html>")
