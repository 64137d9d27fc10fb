"""Every malformed playbook is a clean ``PlaybookError`` naming the file (and step), never a
traceback; and the planning rules a playbook relies on (when, node_when, network, offline, facts,
the dry-run text) hold exactly. Playbooks are written into a temporary folder per test."""

from __future__ import annotations

import json
import shlex
import textwrap
from pathlib import Path

import pytest

from labctl.context import fact_variable
from labctl.errors import LabctlError, PlaybookError
from labctl.plan import HostCommands, Plan, PlannedStep, build_plan, load_playbooks
from labctl.spec import LabSpec

GOOD = "title: Good\nsteps:\n  - {name: one, title: One, run: 'true'}\n"


def folder(tmp_path: Path, **files: str) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(textwrap.dedent(text))
    return tmp_path


def plan_of(tmp_path: Path, text: str, spec: LabSpec | None = None) -> Plan:
    books = load_playbooks(folder(tmp_path, **{"10-p.yaml": text}))
    return build_plan(spec or LabSpec.default(), books, include_provider=False)


@pytest.mark.parametrize(
    "text, message",
    [
        ("title: [unclosed\n", r"10-bad.yaml: invalid YAML: "),
        ("title: T\nsteps:\n  - name: a\n    title: A\n   run: x\n", r"10-bad.yaml: invalid YAML: "),
        ("just a string\n", r"10-bad.yaml: : Input should be a valid dictionary"),
        ("title: T\n", r"10-bad.yaml: steps: Field required"),
        ("title: T\nsteps: []\nauthor: me\n", r"10-bad.yaml: author: Extra inputs are not permitted"),
        ("title: T\nsteps:\n  - {name: a, title: A}\n", r"10-bad.yaml: steps\.0\.run: Field required"),
        ("title: T\nsteps:\n  - {name: a, title: A, run: x, sudoo: true}\n", r"steps\.0\.sudoo: Extra inputs"),
        ("title: T\nsteps:\n  - {name: Bad_Name, title: A, run: x}\n", r"steps\.0\.name: String should match pattern"),
        ("title: T\nsteps:\n  - {name: a, title: A, run: x, hosts: db}\n", r"steps\.0\.hosts: .*'db' is not a role"),
        ("title: T\nsteps:\n  - {name: a, title: A, run: x, capture: Token}\n", r"'Token' is not a fact name"),
        ("title: T\nsteps:\n  - {name: a, title: A, run: x, retries: 11}\n", r"steps\.0\.retries: "),
        ("title: T\nsteps:\n  - {name: a, title: A, run: x, retries: -1}\n", r"steps\.0\.retries: "),
    ],
)
def test_a_malformed_playbook_is_one_clean_error_naming_the_file(tmp_path, text, message):
    f = folder(tmp_path, **{"05-ok.yaml": GOOD, "10-bad.yaml": text})
    with pytest.raises(PlaybookError, match=message) as info:
        load_playbooks(f)
    assert str(info.value).startswith(str(f / "10-bad.yaml") + ": ")
    assert "\n" not in str(info.value).split(": invalid YAML")[0]
    assert isinstance(info.value, LabctlError) and info.value.exit_code == 2


@pytest.mark.parametrize("value", [0, 7201])
def test_a_timeout_out_of_range_is_one_clean_error_naming_the_file_and_step(tmp_path, value):
    """The range is checked when the plan is built (a timeout may be a Jinja2 expression since the
    model downloads' waits scale with the lab), still before anything runs."""
    with pytest.raises(PlaybookError) as info:
        plan_of(tmp_path, f"title: T\nsteps:\n  - {{name: a, title: A, run: x, timeout: {value}}}\n")
    assert str(info.value) == f"10-p.yaml: step a: timeout {value} is {value}s — it must be between 1 and 7200"
    assert info.value.exit_code == 2


@pytest.mark.parametrize("value, retries", [(1, 0), (7200, 10), (10, 1)])
def test_timeout_and_retries_at_their_limits_are_accepted(tmp_path, value, retries):
    p = plan_of(tmp_path, f"title: T\nsteps:\n  - {{name: a, title: A, run: x, timeout: {value}, retries: {retries}}}\n")
    assert (p.steps[0].timeout, p.steps[0].retries) == (value, retries)


def test_two_playbooks_with_one_name_are_refused(tmp_path):
    f = folder(tmp_path, **{"10-node-prep.yaml": GOOD, "20-node-prep.yaml": GOOD, "30-other.yaml": GOOD})
    with pytest.raises(PlaybookError, match=r"two playbooks are named node-prep — give each its own name"):
        load_playbooks(f)


def test_a_playbook_without_an_order_number_is_refused(tmp_path):
    f = folder(tmp_path, **{"node-prep.yaml": GOOD})
    with pytest.raises(PlaybookError, match=r"node-prep.yaml: playbook file names start with an order number"):
        load_playbooks(f)


def test_playbooks_load_in_number_order_not_name_order(tmp_path):
    f = folder(tmp_path, **{"9-b.yaml": GOOD, "10-a.yaml": GOOD, "100-c.yaml": GOOD, "notes.txt": "x"})
    books = load_playbooks(f)
    assert [b.name for b in books] == ["b", "a", "c"]
    assert books[0].path == f / "9-b.yaml" and books[0].spec.title == "Good"


def test_a_template_error_names_the_file_and_step(tmp_path):
    with pytest.raises(PlaybookError, match=r"^10-p.yaml: step a: template error: .*no_such_thing"):
        plan_of(tmp_path, "title: T\nsteps:\n  - {name: a, title: A, run: 'echo {{ no_such_thing }}'}\n")
    with pytest.raises(PlaybookError, match=r"^10-p.yaml: step b: template error"):
        plan_of(tmp_path, "title: T\nsteps:\n  - {name: b, title: B, run: x, when: 'spec.nope.nope'}\n")


def test_a_fact_used_before_it_is_captured_is_refused(tmp_path):
    text = "title: T\nsteps:\n  - {name: use, title: U, run: x, uses: [token]}\n  - {name: make, title: M, run: x, capture: token}\n"
    with pytest.raises(PlaybookError, match=r"10-p.yaml: step use: uses fact 'token' that no earlier step captures"):
        plan_of(tmp_path, text)


# ---- what a valid playbook plans to ------------------------------------------------------------------
STEPS = """\
title: T
steps:
  - name: every
    title: "Every node of {{ spec.name }}"
    hosts: all
    check: "test -f /x-{{ node.name }}"
    done_reason: "{{ spec.name }} done"
    run: |
      echo {{ node.name }}
    sudo: false
    timeout: 42
    retries: 2
    network: true
    capture: node_id
    capture_check: true
    secret: true
    upload: [calico]
  - {name: dropped, title: Dropped, run: x, when: "spec.name == 'other'"}
  - {name: kept, title: Kept, run: x, when: "spec.name == 'llm-lab'", uses: [node_id]}
  - {name: only-master, title: OM, hosts: k8s, run: x, node_when: "node.name == 'master'"}
  - {name: nobody, title: N, hosts: k8s, run: x, node_when: "false"}
  - {name: net-expr, title: NE, hosts: nfs, run: x, network: "spec.name == 'llm-lab'"}
  - {name: no-net, title: NN, hosts: nfs, run: x, network: "0"}
"""


def test_a_valid_playbook_plans_exactly(tmp_path):
    p = plan_of(tmp_path, STEPS)
    assert [s.id for s in p.steps] == ["p.every", "p.kept", "p.only-master", "p.net-expr", "p.no-net"]
    every = p.step("p.every")
    assert every.title == "Every node of llm-lab" and every.done_reason == "llm-lab done"
    assert HostCommands("master", "test -f /x-master", "echo master") in every.commands
    assert sorted(every.hosts) == ["master", "nfs", "worker1"]
    assert (every.sudo, every.timeout, every.retries, every.network) == (False, 42, 2, True)
    assert (every.capture, every.capture_check, every.secret, every.upload) == ("node_id", True, True, ("calico",))
    assert every.kind == "remote" and every.playbook == "p" and every.skip_reason == ""
    assert p.step("p.kept").uses == ("node_id",)
    assert p.step("p.only-master").hosts == ("master",)
    assert p.step("p.net-expr").network is True and p.step("p.no-net").network is False
    with pytest.raises(KeyError):
        p.step("p.dropped")
    assert (p.lab, p.provider) == ("llm-lab", "virtualbox")
    master = next(h for h in p.hosts if h["name"] == "master")
    assert master["ip"] == "192.168.33.100" and master["cpus"] == 4 and master["memory_mib"] == 8192


def test_offline_skips_the_steps_that_need_the_internet_and_says_why(tmp_path):
    offline = LabSpec.from_dict({"offline": True})
    p = plan_of(tmp_path, STEPS, offline)
    reason = "needs the internet and the lab is offline (offline: true in lab.yaml)"
    assert p.step("p.every").skip_reason == reason and p.step("p.net-expr").skip_reason == reason
    assert p.step("p.no-net").skip_reason == "" and p.step("p.kept").skip_reason == ""
    text = p.to_text()
    assert f"    skipped: {reason}" in text


def test_the_dry_run_text_shows_every_setting_and_groups_identical_hosts(tmp_path):
    text = plan_of(tmp_path, STEPS).to_text()
    assert text.startswith("Plan for lab 'llm-lab' (provider virtualbox): 5 steps\n\n")
    assert "==> Step 1/5: p.every — Every node of llm-lab" in text
    assert "    [as login user; timeout 42s; retries 2; needs internet; captures node_id (secret); uploads calico]" in text
    assert "    master: check (skip if it succeeds):\n        test -f /x-master\n    master: run:\n        echo master" in text
    kept = text.split("==> Step 2/5: ")[1].split("==> Step 3/5")[0]
    assert kept == "p.kept — Kept\n    [sudo; timeout 300s]\n    nfs, master, worker1: run:\n        x\n\n"
    assert "check (skip if it succeeds)" not in text.split("p.kept")[1]
    assert text.endswith("x\n") and not text.endswith("\n\n")


def test_a_not_secret_capture_is_shown_as_such(tmp_path):
    p = plan_of(tmp_path, "title: T\nsteps:\n  - {name: a, title: A, hosts: nfs, run: x, capture: fact_one}\n")
    assert "[sudo; timeout 300s; captures fact_one]" in p.to_text()


def test_the_plan_json_is_the_same_plan(tmp_path):
    p = plan_of(tmp_path, STEPS)
    data = json.loads(p.to_json())
    assert data["format"] == "labctl-plan/v1" and data["lab"] == "llm-lab"
    assert [s["id"] for s in data["steps"]] == [s.id for s in p.steps]


@pytest.mark.parametrize("value, kept", [("false", False), ("0", False), ("none", False), ("'no'", False),
                                         ("''", False), ("true", True), ("1", True), ("'yes'", True)])  # fmt: skip
def test_when_reads_like_a_person_means_it(tmp_path, value, kept):
    p = plan_of(tmp_path, f"title: T\nsteps:\n  - {{name: a, title: A, run: x, when: \"{value}\"}}\n")
    assert bool(p.steps) is kept


def test_facts_travel_in_lab_variables():
    assert fact_variable("join_command") == "LABCTL_JOIN_COMMAND"


def test_a_provider_step_shows_its_timeout_but_no_sudo():
    step = PlannedStep(id="provider.up", playbook="provider", title="VMs", purpose="", kind="provider",
                       commands=(HostCommands("master", "", "vagrant up"),), timeout=900)  # fmt: skip
    text = Plan(lab="l", provider="virtualbox", hosts=(), steps=(step,)).to_text()
    assert "    [timeout 900s]\n" in text


def test_precompiling_writes_one_module_per_template_text(tmp_path):
    from labctl.plan import precompile_templates

    books_dir = tmp_path / "books"
    books_dir.mkdir()
    books = load_playbooks(folder(books_dir, **{"10-p.yaml": STEPS}))
    target = tmp_path / "compiled"
    target.mkdir()
    count = precompile_templates(target, books)
    assert count == len(list(target.glob("*.py"))) and count >= 4  # title, check, run, done_reason, when...


def test_a_script_sees_the_node_and_its_roles(tmp_path):
    p = plan_of(tmp_path, "title: T\nsteps:\n  - {name: a, title: A, run: \"echo {{ node.name }} {{ roles | join(',') }}\"}\n")
    runs = {c.host: c.run for c in p.steps[0].commands}
    assert runs == {"nfs": "echo nfs nfs", "master": "echo master k8s,control_plane", "worker1": "echo worker1 k8s,workers"}


def test_a_step_without_a_purpose_plans_an_empty_one_and_specs_are_frozen(tmp_path):
    from pydantic import ValidationError

    books = load_playbooks(folder(tmp_path, **{"10-p.yaml": GOOD}))
    p = build_plan(LabSpec.default(), books, include_provider=False)
    assert p.steps[0].purpose == "" and p.steps[0].done_reason == "already done"
    assert books[0].spec.purpose == ""
    with pytest.raises(ValidationError):
        books[0].spec.title = "changed"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        books[0].spec.steps[0].run = "changed"  # type: ignore[misc]


def test_templates_render_text_exactly_as_written(tmp_path):
    """Block tags leave no blank lines or indentation behind (trim_blocks, lstrip_blocks), and text
    keeps its final newline (keep_trailing_newline): a script reads the way the playbook shows it."""
    text = (
        "title: T\nsteps:\n  - name: a\n    title: A\n    hosts: nfs\n"
        '    done_reason: "{{ spec.name }} ready\\n"\n'
        "    run: |\n      {% for n in k8s_nodes %}\n        {% if n.name %}\n      echo {{ n.name }}\n        {% endif %}\n"
        "      {% endfor %}\n      done\n"
    )
    step = plan_of(tmp_path, text).steps[0]
    assert step.commands[0].run == "echo master\necho worker1\ndone"
    assert step.done_reason == "llm-lab ready\n"


def test_scripts_are_not_html_escaped(tmp_path):
    text = "title: T\nsteps:\n  - {name: a, title: A, hosts: nfs, run: \"{{ \\\"test -f /x && echo '<ok>'\\\" }}\"}\n"
    # Shell-quoted (one word: the default for a value in a script), never HTML-escaped (&lt;, &amp;).
    assert plan_of(tmp_path, text).steps[0].commands[0].run == shlex.quote("test -f /x && echo '<ok>'")
    raw = text.replace("\\\" }}", "\\\" | safe }}")
    assert raw != text
    (tmp_path / "raw").mkdir()
    assert plan_of(tmp_path / "raw", raw).steps[0].commands[0].run == "test -f /x && echo '<ok>'"
