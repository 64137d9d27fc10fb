"""The lab's kubeconfig on the host: kubeadm's admin.conf rewritten under lab-specific names, merged
into the user's kubeconfig on request, and removed from it again by `destroy`."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from labctl.errors import LifecycleError

if TYPE_CHECKING:
    from labctl.lab import Lab

ADMIN_CONF = "/etc/kubernetes/admin.conf"  # kubeadm's path; lifecycle and status read the same file


def _error(message: str) -> Exception:
    return LifecycleError(message)


def rewrite_kubeconfig(admin_conf: str, lab: str, server: str) -> str:
    """kubeadm's admin.conf with the server at the lab address and every name made lab-specific
    (``labctl-<lab>``), so kubeconfigs of several labs merge into one file without clashing."""
    import yaml

    data = yaml.safe_load(admin_conf)
    if not isinstance(data, dict) or not data.get("clusters") or not data.get("users"):
        raise _error(f"{ADMIN_CONF} on the master is not a kubeconfig (no clusters/users)")
    name = f"labctl-{lab}"
    cluster = dict(data["clusters"][0]["cluster"])
    cluster["server"] = server
    user = dict(data["users"][0]["user"])
    out = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": f"{name}-admin", "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
        "current-context": name,
    }
    return yaml.safe_dump(out, sort_keys=False)


def merge_kubeconfig(existing: str | None, lab_config: str) -> str:
    """``lab_config``'s cluster, user and context added to (or replacing same-named ones in) ``existing``.
    The current context is only set when the file had none: merging never switches a user's context."""
    import yaml

    base = yaml.safe_load(existing) if existing and existing.strip() else None
    if base is None:
        base = {"apiVersion": "v1", "kind": "Config", "preferences": {}, "clusters": [], "users": [], "contexts": []}
    if not isinstance(base, dict):
        raise _error("~/.kube/config is not a kubeconfig mapping — fix or move it, then run again")
    new = yaml.safe_load(lab_config)
    for key in ("clusters", "users", "contexts"):
        incoming = {item["name"]: item for item in new.get(key) or []}
        kept = [item for item in base.get(key) or [] if item.get("name") not in incoming]
        base[key] = kept + list(incoming.values())
    if not base.get("current-context"):
        base["current-context"] = new.get("current-context", "")
    return yaml.safe_dump(base, sort_keys=False)


def remove_from_kubeconfig(existing: str, lab: str) -> str | None:
    """``existing`` without the lab's entries; None when it held none of them (leave the file alone)."""
    import yaml

    data = yaml.safe_load(existing) if existing.strip() else None
    if not isinstance(data, dict):
        return None
    name = f"labctl-{lab}"
    names = {name, f"{name}-admin"}
    changed = False
    for key in ("clusters", "users", "contexts"):
        items = data.get(key) or []
        kept = [i for i in items if i.get("name") not in names]
        changed |= len(kept) != len(items)
        data[key] = kept
    if data.get("current-context") == name:
        data["current-context"] = ""
        changed = True
    return yaml.safe_dump(data, sort_keys=False) if changed else None


def user_kubeconfig_path() -> Path:
    env = os.environ.get("KUBECONFIG", "")
    first = env.split(os.pathsep)[0] if env else ""
    return Path(first).expanduser() if first else Path.home() / ".kube" / "config"


# Where `merge` put the lab's entries, so `destroy` removes them from that file whatever KUBECONFIG
# says then (after `export KUBECONFIG=$(labctl kubeconfig)` it names the lab's own file).
MERGED_RECORD = "kubeconfig-merged-into.json"
LOCK_WAIT = 10.0  # seconds to wait for kubectl's lock before giving up with a message


def _lock_path(target: Path) -> Path:
    # kubectl's own convention (kubernetes/client-go tools/clientcmd/loader.go lockFile/lockName):
    # ``<file>.lock`` created with O_CREATE|O_EXCL, removed when the write is done. Taking the same
    # lock keeps labctl and kubectl (or two labctls) from interleaving read-modify-write cycles.
    return target.with_name(target.name + ".lock")


@contextlib.contextmanager
def kubeconfig_lock(target: Path, wait: float | None = None) -> Iterator[None]:
    lock = _lock_path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + (LOCK_WAIT if wait is None else wait)
    while True:
        try:
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            break
        except FileExistsError:
            if time.monotonic() >= deadline:
                raise _error(
                    f"{target} is locked: {lock} exists (kubectl or another labctl is writing it). "
                    f"If none is running, the lock is stale — remove {lock} and run the command again"
                ) from None
            time.sleep(0.05)
    os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


def replace_file(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` through a private temporary file in the same folder and
    os.replace: a crash leaves the old file or the new one, never an empty or half-written one.
    A ``target`` that is a link (a kubeconfig kept in the user's dotfiles) stays a link: the file
    it names is the one replaced."""
    target = Path(os.path.realpath(target))
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, target)
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def merged_targets(state_dir: Path) -> list[Path]:
    record = state_dir / MERGED_RECORD
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return []
    return [Path(p) for p in data.get("merged_into", []) if isinstance(p, str)]


def _record_target(state_dir: Path, target: Path) -> None:
    from labctl.state import write_private

    targets = merged_targets(state_dir)
    resolved = target.expanduser().absolute()
    if resolved not in targets:
        targets.append(resolved)
    write_private(state_dir / MERGED_RECORD, json.dumps({"merged_into": [str(p) for p in targets]}, indent=2) + "\n")


def merge_kubeconfig_file(lab: Lab, target: Path) -> Path:
    """Merge the lab's kubeconfig into ``target`` under kubectl's lock, atomically, and remember it."""
    if not lab.kubeconfig.exists():
        raise _error(f"{lab.kubeconfig} does not exist yet — run `labctl create` first")
    target = target.expanduser()
    if target.absolute() == lab.kubeconfig.absolute():
        return target  # KUBECONFIG names the lab's own file: it already holds everything
    lab_config = lab.kubeconfig.read_text(encoding="utf-8")
    with kubeconfig_lock(target):
        existing = target.read_text(encoding="utf-8") if target.exists() else None
        replace_file(target, merge_kubeconfig(existing, lab_config))
    _record_target(lab.state_dir, target)
    return target


def remove_merged_contexts(lab: Lab) -> list[Path]:
    """Take the lab's entries out of every file `merge` put them in (the record), or, for a lab merged
    before labctl kept a record, out of the user's kubeconfig. Returns the files that changed."""
    targets = merged_targets(lab.state_dir)
    if not (lab.state_dir / MERGED_RECORD).exists():
        fallback = user_kubeconfig_path()
        if fallback.absolute() != lab.kubeconfig.absolute():
            targets = [fallback]
    changed = []
    for target in targets:
        if not target.exists():
            continue
        with kubeconfig_lock(target):
            updated = remove_from_kubeconfig(target.read_text(encoding="utf-8"), lab.spec.name)
            if updated is not None:
                replace_file(target, updated)
                changed.append(target)
    (lab.state_dir / MERGED_RECORD).unlink(missing_ok=True)
    return changed
