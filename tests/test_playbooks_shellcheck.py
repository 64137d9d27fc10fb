"""Every rendered command block passes `shellcheck -s bash`, as the runner sends it (validators tier).

Each check and run script of every host, for the default lab, a 3-worker lab, a GPU lab on
libvirt and a lab without workers, is wrapped exactly as the transport wraps it on the way to the host
(labctl.transport.script.stdin_payload: facts exported, `set -eo pipefail`, the script in braces),
then checked by the real shellcheck. A deliberately bad script proves the checker can fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from labctl.context import fact_variable
from labctl.plan import build_plan
from labctl.transport.script import stdin_payload
from tests.test_playbooks import LABS

pytestmark = pytest.mark.validators


def shellcheck(files: list[Path]) -> list[dict]:
    exe = shutil.which("shellcheck")
    if exe is None:
        pytest.skip("SHELLCHECK MISSING: apt-get install shellcheck (CI installs it)")
    res = subprocess.run([exe, "-s", "bash", "-f", "json1", *map(str, files)], capture_output=True, text=True)
    assert res.returncode in (0, 1), res.stderr
    return json.loads(res.stdout or '{"comments": []}')["comments"]


def rendered_blocks(tmp_path: Path) -> dict[Path, str]:
    """One file per distinct (check or run) payload; name → where it came from."""
    blocks: dict[str, str] = {}
    for lab in ("default", "three-workers", "gpu-libvirt", "no-workers", "big-disks"):
        for step in build_plan(LABS[lab](), include_provider=False).steps:
            env = {fact_variable(f): "kubeadm join 192.0.2.1:6443 --token x --discovery-token-ca-cert-hash sha256:0" for f in step.uses}
            for cmd in step.commands:
                hook = (("on_interrupt", cmd.on_interrupt),) if cmd.on_interrupt else ()
                for phase, script in (("check", cmd.check), ("run", cmd.run), *hook):
                    payload = stdin_payload(script, env).decode()
                    blocks.setdefault(payload, f"{lab}: {step.id} on {cmd.host} ({phase})")
    files = {}
    for n, (payload, origin) in enumerate(blocks.items()):
        path = tmp_path / f"block{n:03d}.sh"
        path.write_text(payload)
        files[path] = origin
    return files


def test_every_rendered_block_passes_shellcheck(tmp_path):
    files = rendered_blocks(tmp_path)
    assert len(files) > 100  # every step × host × phase across five labs, deduplicated
    comments = shellcheck(sorted(files))
    problems = [
        f"{files[Path(c['file'])]}: line {c['line']}: SC{c['code']} {c['message']}\n    "
        + Path(c["file"]).read_text().splitlines()[c["line"] - 1]
        for c in comments
    ]
    assert problems == [], "\n".join(problems)


def test_shellcheck_rejects_a_bad_block(tmp_path):
    """The checker can fail: unquoted expansion and a `cd` that may fail, wrapped the same way."""
    bad = tmp_path / "bad.sh"
    bad.write_text(stdin_payload('cd $HOME/dir\nrm -rf $target/*\n[ $answer == yes ] && echo ok\n').decode())
    codes = {c["code"] for c in shellcheck([bad])}
    assert {2086} <= codes
