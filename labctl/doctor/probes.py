"""How doctor asks the host: run a command, read a file, look a program up, measure free disk.

Every probe goes through one ``Probes`` object, so that the same gathering code runs against the
real host (``HostProbes``) or against outputs recorded on another machine (``RecordedProbes``: a Mac
with Apple Silicon, an Intel Mac, a Linux laptop with KVM loaded). The recordings are JSON files
(tests/doctor_hosts/), one per host, so adding a host to the tests needs no code.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class Probes(Protocol):
    system: str  # sys.platform: "linux", "darwin", "win32", ...
    machine: str  # uname -m: "x86_64", "arm64", "aarch64"

    def run(self, argv: Sequence[str], timeout: float = 20) -> tuple[str | None, str]:
        """(stdout, stderr); stdout None when the program is missing or failed."""
        ...

    def read(self, path: str) -> str | None: ...

    def exists(self, path: str) -> bool: ...

    def which(self, name: str) -> str | None: ...

    def disk_free(self, path: str) -> int:
        """Free bytes of the file system holding ``path`` (or its nearest existing parent)."""
        ...


class HostProbes:
    """The real host."""

    def __init__(self) -> None:
        self.system = sys.platform
        self.machine = platform.machine()

    def run(self, argv: Sequence[str], timeout: float = 20) -> tuple[str | None, str]:
        if shutil.which(argv[0]) is None:
            return None, f"{argv[0]} not found"
        env = None
        if argv[0] == "vagrant":  # never with a variable that points Vagrant at another project
            from labctl.providers.vagrant_run import scrubbed_env

            env = scrubbed_env(os.environ)
        try:
            proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False, env=env)
        except (OSError, subprocess.TimeoutExpired) as err:
            return None, str(err)
        if proc.returncode != 0:
            return None, proc.stderr or proc.stdout
        return proc.stdout, proc.stderr

    def read(self, path: str) -> str | None:
        try:
            return Path(path).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None

    def exists(self, path: str) -> bool:
        return Path(path).exists()

    def which(self, name: str) -> str | None:
        return shutil.which(name)

    def disk_free(self, path: str) -> int:
        where = Path(path).expanduser()
        while not where.exists() and where != where.parent:
            where = where.parent
        return shutil.disk_usage(where).free


@dataclass
class RecordedProbes:
    """Outputs recorded on some host. ``commands`` maps the command line (words joined by one
    space) to {"stdout": ..., "stderr": ...}, or to null for a command that failed or is missing;
    a command that was not recorded counts as missing, as it would on a host without it."""

    system: str
    machine: str
    commands: Mapping[str, Mapping[str, str] | None] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)
    paths: Sequence[str] = ()  # paths that exist besides the files (/dev/kvm, sockets)
    programs: Mapping[str, str] = field(default_factory=dict)  # name → path, for which()
    free_bytes: int = 200 * 1024**3

    @classmethod
    def load(cls, path: Path | str) -> RecordedProbes:
        data: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
        data.pop("comment", None)
        return cls(**data)

    def run(self, argv: Sequence[str], timeout: float = 20) -> tuple[str | None, str]:
        answer = self.commands.get(" ".join(argv))
        if answer is None:
            return None, f"{argv[0]}: not recorded on this host"
        return answer.get("stdout", ""), answer.get("stderr", "")

    def read(self, path: str) -> str | None:
        return self.files.get(path)

    def exists(self, path: str) -> bool:
        return path in self.files or path in self.paths

    def which(self, name: str) -> str | None:
        return self.programs.get(name)

    def disk_free(self, path: str) -> int:
        return self.free_bytes
