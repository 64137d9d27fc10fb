"""lab.yaml problems as one line each: pydantic's errors turned into field, bad value and fix
(``explain``), the cross-field checks still run when fields failed (``cross_problems_despite``:
issue #15 item 5, every problem in one run), and the whole answer kept to about a screen.
Split from labctl/spec.py, which keeps the models and the checks themselves."""

from __future__ import annotations

import copy
import difflib
import re
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from labctl import spec_checks as checks
from labctl.spec_rules import cross_problems

if TYPE_CHECKING:  # spec imports this module when a lab.yaml fails; the class comes in as an argument
    from labctl.spec import LabSpec

MAX_PROBLEMS = 12  # about a screen: past this (or ~1,200 characters), the rest are counted, not printed


def cut(line: str, limit: int = 240) -> str:
    return line if len(line) <= limit else line[: limit - 1] + "…"


def screenful(problems: list[str], budget: int = 1200) -> list[str]:
    shown: list[str] = []
    for p in problems:
        if len(shown) >= MAX_PROBLEMS or sum(map(len, shown)) + len(p) > budget:
            return [*shown, f"... and {len(problems) - len(shown)} more problems — fix these first, then run validate again"]
        shown.append(p)
    return shown


def cross_problems_despite(model: type[LabSpec], data: Any, err: ValidationError) -> list[str]:
    """The cross-field findings that still hold once the fields that failed are set aside. ``model``: the
    class that failed (LabSpec), passed in by its own loader — this module does not import it."""
    errors = [(tuple(e["loc"]), e["type"]) for e in err.errors(include_url=False) if e["loc"]]
    field_errors = [loc for loc, kind in errors if kind != "extra_forbidden"]
    if not errors or not isinstance(data, dict):
        return []
    repaired = copy.deepcopy(data)
    involved: set[str] = set()
    for loc, kind in errors:
        parent: Any = repaired
        for part in loc[:-1]:
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                parent = None
                break
        if isinstance(parent, dict) and loc[-1] in parent:
            del parent[loc[-1]]
        if kind == "extra_forbidden":
            continue  # removing an unknown key changes nothing else
        where = _loc(loc)
        involved.add(where)
        if where.startswith("nodes.") and len(loc) >= 3:
            involved.add(_loc(loc[:-1]))
        if isinstance(parent, dict) and loc[-1] in _NODE_PLACEHOLDERS:
            parent[loc[-1]] = _NODE_PLACEHOLDERS[str(loc[-1])]
    try:
        spec = model.model_validate(repaired, context={"skip_cross": True})
    except (ValidationError, ValueError, TypeError):
        return []
    words = {str(loc[-1]) for loc in field_errors if isinstance(loc[-1], str)}
    if any(str(loc[0]) == "network" for loc in field_errors):
        words |= {"subnet", "metallb_pool", "overlaps"}
    if any(loc[:2] == ("provider", "type") for loc in field_errors):
        words |= {"provider.type", "VirtualBox"}
    out = []
    for problem in cross_problems(spec):
        mentions_node = any(re.search(re.escape(p) + r"(?![\w\[])", problem) for p in involved)
        if not mentions_node and not any(w in problem for w in words):
            out.append(problem)
    return out


# A required node field that failed is replaced by a harmless stand-in so the other checks can run;
# findings that mention that node are dropped (the stand-in is not what the user wrote).
_NODE_PLACEHOLDERS: dict[str, Any] = {"cpus": 1, "memory_mib": 512, "name": "placeholder", "ip": "192.0.2.1"}



def _field_names(model: type[BaseModel]) -> list[str]:
    return list(model.model_fields)


def _model_at(loc: tuple[int | str, ...], model: type[BaseModel]) -> type[BaseModel] | None:
    """The model class that owns the key at ``loc`` under ``model`` (for did-you-mean suggestions)."""
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        nxt = None
        for c in candidates:
            for inner in [c, *getattr(c, "__args__", ())]:
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    nxt = inner
        if nxt is None:
            return None
        model = nxt
    return model


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _example_int(loc: tuple[int | str, ...]) -> int:
    """A plausible value for an integer field, for error messages."""
    examples = {"cpus": 4, "memory_mib": 8192, "disk_gib": 60, "port": 8080, "boot_timeout": 900}
    return examples.get(str(loc[-1]) if loc else "", 1)


def _typo_targets(errors: list[Any], model: type[BaseModel]) -> set[tuple[int | str, ...]]:
    """Locations of required keys that an unknown key next to them was probably meant to be
    (``memory: 8192`` for ``memory_mib``); reporting both would say the same thing twice."""
    targets: set[tuple[int | str, ...]] = set()
    for e in errors:
        if e["type"] != "extra_forbidden":
            continue
        loc = tuple(e["loc"])
        owner = _model_at(loc, model)
        close = difflib.get_close_matches(str(loc[-1]), _field_names(owner), n=1) if owner else []
        if close:
            targets.add((*loc[:-1], close[0]))
    return targets


def explain(err: ValidationError, model: type[BaseModel]) -> list[str]:
    """pydantic's errors for ``model`` (LabSpec) as one line each: field, bad value, fix."""
    lines: list[str] = []
    errors = err.errors(include_url=False)
    typo_targets = _typo_targets(errors, model)
    union_locs: set[tuple[int | str, ...]] = set()
    for e in errors:
        if e["type"] == "missing" and tuple(e["loc"]) in typo_targets:
            continue
        loc = tuple(e["loc"])
        # A union (`Name | Literal[""]`) reports once per branch, under tags like "literal['']":
        # say it once, under the field's own name.
        fields = tuple(p for p in loc[:-1] if isinstance(p, int) or "[" not in p) + loc[-1:]
        if fields and isinstance(fields[-1], str) and "[" in fields[-1] and e["type"] != "extra_forbidden":
            fields = fields[:-1]
        if fields != loc:
            if fields in union_locs:
                continue
            union_locs.add(fields)
            loc = fields
        kind = e["type"]
        msg = e["msg"].removeprefix("Value error, ")
        where = _loc(loc)
        if kind == "extra_forbidden":
            key = str(loc[-1])
            owner = _model_at(loc, model)
            known = _field_names(owner) if owner else []
            close = difflib.get_close_matches(key, known, n=1)
            hint = (
                f"did you mean {close[0]!r}?"
                if close
                else f"known keys here: {', '.join(known)}"
                if known
                else "remove it"
            )
            lines.append(f"{where}: unknown key — {hint}")
        elif kind == "value_error" and not loc:
            lines.extend(msg.split("\n"))  # cross-field checks already name their field
        elif kind == "literal_error":
            lines.append(f"{where}: {checks.show(e['input'])} is not allowed — use {e['ctx']['expected']}")
        elif kind in ("int_parsing", "int_type", "int_from_float"):
            lines.append(f"{where}: {checks.show(e['input'])} is not a whole number — write digits, e.g. {_example_int(loc)}")
        elif kind in ("greater_than_equal", "greater_than"):
            bound = e["ctx"].get("ge", e["ctx"].get("gt"))
            lines.append(f"{where}: {checks.show(e['input'])} is too small — use {bound} or more")
        elif kind in ("less_than_equal", "less_than"):
            bound = e["ctx"].get("le", e["ctx"].get("lt"))
            lines.append(f"{where}: {checks.show(e['input'])} is too large — use {bound} or less")
        elif kind in ("bool_parsing", "bool_type"):
            lines.append(f"{where}: {checks.show(e['input'])} is not true or false — write true or false")
        elif kind in ("list_type", "tuple_type"):
            lines.append(f"{where}: expected a list — write it as [a, b] or as '- item' lines")
        elif kind in ("model_type", "dict_type", "model_attributes_type"):
            lines.append(f"{where}: expected a mapping of keys — write 'key: value' lines indented under it")
        elif kind == "string_type":
            lines.append(f"{where}: {checks.show(e['input'])} is not text — write it in quotes")
        elif kind == "too_long":
            lines.append(f"{where}: has {e['ctx']['actual_length']} items — at most {e['ctx']['max_length']} are allowed")
        elif kind == "string_pattern_mismatch":
            lines.append(f"{where}: {checks.show(e['input'])} does not have the expected form — see `labctl init` for an example")
        elif kind == "ip_v4_address":
            lines.append(f"{where}: {checks.show(e['input'])} is not an IPv4 address — write it like 192.168.33.100")
        elif kind == "ip_v4_network":
            lines.append(
                f"{where}: {checks.show(e['input'])} is not an IPv4 network — write it like 192.168.33.0/24 "
                "(the address part must end in zeros for its prefix)"
            )
        elif kind == "missing":
            lines.append(f"{where}: required — add it (see `labctl init` for an example)")
        else:
            lines.append(f"{where}: {msg}")
    return lines
