"""The per-lab lock: one labctl at a time changes a lab (create, destroy, halt, resume).

An fcntl lock on ``<state folder>/.lock``, held for the life of the command. The kernel drops it
when the process ends, however it ends, so a crashed labctl never leaves a stale lock behind. The
file holds the holder's PID so the second labctl can say who is busy. Labs with other names have
other folders and other locks: they never wait for each other.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from labctl.errors import LabctlError


class LabBusy(LabctlError):
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
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
            os.close(fd)
            raise LabBusy(
                f"lab {self.lab!r} is busy: another labctl ({holder}) holds {self.path} — wait for it to "
                "finish (or stop that process), then run the command again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"PID {os.getpid()}, {self.command}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            # Empty the file first: a reader between unlock and close must not blame a finished PID.
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
