"""The version lock: lab.lock.yaml next to lab.yaml, every version a lab resolves to.

An instructor runs ``labctl lock`` once and hands out lab.yaml + lab.lock.yaml; ``create``, ``plan``
and ``handout`` then refuse to run when the lock and what the spec + pins resolve to disagree
(e.g. a student upgraded labctl and its pins moved). The error names the key, the locked value, the
current value, and the fix.

Format (``format: labctl-lock/v1``), keys sorted so the file is stable and diffs well:

- ``locked``: flat ``key: value`` — the values that must match (box, packages, manifest URLs,
  image references, model names). These are compared on every load.
- ``digests``: ``key: sha256:...`` or ``null`` — content digests when known (from a filled warm
  cache: ``labctl lock --cache DIR``), ``null`` otherwise. Digests are facts about downloaded bytes,
  not derived from the spec, so they are recorded and shown but never cause a drift error.
- ``notes``: why a value is what it is (e.g. what ``*`` in a package version means).
- ``arch``: the architecture the lab resolved to (``provider.arch``); informative, like the digests —
  one lock serves a room of amd64 laptops and Apple Silicon Macs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from labctl.errors import LabctlError, SpecError
from labctl.lab_pins import images, manifests, packages  # the warm cache reads the same list
from labctl.spec import LabSpec

FORMAT = "labctl-lock/v1"
HEADER = """\
# Written by `labctl lock` — do not edit by hand. Every student given this file and lab.yaml gets
# the same lab; labctl refuses to run when they disagree. After changing lab.yaml or upgrading
# labctl, run `labctl lock` again and hand out both files.
"""


class LockDrift(LabctlError):
    """The lock and the spec/pins resolve to different versions."""

    exit_code = 2


def lock_path(lab_file: Path | None) -> Path:
    """lab.yaml → lab.lock.yaml beside it; classroom.yaml → classroom.lock.yaml; no file → ./lab.lock.yaml."""
    if lab_file is None:
        lab_file = Path("lab.yaml")
    return lab_file.with_name(f"{lab_file.stem}.lock.yaml")


def resolve(spec: LabSpec) -> dict[str, str]:
    """Every locked key → the value the spec and pins give today (flat, for comparison)."""
    from labctl.versions import PINS, kubernetes_minor

    out: dict[str, str] = {
        "box.name": spec.box,
        "box.version": spec.box_version,
        "box.provider": "libvirt" if spec.provider.type == "libvirt" else "virtualbox",
        "kubernetes.version": PINS["kubernetes"],
        "kubernetes.apt_repo": f"https://pkgs.k8s.io/core:/stable:/v{kubernetes_minor()}/deb/",
    }
    for name, version in packages().items():
        out[f"packages.{name}"] = version
    from labctl.versions import release_downloads

    # containerd and runc: upstream release files, recorded with the architecture left open (the lock
    # is for every laptop of the class, amd64 and Apple Silicon alike; `arch` above says whose it was)
    for d in release_downloads(spec.arch):
        out[f"releases.{d.key}"] = d.url.replace(spec.arch, "{arch}")
    for name, (version, url) in manifests().items():
        out[f"manifests.{name}.version"] = version
        out[f"manifests.{name}.url"] = url
    for name, ref in images(spec).items():
        out[f"images.{name}"] = ref
    for model in spec.apps.ollama.models:
        out[f"models.{model}"] = model
    return dict(sorted(out.items()))


def build_lock(spec: LabSpec, cache_dir: Path | None = None) -> dict[str, Any]:
    locked = resolve(spec)
    digests: dict[str, str | None] = {k: None for k in locked if k.startswith(("images.", "models.", "box.name"))}
    if cache_dir is not None:
        from labctl.cache_scan import known_digests

        for key, digest in known_digests(spec, cache_dir).items():
            if key in digests:
                digests[key] = digest
    return {
        "format": FORMAT,
        "lab": spec.name,
        # The locked versions are the same on amd64 and arm64 (every pin publishes both); what differs
        # is the bytes: the digests below, from a warm cache, are this architecture's.
        "arch": spec.arch,
        "locked": locked,
        "digests": dict(sorted(digests.items())),
        "notes": {
            "digests": "null = not known when locked; fill a warm cache, then `labctl lock --cache DIR` records them",
            "arch": "the CPU architecture the lab resolved to when locked (provider.arch); image and box digests are "
            "this architecture's, the locked versions serve amd64 and arm64 alike",
            "packages": "a version ending in -* matches any Debian revision of that release (pkgs.k8s.io revisions are "
            "not always -1.1); the exact .deb is recorded in a warm cache's index",
            "images": "images whose tags labctl pins (kubeadm's etcd/coredns/pause included); images named inside "
            "the add-on manifests (e.g. the csi-driver-nfs sidecars) follow the locked manifest URLs, and a warm "
            "cache reads them out of those manifests",
        },
    }


def dump_lock(data: dict[str, Any]) -> str:
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=200)
    return HEADER + body


def write_lock(spec: LabSpec, path: Path, *, cache_dir: Path | None = None) -> Path:
    path.write_text(dump_lock(build_lock(spec, cache_dir)), encoding="utf-8")
    return path


def read_lock(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise SpecError(str(path), [f"invalid YAML: {err} — run `labctl lock` to write it again"]) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise SpecError(str(path), [f"format is {found!r}, expected {FORMAT!r} — run `labctl lock` to write it again"])
    if not isinstance(data.get("locked"), dict):
        raise SpecError(str(path), ["has no `locked:` mapping — run `labctl lock` to write it again"])
    return data


def drift(spec: LabSpec, data: dict[str, Any]) -> list[tuple[str, str | None, str | None]]:
    """(key, locked value, current value) for every key that differs; None = absent on that side."""
    current = resolve(spec)
    locked = {str(k): (None if v is None else str(v)) for k, v in data["locked"].items()}
    keys = sorted(set(current) | set(locked))
    return [(k, locked.get(k), current.get(k)) for k in keys if locked.get(k) != current.get(k)]


def check_lock(spec: LabSpec, lab_file: Path | None) -> dict[str, Any] | None:
    """Raise ``LockDrift`` when a lock exists next to the lab file and disagrees; return the lock."""
    path = lock_path(lab_file)
    if not path.exists():
        return None
    data = read_lock(path)
    diffs = drift(spec, data)
    if diffs:
        key, was, now = diffs[0]
        more = f" (and {len(diffs) - 1} more keys)" if len(diffs) > 1 else ""
        was_s = "absent" if was is None else repr(was)
        now_s = "absent" if now is None else repr(now)
        raise LockDrift(
            f"{path}: {key} is locked to {was_s} but the lab spec and labctl's pins now give {now_s}{more} — "
            f"run `labctl lock` to re-lock, or restore the locked version"
        )
    return data
