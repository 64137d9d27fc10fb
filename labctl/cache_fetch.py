"""Where `labctl cache fill` downloads from and how: ``Upstreams`` (the default hosts; tests point
them at a loopback server), ``Source`` (GET over http(s) with anonymous bearer tokens and
Retry-After, or file://), and one fetcher per kind of item: images and models over the OCI
distribution API (registry.ollama.ai speaks it too), .debs from apt repositories' Packages indexes.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import json
import os
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

from labctl.cache_needs import (
    CHUNK,
    DEB_ARCH,
    OLLAMA_REGISTRY,
    CacheError,
    inside,
    model_manifest_path,
    model_parts,
    sha256_file,
)


@dataclass
class Upstreams:
    """Where `cache fill` fetches from without --mirror. Tests point these at a loopback server."""

    ollama_registry: str = f"https://{OLLAMA_REGISTRY}"
    # reference host → registry base URL (docker.io's API lives on another host)
    registries: dict[str, str] = field(
        default_factory=lambda: {
            "docker.io": "https://registry-1.docker.io",
            "registry.k8s.io": "https://registry.k8s.io",
            "quay.io": "https://quay.io",
            "ghcr.io": "https://ghcr.io",
            "nvcr.io": "https://nvcr.io",
        }
    )
    # apt repositories: (base URL, path of the Packages index under it); first match wins
    apt: list[tuple[str, str]] = field(default_factory=list)
    vagrant_cloud: str = "https://vagrantcloud.com"
    # URL prefix → replacement, applied to add-on manifest URLs (tests point GitHub at loopback)
    url_rewrites: dict[str, str] = field(default_factory=dict)

    def rewrite(self, url: str) -> str:
        for prefix, replacement in self.url_rewrites.items():
            if url.startswith(prefix):
                return replacement + url[len(prefix) :]
        return url

    @classmethod
    def default(cls, arch: str = DEB_ARCH) -> Upstreams:
        from labctl.versions import kubernetes_minor

        minor = kubernetes_minor()
        # Ubuntu serves amd64 from archive.ubuntu.com and every other architecture (arm64 included)
        # from ports.ubuntu.com/ubuntu-ports; pkgs.k8s.io's flat index lists every architecture.
        ubuntu = "http://archive.ubuntu.com/ubuntu/" if arch == "amd64" else "http://ports.ubuntu.com/ubuntu-ports/"
        return cls(
            apt=[
                (f"https://pkgs.k8s.io/core:/stable:/v{minor}/deb/", "Packages"),
                (ubuntu, f"dists/noble-updates/main/binary-{arch}/Packages.gz"),
                (ubuntu, f"dists/noble/main/binary-{arch}/Packages.gz"),
            ]
        )


class Source:
    """GET over http(s):// (httpx, redirects followed, anonymous bearer tokens) or file://."""

    # A registry that says 429 (Docker Hub: about 10 anonymous pulls an hour per address, manifest
    # requests included) or 503 is asked again after its Retry-After, a few times, if that is short.
    RATE_LIMIT_RETRIES = 3
    MAX_RETRY_AFTER_SECONDS = 300.0

    def __init__(self, timeout: float = 60.0, sleep: Callable[[float], None] | None = None) -> None:
        import time

        self.timeout = timeout
        self._client: Any = None
        self._tokens: dict[str, str] = {}
        self.bytes_downloaded = 0
        self.sleep = sleep or time.sleep

    def _http(self) -> Any:
        if self._client is None:
            import httpx

            self._client = httpx.Client(follow_redirects=True, timeout=self.timeout)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    @contextmanager
    def open(self, url: str, headers: dict[str, str] | None = None, _attempt: int = 0) -> Iterator[Iterator[bytes]]:
        if url.startswith("file://"):
            path = Path(url.removeprefix("file://"))
            if not path.is_file():
                raise CacheError(f"{url}: not found")

            def chunks() -> Iterator[bytes]:
                with path.open("rb") as f:
                    while chunk := f.read(CHUNK):
                        self.bytes_downloaded += len(chunk)
                        yield chunk

            yield chunks()
            return
        client = self._http()
        hdrs = dict(headers or {})
        scope = url.split("/v2/")[0] if "/v2/" in url else ""
        if scope in self._tokens:
            hdrs["Authorization"] = f"Bearer {self._tokens[scope]}"
        wait: float | None = None
        with client.stream("GET", url, headers=hdrs) as resp:
            if resp.status_code == 401 and scope and "Authorization" not in hdrs:
                resp.read()
                self._tokens[scope] = self._token(resp.headers.get("www-authenticate", ""), url)
            elif resp.status_code in (429, 503):
                resp.read()
                wait = retry_after_seconds(resp.headers.get("retry-after"), default=30.0 * (_attempt + 1))
                if _attempt >= self.RATE_LIMIT_RETRIES or wait > self.MAX_RETRY_AFTER_SECONDS:
                    raise CacheError(
                        f"GET {url}: HTTP {resp.status_code}, the registry asks to wait {wait:.0f} s — it rate-limits "
                        "this address (Docker Hub: about 10 anonymous pulls an hour, manifests included): fill the "
                        "cache later, from another network, or with --mirror"
                    )
            else:
                if resp.status_code != 200:
                    raise CacheError(f"GET {url}: HTTP {resp.status_code}")

                def chunks() -> Iterator[bytes]:
                    for chunk in resp.iter_bytes(CHUNK):
                        self.bytes_downloaded += len(chunk)
                        yield chunk

                yield chunks()
                return
        if wait is not None:
            self.sleep(wait)
            with self.open(url, headers, _attempt + 1) as again:
                yield again
            return
        with self.open(url, headers, _attempt) as again:  # retry once with the token
            yield again

    def _token(self, challenge: str, url: str) -> str:
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        if not challenge.lower().startswith("bearer") or "realm" not in params:
            raise CacheError(f"GET {url}: HTTP 401 and no anonymous token offered — this registry needs a login")
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        resp = self._http().get(params["realm"], params=query)
        if resp.status_code != 200:
            raise CacheError(f"token from {params['realm']}: HTTP {resp.status_code}")
        data = resp.json()
        return data.get("token") or data["access_token"]

    def read(self, url: str, headers: dict[str, str] | None = None) -> bytes:
        with self.open(url, headers) as chunks:
            return b"".join(chunks)

    def download(self, url: str, dest: Path, *, sha256: str | None = None, size: int | None = None) -> int:
        """Write url to dest atomically, verifying digest/size when given; returns bytes written."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        h = hashlib.sha256()
        written = 0
        with self.open(url) as chunks, tmp.open("wb") as f:
            for chunk in chunks:
                f.write(chunk)
                h.update(chunk)
                written += len(chunk)
        if sha256 and h.hexdigest() != sha256.removeprefix("sha256:"):
            tmp.unlink()
            raise CacheError(f"{url}: sha256 {h.hexdigest()} does not match the expected {sha256}")
        if size is not None and written != size:
            tmp.unlink()
            raise CacheError(f"{url}: {written} bytes, expected {size}")
        os.replace(tmp, dest)
        return written


def retry_after_seconds(value: str | None, default: float) -> float:
    """Retry-After as seconds: a number of seconds or an HTTP date (RFC 9110 section 10.2.3)."""
    if not value:
        return default
    value = value.strip()
    if value.isdigit():
        return float(value)
    from datetime import datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


def split_reference(ref: str) -> tuple[str, str, str]:
    """docker.io/ollama/ollama:0.40.1 → (docker.io, ollama/ollama, 0.40.1);
    registry.k8s.io/x@sha256:ab → (registry.k8s.io, x, sha256:ab) — the part after the name is what
    the registry's /manifests/ endpoint takes."""
    host, _, rest = ref.partition("/")
    if "@" in rest:
        name, _, digest = rest.partition("@")
        return host, name, digest
    name, _, tag = rest.rpartition(":")
    return host, name, tag


def fetch_model(source: Source, base: str, model: str, root: Path) -> int:
    """A model from an Ollama registry (OCI distribution API) into root/models, Ollama's layout."""
    ns, repo, tag = model_parts(model)
    raw = source.read(f"{base}/v2/{ns}/{repo}/manifests/{tag}", {"Accept": MANIFEST_TYPES})
    data = json.loads(raw)
    written = 0
    for layer in [data["config"], *data["layers"]]:
        blob = inside(root, "models/blobs/" + layer["digest"].replace(":", "-"))
        if blob.is_file() and blob.stat().st_size == int(layer["size"]):
            continue
        written += source.download(f"{base}/v2/{ns}/{repo}/blobs/{layer['digest']}", blob, sha256=layer["digest"])
    manifest = inside(root, model_manifest_path(model))
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_bytes(raw)  # last: a manifest only exists when all its blobs do
    return written + len(raw)


def fetch_model_from_mirror(source: Source, base: str, model: str, root: Path) -> int:
    """A model from a mirror laid out like a cache (models/manifests/..., models/blobs/...)."""
    rel = model_manifest_path(model)
    raw = source.read(f"{base}/{rel}")
    data = json.loads(raw)
    written = 0
    for layer in [data["config"], *data["layers"]]:
        name = layer["digest"].replace(":", "-")
        blob = inside(root, f"models/blobs/{name}")
        if blob.is_file() and blob.stat().st_size == int(layer["size"]):
            continue
        written += source.download(f"{base}/models/blobs/{name}", blob, sha256=layer["digest"])
    inside(root, rel).parent.mkdir(parents=True, exist_ok=True)
    inside(root, rel).write_bytes(raw)
    return written + len(raw)


def fetch_image(source: Source, base: str, ref: str, dest: Path, platform: str = "linux/amd64") -> int:
    """An image from a registry into one OCI archive (what `ctr images import` reads)."""
    _, name, tag = split_reference(ref)
    os_, arch = platform.split("/")
    raw = source.read(f"{base}/v2/{name}/manifests/{tag}", {"Accept": MANIFEST_TYPES})
    data = json.loads(raw)
    if "manifests" in data:  # an index: pick the platform
        picks = [
            m
            for m in data["manifests"]
            if m.get("platform", {}).get("os") == os_ and m["platform"].get("architecture") == arch
        ]
        if not picks:
            raise CacheError(f"{ref}: no {platform} image in its index")
        raw = source.read(f"{base}/v2/{name}/manifests/{picks[0]['digest']}", {"Accept": MANIFEST_TYPES})
        data = json.loads(raw)
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    media = data.get("mediaType", "application/vnd.oci.image.manifest.v1+json")
    with tempfile.TemporaryDirectory(dir=dest.parent if dest.parent.exists() else None) as tmpd:
        tmp = Path(tmpd)
        for blob in [data["config"], *data["layers"]]:
            source.download(
                f"{base}/v2/{name}/blobs/{blob['digest']}",
                tmp / "blobs" / "sha256" / blob["digest"].split(":")[1],
                sha256=blob["digest"],
            )
        (tmp / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(raw)
        (tmp / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": media,
                    "digest": digest,
                    "size": len(raw),
                    "annotations": {"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": tag},
                }
            ],
        }
        (tmp / "index.json").write_text(json.dumps(index))
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        with tarfile.open(part, "w") as tar:
            for member in ("oci-layout", "index.json", "blobs"):
                tar.add(tmp / member, arcname=member)
        os.replace(part, dest)
    return dest.stat().st_size


def parse_packages(text: str) -> list[dict[str, str]]:
    """A Debian Packages index → one dict per stanza (continuation lines dropped; we need no long fields)."""
    out: list[dict[str, str]] = []
    for stanza in re.split(r"\n\s*\n", text.strip()):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            k, _, v = line.partition(":")
            fields[k.strip()] = v.strip()
        if fields:
            out.append(fields)
    return out


def _version_key(version: str) -> list[Any]:
    """Good-enough ordering of Debian versions for picking the newest of one release's revisions."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", version)]


def fetch_deb(
    source: Source,
    repos: list[tuple[str, str]],
    name: str,
    pattern: str,
    root: Path,
    indexes: dict[str, list[dict[str, str]]],
    arch: str = DEB_ARCH,
) -> int:
    for base, index_path in repos:
        url = base.rstrip("/") + "/" + index_path
        if url not in indexes:
            try:
                raw = source.read(url)
            except CacheError:
                indexes[url] = []
                continue
            indexes[url] = parse_packages((gzip.decompress(raw) if url.endswith(".gz") else raw).decode())
        candidates = [
            p
            for p in indexes[url]
            if p.get("Package") == name
            and p.get("Architecture") in (arch, "all")
            and fnmatch.fnmatch(p.get("Version", ""), pattern)
        ]
        if candidates:
            best = max(candidates, key=lambda p: _version_key(p["Version"]))
            dest = root / "debs" / Path(best["Filename"]).name
            if dest.is_file() and sha256_file(dest) == best.get("SHA256"):
                return 0
            return source.download(base.rstrip("/") + "/" + best["Filename"], dest, sha256=best.get("SHA256"))
    raise CacheError(f"{name}={pattern}: not found in {', '.join(b for b, _ in repos)}")


def write_apt_index(debs_dir: Path) -> None:
    """Packages + SHA256SUMS for a flat repository (`deb [trusted=yes] file:/dir ./`), built with
    dpkg-deb so it works without dpkg-dev."""
    stanzas: list[str] = []
    sums: list[str] = []
    for deb in sorted(debs_dir.glob("*.deb")):
        control = subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True).stdout
        digest = sha256_file(deb)
        stanzas.append(
            control.rstrip("\n") + f"\nFilename: ./{deb.name}\nSize: {deb.stat().st_size}\nSHA256: {digest}\n"
        )
        sums.append(f"{digest}  {deb.name}")
    (debs_dir / "Packages").write_text("\n".join(stanzas), encoding="utf-8")
    (debs_dir / "SHA256SUMS").write_text("".join(s + "\n" for s in sums), encoding="utf-8")
