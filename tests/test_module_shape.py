"""The package's shape (issue #13 item 3): no import cycle among labctl's modules, no module much over
500 lines.

An import cycle is counted when module A imports B, directly or through other labctl modules, and B
imports A — at the top of the file or inside a function: a function-level import runs too, only
later, and a cycle through one still means neither module can be read, tested or moved without the
other. Importing ``labctl.x.y`` also runs ``labctl/x/__init__.py``, so it counts as importing
``labctl.x`` as well.

Imports under ``if TYPE_CHECKING:`` are not counted: they never run (every labctl module has
``from __future__ import annotations``, so annotations stay strings), and they are how a module that
the spec calls while it validates (capacity, arch, spec_rules, ...) names ``LabSpec`` in its
signatures. The runtime dependency then points one way: spec imports the checks, the checks only
mention spec's class names to type checkers.

Run it as a script to print the graph's cycles and the longest modules:
``python3 tests/test_module_shape.py``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "labctl"
MAX_LINES = 560  # "much over 500": a module past this is split by what its parts do


def module_files(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name → file, for every .py file of the package (a package is its __init__)."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``) bodies."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            for stmt in node.body:
                out.update(id(n) for n in ast.walk(stmt))
    return out


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """Every dotted name an import statement may load: the module, and each imported name as a
    possible submodule (``from labctl import lifecycle``)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
        return
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join([*base, *([node.module] if node.module else [])])
    else:
        source = node.module or ""
    yield source
    for alias in node.names:
        yield f"{source}.{alias.name}"


def import_graph(root: Path, package: str = PACKAGE) -> dict[str, dict[str, list[int]]]:
    """module → imported labctl module → line numbers, TYPE_CHECKING-only imports left out."""
    files = module_files(root, package)
    graph: dict[str, dict[str, list[int]]] = {m: {} for m in files}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        skip = _type_checking_only(tree)
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom) or id(node) in skip:
                continue
            for target in _targets(module, is_package, node):
                while target and target not in files:  # labctl.x.NAME → labctl.x
                    target = target.rpartition(".")[0]
                if not target:
                    continue
                # The module itself, and the packages that hold it (running labctl.x.y runs labctl.x first).
                parts = target.split(".")
                for depth in range(1, len(parts) + 1):
                    name = ".".join(parts[:depth])
                    if name == module or module.startswith(name + ".") or name not in files:
                        continue
                    lines = graph[module].setdefault(name, [])
                    if node.lineno not in lines:
                        lines.append(node.lineno)
    return graph


def cycles(graph: dict[str, dict[str, list[int]]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph) + 100))
    try:
        for v in sorted(graph):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(found)


def describe(graph: dict[str, dict[str, list[int]]], component: list[str], files: dict[str, Path], root: Path = ROOT) -> str:
    """One cycle group as its imports, each with the file and line to change."""
    members = set(component)
    lines = [f"import cycle among {', '.join(component)}:"]
    for a in component:
        for b, at in sorted(graph[a].items()):
            if b in members:
                where = ", ".join(f"{files[a].relative_to(root).as_posix()}:{n}" for n in sorted(at))
                lines.append(f"  {a} imports {b}  ({where})")
    return "\n".join(lines)


def long_modules(root: Path, package: str = PACKAGE, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    out = []
    for path in sorted((root / package).rglob("*.py")):
        count = len(path.read_text(encoding="utf-8").splitlines())
        if count > limit:
            out.append((path.relative_to(root).as_posix(), count))
    return out


# ---- the package itself ---------------------------------------------------------------------------
def test_no_import_cycle_among_labctl_modules() -> None:
    graph = import_graph(ROOT)
    files = module_files(ROOT)
    found = cycles(graph)
    assert not found, (
        "labctl modules import each other (function-level imports count; TYPE_CHECKING ones do not) — "
        "move what both need into a module below them, so dependencies point one way:\n"
        + "\n".join(describe(graph, c, files) for c in found)
    )


def test_no_labctl_module_is_much_over_500_lines() -> None:
    assert not long_modules(ROOT), (
        f"modules over {MAX_LINES} lines — split each by what its parts do: "
        + ", ".join(f"{path} ({n} lines)" for path, n in long_modules(ROOT))
    )


# ---- the checker, on packages made for it ------------------------------------------------------------
def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {"__init__.py": "", **files}.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return tmp_path


def test_the_checker_finds_a_cycle_through_a_function_level_import(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "a.py": "from pkg.b import thing\n",
            "b.py": "def thing():\n    from pkg import c\n    return c\n",
            "c.py": "import pkg.a\n",
            "d.py": "from pkg import a\n",  # depends on the cycle, is not part of it
        },
    )
    graph = import_graph(root, "pkg")
    assert graph["pkg.b"] == {"pkg.c": [2]}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]
    text = describe(graph, ["pkg.a", "pkg.b", "pkg.c"], module_files(root, "pkg"), root)
    assert "pkg.b imports pkg.c  (pkg/b.py:2)" in text


def test_the_checker_leaves_type_checking_imports_out(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "models.py": "def load():\n    from pkg.rules import check\n    return check\n",
            "rules.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.models import Spec\n",
        },
    )
    assert cycles(import_graph(root, "pkg")) == []


def test_the_checker_counts_a_subpackage_init_and_relative_imports(tmp_path: Path) -> None:
    root = _package(
        tmp_path,
        {
            "plan.py": "def build():\n    from pkg.providers.vagrant import up\n",
            "providers/__init__.py": "from ..plan import build\n",
            "providers/vagrant.py": "from . import helpers\n",
            "providers/helpers.py": "",
        },
    )
    graph = import_graph(root, "pkg")
    # importing pkg.providers.vagrant runs pkg/providers/__init__.py, which imports pkg.plan back
    assert set(graph["pkg.plan"]) == {"pkg.providers", "pkg.providers.vagrant"}
    assert graph["pkg.providers.vagrant"] == {"pkg.providers.helpers": [1]}
    assert cycles(graph) == [["pkg.plan", "pkg.providers"]]


def test_the_checker_flags_a_long_module(tmp_path: Path) -> None:
    root = _package(tmp_path, {"big.py": "x = 1\n" * (MAX_LINES + 1), "small.py": "x = 1\n" * MAX_LINES})
    assert long_modules(root, "pkg") == [("pkg/big.py", MAX_LINES + 1)]


if __name__ == "__main__":
    g = import_graph(ROOT)
    for component in cycles(g):
        print(describe(g, component, module_files(ROOT)))
    for path, n in sorted(long_modules(ROOT, limit=400), key=lambda x: -x[1]):
        print(f"{n:5d}  {path}")
