"""Files a plan copies to hosts before a step runs (a step's ``upload:`` names them).

Planning stays pure: artefacts are rendered from the spec (and the lab's generated secrets) into
bytes; the runner writes them with the given mode before the step's commands run. The dry run and
the handout show each artefact's name, destination and size, never its content (it may hold a secret).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

REMOTE_DIR = "/etc/labctl"


@dataclass(frozen=True)
class Artefact:
    name: str
    dest: str
    content: bytes
    mode: int = 0o644
    secret: bool = False

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.content).hexdigest()[:12]

    def describe(self) -> str:
        return f"{self.name} → {self.dest} ({len(self.content)} bytes, sha256 {self.digest}, mode {self.mode:04o})"
