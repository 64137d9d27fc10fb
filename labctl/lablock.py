"""The per-lab lock: one labctl at a time changes a lab (create, destroy, halt, resume).

An fcntl lock on ``<state folder>/.lock``, held for the life of the command. The kernel drops it
when the process ends, however it ends, so a crashed labctl never leaves a stale lock behind. The
file names the holder (host, PID, command) so the second labctl can say who is busy — the host
matters when the state folder is on a network file system shared by several machines. Labs with
other names have other folders and other locks: they never wait for each other.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from pathlib import Path
from types import TracebackType

from labctl.errors import LabctlError


class LabBusy(LabctlError):
    exit_code = 6


class LockUnavailable(LabctlError):
    """The state folder's file system cannot lock (NFS without lockd, some FUSE/SMB mounts)."""

    exit_code = 6


class LabLock:
    def __init__(self, state_dir: Path, lab: str, command: str = "labctl") -> None:
        self.path = Path(state_dir) / ".lock"
        self.lab = lab
        self.command = command
        self._fd: int | None = None

    def acquire(self) -> LabLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LabBusy(
                f"lab {self.lab!r} is busy: another labctl ({holder}) holds {self.path} — wait for it to "
                "finish (or stop that process on that host), then run the command again"
            ) from None
        except OSError as err:
            os.close(fd)
            # ENOLCK: an NFS mount without lockd (nolock), or a file system that has no locks at all.
            what = "has no lock service (NFS without lockd?)" if err.errno == errno.ENOLCK else f"refused a lock ({err.strerror})"
            raise LockUnavailable(
                f"cannot lock {self.path}: its file system {what}. Keep labctl's state on a local disk: "
                "set LABCTL_HOME to a local folder (e.g. export LABCTL_HOME=/var/tmp/$USER/labctl), then run again"
            ) from None
        with contextlib.suppress(OSError):  # the lock is held; the holder's name is a courtesy to the next labctl
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"host {socket.gethostname()}, PID {os.getpid()}, {self.command}\n".encode(), 0)
        self._fd = fd
        return self

    def discard(self) -> None:
        """Remove the lock file while holding it (destroy, whose folder goes too)."""
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        if self._fd is not None:
            # Empty the file first: a reader between unlock and close must not blame a finished PID.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> LabLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    """Who holds the lock, as the holder wrote it; a file system that cannot read it back (some SMB
    mounts refuse reads of a file another client locked) still gets a message, not a traceback."""
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError as err:
        return f"holder unknown: {err.strerror} reading the lock file"
    return text or "holder unknown: it has not written its name yet"
