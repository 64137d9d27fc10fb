"""The lab's kubeconfig on the host: kubeadm's admin.conf rewritten under lab-specific names, merged
into the user's kubeconfig on request, and removed from it again by `destroy`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labctl.lifecycle import Lab

ADMIN_CONF = "/etc/kubernetes/admin.conf"  # kubeadm's path; lifecycle reads the same file


def _error(message: str) -> Exception:
    # LifecycleError lives in lifecycle, which imports this module: import it when needed.
    from labctl.lifecycle import LifecycleError

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


def merge_kubeconfig_file(lab: Lab, target: Path) -> Path:
    from labctl.state import write_private

    if not lab.kubeconfig.exists():
        raise _error(f"{lab.kubeconfig} does not exist yet — run `labctl create` first")
    existing = target.read_text(encoding="utf-8") if target.exists() else None
    write_private(target, merge_kubeconfig(existing, lab.kubeconfig.read_text(encoding="utf-8")))
    return target
