"""The order between playbooks: which ones must finish before another starts (``after:``). Pure.

A playbook file may say ``after: [node-prep, nfs-server]``: it starts once those playbooks have
finished. Without ``after:`` it follows the playbook just before it in file order, so a playbook
nobody touched keeps running exactly where it always did. ``after: []`` says it needs no other
playbook at all.

Two rules make overlapping safe without any other declaration:

- on each host, steps keep file order: a step waits for every earlier step that targets one of its
  hosts. So no host ever runs two steps at once, and a host's own history is the one the handout
  reads (``20-nfs-server`` on the NFS VM still comes after node prep's /etc/hosts step there);
- ``after:`` may only name playbooks that come earlier in file order, so the file order is always
  one valid order: the handout, ``--dry-run`` and ``--serial`` keep it.

A playbook whose steps are all left out for this lab (``when:`` false, e.g. the warm cache without
``--cache``) passes its own dependencies on: whoever is after it waits for what it was after.
"""

from __future__ import annotations

import graphlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from labctl.errors import PlaybookError

if TYPE_CHECKING:  # plan.py imports this module: no import back at run time
    from labctl.plan import Plan, PlannedStep, Playbook


@dataclass(frozen=True)
class PlaybookOrder:
    """One playbook's place in the graph: what it waits for, as declared or by default."""

    name: str
    after: tuple[str, ...]  # playbook names; the default is the playbook before it in file order
    declared: bool  # False: no `after:` in the file, so `after` is the previous playbook


def playbook_orders(books: Sequence[Playbook], *, subset: bool = False) -> tuple[PlaybookOrder, ...]:
    """Every playbook's ``after`` (the default filled in), checked: names exist, no cycle, and
    each names only earlier playbooks. A problem is one PlaybookError line naming the file.

    ``subset``: ``books`` is a selection from the folder (load_playbooks checked the whole folder),
    so a name outside it is a playbook that is simply not part of this plan."""
    names = [b.name for b in books]
    position = {name: i for i, name in enumerate(names)}
    orders: list[PlaybookOrder] = []
    for i, book in enumerate(books):
        declared = book.spec.after
        after = tuple(dict.fromkeys(declared)) if declared is not None else tuple(names[i - 1 : i])
        if subset:
            after = tuple(n for n in after if n in position)
        for name in after:
            if name == book.name:
                raise PlaybookError(f"{book.path}: after: names the playbook itself ({name!r}) — remove it")
            if name not in position:
                hint = f" (without its number: {m})" if (m := _without_number(name)) in position else ""
                raise PlaybookError(
                    f"{book.path}: after: {name!r} is not a playbook{hint} — name one of {', '.join(names)}"
                )
        orders.append(PlaybookOrder(book.name, after, declared is not None))
    _refuse_cycles(books, orders)
    for book, order in zip(books, orders, strict=True):
        later = [n for n in order.after if position[n] > position[book.name]]
        if later:
            raise PlaybookError(
                f"{book.path}: after: {later[0]!r} comes later in file order — a playbook can only follow an "
                "earlier one (the handout reads them in file order): renumber the files"
            )
    return tuple(orders)


def _without_number(name: str) -> str:
    head, _, tail = name.partition("-")
    return tail if head.isdigit() else name


def _refuse_cycles(books: Sequence[Playbook], orders: Sequence[PlaybookOrder]) -> None:
    sorter = graphlib.TopologicalSorter({o.name: o.after for o in orders})
    try:
        sorter.prepare()
    except graphlib.CycleError as err:
        cycle = list(err.args[1])  # [a, b, ..., a]: each waits for the one before it (Python docs, graphlib.CycleError)
        path = next(b.path for b in books if b.name == cycle[0])
        raise PlaybookError(
            f"{path}: after: playbooks wait for each other in a circle ({' → '.join(cycle)}) — remove one of these after: entries"
        ) from None


def _orders_of(plan: Plan) -> tuple[PlaybookOrder, ...]:
    """The plan's graph; a plan built by hand (no graph) runs its playbooks one after another."""
    if plan.playbooks:
        return plan.playbooks
    names = list(dict.fromkeys(s.playbook for s in plan.steps if s.kind == "remote"))
    return tuple(PlaybookOrder(n, tuple(names[i - 1 : i]), False) for i, n in enumerate(names))


def waits_for(plan: Plan) -> dict[str, tuple[str, ...]]:
    """For each playbook with steps in ``plan`` (in plan order): the playbooks in the plan it waits
    for, passing through those that have no steps here (their own dependencies count instead). A
    playbook the graph does not know (a step added by hand) follows the one before it in the plan."""
    orders = {o.name: o for o in _orders_of(plan)}
    present = list(dict.fromkeys(s.playbook for s in plan.steps if s.kind == "remote"))
    resolved: dict[str, tuple[str, ...]] = {}

    def through(name: str) -> tuple[str, ...]:
        # What waiting for `name` means in this plan: itself, or (absent) what it waits for.
        return (name,) if name in present else needs(name)

    def needs(name: str) -> tuple[str, ...]:
        if name not in resolved:
            found = [p for a in orders[name].after for p in through(a)] if name in orders else []
            resolved[name] = tuple(dict.fromkeys(found))
        return resolved[name]

    out: dict[str, tuple[str, ...]] = {}
    for k, name in enumerate(present):
        out[name] = needs(name) if name in orders else tuple(present[k - 1 : k])
    return out


def step_dependencies(plan: Plan) -> list[frozenset[int]]:
    """For each step (by index in ``plan.steps``), the earlier steps it must wait for:

    - the step before it in its own playbook (a playbook reads top to bottom);
    - for a playbook's first step, every step of the playbooks it waits for;
    - the last earlier step on each of its hosts (one step at a time per host, in file order);
    - a provider step is a barrier: it waits for everything before it, everything after waits for it.
    Every dependency points to an earlier index, so file order is always a valid order."""
    after = waits_for(plan)
    steps_of: dict[str, list[int]] = {}
    last_on_host: dict[str, int] = {}
    deps: list[frozenset[int]] = []
    barrier: int | None = None
    for i, step in enumerate(plan.steps):
        need: set[int] = set()
        if step.kind == "provider":
            need.update(range(i))
            barrier = i
            deps.append(frozenset(need))
            continue
        if barrier is not None:
            need.add(barrier)
        own = steps_of.setdefault(step.playbook, [])
        if own:
            need.add(own[-1])
        else:
            for other in after.get(step.playbook, ()):
                need.update(steps_of.get(other, ()))
        for host in step.hosts:
            if host in last_on_host:
                need.add(last_on_host[host])
            last_on_host[host] = i
        own.append(i)
        deps.append(frozenset(need))
    return deps


def _reach(deps: list[frozenset[int]]) -> list[set[int]]:
    """For each step, every step it waits for, directly or not."""
    reach: list[set[int]] = []
    for need in deps:  # dependencies point backwards: theirs are known already
        reach.append(set(need).union(*(reach[d] for d in need)))
    return reach


def beside(plan: Plan) -> dict[str, list[str]]:
    """For each playbook, those whose steps may run at the same time as some of its own: a pair of
    steps neither of which waits for the other (the per-host rule included, so two playbooks on the
    same single host are never beside each other)."""
    deps = step_dependencies(plan)
    reach = _reach(deps)
    names = list(waits_for(plan))
    out: dict[str, set[str]] = {n: set() for n in names}
    remote = [i for i, s in enumerate(plan.steps) if s.kind == "remote"]
    for i in remote:
        for j in remote:
            a, b = plan.steps[i].playbook, plan.steps[j].playbook
            if j < i and a != b and j not in reach[i]:
                out[a].add(b)
                out[b].add(a)
    return {n: [o for o in names if o in out[n]] for n in names}


def critical_path(plan: Plan, weight: Callable[[PlannedStep], float] = lambda _: 1.0) -> tuple[float, list[str]]:
    """The longest chain of steps that must run one after the other, by ``weight`` per step (steps
    by default; a benchmark passes each step's measured or modelled seconds): (its total, step ids).
    No overlap can make a run shorter than this chain."""
    best: list[tuple[float, list[int]]] = []
    for i, need in enumerate(step_dependencies(plan)):
        prev = max((best[d] for d in need), key=lambda t: t[0], default=(0.0, []))
        best.append((prev[0] + weight(plan.steps[i]), [*prev[1], i]))
    total, chain = max(best, key=lambda t: t[0], default=(0.0, []))
    return total, [plan.steps[i].id for i in chain]


def critical_order(plan: Plan) -> list[str]:
    """The playbooks along the critical path counted in steps (what `labctl plan` shows)."""
    _, chain = critical_path(plan)
    by_id = {s.id: s for s in plan.steps}
    return list(dict.fromkeys(by_id[i].playbook for i in chain if by_id[i].kind == "remote"))


def graph_lines(plan: Plan) -> list[str]:
    """The dry run's picture of the graph (docs/reference/plan-output.md); empty for one playbook."""
    after = waits_for(plan)
    if len(after) < 2:
        return []
    declared = {o.name: o.declared for o in _orders_of(plan)}
    side = beside(plan)
    width = max(len(n) for n in after)
    out = [
        "Playbooks, in file order. Each starts when those it is after have finished (default: the playbook",
        "before it, or what that one waits for when it has no steps here); on each host, steps keep this order.",
    ]
    for name, needs in after.items():
        line = f"  {name:<{width}}  " + (f"after {', '.join(needs)}" if needs else "first (needs only its hosts up)")
        if needs and not declared.get(name, False):
            line += " (default)"
        if side[name]:
            line += f"; beside {', '.join(side[name])}"
        out.append(line)
    out.append(f"Critical order: {' → '.join(critical_order(plan))}")
    return [*out, ""]


def graph_json(plan: Plan) -> dict[str, object]:
    after = waits_for(plan)
    side = beside(plan)
    return {
        "playbooks": [{"name": n, "after": list(a), "beside": side[n]} for n, a in after.items()],
        "critical_order": critical_order(plan),
    }


def uses_reach(plan_steps: Iterable[PlannedStep], deps: list[frozenset[int]]) -> tuple[str, str]:
    """The first step that uses a fact captured by a step it does not wait for (directly or not):
    (its playbook, a message); ("", "") when every fact comes from a step that surely finished first."""
    steps = list(plan_steps)
    reach = _reach(deps)
    for i, step in enumerate(steps):
        for fact in step.uses:
            sources = [j for j, s in enumerate(steps) if s.capture == fact]
            if sources and not any(j in reach[i] for j in sources):
                src = steps[sources[0]]
                return step.playbook, (
                    f"step {step.id} uses fact {fact!r} from {src.id}, but playbook {step.playbook!r} does not wait for "
                    f"{src.playbook!r} — add it to after:"
                )
    return "", ""
