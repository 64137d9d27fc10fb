"""`create` ends with the checks of `labctl verify`, run from this machine: a lab that was built but
does not answer here exits 7 (VerifyFailed), not 0. And the HTTP check ignores proxy variables.

The whole plan runs against a scripted TEST DOUBLE transport (every check says "done"); the HTTP
check of Open WebUI is replaced where it would leave loopback (the network rule of the tests)."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console as RichConsole

from labctl import lifecycle
from labctl import status as status_module
from labctl.errors import ExitCode
from labctl.lab import Console, Lab
from labctl.spec import LabSpec
from labctl.status import EndpointCheck, VerifyFailed, _webui_health
from labctl.transport.scripted import ScriptedTransport

ADMIN_CONF = """apiVersion: v1
clusters:
- cluster: {server: 'https://10.251.250.10:6443', certificate-authority-data: Y2E=}
  name: kubernetes
users:
- name: kubernetes-admin
  user: {client-certificate-data: Y2VydA==, client-key-data: a2V5}
"""


def _lab(tmp_path: Path) -> Lab:
    key = tmp_path / "id_ed25519"
    key.write_text("not a real key: the scripted transport never logs in")

    def node(name: str, ip: str) -> dict:
        return {"name": name, "ip": ip, "cpus": 1, "memory_mib": 1024, "ssh_user": "u", "ssh_key": str(key)}

    spec = LabSpec.from_dict(
        {
            "name": "verify-at-end",
            "provider": {"type": "ssh"},
            "network": {"subnet": "10.251.250.0/24", "metallb_pool": "10.251.250.2-10.251.250.5"},
            "nodes": {"master": node("master", "10.251.250.10"), "workers": [], "nfs": node("nfs", "10.251.250.11")},
        }
    )
    return Lab.of(spec, state_dir=tmp_path / "state")


def _create(lab: Lab) -> str:
    transport = ScriptedTransport().on("cat /etc/kubernetes/admin.conf", stdout=ADMIN_CONF)
    out = io.StringIO()
    try:
        lifecycle.create(lab, Console(RichConsole(file=out, width=200)), transport_factory=lambda: transport)
    finally:
        _create.output = out.getvalue()  # type: ignore[attr-defined]
    return out.getvalue()


def test_create_exits_7_when_open_webui_does_not_answer_from_this_machine(tmp_path, monkeypatch):
    url = "http://10.251.250.2:8080/health"
    monkeypatch.setattr(
        status_module, "_webui_health",
        lambda spec, timeout=5.0: EndpointCheck("open-webui-health", False, f"unreachable: {url} (ConnectError)"),
    )  # fmt: skip
    lab = _lab(tmp_path)
    with pytest.raises(VerifyFailed) as info:
        _create(lab)
    assert info.value.exit_code == ExitCode.VERIFY_FAILED == 7
    message = str(info.value)
    assert "the lab was built but" in message and "checks fail from this machine" in message
    assert f"open-webui-health: unreachable: {url}" in message
    assert "route to 10.251.250.0/24" in message and "MetalLB" in message
    assert "Verify the lab from this machine" in _create.output  # type: ignore[attr-defined]
    assert "created in" not in _create.output  # type: ignore[attr-defined]  # no success summary


def test_create_succeeds_only_when_every_check_passes(tmp_path, monkeypatch):
    checks = [EndpointCheck("open-webui-health", True, "answered 200"),
              EndpointCheck("nodes-ready", True, "1/1 Ready")]  # fmt: skip
    monkeypatch.setattr(status_module, "verify", lambda lab, **kw: (None, checks))
    text = _create(_lab(tmp_path))
    assert "ok    open-webui-health" in text and "created in" in text


def test_create_with_only_does_not_verify(tmp_path, monkeypatch):
    def boom(*a, **kw):
        raise AssertionError("verify must not run for --only")

    monkeypatch.setattr(status_module, "verify", boom)
    transport = ScriptedTransport()
    lifecycle.create(
        _lab(tmp_path), Console(RichConsole(file=io.StringIO())), only=["node-prep.write-hosts-file"],
        transport_factory=lambda: transport,
    )  # fmt: skip


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status": true}'
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_webui_health_ignores_proxy_variables(health_server, monkeypatch):
    # A proxy that does not exist: used, it would make a healthy lab look unreachable.
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    spec = SimpleNamespace(webui_address="127.0.0.1", apps=SimpleNamespace(openwebui=SimpleNamespace(port=health_server)))
    check = _webui_health(spec)  # type: ignore[arg-type]
    assert check.ok, check.detail
