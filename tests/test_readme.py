"""The README stays the front door and stays true: short; its install and test commands are the
ones CI runs; every labctl command it shows exists and accepts the flags shown (the ones that are
safe anywhere are run for real); the seed lab and the URL it quotes are the default lab's; the
sections other pages and engineers rely on are where they belong."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from labctl.cli import cli
from labctl.spec import LabSpec

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOC_PAGES = sorted((ROOT / "docs").rglob("*.md"))


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S)


def labctl_lines(text: str, *, inline: bool = False) -> list[str]:
    """Each `labctl …` command in the text's code blocks (and its `inline code` too, with
    ``inline``), without its comment or pipe."""
    out = []
    if inline:
        prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
        out += [m.strip() for m in re.findall(r"`(labctl [^`|#]+)`", prose)]
    for block in code_blocks(text):
        for line in block.splitlines():
            m = re.search(r"(?:^|\$\(|\$ )\s*(labctl [^#|)]*)", line.strip())
            if m:
                out.append(m.group(1).strip())
    return out


def headings(text: str) -> list[str]:
    return [line[3:].strip() for line in text.splitlines() if line.startswith("## ")]


def test_readme_is_short() -> None:
    assert len(README.splitlines()) < 150, "the README is the front door: move details to docs/"


def test_readme_install_and_test_commands_are_cis() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    # CI adds -q for a quieter log; otherwise the same command
    ci_commands = {line.replace(" -q", "").strip() for line in ci.splitlines()}
    section = README.split("## Install and test", 1)[1].split("\n## ", 1)[0]
    block = code_blocks(section)[0].strip().splitlines()
    assert block == ["python3 -m pip install -e '.[test]'", "python3 -m pytest"]
    for command in block:
        assert command in ci_commands, f".ci/run no longer runs {command!r}"
    assert "\npython3 -m pytest\n" in ci


def test_sections_in_the_promised_order() -> None:
    found = headings(README)
    for name in ("Install and test", "Quick start (5 minutes)", "Exit codes", "lab.yaml is untrusted input",
                 "Requirements", "Documentation"):
        assert name in found, f"README lost its section {name!r}"
    # Exit codes come right after the quick start (docs/exit-codes.md holds the table)
    assert found[found.index("Quick start (5 minutes)") + 1] == "Exit codes"


def test_seed_lab_table_and_url_are_the_default_labs() -> None:
    spec = LabSpec.default()
    for _, node in spec.all_nodes():
        gib = f"{node.memory_mib // 1024} GiB"
        assert re.search(rf"^\| {node.name} \| {node.ip} \| {node.cpus} / {gib} \|", README, re.M), node.name
    url = f"http://{spec.webui_address}:{spec.apps.openwebui.port}"
    assert README.count(url) >= 2  # the intro and step 3 of the quick start
    assert f"{spec.memory_mib()} MiB of free memory" in README


def test_every_labctl_command_in_readme_and_docs_exists() -> None:
    names = set(cli.commands)
    used = {line.split()[1] for text in [README, *(p.read_text(encoding="utf-8") for p in DOC_PAGES)]
            for line in labctl_lines(text)}
    assert len(used) > 10, used  # the examples were found at all
    missing = sorted(u for u in used if u not in names)
    assert not missing, f"the docs mention commands that do not exist: {missing}"


SAFE_ANYWHERE = ("create --dry-run", "completion ", "versions", "schema", "plan")


@pytest.mark.parametrize("line", sorted(set(labctl_lines(README, inline=True))))
def test_every_readme_command_parses_and_the_safe_ones_run(line: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "home"))
    args = shlex.split(line)[1:]
    command = cli.commands[args[0]]
    # every flag shown is one the command accepts (parsing runs nothing)
    with command.make_context(args[0], args[1:], parent=cli.make_context("labctl", [args[0]])):
        pass
    if line.removeprefix("labctl ").startswith(SAFE_ANYWHERE):
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 0, (line, res.output)
        assert not (tmp_path / "home").exists(), f"{line} wrote lab state"
