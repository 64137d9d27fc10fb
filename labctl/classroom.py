"""Roster mode against a cluster: `labctl class create | status | delete`.

Everything goes through kubectl with the instructor's kubeconfig (the same ``Kubectl`` wrapper as
`labctl deploy`), objects on stdin, never on a command line. What a class made is found again by its
label (``labctl.dev/class=<name>``) and by the record ``class.json`` in the class folder, so `delete`
removes exactly that and nothing else. Student tokens come from the TokenRequest API
(``kubectl create token``) and exist only inside the 0600 kubeconfig files.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labctl.deploy import DeployError, Kubectl
from labctl.roster import (
    CLASS_LABEL,
    QUOTA_NAME,
    SERVICE_ACCOUNT,
    RosterError,
    Share,
    check_class_name,
    cluster_endpoint,
    dump_objects,
    namespace_of,
    parse_roster,
    schedulable_capacity,
    size_share,
    student_kubeconfig,
    student_objects,
    token_expiry,
)
from labctl.state import write_private

RECORD = "class.json"
# A token this close to its end is issued again by a re-run of `class create`.
RENEW_WITHIN_S = 3600


@dataclass
class ClassResult:
    class_name: str
    folder: Path
    students: list[str]
    share: Share
    applied: list[str]
    new_tokens: list[str]
    dry_run: bool
    others: list[str] = field(default_factory=list)


def _json(kubectl: Kubectl, *args: str) -> dict[str, Any]:
    text = kubectl.query(*args)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise DeployError(f"kubectl {' '.join(args)} did not return JSON — check the kubectl on PATH") from None
    if not isinstance(value, dict):
        raise DeployError(f"kubectl {' '.join(args)} returned {type(value).__name__}, not an object")
    return value


def _kubectl(kubeconfig: Path, context: str | None) -> Kubectl:
    import shutil

    kubectl = Kubectl(Path(kubeconfig).expanduser(), context)
    if shutil.which(kubectl.binary) is None:
        raise DeployError(f"{kubectl.binary} not found on PATH — install it (https://kubernetes.io/docs/tasks/tools/)")
    if not kubectl.kubeconfig.is_file():
        raise DeployError(f"--kubeconfig: {kubectl.kubeconfig} does not exist — pass the cluster's admin kubeconfig")
    return kubectl


def load_record(folder: Path) -> dict[str, Any]:
    path = folder / RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as err:
        raise RosterError(f"{path}: unreadable class record ({err}) — remove it and run `labctl class create` again") from None
    return record if isinstance(record, dict) else {}


def _save_record(folder: Path, record: dict[str, Any]) -> None:
    write_private(folder / RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")


def _class_namespaces(kubectl: Kubectl, class_name: str) -> list[str]:
    listed = _json(kubectl, "get", "namespaces", "-l", f"{CLASS_LABEL}={class_name}", "-o", "json")
    return sorted(item["metadata"]["name"] for item in listed.get("items", []))


def create(
    roster: Path,
    *,
    kubeconfig: Path,
    class_name: str,
    folder: Path,
    context: str | None = None,
    cpu: str | None = None,
    memory: str | None = None,
    storage: str = "50Gi",
    token_hours: int = 72,
    renew_tokens: bool = False,
    apps_spec: Any = None,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
) -> ClassResult:
    """Namespaces, quotas, rights and kubeconfigs for every student of the roster; idempotent."""
    check_class_name(class_name)
    if not 1 <= token_hours <= 24 * 365:
        raise RosterError(f"--token-hours: {token_hours} — give 1 to 8760 hours")
    students = parse_roster(roster, class_name)
    kubectl = _kubectl(kubeconfig, context)
    capacity = schedulable_capacity(_json(kubectl, "get", "nodes", "-o", "json"))
    share = size_share(capacity, len(students), cpu=cpu, memory=memory, storage=storage)
    endpoint = cluster_endpoint(_json(kubectl, "config", "view", "--raw", "--minify", "-o", "json"))

    # A namespace of the right name that this class did not make is someone else's: never adopt it.
    existing = {
        item["metadata"]["name"]: (item["metadata"].get("labels") or {})
        for item in _json(kubectl, "get", "namespaces", "-o", "json").get("items", [])
    }
    for student in students:
        ns = namespace_of(class_name, student)
        if ns in existing and existing[ns].get(CLASS_LABEL) != class_name:
            raise RosterError(
                f"namespace {ns} already exists and does not belong to class {class_name} — rename the student "
                "or the class (--name), or remove that namespace"
            )
    others = sorted(
        name for name, labels in existing.items()
        if labels.get(CLASS_LABEL) == class_name and name not in {namespace_of(class_name, s) for s in students}
    )

    objects = [obj for student in students for obj in student_objects(class_name, student, share)]
    bundle = dump_objects(objects)
    echo(
        f"class {class_name}: {len(students)} students, each {share.cpu} CPU / {share.memory} memory / "
        f"{share.storage} storage (cluster: {capacity.nodes} schedulable nodes)"
    )
    record = load_record(folder)
    if dry_run:
        echo(bundle.rstrip())
        for student in students:
            echo(f"would write {folder / (student + '.kubeconfig')} (token valid {token_hours} h)")
        return ClassResult(class_name, folder, students, share, [], [], True, others)

    result = kubectl.run("apply", "-f", "-", stdin=bundle)
    if result.returncode != 0:
        failed = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        raise DeployError(f"kubectl apply of class {class_name} failed: " + "; ".join(failed[-10:] or ["no message"]))
    applied = [line.strip() for line in result.stdout.splitlines() if line.strip()]

    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    known: dict[str, Any] = record.get("students", {}) if record.get("class") == class_name else {}
    new_tokens: list[str] = []
    now = int(time.time())
    for student in students:
        entry = known.get(student, {})
        target = folder / f"{student}.kubeconfig"
        if not renew_tokens and target.is_file() and entry.get("expires", 0) - now > RENEW_WITHIN_S:
            continue
        ns = namespace_of(class_name, student)
        answer = kubectl.run("create", "token", SERVICE_ACCOUNT, "-n", ns, "--duration", f"{token_hours}h")
        token = answer.stdout.strip()
        if answer.returncode != 0 or not token:
            raise DeployError(
                f"cannot issue a token for {ns}/{SERVICE_ACCOUNT}: {answer.stderr.strip().splitlines()[-1:] or 'empty answer'}"
                " — the cluster must serve the TokenRequest API (Kubernetes 1.24+)"
            )
        write_private(target, student_kubeconfig(endpoint, class_name, student, token))
        known[student] = {
            "namespace": ns,
            "kubeconfig": target.name,
            "expires": token_expiry(token) or now + token_hours * 3600,
        }
        new_tokens.append(student)
        # Save after each token: an interrupted run still knows which files it wrote.
        _save_record(folder, _record(class_name, kubeconfig, context, known))
    _save_record(folder, _record(class_name, kubeconfig, context, known))

    if apps_spec is not None:
        from labctl.deploy import deploy

        for student in students:
            ns = namespace_of(class_name, student)
            echo(f"==> apps in {ns}")
            deploy(apps_spec, kubeconfig=kubeconfig, context=context, namespace=ns, echo=echo)
    return ClassResult(class_name, folder, students, share, applied, new_tokens, False, others)


def _record(class_name: str, kubeconfig: Path, context: str | None, students: dict[str, Any]) -> dict[str, Any]:
    # The admin kubeconfig's path only, never its content: status and delete find the cluster again.
    return {
        "class": class_name,
        "admin_kubeconfig": str(Path(kubeconfig).expanduser().resolve()),
        "context": context,
        "students": students,
    }


@dataclass(frozen=True)
class StudentStatus:
    student: str
    namespace: str
    exists: bool
    cpu: str
    memory: str
    apps: str
    token_expires: int | None

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _used(quota: dict[str, Any], key: str) -> str:
    status = quota.get("status") or {}
    used, hard = (status.get("used") or {}).get(key, "0"), (status.get("hard") or {}).get(key, "?")
    return f"{used}/{hard}"


def status(
    class_name: str, folder: Path, *, kubeconfig: Path | None = None, context: str | None = None
) -> list[StudentStatus]:
    """One line per student: namespace there, quota used, apps ready, token expiry."""
    check_class_name(class_name)
    record = load_record(folder)
    kubeconfig, context = _admin(record, kubeconfig, context, folder)
    kubectl = _kubectl(kubeconfig, context)
    namespaces = set(_class_namespaces(kubectl, class_name))
    quotas = {
        q["metadata"]["namespace"]: q
        for q in _json(kubectl, "get", "resourcequota", "-A", "-l", f"{CLASS_LABEL}={class_name}", "-o", "json").get(
            "items", []
        )
        if q["metadata"]["name"] == QUOTA_NAME
    }
    ready: dict[str, list[int]] = {}
    for d in _json(kubectl, "get", "deployments", "-A", "-o", "json").get("items", []):
        ns = d["metadata"]["namespace"]
        if ns in namespaces:
            counts = ready.setdefault(ns, [0, 0])
            counts[1] += 1
            want = (d.get("spec") or {}).get("replicas", 1)
            counts[0] += int((d.get("status") or {}).get("readyReplicas", 0) >= want)
    students = dict(record.get("students", {}))
    for ns in namespaces:  # made by this class but missing from the record (e.g. another folder)
        student = ns[len(class_name) + 1 :]
        students.setdefault(student, {"namespace": ns})
    rows = []
    for student, entry in sorted(students.items()):
        ns = entry.get("namespace", namespace_of(class_name, student))
        quota = quotas.get(ns, {})
        apps = f"{ready[ns][0]}/{ready[ns][1]}" if ns in ready else "-"
        rows.append(
            StudentStatus(
                student, ns, ns in namespaces, _used(quota, "requests.cpu"), _used(quota, "requests.memory"), apps,
                entry.get("expires"),
            )
        )
    if not rows:
        raise RosterError(f"class {class_name}: nothing found in the cluster or in {folder} — run `labctl class create`")
    return rows


def _admin(record: dict[str, Any], kubeconfig: Path | None, context: str | None, folder: Path) -> tuple[Path, str | None]:
    if kubeconfig is not None:
        return kubeconfig, context
    if record.get("admin_kubeconfig"):
        return Path(record["admin_kubeconfig"]), context or record.get("context")
    raise RosterError(f"no class record in {folder} — pass --kubeconfig (the cluster's admin kubeconfig)")


@dataclass
class DeleteResult:
    namespaces: list[str]
    files: list[Path]
    dry_run: bool


def delete(
    class_name: str,
    folder: Path,
    *,
    kubeconfig: Path | None = None,
    context: str | None = None,
    dry_run: bool = False,
) -> DeleteResult:
    """Remove the namespaces labelled with this class and the files `class create` wrote; nothing else."""
    check_class_name(class_name)
    record = load_record(folder)
    kubeconfig, context = _admin(record, kubeconfig, context, folder)
    kubectl = _kubectl(kubeconfig, context)
    namespaces = _class_namespaces(kubectl, class_name)
    files = [folder / entry["kubeconfig"] for entry in record.get("students", {}).values() if entry.get("kubeconfig")]
    files = [f for f in files if f.parent == folder and f.is_file()]  # never a path outside the class folder
    if (folder / RECORD).is_file():
        files.append(folder / RECORD)
    if dry_run:
        return DeleteResult(namespaces, files, True)
    if namespaces:
        result = kubectl.run("delete", "namespace", *namespaces, "--wait=false")
        if result.returncode != 0:
            raise DeployError(f"kubectl delete namespace failed: {result.stderr.strip().splitlines()[-1:]}")
    for f in files:
        f.unlink(missing_ok=True)
    if folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
    return DeleteResult(namespaces, files, False)
