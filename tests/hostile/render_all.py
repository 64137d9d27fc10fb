"""Render everything a lab.yaml reaches — Vagrantfile, every playbook script, every manifest — and
read it back the way its consumer would: Ruby (with tests/hostile/vagrant_stub.rb), bash, YAML."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from labctl.manifests import render_bundles
from labctl.plan import build_plan
from labctl.render import render_vagrantfile
from labctl.secrets import LabSecrets
from labctl.spec import LabSpec

STUB = Path(__file__).with_name("vagrant_stub.rb")
SECRETS = LabSecrets(webui_secret_key="k" * 16, grafana_admin_password="p" * 16)
RUBY = shutil.which("ruby")
BASH = shutil.which("bash") or "/bin/bash"


def vagrantfile(spec: LabSpec, source: str = "lab.yaml") -> str | None:
    return None if spec.provider.type == "ssh" else render_vagrantfile(spec, source=source)


def scripts(spec: LabSpec) -> list[str]:
    plan = build_plan(spec, include_provider=False)
    return [text for step in plan.steps for hc in step.commands for text in (hc.check, hc.run, hc.on_interrupt) if text]


def manifests(spec: LabSpec) -> dict[str, str]:
    return render_bundles(spec, SECRETS)


def ruby_records(text: str, tmp: Path) -> list[Any]:
    """What the Vagrantfile sets and calls, as recorded by the stub under real Ruby."""
    assert RUBY, "ruby is needed (apt-get install ruby; .ci/run installs it)"
    path = tmp / "Vagrantfile"
    path.write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [RUBY, "-r", str(STUB), "-e", "load ARGV[0]; LabctlStub.dump", str(path)],
        capture_output=True, text=True, timeout=60, check=False, cwd=tmp,
    )
    assert proc.returncode == 0, f"ruby could not load the Vagrantfile:\n{proc.stderr[-2000:]}"
    return json.loads(proc.stdout)


def bash_syntax_problems(texts: list[str], tmp: Path) -> str:
    """`bash -n` over every script at once (each as its own function body)."""
    path = tmp / "scripts.sh"
    path.write_text("".join(f"labctl_script_{i}() {{\n{t}\n}}\n" for i, t in enumerate(texts)), encoding="utf-8")
    proc = subprocess.run([BASH, "-n", str(path)], capture_output=True, text=True, timeout=60, check=False)
    return proc.stderr if proc.returncode else ""


def objects(bundles: dict[str, str]) -> dict[str, list[Any]]:
    """Every bundle parsed; documents nested in them (a ConfigMap's *.yml, a JSON body) parsed too,
    so a value is compared as its final consumer reads it."""
    return {name: [_nested(doc) for doc in yaml.safe_load_all(text)] for name, text in bundles.items()}


def _nested(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _nested(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_nested(v) for v in value]
    if isinstance(value, str) and key.endswith((".yml", ".yaml")):
        return _nested(yaml.safe_load(value))
    if isinstance(value, str) and key == "body" and value.startswith("{"):
        return json.loads(value)
    return value


_DERIVED = re.compile(r"ollama-pull-[0-9a-f]{8}")


def swap(value: Any, old: str, new: str) -> Any:
    """Every string (and key) in a parsed structure with ``old`` replaced by ``new``; hashes that
    depend on the value (the model-pull Job's name) are blanked."""
    if isinstance(value, str):
        return _DERIVED.sub("ollama-pull-HASH", value.replace(old, new))
    if isinstance(value, list):
        return [swap(v, old, new) for v in value]
    if isinstance(value, dict):
        return {swap(k, old, new): swap(v, old, new) for k, v in value.items()}
    return value


def contains(value: Any, text: str) -> bool:
    """Whether any string in a parsed structure contains ``text``."""
    if isinstance(value, str):
        return text in value
    if isinstance(value, list):
        return any(contains(v, text) for v in value)
    if isinstance(value, dict):
        return any(contains(k, text) or contains(v, text) for k, v in value.items())
    return False


# ---- running a script with everything stubbed -------------------------------------------------------
# A throwaway root holding only bash and its libraries: scripts run there under chroot, with an
# empty PATH, so every command they name is answered by a recorder (exit 0, no output) and every
# file they write lands in the throwaway root. What is compared is what bash *saw*: each command's
# words after quoting, expansion and splitting.
RECORDER = r"""
PATH=/nonexistent
labctl_record() { builtin printf '%s\0' "${@/#/W}" E >>/labctl-record; }
command_not_found_handle() { labctl_record "$@"; return 0; }
echo() { labctl_record echo "$@"; }
printf() { labctl_record printf "$@"; }
test() { labctl_record test "$@"; return 0; }
[() { labctl_record [ "$@"; return 0; }
"""


def make_sandbox(root: Path) -> Path:
    """Copy bash and the libraries it links to into ``root`` (chroot needs nothing else)."""
    bash = Path(BASH).resolve()
    out = subprocess.run(["ldd", str(bash)], capture_output=True, text=True, check=True).stdout
    libs = [Path(p) for p in re.findall(r"(/\S+\.so[.\d]*)", out)]
    for src in [bash, *libs]:
        dest = root / str(src).lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src.resolve(), dest)
    (root / "bin").mkdir(exist_ok=True)
    shutil.copy2(bash, root / "bin" / "bash")
    for folder in ("dev", "tmp", "etc", "var", "srv"):
        (root / folder).mkdir(exist_ok=True)
    return root


def seen_by_bash(sandbox: Path, script: str, timeout: float = 10) -> list[list[str]]:
    """Each command the script ran (its words as bash passed them), in order."""
    record = sandbox / "labctl-record"
    record.write_bytes(b"")
    (sandbox / "labctl-script").write_text(RECORDER + "\n" + script + "\n", encoding="utf-8", errors="surrogateescape")
    with contextlib.suppress(subprocess.TimeoutExpired):  # a wait-until loop: what ran until then counts
        subprocess.run(
            ["chroot", str(sandbox), "/bin/bash", "/labctl-script"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False, cwd=sandbox,
        )
    raw = record.read_bytes().decode("utf-8", errors="surrogateescape")
    # Each word as W<word>NUL, each command ended by ENUL, in one printf (one append: the commands of
    # a pipeline record at the same time). NUL is the one byte no bash word can hold, so a hostile
    # value (\x1e, \x1f, anything) cannot pass for a separator.
    calls: list[list[str]] = []
    words: list[str] = []
    for item in raw.split("\0"):
        if item.startswith("W"):
            words.append(item[1:])
        elif item == "E":
            calls.append(words)
            words = []
    return calls
