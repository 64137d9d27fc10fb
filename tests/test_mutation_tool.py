"""benchmarks/mutation.py, the mutation sampler: each operator, one change per mutant, stable ids,
seeded samples, the equivalents list, and one end-to-end run on a toy project (a few pytest runs)."""

from __future__ import annotations

import ast
import difflib
import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("labctl_mutation_tool", REPO / "benchmarks" / "mutation.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


mt = _load()

SOURCE = textwrap.dedent(
    '''\
    """Module docstring."""
    from __future__ import annotations

    import os

    LIMIT: int = 50


    def grade(n: int) -> str:
        """Docstring."""
        if n >= LIMIT:
            return "pass"
        return "fail"


    def names(items: list[str]) -> list[str]:
        return [i for i in items if i not in ("x",)] if os.sep else []
    '''
)


def test_every_operator_is_offered_once_per_site():
    ids = [m.id for m in mt.mutants_of(SOURCE, "m.py")]
    assert "m.py:grade|flip-comparison|n >= LIMIT => n > LIMIT" in ids
    assert "m.py:grade|negate-condition|n >= LIMIT => not n >= LIMIT" in ids
    assert "m.py:grade|return-none|return 'pass' => return None" in ids
    assert "m.py:grade|change-constant|'pass' => 'XXpassXX'" in ids
    assert "m.py:grade|delete-statement|return 'fail' => pass" in ids
    assert "m.py:<module>|change-constant|50 => 51" in ids
    assert "m.py:names|flip-comparison|i not in ('x',) => i in ('x',)" in ids
    assert "m.py:names|negate-condition|i not in ('x',) => not i not in ('x',)" in ids  # the comprehension's if
    assert "m.py:names|negate-condition|os.sep => not os.sep" in ids  # the ternary
    assert len(ids) == len(set(ids))


def test_docstrings_annotations_imports_and_defs_are_left_alone():
    ids = [m.id for m in mt.mutants_of(SOURCE, "m.py")]
    assert not any("docstring" in i.lower() for i in ids)
    assert not any("'str'" in i or "int" in i.split("|", 2)[2].split("=>")[0] for i in ids if "change-constant" in i)
    assert not any(i.startswith("m.py:<module>|delete-statement|import") for i in ids)
    assert not any("delete-statement|def " in i for i in ids)


def test_a_negated_not_is_unwrapped_not_doubled():
    ids = [m.id for m in mt.mutants_of("if not x:\n    y()\n", "m.py")]
    assert "m.py:<module>|negate-condition|not x => x" in ids


def test_each_mutant_changes_exactly_one_thing():
    plain = ast.unparse(ast.parse(SOURCE)).splitlines()
    for m in mt.mutants_of(SOURCE, "m.py"):
        mutated = mt.mutated_source(SOURCE, "m.py", m.id).splitlines()
        changed = [op for op in difflib.SequenceMatcher(None, plain, mutated).get_opcodes() if op[0] != "equal"]
        assert len(changed) == 1, (m.id, changed)  # one place (deleting an `if` removes its whole block)
        compile("\n".join(mutated), "m.py", "exec")  # every mutant is valid Python


def test_ids_do_not_move_when_code_elsewhere_changes():
    before = {m.id for m in mt.mutants_of(SOURCE, "m.py")}
    edited = SOURCE.replace("import os\n", "import os\nimport sys\n\nEXTRA = sys.argv\n")
    after = {m.id for m in mt.mutants_of(edited, "m.py")}
    assert before <= after


def test_identical_code_in_one_function_gets_numbered_ids():
    ids = [m.id for m in mt.mutants_of("def f():\n    g()\n    g()\n", "m.py")]
    assert ids == ["m.py:f|delete-statement|g() => pass", "m.py:f|delete-statement|g() => pass #2"]
    assert "pass\n    g()" in mt.mutated_source("def f():\n    g()\n    g()\n", "m.py", ids[0])


def test_samples_are_seeded():
    all_ = mt.mutants_of(SOURCE, "m.py")
    a = [m.id for m in mt.sample(all_, 5, seed=3)]
    assert a == [m.id for m in mt.sample(all_, 5, seed=3)] and len(a) == 5
    assert a != [m.id for m in mt.sample(all_, 5, seed=4)]
    assert len(mt.sample(all_, 10_000, seed=1)) == len(all_)


def test_equivalents_need_a_reason(tmp_path):
    good = tmp_path / "eq.yaml"
    good.write_text("- id: m.py:f|delete-statement|g() => pass\n  reason: g is a no-op\n")
    assert mt.load_equivalents(good) == {"m.py:f|delete-statement|g() => pass": "g is a no-op"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("- id: m.py:f|delete-statement|g() => pass\n")
    with pytest.raises(ValueError, match="entry 1 needs both `id` and `reason`"):
        mt.load_equivalents(bad)
    assert mt.load_equivalents(tmp_path / "missing.yaml") == {}


def test_the_projects_equivalents_file_is_valid():
    for mutant_id, reason in mt.load_equivalents().items():
        assert mutant_id.startswith("labctl/") and len(reason) > 20


def test_score_leaves_equivalents_out_and_counts_timeouts_as_kills():
    m = mt.mutants_of(SOURCE, "m.py")[0]
    outs = [mt.Outcome(m, s, 0.0) for s in ("killed", "timeout", "survived", "equivalent")]
    assert mt.score(outs) == (2, 3, pytest.approx(200 / 3))


def test_every_core_module_has_tests_mapped():
    for module in mt.CORE:
        assert (REPO / module).exists() and mt.test_files(module), module
    # What the core modules were split into stays core: a new file of the split is mapped too.
    split = [*REPO.glob("labctl/doctor/*.py"), *REPO.glob("labctl/spec_*.py")]
    split += [REPO / "labctl/kubeconfig.py", REPO / "labctl/snapshots.py"]
    split += [REPO / f"labctl/{name}.py" for name in ("lab", "status", "power", "destroy")]  # lifecycle's parts (#13)
    split += [*REPO.glob("labctl/cache_*.py"), REPO / "labctl/lab_pins.py"]  # cache.py's split (#16)
    assert sorted(str(p.relative_to(REPO)) for p in split if str(p.relative_to(REPO)) not in mt.CORE) == []


def test_a_toy_project_end_to_end(tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "__init__.py").write_text("")
    (tmp_path / "toy" / "grade.py").write_text(
        "LIMIT = 50\n\n\ndef grade(n):\n    if n >= LIMIT:\n        return 'pass'\n    return 'fail'\n"
    )
    (tmp_path / "tests").mkdir()
    # Only far from the edge: the >= → > flip survives, the negation is killed.
    (tmp_path / "tests" / "test_grade.py").write_text(
        "from toy.grade import grade\n\ndef test_grade():\n    assert grade(90) == 'pass' and grade(10) == 'fail'\n"
    )
    box = mt.Sandbox(tmp_path)
    try:  # three pytest runs: the baseline, then the two mutants of the comparison
        outcomes = list(mt.run_module(box, "toy/grade.py", None, 0, {}, ["tests/test_grade.py"], match="n >= LIMIT =>"))
    finally:
        box.close()
    status = {o.mutant.id.split("|", 1)[1]: o.status for o in outcomes}
    assert status == {
        "flip-comparison|n >= LIMIT => n > LIMIT": "survived",
        "negate-condition|n >= LIMIT => not n >= LIMIT": "killed",
    }
    assert (tmp_path / "toy" / "grade.py").read_text().startswith("LIMIT = 50")  # the tree itself is untouched
    assert not box.dir.exists()


def test_list_and_show_on_a_real_module(capsys):
    assert mt.main(["labctl/errors.py", "--list", "--match", "exit_code"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all("labctl/errors.py:" in line and "exit_code" in line for line in lines)
    mutant_id = lines[0].split(None, 1)[1]
    assert mt.main(["labctl/errors.py", "--show", mutant_id]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("--- labctl/errors.py\n+++ labctl/errors.py (mutant)")
    assert sum(1 for line in shown.splitlines() if line.startswith("-    ")) == 1


def test_equivalents_that_no_longer_exist_are_reported():
    mutants = mt.mutants_of("def f():\n    g()\n", "m.py")
    listed = {"m.py:f|delete-statement|g() => pass": "r", "m.py:f|delete-statement|h() => pass": "r", "x.py:y": "r"}
    assert mt.stale_equivalents(mutants, "m.py", listed) == ["m.py:f|delete-statement|h() => pass"]

