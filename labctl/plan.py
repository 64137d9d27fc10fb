"""Playbooks → Plan. Pure: facts in, commands out; nothing here touches a host or the network.

A playbook is a YAML file in ``ansible-free-playbooks/`` (format: that folder's README). Each step
names the hosts it targets by role, a ``check`` that exits 0 when the work is already done, the
``run`` script, and how to run it (sudo, timeout, retries). Both scripts are Jinja2 templates over
the lab spec. ``build_plan`` renders every step for every host it targets; ``--dry-run``, the
handout and the runner all read the same ``Plan`` object, so what is shown is what runs.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from labctl.context import base_context, nodes_for
from labctl.errors import PlaybookError
from labctl.plan_graph import PlaybookOrder, graph_json, graph_lines, playbook_orders, step_dependencies, uses_reach
from labctl.spec import LabSpec
from labctl.steps import HostCommands, PlannedStep

ROLES = ("all", "k8s", "control_plane", "workers", "nfs", "gpu")
FACT_NAME = re.compile(r"^[a-z][a-z0-9_]*$")



class StepSpec(BaseModel):
    """One step as written in a playbook file (before rendering)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    purpose: str = ""
    hosts: str = "all"
    when: str = Field(default="", description="Jinja2 expression; false drops the step from the plan")
    node_when: str = Field(
        default="", description="Jinja2 expression per targeted node (as `node`); false leaves that node out"
    )
    check: str = ""
    done_reason: str = "already done"
    run: str
    sudo: bool = True
    timeout: int | str = Field(
        default=300, description="seconds (1–7200), or a Jinja2 expression for waits that scale with the lab (≤ 86400)"
    )
    retries: int = Field(default=0, ge=0, le=10)
    network: bool | str = Field(
        default=False,
        description="needs the internet (skipped with offline: true); or a Jinja2 expression saying when it does",
    )
    capture: str = Field(default="", description="store the run's stdout as this fact")
    capture_check: bool = Field(default=False, description="also capture when skipped: the check prints the fact")
    secret: bool = Field(default=False, description="the captured fact is a secret: never logged or shown")
    uses: tuple[str, ...] = ()
    upload: tuple[str, ...] = Field(default=(), description="artefacts (labctl.artefacts) copied to the host first")
    reboot: bool = Field(
        default=False, description="after a successful run, reboot the host, wait for it, and run the check again"
    )
    on_interrupt: str = Field(
        default="",
        description="script run (bounded, in parallel) on each host where this step's run started, when the run is "
        "interrupted by Ctrl-C or SIGTERM: stops what the run left running on purpose (a detached job)",
    )

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: str) -> str:
        if value not in ROLES:
            raise ValueError(f"{value!r} is not a role — use one of {', '.join(ROLES)}")
        return value

    @field_validator("capture")
    @classmethod
    def _capture(cls, value: str) -> str:
        if value and not FACT_NAME.match(value):
            raise ValueError(f"{value!r} is not a fact name — use lower_snake_case")
        return value


class PlaybookSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str
    purpose: str = ""
    # Playbook names (file stems without the number) that must finish first; None = the one before
    # it in file order, [] = none (labctl.plan_graph: rules, checks, scheduling).
    after: tuple[str, ...] | None = None
    steps: tuple[StepSpec, ...]


@dataclass(frozen=True)
class Playbook:
    name: str  # file stem without the order prefix: "node-prep"
    path: Path
    spec: PlaybookSpec


@dataclass(frozen=True)
class Plan:
    lab: str
    provider: str
    hosts: tuple[dict[str, Any], ...]
    steps: tuple[PlannedStep, ...] = field(default_factory=tuple)
    images: dict[str, Any] = field(default_factory=dict)  # labctl.images.ImagePlan.to_dict(): the background pull
    playbooks: tuple[PlaybookOrder, ...] = ()  # every loaded playbook's `after:` (labctl.plan_graph)

    def step(self, step_id: str) -> PlannedStep:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)

    def to_json(self) -> str:
        return json.dumps({"format": "labctl-plan/v1", **asdict(self), "graph": graph_json(self)}, indent=2)

    def to_text(self) -> str:
        """The dry-run contract (docs/reference/plan-output.md): one header per step, then per host its check
        and script, hosts with identical commands grouped on one line."""
        out = [f"Plan for lab {self.lab!r} (provider {self.provider}): {len(self.steps)} steps", "", *graph_lines(self)]
        for n, s in enumerate(self.steps, 1):
            out.append(f"==> Step {n}/{len(self.steps)}: {s.id} — {s.title}")
            if s.skip_reason:
                out.append(f"    skipped: {s.skip_reason}")
            extras = []
            if s.kind == "remote":
                extras.append("sudo" if s.sudo else "as login user")
            extras.append(f"timeout {s.timeout}s")
            if s.retries:
                extras.append(f"retries {s.retries}")
            if s.network:
                extras.append("needs internet")
            if s.capture:
                extras.append(f"captures {s.capture}" + (" (secret)" if s.secret else ""))
            if s.upload:
                extras.append("uploads " + ", ".join(s.upload))
            if s.reboot:
                extras.append("reboots the host after its run, then checks again")
            if any(c.on_interrupt for c in s.commands):
                extras.append("on Ctrl-C: runs its on_interrupt where it ran")
            out.append(f"    [{'; '.join(extras)}]")
            for hosts, cmd in _group(s.commands):
                label = ", ".join(hosts)
                if cmd.check:
                    out.append(f"    {label}: check (skip if it succeeds):")
                    out.extend("        " + line for line in cmd.check.rstrip().splitlines())
                out.append(f"    {label}: run:")
                out.extend("        " + line for line in cmd.run.rstrip().splitlines())
                if cmd.on_interrupt:
                    out.append(f"    {label}: on interrupt (Ctrl-C or SIGTERM, where the run started):")
                    out.extend("        " + line for line in cmd.on_interrupt.rstrip().splitlines())
            out.append("")
        if self.images:
            from labctl.images import images_text

            out.append(images_text(self.images))
        return "\n".join(out).rstrip() + "\n"


def _group(commands: Iterable[HostCommands]) -> list[tuple[list[str], HostCommands]]:
    groups: list[tuple[list[str], HostCommands]] = []
    for c in commands:
        for hosts, first in groups:
            if (first.check, first.run, first.on_interrupt) == (c.check, c.run, c.on_interrupt):
                hosts.append(c.host)
                break
        else:
            groups.append(([c.host], c))
    return groups


# ---------------------------------------------------------------------------------------------------
ORDER_PREFIX = re.compile(r"^(\d+)-(.+)$")


def load_playbooks(folder: Path | None = None) -> list[Playbook]:
    """Every ``NN-name.yaml`` in the playbooks folder, in NN order."""
    from labctl.resources import playbooks_dir

    folder = folder or playbooks_dir()
    books: list[tuple[int, Playbook]] = []
    for path in sorted(folder.glob("*.yaml")):
        m = ORDER_PREFIX.match(path.stem)
        if not m:
            raise PlaybookError(
                f"{path}: playbook file names start with an order number, e.g. 10-node-prep.yaml — rename it"
            )
        try:
            # libyaml's loader when present: the pure-Python one is most of a dry run's time.
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as err:
            raise PlaybookError(f"{path}: invalid YAML: {err}") from None
        try:
            spec = PlaybookSpec.model_validate(data)
        except ValidationError as err:
            first = err.errors(include_url=False)[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise PlaybookError(f"{path}: {loc}: {first['msg']}") from None
        books.append((int(m.group(1)), Playbook(m.group(2), path, spec)))
    names = [b.name for _, b in books]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise PlaybookError(f"{folder}: two playbooks are named {', '.join(sorted(dupes))} — give each its own name")
    ordered = [b for _, b in sorted(books, key=lambda t: t[0])]
    playbook_orders(ordered)  # unknown names, cycles and forward `after:` are refused at load time
    return ordered


def template_context(spec: LabSpec, *, cache: Any = None) -> dict[str, Any]:
    """What every playbook template may use (documented in the playbooks README): the context the
    manifests share (labctl.context) and the background image pull's lists (labctl.images).

    ``cache`` is the warm cache given to ``create --cache`` (a ``labctl.cache.CacheInfo``) or None;
    steps that only make sense with a cache say ``when: cache``."""
    from labctl.images import image_context

    return {**base_context(spec, cache=cache), **image_context(spec, cache)}


JINJA_OPTIONS: dict[str, Any] = {
    "keep_trailing_newline": True,
    "trim_blocks": True,
    "lstrip_blocks": True,
    "autoescape": False,  # shell scripts, not HTML
}


# Scripts run as root: every {{ }} in `check` and `run` is one shell word (labctl.escaping), so
# a lab.yaml value can never become shell syntax. Titles, done reasons and conditions are prose
# and expressions, rendered without it. The name is part of the precompiled templates' key.
SHELL_FINALIZE = "shell-word-v1"


def _jinja(loader: Any = None, *, shell: bool = True):  # type: ignore[no-untyped-def]
    import jinja2

    from labctl.escaping import comment, shell_finalize, shell_words

    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, loader=loader, finalize=shell_finalize if shell else None, **JINJA_OPTIONS
    )
    env.filters["words"] = shell_words
    env.filters["comment"] = comment
    return env


# ---- templates precompiled into the wheel -------------------------------------------------------
# Compiling the ~90 step templates is a large share of a dry run (~45 ms of ~300). The wheel build
# (setup.py) therefore compiles them to Python modules once, and an installed labctl loads those.
# Each module is named after a hash of the template's text, Jinja's version and the options above,
# so a playbook edited after the build, or another Jinja version, simply finds no module and the
# text is compiled as before. A source checkout has no precompiled folder and always compiles.


def has_markup(source: str) -> bool:
    return any(mark in source for mark in ("{{", "{%", "{#"))


def template_key(source: str, *, shell: bool = True) -> str:
    import jinja2

    kind = SHELL_FINALIZE if shell else "prose"
    flavour = f"jinja2 {getattr(jinja2, '__version__', '?')} {sorted(JINJA_OPTIONS.items())} {kind}"
    return hashlib.sha256(f"{flavour}\n{source}".encode()).hexdigest()


def _when_template(expression: str) -> str:
    return "{{ " + expression + " }}"


def template_sources(books: Iterable[Playbook], *, shell: bool = True) -> set[str]:
    """Every text ``build_plan`` renders as a Jinja template (plain text is never compiled): the
    scripts (``shell``: quoted as shell words), or else titles, done reasons and conditions (prose)."""
    out = set()
    for book in books:
        for st in book.spec.steps:
            if shell:
                texts = [st.check, st.run, st.on_interrupt]
            else:
                texts = [st.title, st.purpose, st.done_reason]
                texts += [_when_template(e) for e in (st.when, st.node_when, st.network, st.timeout) if isinstance(e, str) and e]
            out.update(text for text in texts if text and has_markup(text))
    return out


def precompile_templates(target: Path, books: list[Playbook] | None = None) -> int:
    """Compile every playbook template into ``target`` (one Python module each); the wheel build calls this."""
    import jinja2

    books = load_playbooks() if books is None else books
    count = 0
    for shell in (True, False):
        sources = template_sources(books, shell=shell)
        env = _jinja(jinja2.DictLoader({template_key(s, shell=shell): s for s in sources}), shell=shell)
        env.compile_templates(str(target), zip=None, ignore_errors=False)
        count += len(sources)
    return count


def _compile(env: Any, source: str, *, shell: bool = True) -> Any:
    """The precompiled template for exactly this text if the wheel carries one, else compile it now."""
    import jinja2

    if env.loader is not None:
        try:
            return env.get_template(template_key(source, shell=shell))
        except jinja2.TemplateNotFound:
            pass
    return env.from_string(source)


def _precompiled_loader() -> Any:
    import jinja2

    from labctl.resources import precompiled_templates_dir

    folder = precompiled_templates_dir()
    return jinja2.ModuleLoader(str(folder)) if folder is not None else None


def _step_timeout(value: int | str, render: Callable[[str], str], where: str = "") -> int:
    """A step's timeout: a number of seconds as written, or an expression such as the model
    download's, which grows with the number of models. Out of range is a playbook error."""
    limit = 7200 if isinstance(value, int) else 86400
    try:
        seconds = value if isinstance(value, int) else int(render(value).strip())
    except ValueError:
        raise PlaybookError(f"{where}: timeout {value!r} does not render to a whole number of seconds") from None
    if not 1 <= seconds <= limit:
        raise PlaybookError(f"{where}: timeout {value!r} is {seconds}s — it must be between 1 and {limit}")
    return seconds


def build_plan(
    spec: LabSpec,
    playbooks: list[Playbook] | None = None,
    *,
    state_dir: Path | None = None,
    include_provider: bool = True,
    cache: Any = None,
) -> Plan:
    """Render every step of every playbook for every host it targets. Pure."""
    import jinja2

    from labctl.providers import provider_step

    books = load_playbooks() if playbooks is None else playbooks
    env = _jinja(_precompiled_loader())
    prose_env = _jinja(_precompiled_loader(), shell=False)
    compiled: dict[str, jinja2.Template | _Plain] = {}
    compiled_prose: dict[str, jinja2.Template | _Plain] = {}

    def template(source: str) -> jinja2.Template | _Plain:
        # Compile each script once, not once per host, and text without Jinja markup not at all:
        # compiling templates is a large share of a dry run's time.
        if source not in compiled:
            compiled[source] = _compile(env, source) if has_markup(source) else _Plain(source)
        return compiled[source]

    def prose(source: str) -> jinja2.Template | _Plain:
        """Titles, done reasons and conditions: text and expressions, not shell (no quoting)."""
        if source not in compiled_prose:
            compiled_prose[source] = _compile(prose_env, source, shell=False) if has_markup(source) else _Plain(source)
        return compiled_prose[source]

    def holds(expression: str, context: dict[str, Any]) -> bool:
        """A playbook's condition (`when`, `node_when`, a `network` expression) in this context."""
        return _truthy(prose(_when_template(expression)).render(context))

    base = template_context(spec, cache=cache)
    steps: list[PlannedStep] = []
    if include_provider:
        steps.append(provider_step(spec, state_dir))
    known_facts: set[str] = set()
    for book in books:
        for st in book.spec.steps:
            step_id = f"{book.name}.{st.name}"
            where = f"{book.path.name}: step {st.name}"
            try:
                if st.when and not holds(st.when, base):
                    continue
                targets = nodes_for(spec, st.hosts)
                cmds = []
                for node in targets:
                    ctx = {**base, "node": node, "roles": spec.roles_of(node)}
                    if st.node_when and not holds(st.node_when, ctx):
                        continue
                    cmds.append(
                        HostCommands(
                            host=node.name,
                            check=template(st.check).render(ctx).strip() if st.check else "",
                            run=template(st.run).render(ctx).strip(),
                            on_interrupt=template(st.on_interrupt).render(ctx).strip() if st.on_interrupt else "",
                        )
                    )
                # Titles, purposes and done reasons may name pinned versions or lab addresses
                # ("Install containerd {{ versions.containerd }}"): prose, rendered without shell quoting.
                title = prose(st.title).render(base)
                purpose = prose(st.purpose).render(base) if st.purpose else ""
                timeout = _step_timeout(st.timeout, lambda e: prose(_when_template(e)).render(base), where)
                # e.g. "not (cache and cache.debs)": a package install needs the internet only without a warm cache
                network = st.network if isinstance(st.network, bool) else holds(st.network, base)
                done_reason = prose(st.done_reason).render(base)
            except jinja2.TemplateError as err:
                raise PlaybookError(f"{where}: template error: {err}") from None
            if not cmds:
                continue
            # Checked only for steps this lab runs: a step with no hosts (no workers) needs no fact.
            for fact in st.uses:
                if fact not in known_facts:
                    raise PlaybookError(f"{where}: uses fact {fact!r} that no earlier step captures — capture it first")
            if st.capture:
                known_facts.add(st.capture)
            skip = ""
            if network and spec.offline:
                skip = "needs the internet and the lab is offline (offline: true in lab.yaml)"
            steps.append(
                PlannedStep(
                    id=step_id,
                    playbook=book.name,
                    title=title,
                    purpose=" ".join(purpose.split()),
                    kind="remote",
                    commands=tuple(cmds),
                    sudo=st.sudo,
                    timeout=timeout,
                    retries=st.retries,
                    network=network,
                    capture=st.capture,
                    capture_check=st.capture_check,
                    secret=st.secret,
                    uses=st.uses,
                    upload=st.upload,
                    done_reason=done_reason,
                    skip_reason=skip,
                    reboot=st.reboot,
                )
            )
    hosts = tuple(
        {"name": n.name, "ip": str(n.ip), "roles": list(spec.roles_of(n)), "cpus": n.cpus, "memory_mib": n.memory_mib}
        for _, n in spec.all_nodes()
    )
    images = base["images"].to_dict() if base["images"].computed() else {}  # only with the pull's steps
    plan = Plan(
        lab=spec.name, provider=spec.provider.type, hosts=hosts, steps=tuple(steps), images=images,
        playbooks=playbook_orders(books, subset=True),
    )
    # Overlapping playbooks: a fact must come from a step this one surely waits for, not just an earlier file.
    playbook, problem = uses_reach(plan.steps, step_dependencies(plan))
    if problem:
        raise PlaybookError(f"{next(b.path for b in books if b.name == playbook)}: {problem}")
    return plan


@dataclass(frozen=True)
class _Plain:
    """Text without Jinja markup: renders to itself (what Jinja would return, minus the compile)."""

    source: str

    def render(self, *_: Any, **__: Any) -> str:
        return self.source


def _truthy(rendered: str) -> bool:
    return rendered.strip().lower() not in ("", "false", "0", "none", "no")
