"""Property tests: arbitrary text in any text field of lab.yaml (docs/untrusted-input.md).

For every value hypothesis draws, ``LabSpec.from_dict`` either rejects it with exactly one problem
naming the field, or accepts it; either way (the rejected value is also forced past the checks,
to test the escaping on its own) the rendered lab carries the value exactly:

(a) the Vagrantfile, loaded by real Ruby with a stub of the Vagrant API (tests/hostile/vagrant_stub.rb),
    records exactly what a lab with a probe value records, the probe replaced by the value;
(b) every script passes ``bash -n``, and each script holding the value, run by bash in a chroot with
    every command stubbed (tests/hostile/render_all.py), passes the same words to its commands;
(c) the manifests parse (yaml.safe_load) to the same objects, the value one plain string.

Slow (a Ruby and several bash processes per example): marked ``validators``, examples kept few.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from labctl.errors import SpecError
from labctl.spec import LabSpec
from tests.hostile import render_all as R
from tests.hostile.spec_values import FIELDS, as_data, bypassing_checks

PROBE = "labctlprobe"

pytestmark = [
    pytest.mark.validators,
    pytest.mark.skipif(R.RUBY is None or shutil.which("chroot") is None, reason="needs ruby and chroot"),
]

# Arbitrary text (no NUL: a C string, hence a command's argument, cannot hold one; no surrogates:
# not text) mixed with text from the characters lab.yaml values are made of, so both outcomes occur.
ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=0, max_size=24)
NAME_LIKE = st.from_regex(r"[a-z0-9][a-z0-9./:_-]{0,14}[a-z0-9]", fullmatch=True)
VALUES = st.one_of(ANY_TEXT, NAME_LIKE, st.sampled_from(["'", '"', "#{`id`}", "$(id)", "a\n", "-1", "true", "1:20", "a: b"]))


@pytest.fixture(scope="module")
def sandbox() -> Path:
    root = Path(tempfile.mkdtemp(prefix="labctl-sandbox-"))
    yield R.make_sandbox(root)
    shutil.rmtree(root, ignore_errors=True)


_PROBES: dict[str, dict[str, Any]] = {}


def probe_of(path: str, tmp: Path) -> dict[str, Any]:
    """What the lab renders to with the probe value in this field (computed once per field)."""
    if path not in _PROBES:
        spec = bypassing_checks(path, PROBE)
        vf = R.vagrantfile(spec)
        _PROBES[path] = {
            "ruby": R.ruby_records(vf, tmp) if vf is not None else None,
            "scripts": R.scripts(spec),
            "objects": R.objects(R.manifests(spec)),
        }
    return _PROBES[path]


def _one_problem_naming_the_field(err: SpecError, path: str) -> None:
    assert len(err.problems) == 1, err.problems
    owner = path.rsplit(".", 1)[0]
    assert path in err.problems[0] or owner in err.problems[0], err.problems


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(path=st.sampled_from(sorted(FIELDS)), value=VALUES)
def test_any_text_is_rejected_once_or_reaches_ruby_bash_and_yaml_unchanged(
    path: str, value: str, sandbox: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    assume(value)  # empty means "the default" for some fields (box, openai_secret): nothing to carry
    try:
        spec = LabSpec.from_dict(as_data(path, value))
    except SpecError as err:
        _one_problem_naming_the_field(err, path)
        spec = bypassing_checks(path, value)  # and the escaping must hold even so
    tmp = tmp_path_factory.mktemp("example")
    probe = probe_of(path, tmp)

    # (a) Ruby
    vf = R.vagrantfile(spec)
    if vf is not None:
        assert R.ruby_records(vf, tmp) == R.swap(probe["ruby"], PROBE, value)

    # (b) bash: syntax of every script; the words of every script that holds the value
    texts = R.scripts(spec)
    assert len(texts) == len(probe["scripts"])
    assert not R.bash_syntax_problems(texts, tmp)
    for text, probe_text in zip(texts, probe["scripts"], strict=True):
        if PROBE in probe_text:
            want = R.swap(R.seen_by_bash(sandbox, probe_text), PROBE, value)
            got = R.swap(R.seen_by_bash(sandbox, text), "", "")  # blanks value-derived hashes, as in want
            # The commands of a pipeline start at once, and a wait loop runs as often as it can until
            # the sandbox's deadline: order and count are races. The words each command saw must match.
            assert sorted(set(map(tuple, got))) == sorted(set(map(tuple, want))), f"bash saw other words:\n{text[:1500]}"

    # (c) YAML
    assert R.swap(R.objects(R.manifests(spec)), "", "") == R.swap(probe["objects"], PROBE, value)
