"""The background pull's real rendered scripts (26-image-pull.yaml and a layer's wait step), run by
bash on this machine with a crictl TEST DOUBLE on PATH and the job's folder moved into tmp_path.

What the issue asks of the pull, each checked here: it starts detached and returns at once, pulls at
most PULL_CONCURRENCY at a time, keeps going when one pull fails, skips images already present, and a
layer's wait waits for its images, then names the node and any image whose pull failed."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from labctl import images as images_mod
from labctl.plan import build_plan
from labctl.spec import LabSpec

CRICTL = r"""#!/bin/bash
# TEST DOUBLE: crictl inspecti/pull against files in $FAKE_CR; pull takes $FAKE_PULL_SECONDS and fails
# for references containing $FAKE_FAIL; 6 s for those containing the text in $FAKE_CR/slow, if any.
# Records the most pulls seen running at once.
key=$(printf '%s' "$2" | tr '/:@' '___')
case $1 in
  inspecti) [ -e "$FAKE_CR/have/$key" ] ;;
  pull)
    echo "$2" >> "$FAKE_CR/pulls"
    touch "$FAKE_CR/running/$key"
    now=$(find "$FAKE_CR/running" -type f | wc -l)
    [ "$now" -le "$(cat "$FAKE_CR/max" 2>/dev/null || echo 0)" ] || echo "$now" > "$FAKE_CR/max"
    slow=$(cat "$FAKE_CR/slow" 2>/dev/null || true)
    if [ -n "$slow" ] && [[ $2 == *"$slow"* ]]; then sleep 6; else sleep "$FAKE_PULL_SECONDS"; fi
    rm -f "$FAKE_CR/running/$key"
    if [ -n "$FAKE_FAIL" ] && [[ $2 == *"$FAKE_FAIL"* ]]; then echo "E1123 failed to resolve reference \"$2\"" >&2; exit 1; fi
    touch "$FAKE_CR/have/$key" ;;
  *) exit 2 ;;
esac
"""


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(images_mod, "PULL_DIR", str(tmp_path / "pull"))
    monkeypatch.setattr(images_mod, "PULL_LOG", str(tmp_path / "pull.log"))
    monkeypatch.setattr(images_mod, "WAIT_SECONDS", 60)
    cr = tmp_path / "cr"
    for sub in ("have", "running"):
        (cr / sub).mkdir(parents=True)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "crictl").write_text(CRICTL)
    (tmp_path / "bin" / "crictl").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        "FAKE_CR": str(cr),
        "FAKE_PULL_SECONDS": "0.3",
        "FAKE_FAIL": "metrics-server",
        "LABCTL_PULL_BACKOFF": "0",
    }
    plan = build_plan(LabSpec.default(), include_provider=False)

    def script(step_id: str, host: str, kind: str = "run") -> subprocess.CompletedProcess[str]:
        cmd = next(c for c in plan.step(step_id).commands if c.host == host)
        text = "set -eo pipefail\n" + {"run": cmd.run, "check": cmd.check, "on_interrupt": cmd.on_interrupt}[kind]
        return subprocess.run(["bash", "-s"], input=text, env=env, capture_output=True, text=True, timeout=120)

    return script, cr, tmp_path, images_mod.image_plan(LabSpec.default())


def test_the_pull_starts_detached_limits_concurrency_and_keeps_going(node):
    script, cr, tmp, plan = node
    refs = plan.pulls("worker1")
    begun = time.monotonic()
    started = script("image-pull.start-background-pull", "worker1")
    assert started.returncode == 0, started.stderr
    # returns at once: 18 pulls of 0.3 s, 3 at a time, take about 2 s
    assert time.monotonic() - begun < 1.5 and "pulling 18 images in the background" in started.stdout
    waited = script("apps.wait-for-apps-images", "worker1")
    assert waited.returncode == 0, waited.stderr
    apps = plan.awaited("worker1", "apps")
    assert f"worker1: apps images: {len(apps)} of {len(apps)} present, 0 failed" in waited.stdout
    for _ in range(200):  # the storage layer's images may still be pulling
        if (tmp / "pull" / "finished").exists():
            break
        time.sleep(0.1)
    log = (tmp / "pull.log").read_text()
    failed = next(r for r in refs if "metrics-server" in r)
    assert f"FAILED {failed}" in log and "finished: 1 failed" in log
    assert sorted((cr / "pulls").read_text().split()) == sorted([*refs, failed, failed])  # 3 attempts
    assert 2 <= int((cr / "max").read_text()) <= images_mod.PULL_CONCURRENCY
    # the failed image is named with its node by the wait of the layer that needs it
    storage = script("storage.wait-for-storage-images", "worker1")
    assert storage.returncode == 0
    assert f"worker1: the background pull of {failed} failed" in storage.stdout
    assert "1 failed" in storage.stdout

    # A re-run: the check fails (one image is missing), the run pulls only that one again.
    assert script("image-pull.start-background-pull", "worker1", "check").returncode != 0
    (cr / "pulls").unlink()
    assert script("image-pull.start-background-pull", "worker1").returncode == 0
    for _ in range(100):
        if (tmp / "pull" / "finished").exists():
            break
        time.sleep(0.1)
    assert (cr / "pulls").read_text().split() == [failed] * 3
    assert f"present {refs[0]}" in (tmp / "pull.log").read_text()


def test_a_wait_without_a_running_pull_leaves_the_image_to_the_kubelet(node):
    script, _, _, _ = node
    out = script("cni-calico.wait-for-calico-images", "master")
    assert out.returncode == 0
    assert "no background image pull on this node" in out.stdout


def test_the_apps_wait_for_what_the_model_download_needs_not_for_open_webui(node):
    """Ollama's and the model Job's images are pulled before Open WebUI's, and the apps' wait returns
    once they are in while Open WebUI's (made slow here) is still downloading."""
    script, cr, tmp, plan = node
    (cr / "slow").write_text("open-webui")
    refs = plan.pulls("worker1")
    webui = next(r for r in refs if "open-webui" in r)
    ollama, curl = next(r for r in refs if "ollama/ollama" in r), next(r for r in refs if "curl" in r)
    assert plan.awaited("worker1", "apps") == [ollama, curl]
    assert refs.index(ollama) < refs.index(curl) < refs.index(webui) == len(refs) - 1
    assert script("image-pull.start-background-pull", "worker1").returncode == 0
    begun = time.monotonic()
    waited = script("apps.wait-for-apps-images", "worker1")
    assert waited.returncode == 0, waited.stderr
    assert "worker1: apps images: 2 of 2 present, 0 failed" in waited.stdout
    assert webui not in waited.stdout
    key = webui.replace("/", "_").replace(":", "_")
    assert (cr / "running" / key).exists() and time.monotonic() - begun < 6  # still downloading
    for _ in range(100):  # let the detached job finish inside tmp_path
        if (tmp / "pull" / "finished").exists():
            break
        time.sleep(0.1)
    assert webui in (cr / "pulls").read_text().split()


def test_ctrl_c_stops_the_pull_and_the_next_run_starts_a_fresh_one(node):
    """The start step's `on_interrupt` (run by the runner on Ctrl-C: labctl.interrupt_hooks) kills the
    detached job's whole process group — xargs, each pull_one, each crictl — forgets its pid, and
    records nothing as failed; the next run's start step then starts a new job instead of trusting
    the dead one."""
    script, cr, tmp, _plan = node
    (tmp / "bin" / "crictl").write_text(CRICTL.replace('sleep "$FAKE_PULL_SECONDS"', "sleep 30"))
    started = script("image-pull.start-background-pull", "worker1")
    assert started.returncode == 0, started.stderr
    pid = int((tmp / "pull" / "pid").read_text())
    for _ in range(50):  # the first pulls are running
        if list((cr / "running").iterdir()):
            break
        time.sleep(0.1)
    assert list((cr / "running").iterdir())
    stopped = script("image-pull.start-background-pull", "worker1", "on_interrupt")
    assert stopped.returncode == 0, stopped.stderr
    assert f"worker1: stopped the background image pull (pid {pid})" in stopped.stdout
    group = subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True)
    assert group.stdout == "", f"left running in the job's group: {group.stdout}"
    assert not (tmp / "pull" / "pid").exists()
    assert (tmp / "pull" / "failed").read_text() == ""  # an interrupted pull is not a failed image
    assert "stopped by labctl (interrupted)" in (tmp / "pull.log").read_text()
    # Nothing to stop any more: says so, exit 0.
    again = script("image-pull.start-background-pull", "worker1", "on_interrupt")
    assert again.returncode == 0 and "no background image pull running" in again.stdout
    # The next run starts a new job (not "already running").
    (tmp / "bin" / "crictl").write_text(CRICTL)
    rerun = script("image-pull.start-background-pull", "worker1")
    assert rerun.returncode == 0 and "images in the background" in rerun.stdout, rerun.stdout
    new_pid = int((tmp / "pull" / "pid").read_text())
    assert new_pid != pid
    for _ in range(200):
        if (tmp / "pull" / "finished").exists():
            break
        time.sleep(0.1)
    assert (tmp / "pull" / "finished").exists()
