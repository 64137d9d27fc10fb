"""Roster mode: `labctl class create | status | delete` against a stateful kubectl TEST DOUBLE
(tests/doubles/kubectl_cluster_double.py), and the policy the per-student objects must keep."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from labctl.cli import cli
from labctl.roster import (
    CLASS_LABEL,
    Capacity,
    RosterError,
    cpu_millis,
    memory_bytes,
    parse_roster,
    schedulable_capacity,
    size_share,
    student_objects,
    token_expiry,
)

DOUBLE = Path(__file__).resolve().parent / "doubles" / "kubectl_cluster_double.py"
ADMIN_KEY = "QURNSU4tQ0xJRU5ULUtFWQ=="  # what the admin's credentials look like; must never reach a student


def node(name: str, cpu: str = "4", memory: str = "8Gi", taints: list | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"taints": taints or []},
            "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}}}


class Cluster:
    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nodes: list[dict] | None = None) -> None:
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        wrapper = self.bin / "kubectl"
        wrapper.write_text(f'#!/bin/sh\n# TEST DOUBLE of kubectl\nexec "{sys.executable}" "{DOUBLE}" "$@"\n')
        wrapper.chmod(0o755)
        self.kubeconfig = tmp_path / "admin.conf"
        self.kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
        self.state_path = tmp_path / "cluster.json"
        self.log = tmp_path / "calls.jsonl"
        master = node("master", taints=[{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}])
        objects = {
            "Namespace//kube-system": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-system"}},
            "Namespace//research": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "research"}},
        }
        view = {"clusters": [{"name": "uni", "cluster": {"server": "https://127.0.0.1:6443",
                                                          "certificate-authority-data": "Q0EtREFUQQ=="}}],
                "users": [{"name": "admin", "user": {"client-key-data": ADMIN_KEY, "client-certificate-data": ADMIN_KEY}}]}
        self.state_path.write_text(json.dumps({"nodes": nodes or [master, node("w1"), node("w2")], "objects": objects,
                                               "kubeconfig_view": view,
                                               "storageclasses": [{"metadata": {"name": "nfs", "annotations": {
                                                   "storageclass.kubernetes.io/is-default-class": "true"}},
                                                   "provisioner": "nfs.csi.k8s.io"}]}))
        monkeypatch.setenv("KUBECTL_CLUSTER_STATE", str(self.state_path))
        monkeypatch.setenv("KUBECTL_CLUSTER_LOG", str(self.log))
        monkeypatch.setenv("PATH", str(self.bin))
        monkeypatch.chdir(tmp_path)
        self.tmp = tmp_path

    @property
    def state(self) -> dict[str, Any]:
        return json.loads(self.state_path.read_text())

    def namespaces(self) -> set[str]:
        return {o["metadata"]["name"] for o in self.state["objects"].values() if o["kind"] == "Namespace"}

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line)["argv"] for line in self.log.read_text().splitlines()]

    def roster(self, *ids: str) -> Path:
        path = self.tmp / "students.txt"
        path.write_text("# CS101, autumn\n" + "\n".join(ids) + "\n")
        return path

    def run(self, *args: str) -> Any:
        return CliRunner().invoke(cli, ["class", *args], catch_exceptions=False)

    def create(self, *ids: str, extra: tuple[str, ...] = ()) -> Any:
        return self.run("create", "--roster", str(self.roster(*ids)), "--name", "cs101",
                        "--kubeconfig", str(self.kubeconfig), *extra)


# --- roster parsing and quota sizing (pure) ----------------------------------------------------


def test_roster_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    path.write_text("# class\nalice\n\n  bob  # lab partner of alice\n")
    assert parse_roster(path, "cs101") == ["alice", "bob"]


@pytest.mark.parametrize(
    "content,needle",
    [
        ("alice\nalice\n", "r.txt:2: student 'alice' is listed twice"),
        ("alice\nBob\n", "r.txt:2: 'Bob' is not a student id"),
        ("alice\nbob;rm -rf /\n", "r.txt:2: 'bob;rm -rf /' is not a student id"),
        ("a" * 58 + "\n", "at most 57 lower-case letters"),
        ("# nobody yet\n\n", "lists no student"),
        ("alice\n../etc\n", "'../etc' is not a student id"),
        ("alice\nbob\n\n", None),
    ],
)
def test_roster_lines_are_namespace_names(tmp_path: Path, content: str, needle: str | None) -> None:
    path = tmp_path / "r.txt"
    path.write_text(content)
    if needle is None:
        assert parse_roster(path, "cs101") == ["alice", "bob"]
        return
    with pytest.raises(RosterError) as err:
        parse_roster(path, "cs101")
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_roster_that_is_not_a_text_file(tmp_path: Path) -> None:
    with pytest.raises(RosterError, match="not a regular file"):
        parse_roster(tmp_path, "cs101")
    binary = tmp_path / "r.bin"
    binary.write_bytes(b"\xff\xfe\x00alice")
    with pytest.raises(RosterError, match="not UTF-8"):
        parse_roster(binary, "cs101")


@pytest.mark.parametrize("value,millis", [("4", 4000), ("3500m", 3500), ("0.5", 500), ("1.25", 1250)])
def test_cpu_quantities(value: str, millis: int) -> None:
    assert cpu_millis(value) == millis


@pytest.mark.parametrize("value,size", [("8Gi", 8 * 2**30), ("16318420Ki", 16318420 * 1024), ("512M", 512 * 10**6)])
def test_memory_quantities(value: str, size: int) -> None:
    assert memory_bytes(value) == size


def test_capacity_counts_only_nodes_that_take_student_pods() -> None:
    nodes = {"items": [
        node("master", taints=[{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
        node("w1", cpu="3920m", memory="7Gi"),
        {**node("w2"), "spec": {"unschedulable": True}},
        node("w3", taints=[{"key": "soft", "effect": "PreferNoSchedule"}]),
    ]}
    cap = schedulable_capacity(nodes)
    assert (cap.cpu_millis, cap.memory_bytes, cap.nodes) == (3920 + 4000, 7 * 2**30 + 8 * 2**30, 2)


@pytest.mark.parametrize("students", [1, 2, 3, 7, 30, 31])
@pytest.mark.parametrize("cpu,mem_gib", [(8000, 16), (7840, 15), (64000, 256)])
def test_quotas_sum_to_no_more_than_allocatable(students: int, cpu: int, mem_gib: int) -> None:
    capacity = Capacity(cpu, mem_gib * 2**30, 2)
    share = size_share(capacity, students)
    assert share.cpu_millis * students <= capacity.cpu_millis * 0.9
    assert share.memory_mib * 2**20 * students <= capacity.memory_bytes * 0.9
    # ... and the share is the largest that fits, not an arbitrary small one.
    assert (share.cpu_millis + 1) * students > capacity.cpu_millis * 0.9 - students


def test_a_share_given_on_the_command_line_must_fit() -> None:
    capacity = Capacity(8000, 16 * 2**30, 2)
    assert size_share(capacity, 3, cpu="2", memory="4Gi").cpu == "2000m"
    with pytest.raises(RosterError, match=r"4 students × 2000m CPU / 4096Mi memory do not fit.*at most 1800m"):
        size_share(capacity, 4, cpu="2", memory="4Gi")
    with pytest.raises(RosterError, match="too little to run a pod"):
        size_share(capacity, 200)
    with pytest.raises(RosterError, match="--cpu/--memory: 'lots' is not a CPU quantity"):
        size_share(capacity, 2, cpu="lots")


def test_token_expiry_reads_the_exp_claim() -> None:
    assert token_expiry("eyJhbGciOiJSUzI1NiJ9.eyJleHAiOiAxNzAwMDAwMDAwfQ.sig") == 1700000000
    assert token_expiry("not-a-jwt") is None


# --- policy: what a student's objects allow ----------------------------------------------------

FORBIDDEN_RESOURCES = {
    "nodes", "namespaces", "persistentvolumes", "storageclasses", "clusterroles", "clusterrolebindings", "roles",
    "rolebindings", "serviceaccounts", "serviceaccounts/token", "resourcequotas", "limitranges",
    "customresourcedefinitions", "mutatingwebhookconfigurations", "validatingwebhookconfigurations",
}
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}


def test_a_students_role_grants_nothing_beyond_their_namespace() -> None:
    share = size_share(Capacity(8000, 16 * 2**30, 2), 3)
    objs = student_objects("cs101", "alice", share)
    ns = "cs101-alice"
    cluster_scoped = [o for o in objs if "namespace" not in o["metadata"]]
    assert [o["kind"] for o in cluster_scoped] == ["Namespace"]  # no ClusterRole, no ClusterRoleBinding
    assert all(o["metadata"]["namespace"] == ns for o in objs if o["kind"] != "Namespace")
    (role,) = [o for o in objs if o["kind"] == "Role"]
    (binding,) = [o for o in objs if o["kind"] == "RoleBinding"]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "student", "namespace": ns}]
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for resource in rule["resources"]:
            if resource in FORBIDDEN_RESOURCES:
                # Read-only access to one's own quota is fine; changing it (or anything RBAC) is not.
                assert resource in ("resourcequotas", "limitranges") and not WRITE_VERBS & set(rule["verbs"]), rule
        assert rule["apiGroups"] != ["rbac.authorization.k8s.io"]


def test_quota_keeps_the_lab_addresses_for_the_instructor() -> None:
    share = size_share(Capacity(8000, 16 * 2**30, 2), 3)
    quota = next(o for o in student_objects("cs101", "alice", share) if o["kind"] == "ResourceQuota")
    hard = quota["spec"]["hard"]
    assert hard["services.loadbalancers"] == "0" and hard["services.nodeports"] == "0"
    assert hard["limits.cpu"] == hard["requests.cpu"] == share.cpu
    limits = next(o for o in student_objects("cs101", "alice", share) if o["kind"] == "LimitRange")
    container = limits["spec"]["limits"][0]
    assert memory_bytes(container["default"]["memory"]) <= share.memory_mib * 2**20
    assert cpu_millis(container["default"]["cpu"]) <= share.cpu_millis


@pytest.mark.validators
def test_every_student_object_passes_strict_validation() -> None:
    from labctl.manifests import validation_problems

    share = size_share(Capacity(8000, 16 * 2**30, 2), 2)
    objs = student_objects("cs101", "alice", share) + student_objects("cs101", "bob-2", share)
    assert validation_problems(objs) == []


# --- the flow through the CLI, against the stateful double --------------------------------------


def test_create_status_delete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch)
    result = cluster.create("alice", "bob", "carol")
    assert result.exit_code == 0, result.output
    assert {"cs101-alice", "cs101-bob", "cs101-carol"} <= cluster.namespaces()
    folder = tmp_path / "class-cs101"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for student in ("alice", "bob", "carol"):
        path = folder / f"{student}.kubeconfig"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        text = path.read_text()
        assert ADMIN_KEY not in text and "client-key" not in text and "client-certificate" not in text
        config = yaml.safe_load(text)
        assert config["contexts"][0]["context"]["namespace"] == f"cs101-{student}"
        assert config["users"][0]["user"]["token"].startswith("eyJ")
        assert config["clusters"][0]["cluster"] == {"server": "https://127.0.0.1:6443",
                                                   "certificate-authority-data": "Q0EtREFUQQ=="}
        assert config["users"][0]["user"]["token"] not in result.output
    # 2 workers × 4 CPU / 8 GiB less 10 % over 3 students; the tainted master does not count.
    assert "each 2400m CPU / 4915Mi memory" in result.output

    status = cluster.run("status", "--name", "cs101", "--output", "json")
    assert status.exit_code == 0, status.output
    rows = json.loads(status.output)
    assert [r["student"] for r in rows] == ["alice", "bob", "carol"]
    assert all(r["exists"] and r["cpu"] == "0/2400m" and r["token_expires"] for r in rows)
    table = cluster.run("status", "--name", "cs101")
    assert "72 h left" in table.output or "71 h left" in table.output

    # The namespace "research" and kube-system were not made by the class: delete leaves them.
    deleted = cluster.run("delete", "--name", "cs101")
    assert deleted.exit_code == 0, deleted.output
    assert cluster.namespaces() == {"kube-system", "research"}
    assert not folder.exists()


def test_rerun_adds_new_students_and_keeps_valid_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch)
    assert cluster.create("alice", "bob").exit_code == 0
    alice = (tmp_path / "class-cs101" / "alice.kubeconfig").read_text()
    assert cluster.state["tokens_issued"] == 2
    again = cluster.create("alice", "bob", "dave")
    assert again.exit_code == 0, again.output
    assert cluster.state["tokens_issued"] == 3  # only dave's
    assert (tmp_path / "class-cs101" / "alice.kubeconfig").read_text() == alice
    assert "cs101-dave" in cluster.namespaces()
    renewed = cluster.create("alice", "bob", "dave", extra=("--renew-tokens",))
    assert renewed.exit_code == 0 and cluster.state["tokens_issued"] == 6


def test_dry_run_prints_every_object_and_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch)
    result = cluster.create("alice", "bob", extra=("--dry-run",))
    assert result.exit_code == 0, result.output
    kinds = [line.split(": ", 1)[1] for line in result.output.splitlines() if line.startswith("kind: ")]
    assert kinds == ["Namespace", "ResourceQuota", "LimitRange", "ServiceAccount", "Role", "RoleBinding"] * 2
    assert not any(argv[2] in ("apply", "create", "delete") for argv in cluster.calls() if len(argv) > 2)
    assert not (tmp_path / "class-cs101").exists()
    assert cluster.namespaces() == {"kube-system", "research"}


def test_a_namespace_of_someone_else_is_never_adopted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch)
    state = cluster.state
    state["objects"]["Namespace//cs101-eve"] = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "cs101-eve"}}
    cluster.state_path.write_text(json.dumps(state))
    result = CliRunner().invoke(cli, ["class", "create", "--roster", str(cluster.roster("alice", "eve")), "--name",
                                      "cs101", "--kubeconfig", str(cluster.kubeconfig)])
    assert result.exit_code == 2
    assert "namespace cs101-eve already exists and does not belong to class cs101" in result.output
    assert "cs101-alice" not in cluster.namespaces()  # refused before anything was applied


def test_delete_touches_only_this_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch)
    assert cluster.create("alice").exit_code == 0
    other = cluster.run("create", "--roster", str(cluster.roster("alice")), "--name", "cs102",
                        "--kubeconfig", str(cluster.kubeconfig))
    assert other.exit_code == 0, other.output
    unrelated = tmp_path / "class-cs101" / "notes.txt"
    unrelated.write_text("mine")
    dry = cluster.run("delete", "--name", "cs101", "--dry-run")
    assert "would delete namespace cs101-alice" in dry.output and "cs102" not in dry.output
    assert "cs101-alice" in cluster.namespaces()
    assert cluster.run("delete", "--name", "cs101").exit_code == 0
    assert "cs101-alice" not in cluster.namespaces() and "cs102-alice" in cluster.namespaces()
    assert unrelated.read_text() == "mine"  # not a file class create wrote
    labels = [o["metadata"].get("labels", {}).get(CLASS_LABEL) for o in cluster.state["objects"].values()]
    assert "cs101" not in labels


@pytest.mark.parametrize(
    "args,needle",
    [
        (("--name", "CS 101"), "--name: 'CS 101' is not a class name"),
        (("--name", "cs101", "--token-hours", "0"), "--token-hours: 0"),
        (("--name", "cs101", "--cpu", "9"), "do not fit"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple, needle: str) -> None:
    cluster = Cluster(tmp_path, monkeypatch)
    result = CliRunner().invoke(cli, ["class", "create", "--roster", str(cluster.roster("alice", "bob")),
                                      "--kubeconfig", str(cluster.kubeconfig), *args])
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "cs101-alice" not in cluster.namespaces()


def test_with_apps_deploys_into_every_student_namespace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cluster = Cluster(tmp_path, monkeypatch)
    result = cluster.create("alice", "bob", extra=("--with-apps",))
    assert result.exit_code == 0, result.output
    applied_ns = {o["metadata"].get("namespace") for o in cluster.state["objects"].values() if o["kind"] == "Deployment"}
    assert applied_ns == {"cs101-alice", "cs101-bob"}
