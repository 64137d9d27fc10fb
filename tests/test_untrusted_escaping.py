"""lab.yaml is untrusted input: every value reaches Ruby, root shell scripts and manifests only
through the escaping for where it lands (labctl/escaping.py, docs/untrusted-input.md).

These tests do not rely on the field checks: they put a hostile value into each text field
*around* validation (tests/hostile/spec_values.py) and render every template. A template that
interpolates a value without its escaping (a `| safe` on a spec value, a value written inside
quotes of its own, a helper that builds text from it) fails here.
"""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from labctl import escaping
from labctl.resources import manifests_dir, playbooks_dir, vagrant_dir
from tests.hostile import render_all as R
from tests.hostile.spec_values import FIELDS, bypassing_checks

# Quotes of every kind, Ruby interpolation, shell substitution, a newline that starts YAML, a tab,
# a backslash, a non-ASCII letter and a printf directive.
HOSTILE = "x'\"\\ #{`id`} $(id) ;\n- evil: {a: 1}\t\u00e9%s"
PROBE = "labctlprobe"

pytestmark = pytest.mark.skipif(R.RUBY is None, reason="needs ruby (installed by .ci/run)")


def test_every_template_environment_escapes_by_default() -> None:
    from labctl import manifests, plan, render

    assert render._env(vagrant_dir()).finalize is escaping.ruby_finalize
    assert plan._jinja().finalize is escaping.shell_finalize
    assert manifests._env().finalize is escaping.yaml_finalize


def _template_sources() -> dict[str, str]:
    import yaml

    out = {str(p.relative_to(vagrant_dir().parent)): p.read_text(encoding="utf-8") for p in vagrant_dir().glob("*.j2")}
    out |= {str(p.relative_to(manifests_dir().parent)): p.read_text(encoding="utf-8") for p in manifests_dir().rglob("*.j2")}
    for book in sorted(playbooks_dir().glob("[0-9]*.yaml")):
        for step in yaml.safe_load(book.read_text(encoding="utf-8"))["steps"]:
            for key in ("check", "run"):
                if step.get(key):
                    out[f"{book.name}:{step['name']}.{key}"] = step[key]
    return out


# The only `| safe` allowed: output of our own macros (their own {{ }} are escaped inside them).
SAFE_ALLOWED = ("v.local_volume",)


def test_no_template_marks_a_value_safe() -> None:
    """A walk over every template: `| safe` (the one way around the escaping) only on our macros."""
    env = jinja2.Environment()
    bad = []
    for name, source in _template_sources().items():
        for node in env.parse(source).find_all(jinja2.nodes.Filter):
            if node.name in ("safe", "mark_safe"):
                inner = node.node
                callee = inner.node if isinstance(inner, jinja2.nodes.Call) else None
                dotted = f"{callee.node.name}.{callee.attr}" if isinstance(callee, jinja2.nodes.Getattr) and isinstance(callee.node, jinja2.nodes.Name) else ""
                if dotted not in SAFE_ALLOWED:
                    bad.append(f"{name}: line {node.lineno}")
    assert not bad, f"`| safe` bypasses the escaping of lab.yaml values: {bad}"


@pytest.mark.parametrize("path", sorted(FIELDS))
def test_a_hostile_value_reaches_every_file_escaped(path: str, tmp_path: Path) -> None:
    hostile, probe = bypassing_checks(path, HOSTILE), bypassing_checks(path, PROBE)

    # Ruby: the stub records exactly what the probe lab records, with the value in place of the probe.
    vf = R.vagrantfile(hostile, source=HOSTILE)
    if vf is not None:
        assert HOSTILE not in vf
        got = R.ruby_records(vf, tmp_path)
        want = R.ruby_records(R.vagrantfile(probe, source=PROBE) or "", tmp_path)
        assert R.swap(got, HOSTILE, PROBE) == want
        assert R.contains(got, HOSTILE) == R.contains(want, PROBE)

    # Shell: every script parses and holds the value only quoted (tests/test_untrusted_properties.py
    # runs the scripts to see that bash reads back the exact value).
    texts = R.scripts(hostile)
    assert len(texts) == len(R.scripts(probe))
    assert not R.bash_syntax_problems(texts, tmp_path)
    for text in texts:
        assert HOSTILE not in text

    # YAML: the manifests parse to the probe lab's objects with the value in place of the probe.
    got_objs = R.objects(R.manifests(hostile))
    assert R.swap(got_objs, HOSTILE, PROBE) == R.swap(R.objects(R.manifests(probe)), PROBE, PROBE)
