"""Secrets a lab generates once and keeps: the Open WebUI signing key and the Grafana admin password.

They live in ``<state dir>/secrets.json`` (0600, written by ``labctl.state.write_private``) so a
rebuilt or re-applied lab keeps the same key — a new key would log every user out. Nothing here
prints a value; ``LabSecrets.__repr__`` hides them so a stray log line or traceback cannot leak one.
Tests inject fixed values by constructing ``LabSecrets`` directly (golden files stay stable).
"""

from __future__ import annotations

import json
import os
import secrets as _random
import stat
from dataclasses import dataclass, fields
from pathlib import Path

from labctl.errors import LabctlError

SECRETS_FILE = "secrets.json"


class SecretsError(LabctlError):
    """The secrets file exists but cannot be used as it is."""

    exit_code = 2


@dataclass(frozen=True)
class LabSecrets:
    webui_secret_key: str
    grafana_admin_password: str

    def __repr__(self) -> str:  # never show a value, even in a traceback
        return f"LabSecrets({', '.join(f.name + '=<hidden>' for f in fields(self))})"

    __str__ = __repr__

    @classmethod
    def generate(cls) -> LabSecrets:
        # URL-safe random text: Open WebUI signs its JWTs with the key; Grafana's admin logs in with
        # the password (monitoring option), read with `kubectl get secret`, never printed by labctl.
        return cls(webui_secret_key=_random.token_urlsafe(48), grafana_admin_password=_random.token_urlsafe(18))


def secrets_path(state_dir: Path) -> Path:
    return Path(state_dir) / SECRETS_FILE


def load_or_create(state_dir: Path) -> LabSecrets:
    """The lab's secrets: read from the state folder, or generated once and stored there (0600)."""
    from labctl.state import write_private

    path = secrets_path(state_dir)
    if path.is_symlink():
        # Planted or not, a link is not where labctl keeps secrets: never read, chmod or write through it.
        raise SecretsError(f"{path}: is a symbolic link — remove it; labctl keeps the lab's secrets in a plain 0600 file")
    if not path.exists():
        created = LabSecrets.generate()
        write_private(path, json.dumps({f.name: getattr(created, f.name) for f in fields(created)}) + "\n")
        return created
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        # Someone widened it: tighten it again rather than keep using a readable secret silently.
        os.chmod(path, 0o600)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        stored = {f.name: str(data[f.name]) for f in fields(LabSecrets) if f.name in data}
        # A secret added by a newer labctl is generated once and stored next to the old ones.
        missing = {k: v for k, v in vars(LabSecrets.generate()).items() if k not in stored}
        if missing:
            stored.update(missing)
            write_private(path, json.dumps(stored) + "\n")
        return LabSecrets(**stored)
    except (ValueError, KeyError, TypeError) as err:
        raise SecretsError(
            f"{path}: unreadable lab secrets ({type(err).__name__}) — restore it from a backup, or delete it "
            "to generate new ones (every Open WebUI user will have to log in again)"
        ) from None
