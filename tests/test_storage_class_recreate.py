"""StorageClass parameters are immutable: an edited lab.yaml re-creates the class (issue #12 item 4).

kubernetes pkg/apis/storage/validation/validation.go (ValidateStorageClassUpdate) forbids updates to a
StorageClass's parameters, provisioner and reclaimPolicy (volumeBindingMode is immutable too), so the
next `create` after changing storage.on_delete, the NFS address or its export failed at the apply.
The rendered step (70-storage apply-default-storage-class), real bash, runs here against the fake
API server behind the ssh tier's kubectl double (tests/shims/lib/fake_apiserver.py), which refuses
those updates with the real server's message; a small kubectl stand-in hands it each call in-process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from labctl.artefacts import build_artefacts
from labctl.plan import build_plan
from labctl.spec import LabSpec
from labctl.transport.script import stdin_payload
from tests.manifest_cases import TEST_SECRETS

SHIMS = Path(__file__).resolve().parent / "shims"
STEP = "storage.apply-default-storage-class"

# TEST DOUBLE: kubectl as a file on PATH that sends argv and -f files to fake_apiserver.kubectl().
KUBECTL = f"""#!{sys.executable}
import json, os, sys
from pathlib import Path
sys.path.insert(0, {str(SHIMS / "lib")!r})
import fake_apiserver as api
api.STATE = Path(os.environ["FAKE_API_STATE"])
args = sys.argv[1:]
files = []
for i, a in enumerate(args):
    if a == "-f":
        files.append({{"name": args[i + 1], "text": Path(args[i + 1]).read_text()}})
with open(os.environ["FAKE_API_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
code, out, err = api.kubectl(args, files)
sys.stdout.write(out); sys.stderr.write(err); sys.exit(code)
"""


@pytest.fixture
def cluster(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(KUBECTL)
    (bin_dir / "kubectl").chmod(0o755)
    state = tmp_path / "apiserver.json"
    state.write_text(json.dumps({"objects": {}, "nodes": ["master"], "tokens": [], "joins": [],
                                 "service_cidr": "10.96.0.0/12", "pod_cidr": "10.10.0.0/16", "version": "test"}))  # fmt: skip
    return tmp_path, bin_dir, state


def lab(**storage: str) -> LabSpec:
    data = LabSpec.default().model_dump(mode="json")
    data["storage"].update(storage)
    return LabSpec.from_dict(data)


def run_step(cluster, spec: LabSpec) -> tuple[str, subprocess.CompletedProcess]:
    """Upload the storage bundle where the step reads it, then run check-then-run as the runner does."""
    tmp, bin_dir, state = cluster
    manifest = tmp / "storage.yaml"
    manifest.write_bytes(build_artefacts(spec, tmp / "state", secrets=TEST_SECRETS)["storage"].content)
    (cmd,) = build_plan(spec, include_provider=False).step(STEP).commands
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "FAKE_API_STATE": str(state), "FAKE_API_LOG": str(tmp / "calls.log")}

    def bash(script: str) -> subprocess.CompletedProcess:
        script = script.replace("/etc/labctl/storage.yaml", str(manifest))
        return subprocess.run(["bash", "-s"], input=stdin_payload(script), capture_output=True, env=env, timeout=60)

    check = bash(cmd.check)
    if check.returncode == 0:
        return "skipped", check
    return "ran", bash(cmd.run)


def live_class(cluster) -> dict:
    _, _, state = cluster
    objects = json.loads(state.read_text())["objects"]
    (sc,) = [o for k, o in objects.items() if k.startswith("StorageClass/")]
    return sc


def test_a_changed_storage_class_is_recreated_and_says_so(cluster):
    first = lab(on_delete="retain")
    what, res = run_step(cluster, first)
    assert what == "ran" and res.returncode == 0, res.stderr
    assert live_class(cluster)["parameters"]["onDelete"] == "retain"
    assert run_step(cluster, first)[0] == "skipped"  # unchanged: nothing to do

    changed = lab(on_delete="delete")
    what, res = run_step(cluster, changed)
    out = res.stdout.decode()
    assert what == "ran" and res.returncode == 0, res.stderr.decode()
    assert "re-creating it; bound volumes keep their own settings" in out
    assert "(parameters,reclaimPolicy)" in out
    sc = live_class(cluster)
    assert sc["parameters"]["onDelete"] == "delete" and sc["reclaimPolicy"] == "Delete"
    calls = [json.loads(line) for line in (cluster[0] / "calls.log").read_text().splitlines()]
    assert ["delete", "storageclass", first.storage.class_name, "--ignore-not-found"] in calls
    assert run_step(cluster, changed)[0] == "skipped"


def test_other_apply_errors_are_not_hidden_by_a_recreate(cluster):
    """Only the immutable-field refusal leads to delete + create; any other failure fails the step."""
    tmp, _, state = cluster
    _, res = run_step(cluster, lab())
    assert res.returncode == 0
    # a bundle the server rejects for another reason (no kind): the error is shown, nothing deleted
    bad = lab(on_delete="delete")
    spec_text = build_artefacts(bad, tmp / "state", secrets=TEST_SECRETS)["storage"].content.decode()
    assert "kind: StorageClass" in spec_text
    (cmd,) = build_plan(bad, include_provider=False).step(STEP).commands
    manifest = tmp / "storage.yaml"
    manifest.write_text(spec_text.replace("kind: StorageClass", "kind: ''"))
    env = {"PATH": f"{cluster[1]}:/usr/bin:/bin", "FAKE_API_STATE": str(state), "FAKE_API_LOG": str(tmp / "calls.log")}
    res = subprocess.run(
        ["bash", "-s"], input=stdin_payload(cmd.run.replace("/etc/labctl/storage.yaml", str(manifest))),
        capture_output=True, env=env, timeout=60,
    )  # fmt: skip
    assert res.returncode == 1
    assert b"apiVersion, kind or metadata.name not set" in res.stderr
    assert b"re-creating" not in res.stdout
    assert not any("delete" in line for line in (tmp / "calls.log").read_text().splitlines())
