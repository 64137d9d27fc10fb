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
    """Write a file that holds a secret: 0600 before any byte is written, never through a symlink."""
    return write_new(path, content, 0o600)


def write_new(path: Path, content: str | bytes, mode: int = 0o644) -> Path:
    """Write ``path`` as a new file: a fresh temporary file beside it (O_EXCL|O_NOFOLLOW, ``mode``
    from the start) renamed over it. A symlink planted at ``path`` is replaced, never followed, so a
    secret cannot be written into the file it points to; a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    tmp.unlink(missing_ok=True)  # a leftover of a run that died here (unlink removes a link, not its target)
    fd = os.open(tmp, flags, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    return path
