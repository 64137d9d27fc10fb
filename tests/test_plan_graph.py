"""The order between playbooks (``after:``, labctl/plan_graph.py): the real playbooks form an acyclic
graph whose every ``after:`` names a real, earlier playbook; bad declarations are one clean error
naming the file; the default keeps file order; absent playbooks pass their dependencies on; each
host keeps file order; and `labctl plan` shows the graph. Playbooks are written into a temporary
folder per test where the rule is not about the shipped ones."""

from __future__ import annotations

import graphlib
import json
import textwrap
from pathlib import Path

import pytest
import yaml

from labctl.errors import PlaybookError
from labctl.plan import build_plan, load_playbooks
from labctl.plan_graph import beside, critical_order, step_dependencies, waits_for
from labctl.resources import playbooks_dir
from labctl.spec import LabSpec


def book(after: str | None, *steps: tuple[str, str], extra: str = "") -> str:
    """A playbook: ``steps`` are (name, hosts); ``after`` is the YAML of its after: line or None."""
    lines = ["title: T"]
    if after is not None:
        lines.append(f"after: {after}")
    lines.append("steps:")
    lines += [f"  - {{name: {n}, title: {n}, hosts: {h}, run: 'true'{extra}}}" for n, h in steps]
    return "\n".join(lines) + "\n"


def folder(tmp_path: Path, **files: str) -> Path:
    for name, text in files.items():
        (tmp_path / name.replace("_", "-")).write_text(textwrap.dedent(text))
    return tmp_path


# ---- the shipped playbooks ------------------------------------------------------------------------
def test_the_shipped_graph_is_acyclic_and_every_after_names_a_real_earlier_playbook():
    books = load_playbooks()
    names = [b.name for b in books]
    declared = {}
    for path in sorted(playbooks_dir().glob("*.yaml")):
        data = yaml.safe_load(path.read_text())
        if "after" in data:
            declared[path.stem.split("-", 1)[1]] = data["after"]
    assert declared, "no playbook declares after: — the graph would be the old chain"
    for name, after in declared.items():
        for other in after:
            assert other in names, f"{name}: after: {other!r} is not a playbook"
            assert names.index(other) < names.index(name), f"{name}: after: {other!r} comes later in file order"
    graph = {b.name: b.spec.after if b.spec.after is not None else tuple(names[i - 1 : i]) for i, b in enumerate(books)}
    order = list(graphlib.TopologicalSorter(graph).static_order())  # raises CycleError on a cycle
    assert sorted(order) == sorted(names)


@pytest.mark.parametrize("options", [{}, {"apps": {"options": {"registry_mirror": "https://mirror.example"}}}])
def test_the_handout_order_is_a_valid_order_of_the_step_graph(options):
    """File order (what the handout and --serial follow) never runs a step before one it waits for."""
    plan = build_plan(LabSpec.from_dict(options))
    for i, need in enumerate(step_dependencies(plan)):
        assert all(j < i for j in need), plan.steps[i].id


def test_the_seed_lab_runs_the_nfs_server_beside_node_prep_and_the_bootstrap():
    plan = build_plan(LabSpec.default())
    after = waits_for(plan)
    assert after["nfs-server"] == ()
    # Nothing before storage needs the NFS server: it installs beside node prep and the bootstrap.
    assert beside(plan)["nfs-server"] == [
        "node-prep", "image-pull", "control-plane", "workers", "cni-calico", "load-balancer",
    ]  # fmt: skip
    # The background image pull (26) needs node prep only, not the NFS VM's install (see the next test).
    assert after["image-pull"] == ("node-prep",) and after["control-plane"] == ("image-pull",)
    assert after["storage"] == ("cni-calico", "nfs-server") and after["apps"] == ("load-balancer", "storage")
    # The cluster chain is unchanged: control plane, workers, CNI, MetalLB, storage, apps, verify.
    assert critical_order(plan) == [
        "node-prep", "image-pull", "control-plane", "workers", "cni-calico", "load-balancer", "storage", "apps", "verify",
    ]  # fmt: skip


def test_the_background_pull_starts_after_what_it_needs_on_its_node_and_nothing_else():
    """26-image-pull needs containerd (node prep), the registry mirror's hosts.toml and the warm
    cache's import, each on its own node. Without a cache it does not wait for the NFS server; with
    one, the per-host rule orders each node's import before its pull; with a mirror, the mirror."""
    from labctl.cache_scan import CachedFile, CacheInfo

    def waited(plan) -> set[str]:  # type: ignore[no-untyped-def]
        ids = [s.id for s in plan.steps]
        deps = step_dependencies(plan)
        reach: list[set[int]] = []
        for need in deps:
            reach.append(set(need).union(*(reach[d] for d in need)))
        return {ids[j] for j in reach[ids.index("image-pull.start-background-pull")]}

    lab = LabSpec.default()
    cold = waited(build_plan(lab, include_provider=False))
    assert "node-prep.configure-containerd-systemd-cgroup" in cold
    assert not {i for i in cold if i.startswith("nfs-server.")}
    cache = CacheInfo(
        host_dir="/srv/labctl-cache",
        images=(CachedFile("quay.io/calico/node:v3.33.0", "images/n.tar", 1),),
        images_by_node={
            n: (CachedFile("quay.io/calico/node:v3.33.0", "images/n.tar", 1),) for n in ("master", "worker1")
        },
    )
    warm = build_plan(lab, include_provider=False, cache=cache)
    assert "warm-cache-seed.import-images" in {s.id for s in warm.steps}
    assert "warm-cache-seed.import-images" in waited(warm)
    mirrored = LabSpec.from_dict({"apps": {"options": {"registry_mirror": "https://mirror.example:5000"}}})
    assert "registry-mirror.containerd-docker-io-mirror" in waited(build_plan(mirrored, include_provider=False))


def test_on_the_nfs_vm_node_prep_still_comes_first():
    """nfs-server declares no dependency, but its first step waits for node prep's steps on the
    NFS VM (/etc/hosts) and for nothing node prep does on the Kubernetes nodes."""
    plan = build_plan(LabSpec.default(), include_provider=False)
    ids = [s.id for s in plan.steps]
    deps = step_dependencies(plan)
    first_nfs = ids.index("nfs-server.install-nfs-server")
    waited = {ids[j] for j in deps[first_nfs]}
    assert waited == {"node-prep.write-hosts-file"}
    assert "node-prep.install-containerd" not in waited


# ---- declarations --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "after, message",
    [
        ("[nope]", r"10-b\.yaml: after: 'nope' is not a playbook — name one of a, b, c$"),
        ("[05-a]", r"after: '05-a' is not a playbook \(without its number: a\)"),
        ("[b]", r"10-b\.yaml: after: names the playbook itself \('b'\)"),
        ("[c]", r"10-b\.yaml: after: 'c' comes later in file order .* renumber the files$"),
    ],
)
def test_a_bad_after_is_one_clean_error_naming_the_file(tmp_path, after, message):
    # c is after a only: b after c would be a forward reference, not a cycle.
    f = folder(tmp_path, **{"05_a.yaml": book(None, ("x", "nfs")), "10_b.yaml": book(after, ("x", "nfs")),
                            "20_c.yaml": book("[a]", ("x", "nfs"))})  # fmt: skip
    with pytest.raises(PlaybookError, match=message) as info:
        load_playbooks(f)
    assert "\n" not in str(info.value) and info.value.exit_code == 2


def test_a_cycle_is_refused_and_named(tmp_path):
    f = folder(tmp_path, **{"05_a.yaml": book("[c]", ("x", "nfs")), "10_b.yaml": book("[a]", ("x", "nfs")),
                            "20_c.yaml": book("[b]", ("x", "nfs"))})  # fmt: skip
    with pytest.raises(PlaybookError, match=r"wait for each other in a circle \((\w) → (\w) → (\w) → \1\)") as info:
        load_playbooks(f)
    assert "after:" in str(info.value) and "\n" not in str(info.value)


def test_without_after_a_playbook_follows_the_one_before_it(tmp_path):
    books = load_playbooks(folder(tmp_path, **{"05_a.yaml": book(None, ("x", "k8s")), "10_b.yaml": book("[]", ("x", "nfs")),
                                               "20_c.yaml": book(None, ("x", "control_plane"))}))  # fmt: skip
    plan = build_plan(LabSpec.default(), books, include_provider=False)
    assert waits_for(plan) == {"a": (), "b": (), "c": ("b",)}
    assert beside(plan) == {"a": ["b"], "b": ["a"], "c": []}
    # c runs on the master, where a ran before it: the per-host rule orders them too.
    assert step_dependencies(plan) == [frozenset(), frozenset(), frozenset({0, 1})]


def test_a_playbook_left_out_by_when_passes_its_dependencies_on(tmp_path):
    """b is dropped for this lab (when false): c, which follows b, waits for what b was after."""
    books = load_playbooks(folder(tmp_path, **{
        "05_a.yaml": book(None, ("x", "control_plane")),
        "07_n.yaml": book("[]", ("x", "nfs")),
        "10_b.yaml": book("[a, n]", ("x", "workers"), extra=", when: 'false'"),
        "20_c.yaml": book(None, ("x", "workers")),
    }))  # fmt: skip
    plan = build_plan(LabSpec.default(), books, include_provider=False)
    assert [s.playbook for s in plan.steps] == ["a", "n", "c"]
    assert waits_for(plan)["c"] == ("a", "n")
    assert step_dependencies(plan)[2] == frozenset({0, 1})


def test_a_fact_must_come_from_a_playbook_waited_for(tmp_path):
    capture = "title: T\nafter: []\nsteps:\n  - {name: x, title: X, hosts: nfs, run: 'echo v', capture: token}\n"
    use = "title: U\nafter: []\nsteps:\n  - {name: y, title: Y, hosts: workers, run: 'true', uses: [token]}\n"
    books = load_playbooks(folder(tmp_path, **{"05_a.yaml": capture, "10_b.yaml": use}))
    with pytest.raises(PlaybookError, match=r"10-b\.yaml: step b\.y uses fact 'token' from a\.x, but playbook 'b' does not wait for 'a'"):
        build_plan(LabSpec.default(), books, include_provider=False)
    fixed = use.replace("after: []", "after: [a]")
    (tmp_path / "10-b.yaml").write_text(fixed)
    build_plan(LabSpec.default(), load_playbooks(tmp_path), include_provider=False)


# ---- what `labctl plan` shows ---------------------------------------------------------------------
def test_the_plan_text_and_json_show_the_graph():
    plan = build_plan(LabSpec.default())
    text = plan.to_text()
    head = text.split("==> Step 1/")[0]
    assert "  nfs-server     first (needs only its hosts up); beside node-prep, image-pull, control-plane," in head
    assert "  image-pull     after node-prep; beside nfs-server\n" in head
    assert "  control-plane  after image-pull (default); beside nfs-server\n" in head
    assert "  storage        after cni-calico, nfs-server\n" in head
    assert "Critical order: node-prep → image-pull → control-plane → workers → cni-calico → load-balancer → storage → apps → verify" in head
    data = json.loads(plan.to_json())
    rows = {p["name"]: p for p in data["graph"]["playbooks"]}
    assert rows["nfs-server"]["after"] == [] and rows["nfs-server"]["beside"][:2] == ["node-prep", "image-pull"]
    assert data["graph"]["critical_order"][0] == "node-prep"
    assert [p["name"] for p in data["playbooks"]] == [b.name for b in load_playbooks()]  # declared, every file


def test_the_handout_keeps_one_readable_order_the_file_order():
    """However playbooks overlap when run, the handout reads top to bottom in file order."""
    from labctl.handout import build_outline

    spec = LabSpec.default()
    plan = build_plan(spec, include_provider=False)
    sections = build_outline(spec, plan).steps
    files = [f"{b.name}.{st.name}" for b in load_playbooks() for st in b.spec.steps]
    ids = [s.step.id for s in sections]
    assert [files.index(i) for i in ids] == sorted(files.index(i) for i in ids)
    assert ids.index("nfs-server.install-nfs-server") > ids.index("node-prep.set-kubelet-node-ip")


def test_a_step_added_by_hand_under_an_unknown_playbook_follows_the_one_before_it():
    from dataclasses import replace

    from labctl.plan import HostCommands, PlannedStep

    plan = build_plan(LabSpec.default(), include_provider=False)
    extra = PlannedStep(id="extra.x", playbook="extra", title="X", purpose="", kind="remote",
                        commands=(HostCommands("nfs", "", "true"),))  # fmt: skip
    plan = replace(plan, steps=(*plan.steps, extra))
    assert waits_for(plan)["extra"] == ("verify",)
    assert len(step_dependencies(plan)[-1]) > 0


def test_the_critical_path_follows_the_weights_given():
    """A benchmark weighs steps by seconds: a slow NFS install moves the critical path onto it."""
    from labctl.plan_graph import critical_path

    plan = build_plan(LabSpec.default(), include_provider=False)
    steps, chain = critical_path(plan)
    assert steps == len(chain) and chain[0] == "node-prep.write-hosts-file" and chain[-1].startswith("verify.")
    slow_nfs = critical_path(plan, lambda s: 1000.0 if s.id == "nfs-server.install-nfs-server" else 1.0)
    assert "nfs-server.install-nfs-server" in slow_nfs[1] and slow_nfs[0] > 1000
    assert "node-prep.install-containerd" not in slow_nfs[1]  # beside it, not on the path any more
