"""Mutation testing of labctl's core: do the fast tests notice when the code is subtly wrong?

One small change at a time (a *mutant*) is written into a private copy of the tree, then the tests
that cover that module run against it. A mutant the tests fail on is *killed*; one they pass on
*survived* — a change in behaviour no test pins (or an equivalent mutant: no observable difference,
listed with its reason in ``mutation_equivalents.yaml`` beside this script and left out of the score).

Operators (each applied alone): flip a comparison (``<``→``<=``, ``==``→``!=``, ``in``→``not in``...),
negate a condition (``if``/``while``/ternary/comprehension tests), delete a statement (→ ``pass``),
return None instead of a value, change a constant (bools flip, numbers +1, strings ``"XX…XX"``).

Why our own small AST mutator rather than mutmut or cosmic-ray: mutmut 3 rewrites every function
into a trampoline inside a ``mutants/`` copy and needs its own config and test-run conventions;
cosmic-ray needs a session database and config per run. Neither samples with a seed, and the
check we need is exactly "sample N mutants per module with a seed, run a chosen test subset per
module, report per module": ~300 lines with the standard library. Mutant ids name the function and
the code, not line numbers, so the equivalents list survives edits elsewhere in the module.

    python3 benchmarks/mutation.py --seed 1 --sample 50            # every core module
    python3 benchmarks/mutation.py labctl/runner.py --sample 20    # one module
    python3 benchmarks/mutation.py labctl/plan.py --list           # every mutant id of a module
    python3 benchmarks/mutation.py labctl/plan.py --show ID        # the diff of one mutant

Not in CI: one mutant costs a pytest run (2-4 s). Run it with ``nice -n 10`` on a shared machine.
"""

from __future__ import annotations

import argparse
import ast
import copy
import difflib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENTS = Path(__file__).resolve().parent / "mutation_equivalents.yaml"
FAST = "not ssh and not e2e and not disks"

# Module → the fast test files that exercise it (globs, relative to the repository root). When a
# module is split, add its parts here; a module missing from the map needs --tests.
TESTS: dict[str, list[str]] = {
    "labctl/runner.py": ["tests/test_runner*.py", "tests/test_secrets_redaction.py"],
    "labctl/lifecycle.py": [
        "tests/test_lifecycle*.py",
        "tests/test_secrets_redaction.py",
    ],
    "labctl/plan.py": [
        "tests/test_plan_*.py",
        "tests/test_playbooks.py",
        "tests/test_playbook_errors.py",
        "tests/test_secrets_redaction.py",  # PlannedStep's defaults (secret, capture) as the runner reads them
    ],
    # test_readme: the lab.yaml reference in the README is generated from the models' descriptions.
    "labctl/spec.py": ["tests/test_spec_*.py", "tests/test_playbook_errors.py", "tests/test_readme.py"],
    # What spec.py was split into (#10): field checks, safe loading, the one-line messages.
    "labctl/spec_checks.py": ["tests/test_spec_*.py", "tests/test_untrusted_*.py"],
    "labctl/spec_load.py": ["tests/test_spec_*.py", "tests/test_untrusted_*.py"],
    "labctl/spec_errors.py": ["tests/test_spec_*.py", "tests/test_untrusted_*.py"],
    # What lifecycle.py was split into: the merged kubeconfig context and the VM snapshots.
    "labctl/kubeconfig.py": ["tests/test_kubeconfig_merge.py", "tests/test_lifecycle*.py"],
    "labctl/snapshots.py": ["tests/test_snapshots.py"],
    # doctor.py became the labctl/doctor package.
    **{
        f"labctl/doctor/{name}.py": ["tests/test_doctor*.py"]
        for name in ("__init__", "checks", "facts", "hosts", "linux", "macos", "probes", "report", "vbox")
    },
}
CORE = list(TESTS)

FLIP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In,
    ast.Is: ast.IsNot, ast.IsNot: ast.Is,
}  # fmt: skip


@dataclass
class Mutant:
    module: str  # path relative to the repository root
    index: int  # position in the module's deterministic walk (the same source gives the same order)
    id: str  # stable: module, function, operator and code — no line numbers
    line: int
    op: str
    before: str
    after: str
    apply: Callable[[], None] = field(repr=False, compare=False, default=lambda: None)


def _short(node: ast.AST, limit: int = 60) -> str:
    text = " ".join(ast.unparse(node).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_docstring(body: list[ast.stmt], i: int) -> bool:
    s = body[i]
    return i == 0 and isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str)


def _new_constant(value: object) -> object | None:
    """The changed constant, or None when the constant is not mutated (None, bytes, Ellipsis)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return f"XX{value}XX"
    return None


def _negated(test: ast.expr) -> ast.expr:
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return test.operand
    return ast.UnaryOp(op=ast.Not(), operand=test)


def enumerate_mutants(tree: ast.Module, module: str) -> list[Mutant]:
    """Every mutant of ``tree``, in a fixed order; each carries a closure that applies it to ``tree``."""
    found: list[Mutant] = []

    def add(node: ast.AST, scope: str, op: str, before: str, after: str, apply: Callable[[], None]) -> None:
        found.append(Mutant(module, len(found), f"{scope}|{op}|{before} => {after}", getattr(node, "lineno", 0), op,
                            before, after, apply))  # fmt: skip

    def skip_child(parent: ast.AST, name: str) -> bool:
        # Annotations are strings under `from __future__ import annotations`: never evaluated.
        return name in ("annotation", "returns") or isinstance(parent, ast.JoinedStr | ast.Import | ast.ImportFrom)

    def visit(node: ast.AST, scope: str) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            scope = f"{scope}.{node.name}" if scope else node.name
        if isinstance(node, ast.If) and _short(node.test) == "TYPE_CHECKING":
            return
        mutate(node, scope or "<module>")
        for name, value in ast.iter_fields(node):
            if skip_child(node, name):
                continue
            children = value if isinstance(value, list) else [value]
            for i, child in enumerate(children):
                if isinstance(child, ast.AST) and not (isinstance(value, list) and _is_docstring(value, i)):
                    visit(child, scope)

    def mutate(node: ast.AST, scope: str) -> None:
        if isinstance(node, ast.Compare):
            for j, cmp in enumerate(node.ops):
                new = FLIP.get(type(cmp))
                if new is None:
                    continue
                flipped = copy.deepcopy(node)
                flipped.ops[j] = new()

                def flip(node: ast.Compare = node, j: int = j, new: type[ast.cmpop] = new) -> None:
                    node.ops[j] = new()

                add(node, scope, "flip-comparison", _short(node), _short(flipped), flip)
        tests: list[tuple[ast.AST, str]] = []
        if isinstance(node, ast.If | ast.While | ast.IfExp | ast.Assert):
            tests.append((node, "test"))
        if isinstance(node, ast.comprehension):
            tests += [(node, f"ifs.{k}") for k in range(len(node.ifs))]
        for owner, where in tests:
            current = _get(owner, where)

            def negate(owner: ast.AST = owner, where: str = where) -> None:
                _set(owner, where, _negated(_get(owner, where)))

            add(current, scope, "negate-condition", _short(current), _short(_negated(copy.deepcopy(current))), negate)
        if isinstance(node, ast.Return) and node.value is not None and _short(node.value) != "None":

            def return_none(node: ast.Return = node) -> None:
                node.value = ast.Constant(None)

            add(node, scope, "return-none", _short(node), "return None", return_none)
        if isinstance(node, ast.Constant) and (new_value := _new_constant(node.value)) is not None:

            def change(node: ast.Constant = node, new_value: object = new_value) -> None:
                node.value = new_value

            add(node, scope, "change-constant", _short(node), _short(ast.Constant(new_value)), change)
        for name in ("body", "orelse", "finalbody"):
            body = getattr(node, name, None)
            if not isinstance(body, list):
                continue
            for i, stmt in enumerate(body):
                if not isinstance(stmt, ast.stmt) or _is_docstring(body, i) or isinstance(stmt, _KEEP):
                    continue

                def delete(body: list[ast.stmt] = body, i: int = i) -> None:
                    body[i] = ast.Pass()

                add(stmt, scope, "delete-statement", _short(stmt), "pass", delete)

    visit(tree, "")
    # Identical code in one function gets an occurrence number, so every id is unique.
    seen: Counter[str] = Counter()
    for m in found:
        seen[m.id] += 1
        m.id = f"{module}:{m.id}" + (f" #{seen[m.id]}" if seen[m.id] > 1 else "")
    return found


# Deleting these changes nothing worth a test run (pass) or only breaks the import (imports, defs).
_KEEP = (ast.Pass, ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Global,
         ast.Nonlocal)  # fmt: skip


def _get(owner: ast.AST, where: str) -> ast.expr:
    if where.startswith("ifs."):
        return owner.ifs[int(where[4:])]  # type: ignore[attr-defined]
    return getattr(owner, where)


def _set(owner: ast.AST, where: str, value: ast.expr) -> None:
    if where.startswith("ifs."):
        owner.ifs[int(where[4:])] = value  # type: ignore[attr-defined]
    else:
        setattr(owner, where, value)


def mutants_of(source: str, module: str) -> list[Mutant]:
    return enumerate_mutants(ast.parse(source), module)


def mutated_source(source: str, module: str, mutant_id: str) -> str:
    """The module's source with one mutant applied (re-parsed, so each mutant starts from clean code)."""
    tree = ast.parse(source)
    for m in enumerate_mutants(tree, module):
        if m.id == mutant_id:
            m.apply()
            return ast.unparse(ast.fix_missing_locations(tree)) + "\n"
    raise KeyError(f"no mutant {mutant_id!r} in {module}")


def diff(source: str, module: str, mutant_id: str) -> str:
    plain = ast.unparse(ast.parse(source)).splitlines()
    mutated = mutated_source(source, module, mutant_id).splitlines()
    return "\n".join(difflib.unified_diff(plain, mutated, module, f"{module} (mutant)", n=1, lineterm=""))


def load_equivalents(path: Path = EQUIVALENTS) -> dict[str, str]:
    """id → reason. A listed mutant without a reason is an error: the list is a record of why."""
    if not path.exists():
        return {}
    entries = yaml.safe_load(path.read_text()) or []
    out: dict[str, str] = {}
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict) or not str(entry.get("id", "")).strip() or not str(entry.get("reason", "")).strip():
            raise ValueError(f"{path.name}: entry {k + 1} needs both `id` and `reason`")
        out[entry["id"]] = entry["reason"]
    return out


def stale_equivalents(mutants: list[Mutant], module: str, equivalents: dict[str, str]) -> list[str]:
    """Listed equivalents of ``module`` that no longer exist (the code changed): review and drop them."""
    ids = {m.id for m in mutants}
    return [k for k in equivalents if k.startswith(module + ":") and k not in ids]


def sample(mutants: list[Mutant], n: int | None, seed: int) -> list[Mutant]:
    if n is None or n >= len(mutants):
        return list(mutants)
    picked = random.Random(seed).sample(mutants, n)
    return sorted(picked, key=lambda m: m.index)


def test_files(module: str, root: Path = ROOT) -> list[str]:
    files = sorted({str(p.relative_to(root)) for g in TESTS.get(module, []) for p in root.glob(g)})
    return [f for f in files if f.endswith(".py")]


def _default_sigint() -> None:
    # A job started in the background (`cmd &`) inherits SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: the runner's Ctrl-C test would fail without any mutant.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class Outcome:
    mutant: Mutant
    status: str  # killed | survived | timeout | equivalent
    seconds: float


class Sandbox:
    """A private copy of the tree: the mutant is written there, never into the working tree."""

    def __init__(self, root: Path = ROOT) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="labctl-mutation-"))
        ignore = shutil.ignore_patterns(".git", "__pycache__", "*.pyc", ".pytest_cache", ".ruff_cache", "mutants")
        shutil.copytree(root, self.dir / "tree", ignore=ignore, symlinks=True)
        self.root = self.dir / "tree"

    def pytest(self, tests: list[str], timeout: float) -> tuple[str, float]:
        status, seconds, _ = self.pytest_output(tests, timeout)
        return status, seconds

    def pytest_output(self, tests: list[str], timeout: float) -> tuple[str, float, str]:
        env = dict(os.environ, PYTHONPATH=str(self.root), PYTHONDONTWRITEBYTECODE="1")
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", FAST, *tests]
        started = time.monotonic()
        try:
            proc = subprocess.run(
                cmd, cwd=self.root, env=env, capture_output=True, timeout=timeout, check=False, preexec_fn=_default_sigint
            )
        except subprocess.TimeoutExpired:
            return "timeout", time.monotonic() - started, ""
        output = proc.stdout.decode(errors="replace")[-3000:]
        # 0: every test passed (survived); 5: nothing collected (a broken map, not a kill).
        if proc.returncode == 5:
            raise RuntimeError(f"no tests collected from {tests}")
        return ("survived" if proc.returncode == 0 else "killed"), time.monotonic() - started, output

    def run(self, module: str, source: str, mutant: Mutant, tests: list[str], timeout: float) -> Outcome:
        target = self.root / module
        target.write_text(mutated_source(source, module, mutant.id))
        try:
            status, seconds = self.pytest(tests, timeout)
        finally:
            target.write_text(source)
        return Outcome(mutant, status, seconds)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def score(outcomes: list[Outcome]) -> tuple[int, int, float]:
    """(killed, counted, percent): timeouts count as killed, equivalents are left out."""
    counted = [o for o in outcomes if o.status != "equivalent"]
    killed = sum(1 for o in counted if o.status in ("killed", "timeout"))
    return killed, len(counted), (100.0 * killed / len(counted) if counted else 100.0)


def run_module(
    box: Sandbox,
    module: str,
    n: int | None,
    seed: int,
    equivalents: dict[str, str],
    tests: list[str] | None,
    match: str | None = None,
) -> Iterator[Outcome]:
    source = (box.root / module).read_text()
    tests = tests or test_files(module, box.root)
    if not tests:
        raise SystemExit(f"{module}: no test files mapped (add it to TESTS in {Path(__file__).name} or pass --tests)")
    for _ in range(2):  # twice: a timing test may fail once on a loaded machine
        baseline, took, output = box.pytest_output(tests, timeout=600)
        if baseline == "survived":
            break
    else:
        raise SystemExit(f"{module}: the tests fail without any mutant ({' '.join(tests)}): fix them first\n{output}")
    timeout = max(20.0, 4 * took)  # generous: a loaded machine must not turn a slow run into a "kill"
    every = mutants_of(source, module)
    for stale in stale_equivalents(every, module, equivalents):
        print(f"warning: {EQUIVALENTS.name} lists {stale!r}, which is no longer a mutant of {module}", flush=True)
    candidates = [m for m in every if match is None or match in m.id]
    for m in sample(candidates, n, seed):
        if m.id in equivalents:
            yield Outcome(m, "equivalent", 0.0)
            continue
        yield box.run(module, source, m, tests, timeout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("modules", nargs="*", default=CORE, help="modules to mutate (default: the core modules)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--sample", type=int, default=None, help="mutants per module (default: all)")
    p.add_argument("--tests", nargs="+", help="test files to run instead of the module's mapped ones")
    p.add_argument("--match", metavar="TEXT", help="only the mutants whose id contains TEXT (before sampling)")
    p.add_argument("--list", action="store_true", help="print every mutant id and exit")
    p.add_argument("--show", metavar="ID", help="print one mutant's diff and exit")
    p.add_argument("--json", type=Path, help="also write the outcomes to this file")
    args = p.parse_args(argv)

    if args.list or args.show:
        for module in args.modules:
            source = (ROOT / module).read_text()
            if args.show:
                if args.show.startswith(module + ":"):
                    print(diff(source, module, args.show))
                continue
            for m in mutants_of(source, module):
                if args.match and args.match not in m.id:
                    continue
                print(f"{m.line:5}  {m.id}")
        return 0

    equivalents = load_equivalents()
    box = Sandbox()
    results: dict[str, list[Outcome]] = {}
    try:
        for module in args.modules:
            results[module] = []
            print(f"== {module}", flush=True)
            for o in run_module(box, module, args.sample, args.seed, equivalents, args.tests, args.match):
                results[module].append(o)
                mark = {"killed": ".", "timeout": "T", "survived": "S", "equivalent": "e"}[o.status]
                print(mark, end="", flush=True)
            print()
    finally:
        box.close()

    print(f"\nseed {args.seed}, sample {args.sample or 'all'} per module")
    print(f"{'module':<24} {'mutants':>7} {'killed':>6} {'survived':>8} {'equiv':>5} {'score':>6}")
    for module, outs in results.items():
        killed, counted, pct = score(outs)
        eq = sum(1 for o in outs if o.status == "equivalent")
        print(f"{module:<24} {len(outs):>7} {killed:>6} {counted - killed:>8} {eq:>5} {pct:>5.0f}%")
    survivors = [o for outs in results.values() for o in outs if o.status == "survived"]
    if survivors:
        print("\nsurvivors (kill them with a test, or list them with a reason in mutation_equivalents.yaml):")
        for o in survivors:
            print(f"  line {o.mutant.line:<4} {o.mutant.id}")
    if args.json:
        rows = [
            {"module": o.mutant.module, "id": o.mutant.id, "line": o.mutant.line, "status": o.status,
             "seconds": round(o.seconds, 2)}
            for outs in results.values() for o in outs
        ]  # fmt: skip
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
