"""Each lab's state folder: rendered Vagrantfile, run logs, secrets, kubeconfig, lock.

``$LABCTL_HOME/<lab name>/``, with ``LABCTL_HOME`` defaulting to ``$XDG_DATA_HOME/labctl`` (or
``~/.local/share/labctl``). One folder per lab name is what lets several labs live side by side.
"""

from __future__ import annotations

import os
from pathlib import Path


def labctl_home() -> Path:
    if env := os.environ.get("LABCTL_HOME"):
        return Path(env).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "labctl"


def lab_dir(name: str) -> Path:
    return labctl_home() / name


def write_private(path: Path, content: str | bytes) -> Path:
    """Write a file that holds a secret: created 0600 before any byte is written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its old mode through O_CREAT
        os.write(fd, data)
    finally:
        os.close(fd)
    return path
