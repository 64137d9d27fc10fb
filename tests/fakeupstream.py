"""TEST DOUBLE: a loopback stand-in for the upstreams `labctl cache fill` fetches from.

This machine cannot reach registry.ollama.ai, Docker Hub, pkgs.k8s.io or Vagrant Cloud, so the
cache tests run the real fetch code (labctl.cache) against this server on 127.0.0.1, which speaks
the same protocols with tiny made-up content:

- the OCI distribution API (``/v2/<name>/manifests/<ref>``, ``/v2/<name>/blobs/<digest>``) for
  every image and model of a spec, behind an anonymous bearer-token challenge like Docker Hub's;
  images are served as an index (linux/amd64 + linux/arm64) pointing at OCI manifests;
- an apt repository (``/apt/Packages`` + ``/apt/pool/*.deb``, real .debs built with dpkg-deb) listing
  amd64 and arm64 builds side by side, as pkgs.k8s.io's flat index does, with decoy versions that
  must not be picked;
- a Vagrant Cloud-style box download per architecture, and the add-on manifests under /raw and /gh
  (GitHub's hosts).

It counts every byte it serves (``bytes_served``), so tests can prove a second fill fetches nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from labctl.cache_fetch import Upstreams, split_reference
from labctl.cache_needs import addon_files, model_parts
from labctl.lab_pins import images, packages
from labctl.spec import LabSpec

TOKEN = "fake-anonymous-token"
# Versions a pinned pattern must select, and decoys it must not (older revision, next release).
DEB_VERSIONS = {
    "kubeadm": ["1.36.3-1.1", "1.36.4-1.1", "1.37.1-1.1"],
    "kubelet": ["1.36.4-1.1"],
    "kubectl": ["1.36.4-1.1"],
    "kubernetes-cni": ["1.7.1-1.1"],
    "cri-tools": ["1.36.0-1.1"],
    "containerd": ["1.7.28-0ubuntu1~24.04.2", "2.2.1-0ubuntu1~24.04.3"],
    "runc": ["1.3.4-0ubuntu1~24.04.1"],
}


# Images the fake add-on manifests name that labctl does not pin itself (as the real csi-driver-nfs
# manifests name their sidecars): `cache fill` must find them by reading the manifests. Written the
# way manifests write them; normalized: docker.io/library/busybox:1.37, registry.k8s.io/sig-storage/....
ADDON_ONLY_IMAGES = (
    "registry.k8s.io/sig-storage/csi-provisioner:v5.3.0",
    "registry.k8s.io/sig-storage/livenessprobe:v2.17.0",
    "docker.io/library/busybox:1.37",
)


def addon_manifest(key: str, rel: str, url: str) -> str:
    """TEST DOUBLE of an add-on manifest: small, but shaped like the real one where the playbooks and
    `cache fill` look — Calico's commented CALICO_IPV4POOL_CIDR and `IP: autodetect` env (50's sed
    edits them), metrics-server's --secure-port arg (70 adds --kubelet-insecure-tls after it), and
    the images in containers/initContainers, some of them also pinned by labctl, some not."""
    from labctl.versions import PINS

    head = f"# TEST DOUBLE of {url}\n"
    if rel.startswith("addons/calico-"):
        v = PINS["calico"]
        return head + f"""---
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: calico-node
  namespace: kube-system
spec:
  template:
    spec:
      initContainers:
        - name: install-cni
          image: docker.io/calico/cni:v{v}
        - name: wait
          image: busybox:1.37
      containers:
        - name: calico-node
          image: docker.io/calico/node:v{v}
          env:
            - name: IP
              value: "autodetect"
            # - name: CALICO_IPV4POOL_CIDR
            #   value: "192.168.0.0/16"
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: examples.crd.projectcalico.org
spec:
  versions:
    - name: v1
      schema:
        openAPIV3Schema:
          properties:
            containers:
              description: a schema property called containers is not a list of containers
              type: array
"""
    if rel.startswith("addons/metrics-server-"):
        return head + f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: metrics-server
  namespace: kube-system
spec:
  template:
    spec:
      containers:
        - name: metrics-server
          image: registry.k8s.io/metrics-server/metrics-server:v{PINS["metrics_server"]}
          args:
            - --cert-dir=/tmp
            - --secure-port=10250
"""
    if rel.endswith("/csi-nfs-controller.yaml"):
        return head + f"""kind: Deployment
apiVersion: apps/v1
metadata:
  name: csi-nfs-controller
  namespace: kube-system
spec:
  template:
    spec:
      containers:
        - name: csi-provisioner
          image: registry.k8s.io/sig-storage/csi-provisioner:v5.3.0
        - name: liveness-probe
          image: registry.k8s.io/sig-storage/livenessprobe:v2.17.0
        - name: nfs
          image: registry.k8s.io/sig-storage/nfsplugin:v{PINS["csi_driver_nfs"]}
"""
    return head + "apiVersion: v1\nkind: List\nitems: []\n"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tgz(name: str, content: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(content))
    return gzip.compress(buf.getvalue(), mtime=0)


def build_deb(workdir: Path, name: str, version: str, arch: str = "amd64") -> Path:
    root = workdir / f"{name}-{version}-{arch}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr/share/labctl-fake").mkdir(parents=True)
    (root / "usr/share/labctl-fake" / name).write_text(f"fake {name} {version} (labctl test double)\n")
    (root / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\nMaintainer: labctl tests <tests@labctl.invalid>\n"
        f"Description: TEST DOUBLE of {name}, built by tests/fakeupstream.py\n"
    )
    out = workdir / f"{name}_{version}_{arch}.deb"
    subprocess.run(
        ["dpkg-deb", "-Zgzip", "--root-owner-group", "--build", str(root), str(out)], check=True, capture_output=True
    )
    return out


@dataclass
class FakeUpstream:
    spec: LabSpec
    workdir: Path
    blobs: dict[str, bytes] = field(default_factory=dict)  # digest → bytes
    manifests: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)  # (name, ref) → (type, bytes)
    files: dict[str, bytes] = field(default_factory=dict)  # other paths → bytes
    bytes_served: int = 0
    requests: list[str] = field(default_factory=list)
    require_token: bool = True
    # for `labctl versions --check`: GitHub "owner/repo" → latest release tag, image name → more tags
    latest_releases: dict[str, str] = field(default_factory=dict)
    extra_tags: dict[str, list[str]] = field(default_factory=dict)
    box_versions: list[str] = field(default_factory=list)
    moved: dict[str, str] = field(default_factory=dict)  # path → where a permanent redirect (301) points

    def __post_init__(self) -> None:
        for ref in images(self.spec).values():
            self._add_image(ref)
        for model in self.spec.apps.ollama.models:
            self._add_model(model)
        self._add_apt()
        from tests.shims import release_bodies

        for url, body in release_bodies().items():  # containerd and runc release assets
            path = url.replace("https://raw.githubusercontent.com", "/raw").replace("https://github.com", "/gh")
            self.files[path] = body
        if not self.box_versions:
            self.box_versions = ["202401.01.0", self.spec.box_version]
        for key, rel, url in addon_files():
            path = url.replace("https://raw.githubusercontent.com", "/raw").replace("https://github.com", "/gh")
            self.files[path] = addon_manifest(key, rel, url).encode()
        for ref in ADDON_ONLY_IMAGES:
            self._add_image(ref)
        for arch in ("amd64", "arm64"):
            self.files[f"/vc/box-{arch}"] = f"TEST DOUBLE {arch} vagrant box for {self.spec.box}".encode() + b"\n" * 64

    # -- content ---------------------------------------------------------------------------------
    def _blob(self, data: bytes) -> dict:
        d = _digest(data)
        self.blobs[d] = data
        return {"digest": d, "size": len(data)}

    def _add_image(self, ref: str) -> None:
        _, name, tag = split_reference(ref)
        per_arch = []
        for arch in ("amd64", "arm64"):
            config = self._blob(json.dumps({"architecture": arch, "os": "linux", "ref": ref}).encode())
            layer = self._blob(_tgz("hello.txt", f"TEST DOUBLE layer of {ref} ({arch})\n".encode()))
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **layer}],
                }
            ).encode()
            d = _digest(manifest)
            self.manifests[(name, d)] = ("application/vnd.oci.image.manifest.v1+json", manifest)
            per_arch.append(
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": d,
                    "size": len(manifest),
                    "platform": {"os": "linux", "architecture": arch},
                }
            )
        index = json.dumps(
            {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": per_arch}
        ).encode()
        self.manifests[(name, tag)] = ("application/vnd.oci.image.index.v1+json", index)

    def _add_model(self, model: str) -> None:
        ns, repo, tag = model_parts(model)
        config = self._blob(json.dumps({"model_format": "gguf", "fake": True}).encode())
        weights = self._blob(b"GGUF" + hashlib.sha256(model.encode()).digest() * 64)  # 2 KiB of "weights"
        template = self._blob(b"{{ .Prompt }}")
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", **config},
                "layers": [
                    {"mediaType": "application/vnd.ollama.image.model", **weights},
                    {"mediaType": "application/vnd.ollama.image.template", **template},
                ],
            }
        ).encode()
        self.manifests[(f"{ns}/{repo}", tag)] = ("application/vnd.docker.distribution.manifest.v2+json", manifest)

    def _add_apt(self) -> None:
        debdir = self.workdir / "debs-src"
        debdir.mkdir(parents=True, exist_ok=True)
        wanted = set(packages()) | {"kubernetes-cni", "cri-tools", "runc"}
        stanzas = []
        for name in sorted(wanted):
            for version, arch in ((v, a) for v in DEB_VERSIONS[name] for a in ("amd64", "arm64")):
                deb = build_deb(debdir, name, version, arch)
                data = deb.read_bytes()
                path = f"pool/{deb.name}"
                self.files[f"/apt/{path}"] = data
                stanzas.append(
                    f"Package: {name}\nVersion: {version}\nArchitecture: {arch}\nFilename: {path}\n"
                    f"Size: {len(data)}\nSHA256: {hashlib.sha256(data).hexdigest()}\n"
                    "Description: TEST DOUBLE\n something long\n"
                )
        self.files["/apt/Packages"] = "\n".join(stanzas).encode()

    # -- serving ---------------------------------------------------------------------------------
    def upstreams(self, base: str) -> Upstreams:
        return Upstreams(
            ollama_registry=base,
            registries={h: base for h in ("docker.io", "registry.k8s.io", "quay.io", "ghcr.io", "nvcr.io")},
            apt=[(f"{base}/missing-repo/", "Packages.gz"), (f"{base}/apt/", "Packages")],
            vagrant_cloud=f"{base}/vc-api",
            url_rewrites={"https://raw.githubusercontent.com": f"{base}/raw", "https://github.com": f"{base}/gh"},
        )

    def respond(self, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        self.requests.append(path)
        if path in self.moved:
            return 301, {"Location": self.moved[path]}, b""
        if path.startswith("/ghapi/repos/") and path.endswith("/releases/latest"):
            # GitHub's "latest release" API (labctl versions --check shows it as the newest seen)
            repo = path[len("/ghapi/repos/") : -len("/releases/latest")]
            if repo in self.latest_releases:
                return 200, {"Content-Type": "application/json"}, json.dumps({"tag_name": self.latest_releases[repo]}).encode()
            return 404, {}, b"{}"
        if path == f"/vc/{self.spec.box}":
            # The Vagrant box catalogue's metadata (what `vagrant box add` reads): the pinned version
            # for both providers, and an older one.
            versions = [
                {"version": v, "providers": [{"name": "virtualbox"}, {"name": "libvirt"}]} for v in self.box_versions
            ]
            return 200, {"Content-Type": "application/json"}, json.dumps({"name": self.spec.box, "versions": versions}).encode()
        if path.startswith("/token"):
            return 200, {"Content-Type": "application/json"}, json.dumps({"token": TOKEN}).encode()
        if path.startswith("/v2/"):
            if self.require_token and headers.get("authorization") != f"Bearer {TOKEN}":
                realm = f'Bearer realm="http://{headers.get("host")}/token",service="fake",scope="pull"'
                return 401, {"WWW-Authenticate": realm}, b"{}"
            rest = path[len("/v2/") :]
            if rest.endswith("/tags/list"):
                name = rest[: -len("/tags/list")]
                tags = sorted({ref for (n, ref) in self.manifests if n == name and not ref.startswith("sha256:")})
                tags += self.extra_tags.get(name, [])
                if not tags:
                    return 404, {}, b"{}"
                return 200, {"Content-Type": "application/json"}, json.dumps({"name": name, "tags": tags}).encode()
            if "/manifests/" in rest:
                name, ref = rest.split("/manifests/")
                if (name, ref) in self.manifests:
                    media, body = self.manifests[(name, ref)]
                    return 200, {"Content-Type": media}, body
            if "/blobs/" in rest:
                digest = rest.split("/blobs/")[1]
                if digest in self.blobs:
                    return 200, {}, self.blobs[digest]
            return 404, {}, b"not found"
        if path.startswith("/vc-api/") and path.endswith("/vagrant.box"):  # .../providers/<p>/<arch>/vagrant.box
            return 302, {"Location": f"/vc/box-{path.split('/')[-2]}"}, b""
        if path in self.files:
            return 200, {}, self.files[path]
        return 404, {}, b"not found"


class Serving:
    """Run a FakeUpstream on 127.0.0.1 (a random free port) in a thread; stop() by the test."""

    def __init__(self, upstream: FakeUpstream) -> None:
        fake = upstream

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, headers, body = fake.respond(
                    self.path.split("?")[0], {k.lower(): v for k, v in self.headers.items()}
                )
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                if status == 200:
                    fake.bytes_served += len(body)

            def do_HEAD(self) -> None:
                status, headers, body = fake.respond(
                    self.path.split("?")[0], {k.lower(): v for k, v in self.headers.items()}
                )
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
