"""Redaction of secrets from logs and console: what must vanish, and what must stay readable."""

from __future__ import annotations

import os

from labctl.logs import Redactor, RunLog

JOIN = (
    "kubeadm join 10.251.2.10:6443 --token b8dc3b.c68cdbf62ad710ac "
    "--discovery-token-ca-cert-hash sha256:696ee7cce2c95598753ed26bdb22ea09a48b94bc33c943a99e5904d8aed5c879"
)
BUNDLE = """apiVersion: v1
kind: Secret
stringData:
  WEBUI_SECRET_KEY: plainwordsecretvalue
data:
  token: d2VidWktc2VjcmV0LWtleS03ZjNhOWMxZTJiNGQ=
---
image: ghcr.io/open-webui/open-webui:v0.11.4
"""


def test_single_line_secret_and_its_pieces_are_redacted():
    r = Redactor()
    r.add("join_command", JOIN)
    out = r(f"ran: {JOIN}\nworker said token b8dc3b.c68cdbf62ad710ac was wrong, hash sha256:696ee7cce2c95598753ed26bdb22ea09a48b94bc33c943a99e5904d8aed5c879")
    assert "b8dc3b.c68cdbf62ad710ac" not in out and "696ee7cc" not in out
    assert out.startswith("ran: <redacted:join_command>")
    assert "10.251.2.10:6443" in r("connecting to 10.251.2.10:6443")  # the address alone is not secret


def test_multi_line_secret_redacts_key_material_not_every_line():
    r = Redactor()
    r.add("apps", BUNDLE)
    out = r("value plainwordsecretvalue and d2VidWktc2VjcmV0LWtleS03ZjNhOWMxZTJiNGQ= pulled ghcr.io/open-webui/open-webui:v0.11.4\ndone\nkind: Secret")
    assert "plainwordsecretvalue" not in out and "d2VidWktc2VjcmV0" not in out
    assert "ghcr.io/open-webui/open-webui:v0.11.4" in out and "done" in out and "kind: Secret" in out
    assert r(BUNDLE) == "<redacted:apps>"


def test_run_log_is_private_and_redacted(tmp_path):
    r = Redactor()
    log = RunLog(tmp_path / "logs" / "run.log", r)
    r.add("cert_key", "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0")
    log.write("uploading certs with key 0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0\nsecond line")
    log.close()
    text = (tmp_path / "logs" / "run.log").read_text()
    assert "<redacted:cert_key>" in text and "0f1e2d3c" not in text and text.count("\n") == 2
    assert os.stat(tmp_path / "logs" / "run.log").st_mode & 0o777 == 0o600
