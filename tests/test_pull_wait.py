"""The model-download wait (80-apps.yaml, step wait-for-model-download) against the project's fake
API server (tests/shims/lib/fake_apiserver.py), run on the host through a kubectl TEST DOUBLE that
calls the fake in-process: the step's real rendered scripts, run by bash.

FACTS.md #23: `kubectl wait --for=condition=Complete job` does not return when the Job fails, so
the step must follow the Job by name and look for Failed too (kubernetes v1.36 Job controller sets
condition Failed with reason BackoffLimitExceeded or DeadlineExceeded)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from labctl.placement import pull_job_name
from labctl.plan import build_plan
from labctl.spec import LabSpec

SHIMS = Path(__file__).resolve().parent / "shims"
STEP = "apps.wait-for-model-download"
KUBECTL = f"""#!{sys.executable}
# TEST DOUBLE: kubectl answered by the fake API server's own function, against the state in $FAKE_STATE.
import importlib.util, os, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("fake_apiserver", {str(SHIMS / "lib" / "fake_apiserver.py")!r})
api = importlib.util.module_from_spec(spec)
spec.loader.exec_module(api)
api.STATE = Path(os.environ["FAKE_STATE"])
argv = sys.argv[1:]
files = [{{"name": argv[i + 1], "text": Path(argv[i + 1]).read_text()}} for i, a in enumerate(argv) if a == "-f"]
code, out, err = api.kubectl(argv, files)
sys.stdout.write(out); sys.stderr.write(err); sys.exit(code)
"""


def job(name: str, outcome: str = "Complete", logs: str = "", models: str = "llama3.2:1b") -> dict:
    annotations = {"labctl.dev/models": models, "fake-apiserver/outcome": outcome, "fake-apiserver/logs": logs}
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "llm", "annotations": annotations,
                         "labels": {"app.kubernetes.io/component": "model-pull"}},
            "spec": {"template": {"spec": {"containers": [{"name": "pull", "image": "curl"}]}}}}  # fmt: skip


class Cluster:
    def __init__(self, tmp: Path) -> None:
        spec = importlib.util.spec_from_file_location("fake_apiserver_pull_wait", SHIMS / "lib" / "fake_apiserver.py")
        self.api = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.api)
        self.state = tmp / "apiserver.json"
        self.api.STATE = self.state
        self.api.save({"objects": {}, "nodes": ["master"], "tokens": [], "joins": [], "service_cidr": "10.96.0.0/12",
                       "pod_cidr": "10.10.0.0/16", "version": "test"})  # fmt: skip
        self.bin = tmp / "bin"
        self.bin.mkdir()
        (self.bin / "kubectl").write_text(KUBECTL)
        (self.bin / "kubectl").chmod(0o755)
        self.bundle = tmp / "apps.yaml"
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "llm"}})

    def apply(self, *docs: dict, bundle: bool = False) -> None:
        text = yaml.safe_dump_all(docs)
        if bundle:
            self.bundle.write_text(text)
        code, _, err = self.api.kubectl(["apply", "--server-side", "-f", "x.yaml"], [{"name": "x.yaml", "text": text}])
        assert code == 0, err

    def run(self, script: str, timeout: float = 60) -> subprocess.CompletedProcess:
        script = script.replace("/etc/labctl/apps.yaml", str(self.bundle))
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "FAKE_STATE": str(self.state)}
        return subprocess.run(["bash", "-c", "set -eo pipefail\n" + script], env=env, capture_output=True, text=True,
                              timeout=timeout)  # fmt: skip


def wait_step(models: list[str]):  # type: ignore[no-untyped-def]
    spec = LabSpec.from_dict({"apps": {"ollama": {"models": models}}})
    step = next(s for s in build_plan(spec).steps if s.id == STEP)
    return step, step.commands[0]


@pytest.fixture
def cluster(tmp_path) -> Cluster:
    return Cluster(tmp_path)


def test_a_failed_job_ends_the_wait_at_once_with_its_last_log_lines(cluster):
    _, cmd = wait_step(["llama3.2:1b"])
    name = pull_job_name(["llama3.2:1b"])
    logs = "\n".join(f"line {i}" for i in range(30)) + "\ngiving up on llama3.2:1b after 4 attempts: pull model manifest: file does not exist"
    failing = job(name, "Failed", logs)
    cluster.apply(failing, bundle=True)
    assert cluster.run(cmd.check).returncode != 0  # a failed Job is not "downloaded"
    started = time.monotonic()
    res = cluster.run(cmd.run)
    assert res.returncode == 1, res.stdout + res.stderr
    assert time.monotonic() - started < 20
    assert f"Job llm/{name} (downloading llama3.2:1b) FAILED" in res.stderr
    assert "giving up on llama3.2:1b after 4 attempts" in res.stderr and "line 29" in res.stderr
    assert "line 5\n" not in res.stderr  # the last 20 lines, not the whole log
    # The Job that failed in an earlier run was deleted and started again before the wait.
    assert "failed in an earlier run: deleting it and starting it again" in res.stdout
    assert cluster.api.load()["deleted"] == [f"Job/llm/{name}"]


def test_an_old_failed_job_of_another_model_list_does_not_hold_the_wait(cluster):
    _, cmd = wait_step(["llama3.2:1b"])
    old = job(pull_job_name(["no-such-model:7b"]), "Failed", "pull model manifest: file does not exist", "no-such-model:7b")
    current = job(pull_job_name(["llama3.2:1b"]), "Complete")
    cluster.apply(old, current, bundle=True)
    assert cluster.run(cmd.check).returncode == 0, "the step is done: this list's Job completed"
    res = cluster.run(cmd.run)
    assert res.returncode == 0, res.stderr
    assert "completed" in res.stdout and "deleting" not in res.stdout


def test_a_job_that_completes_while_waited_for_ends_the_wait(cluster):
    _, cmd = wait_step(["llama3.2:1b"])
    name = pull_job_name(["llama3.2:1b"])
    cluster.apply(job(name, "Running"), bundle=True)
    script = cmd.run.replace("/etc/labctl/apps.yaml", str(cluster.bundle))
    env = {"PATH": f"{cluster.bin}:/usr/bin:/bin", "FAKE_STATE": str(cluster.state)}
    runner = subprocess.Popen(["bash", "-c", script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)
        assert runner.poll() is None, "a running Job must be waited for"
        cluster.apply(job(name, "Complete"))
        out, err = runner.communicate(timeout=30)
    finally:
        if runner.poll() is None:
            runner.kill()
    assert runner.returncode == 0, err
    assert f"waiting for Job llm/{name}" in out and "completed" in out


def test_the_deadline_grows_with_the_number_of_models():
    one, _ = wait_step(["a:1b"])
    three, cmd = wait_step(["a:1b", "b:1b", "c:1b"])
    assert three.timeout - one.timeout == 2 * 7200
    # The Job's own deadline (manifests/apps/model-pull-job.yaml.j2: 600 + 4 × 1800 per model) ends
    # before the wait gives up, so a Job that runs out of time is reported as Failed, with its logs.
    assert 600 + 4 * 1800 * 3 < 900 + 7200 * 3 < three.timeout
    assert "900 + 7200 * 3" in cmd.run
