"""The README stays true: its lab.yaml reference is the generated one, its test command is CI's,
and every command it lists exists."""

from __future__ import annotations

import re
from pathlib import Path

from labctl.cli import cli
from labctl.specfile import reference_markdown

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_reference_is_the_generated_one() -> None:
    assert reference_markdown().strip() in README, (
        "README's lab.yaml reference is stale: paste the output of "
        "`python3 -c 'from labctl.specfile import reference_markdown; print(reference_markdown())'`"
    )


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command = "python3 -m pytest"
    assert f"\n{command}\n" in ci
    assert re.search(r"^python3 -m pytest\s", README, re.M), "README's Development section names the test command"


def test_every_labctl_command_in_the_readme_exists() -> None:
    names = set(cli.commands)
    code = "\n".join(re.findall(r"^```[a-z]*\n(.*?)^```", README, re.M | re.S))
    used = set(re.findall(r"^\s*(?:\$ )?labctl ([a-z][a-z-]+)", code, re.M))
    assert len(used) > 10, used  # the README's examples were found at all
    missing = sorted(u for u in used if u not in names)
    assert not missing, f"README mentions commands that do not exist: {missing}"
