"""`labctl versions --check`: does every pinned download still exist upstream?

For an instructor a week before the workshop. Pins rot: a tag is deleted, a box version is cleaned
up, an apt pocket moves on. Each pin is looked up where the lab will fetch it from:

- add-on manifest URLs: an HTTP HEAD (a permanent redirect is "moved": the playbooks' curl does not
  follow it for raw.githubusercontent.com), and the project's newest GitHub release;
- image tags: the registry's manifest API (``/v2/<name>/manifests/<tag>``), and its tag list;
- the box version: the Vagrant box catalogue (the metadata ``vagrant box add`` reads);
- apt package versions: the repository's Packages index.

``base`` (``--upstream URL`` or ``LABCTL_UPSTREAM``) sends every lookup to one server instead —
the tests' loopback fake upstream (tests/fakeupstream.py); nothing else changes.
"""

from __future__ import annotations

import fnmatch
import gzip
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labctl.cache import MANIFEST_TYPES, CacheError, Source, Upstreams, _version_key, parse_packages, split_reference
from labctl.spec import LabSpec

OK, MISSING, MOVED, ERROR, UNREACHABLE = "ok", "missing", "moved", "error", "unreachable"
EXIT_PROBLEM = 1  # a pin is missing, moved, or its lookup failed
EXIT_OFFLINE = 3  # no upstream answered at all: nothing was checked
GITHUB_API = "https://api.github.com"
VAGRANT_CATALOGUE = "https://vagrantcloud.com"


@dataclass(frozen=True)
class Row:
    pin: str
    where: str
    status: str
    newest: str = ""
    note: str = ""


def upstreams_at(base: str) -> Upstreams:
    """Every upstream host rewritten onto ``base`` (the layout tests/fakeupstream.py serves)."""
    base = base.rstrip("/")
    return Upstreams(
        ollama_registry=base,
        registries={h: base for h in ("docker.io", "registry.k8s.io", "quay.io", "ghcr.io", "nvcr.io")},
        apt=[(f"{base}/apt/", "Packages")],
        vagrant_cloud=f"{base}/vc-api",
        url_rewrites={
            "https://raw.githubusercontent.com": f"{base}/raw",
            "https://github.com": f"{base}/gh",
            GITHUB_API: f"{base}/ghapi",
            VAGRANT_CATALOGUE: f"{base}/vc",
        },
    )


def _unreachable(err: BaseException) -> bool:
    import httpx

    return isinstance(err, (httpx.ConnectError, httpx.ConnectTimeout, OSError))


class Checker:
    def __init__(
        self, spec: LabSpec, upstreams: Upstreams, source: Source | None = None, timeout: float = 20.0
    ) -> None:
        import httpx

        self.spec = spec
        self.up = upstreams
        self.source = source or Source(timeout=timeout)
        self.http = httpx.Client(follow_redirects=False, timeout=timeout)

    def close(self) -> None:
        self.http.close()
        self.source.close()

    def _rewrite(self, url: str) -> str:
        return self.up.rewrite(url)

    # ---- manifests ---------------------------------------------------------------------------
    def manifest(self, name: str, version: str, url: str, kind: str = "manifest") -> Row:
        target = self._rewrite(url)
        try:
            status, where = self._head(target)
        except Exception as err:  # every failure becomes a row
            return Row(f"{name} {version} ({kind})", url, UNREACHABLE if _unreachable(err) else ERROR, note=str(err))
        newest = self._github_latest(url)
        if status == 200:
            return Row(f"{name} {version} ({kind})", url, OK, newest)
        if status in (301, 308):
            return Row(f"{name} {version} ({kind})", url, MOVED, newest, f"now at {where}")
        if status in (404, 410):
            return Row(f"{name} {version} ({kind})", url, MISSING, newest)
        return Row(f"{name} {version} ({kind})", url, ERROR, newest, f"HTTP {status}")

    def _head(self, url: str) -> tuple[int, str]:
        """Final status of a HEAD, following temporary redirects (GitHub release downloads use them)."""
        for _ in range(5):
            resp = self.http.head(url)
            if resp.status_code in (302, 303, 307):
                url = str(resp.url.join(resp.headers.get("location", "")))
                continue
            return resp.status_code, resp.headers.get("location", "")
        return 310, url

    def _github_latest(self, url: str) -> str:
        m = re.match(r"https://(?:raw\.githubusercontent\.com|github\.com)/([^/]+)/([^/]+)/", url)
        if not m:
            return ""
        try:
            data = json.loads(self.source.read(self._rewrite(f"{GITHUB_API}/repos/{m[1]}/{m[2]}/releases/latest")))
            return str(data.get("tag_name", "")).removeprefix("v")
        except Exception:  # "newest" is a hint, not a verdict
            return ""

    # ---- images ------------------------------------------------------------------------------
    def image(self, key: str, ref: str) -> Row:
        host, name, tag = split_reference(ref)
        base = self.up.registries.get(host, f"https://{host}")
        try:
            self.source.read(f"{base}/v2/{name}/manifests/{tag}", {"Accept": MANIFEST_TYPES})
            status = OK
        except CacheError as err:
            if "HTTP 404" not in str(err):
                return Row(f"{key} (image)", ref, ERROR, note=str(err))
            status = MISSING
        except Exception as err:
            return Row(f"{key} (image)", ref, UNREACHABLE if _unreachable(err) else ERROR, note=str(err))
        return Row(f"{key} (image)", ref, status, self._newest_tag(base, name, tag))

    def _newest_tag(self, base: str, name: str, tag: str) -> str:
        """The highest tag shaped like the pinned one (v1.2.3 → v*.*.*), from the registry's tag list."""
        try:
            tags = json.loads(self.source.read(f"{base}/v2/{name}/tags/list")).get("tags") or []
        except Exception:
            return ""
        shape = re.sub(r"\d+", r"\\d+", re.escape(tag))
        same = [t for t in tags if re.fullmatch(shape, t)]
        return max(same, key=_version_key) if same else ""

    # ---- box ---------------------------------------------------------------------------------
    def box(self) -> Row:
        from labctl.versions import all_pins, expiry_note

        spec = self.spec
        provider = "libvirt" if spec.provider.type == "libvirt" else "virtualbox"
        pin = f"{spec.box} {spec.box_version} (box, {provider})"
        url = f"{VAGRANT_CATALOGUE}/{spec.box}"
        note = next((expiry_note(p) for p in all_pins() if p.key == f"box_{provider}_version"), "")
        if spec.box_version != next(p.version for p in all_pins() if p.key == f"box_{provider}_version"):
            note = ""  # the lab overrides the pinned version: the pin's expiry says nothing about it
        try:
            meta = json.loads(self.source.read(self._rewrite(url), {"Accept": "application/json"}))
        except CacheError as err:
            return Row(pin, url, MISSING if "HTTP 404" in str(err) else ERROR, note=str(err))
        except Exception as err:
            return Row(pin, url, UNREACHABLE if _unreachable(err) else ERROR, note=str(err))
        versions = [
            v.get("version", "")
            for v in meta.get("versions", [])
            if any(p.get("name") == provider for p in v.get("providers", []))
        ]
        newest = max(versions, key=_version_key) if versions else ""
        return Row(pin, url, OK if spec.box_version in versions else MISSING, newest, note)

    # ---- apt ---------------------------------------------------------------------------------
    def apt(self, name: str, pattern: str, indexes: dict[str, list[dict[str, str]] | BaseException]) -> Row:
        seen: list[str] = []
        where = ""
        failures: list[BaseException] = []
        for base, index_path in self.up.apt:
            url = base.rstrip("/") + "/" + index_path
            if url not in indexes:
                try:
                    raw = self.source.read(url)
                    indexes[url] = parse_packages((gzip.decompress(raw) if url.endswith(".gz") else raw).decode())
                except Exception as err:
                    indexes[url] = err  # remembered: the next package fails the same way without a new request
            index = indexes[url]
            if isinstance(index, BaseException):
                failures.append(index)
                continue
            found = [p["Version"] for p in index if p.get("Package") == name and "Version" in p]
            if found and not where:
                where = url
            seen += found
        pin = f"{name}={pattern} (apt)"
        repos = ", ".join(b for b, _ in self.up.apt)
        if not seen and failures and len(failures) == len(self.up.apt):
            status = UNREACHABLE if all(_unreachable(e) for e in failures) else ERROR
            return Row(pin, repos, status, note=str(failures[0]))
        newest = max(seen, key=_version_key) if seen else ""
        ok = any(fnmatch.fnmatch(v, pattern) for v in seen)
        return Row(pin, where or repos, OK if ok else MISSING, newest)

    # ---- all ---------------------------------------------------------------------------------
    def rows(self, progress: Callable[[str], None] = lambda _: None) -> list[Row]:
        from labctl.lock import images, manifests, packages

        out: list[Row] = []
        for name, (version, url) in manifests().items():
            if url.endswith("/"):  # csi-driver-nfs: a folder of files; check each
                from labctl.cache import CSI_NFS_FILES

                out += [self.manifest(name, version, url + f) for f in CSI_NFS_FILES]
            else:
                out.append(self.manifest(name, version, url))
            progress(name)
        from labctl.versions import PINS, release_downloads

        for d in release_downloads(getattr(self.spec, "arch", "amd64")):  # containerd and runc release assets
            project = "runc" if d.key.startswith("runc") else "containerd"
            out.append(self.manifest(d.key, PINS[project], d.url, kind="release"))
        for key, ref in images(self.spec).items():
            out.append(self.image(key, ref))
            progress(key)
        if self.spec.provider.type != "ssh":
            out.append(self.box())
        indexes: dict[str, list[dict[str, str]] | BaseException] = {}
        for name, pattern in packages().items():
            out.append(self.apt(name, pattern, indexes))
        return out


def check(spec: LabSpec, *, base: str | None = None, source: Source | None = None) -> list[Row]:
    checker = Checker(spec, upstreams_at(base) if base else _real_upstreams(), source)
    try:
        return checker.rows()
    finally:
        checker.close()


def _real_upstreams() -> Upstreams:
    up = Upstreams.default()
    up.url_rewrites = {}
    # Every apt pin now lives in pkgs.k8s.io (containerd and runc are release files): skip downloading
    # Ubuntu's large archive indexes.
    up.apt = [(base, index) for base, index in up.apt if "pkgs.k8s.io" in base]
    return up


def offline(rows: list[Row]) -> bool:
    return bool(rows) and all(r.status == UNREACHABLE for r in rows)


def exit_code(rows: list[Row]) -> int:
    if offline(rows):
        return EXIT_OFFLINE
    return 0 if all(r.status == OK for r in rows) else EXIT_PROBLEM


def table(rows: list[Row]) -> str:
    head = ("PIN", "WHERE", "STATUS", "NEWEST SEEN")
    cells: list[tuple[str, ...]] = [head] + [(r.pin, r.where, r.status, r.newest or "-") for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    lines = []
    for c, r in zip(cells, [None, *rows], strict=True):
        line = "  ".join(c[i].ljust(widths[i]) for i in range(3)) + "  " + c[3]
        if r is not None and r.note:
            line += f"  ({r.note})"
        lines.append(line.rstrip())
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    if offline(rows):
        return "offline: no upstream answered (no internet?) — nothing was checked; run this again with internet"
    bad = [r for r in rows if r.status != OK]
    if not bad:
        return f"all {len(rows)} pinned downloads exist upstream"
    counts: dict[str, int] = {}
    for r in bad:
        counts[r.status] = counts.get(r.status, 0) + 1
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    return f"{parts} of {len(rows)} pinned downloads — update labctl/versions.py (or this labctl) before class"


def as_json(rows: list[Row]) -> list[dict[str, Any]]:
    return [r.__dict__ for r in rows]
