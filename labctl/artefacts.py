"""Files a plan copies to hosts before a step runs (a step's ``upload:`` names them).

Planning stays pure: artefacts are rendered from the spec (and the lab's generated secrets) into
bytes; the runner writes them with the given mode before the step's commands run. The dry run and
the handout show each artefact's name, destination and size, never its content (it may hold a secret).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from labctl.secrets import LabSecrets
    from labctl.spec import LabSpec

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


def build_artefacts(
    spec: LabSpec, state_dir: Path, *, secrets: LabSecrets | None = None, offline: bool = False
) -> dict[str, Artefact]:
    """The manifest bundles the playbooks upload and apply: ``metallb-config``, ``storage``, ``apps``.

    Each goes to ``/etc/labctl/<name>.yaml``. ``apps`` holds the lab's Secret (Open WebUI's signing
    key), so it is marked secret and written 0600. ``secrets`` defaults to the lab's own, read from
    (or generated once into) ``state_dir``; tests pass fixed ones. ``offline``: a create from a warm
    cache (the room has no internet), rendered like lab.yaml's ``offline: true``.
    """
    from labctl.manifests import LAB_BUNDLES, Target, render_bundles
    from labctl.secrets import load_or_create

    lab_secrets = secrets if secrets is not None else load_or_create(state_dir)
    bundles = render_bundles(spec, lab_secrets, Target(offline=offline))
    out: dict[str, Artefact] = {}
    for name in LAB_BUNDLES:
        secret = name == "apps"
        out[name] = Artefact(
            name=name,
            dest=f"{REMOTE_DIR}/{name}.yaml",
            content=bundles[name].encode(),
            mode=0o600 if secret else 0o644,
            secret=secret,
        )
    return out
