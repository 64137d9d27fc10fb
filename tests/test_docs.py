"""The docs site (docs/, mkdocs.yml) cannot drift from the code:

- the generated pages (lab.yaml reference from the models, command reference from Click, the
  troubleshooting entries from the handout) are what ``labctl.docgen`` makes now;
- every figure quoted in README.md and docs/ is the one in labctl/figures.py (issue #15: the disk
  need was "some 30 GB", "about 40 GiB" and "14 GiB" for one lab);
- every relative link resolves, every page is in the nav, and ``mkdocs build --strict`` passes.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from labctl import docgen, figures
from labctl.handout import render
from labctl.plan import build_plan
from labctl.spec import LabSpec
from labctl.specfile import reference_markdown

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
TEXTS = {p.relative_to(ROOT).as_posix(): p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *PAGES]}
# Pages other branches add to docs/ (the nav gets them at merge); links to them may dangle until then.
PENDING_PAGES = {"exit-codes.md", "untrusted-input.md", "host-side.md", "upstream.md", "deploy.md", "macos.md",
                 "mutation-testing.md"}


# ---- generated pages -----------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted(docgen.pages()), ids=lambda p: p.name)
def test_generated_pages_are_current(path: Path) -> None:
    expected = docgen.pages()[path]
    assert path.exists() and path.read_text(encoding="utf-8") == expected, (
        f"{path.relative_to(ROOT)} is stale — run `python3 -m labctl.docgen` and commit the result"
    )


def test_lab_yaml_reference_is_the_models() -> None:
    assert reference_markdown().strip() in TEXTS["docs/reference/lab-yaml.md"]


def test_cli_reference_has_every_command() -> None:
    from labctl.cli import cli

    page = TEXTS["docs/reference/cli.md"]
    for name, command in cli.commands.items():
        assert f"## labctl {name}\n" in page
        for sub in getattr(command, "commands", {}):
            assert f"## labctl {name} {sub}\n" in page


def test_troubleshooting_between_the_markers_is_regenerated(tmp_path: Path) -> None:
    (tmp_path / "reference").mkdir()
    (tmp_path / "troubleshooting.md").write_text(f"# T\n\n{docgen.TROUBLE_START}\nold\n{docgen.TROUBLE_END}\n")
    fresh = docgen.pages(tmp_path)
    trouble = fresh[tmp_path / "troubleshooting.md"]
    assert "old" not in trouble and "10.0.2.15" in trouble
    with pytest.raises(ValueError, match="markers"):
        docgen.with_troubleshooting("# no markers\n")


# ---- figures: one source -------------------------------------------------------------------------
DISK = re.compile(r"(\d+)\s*(GiB|GB) of (?:free )?disk(?:, (\d+) GiB once the models are downloaded)?")


def test_every_disk_figure_is_the_one_doctor_checks() -> None:
    minimum, with_models = figures.disk_needed_gib(LabSpec.default())
    found = []
    for name, text in TEXTS.items():
        for m in DISK.finditer(text):
            found.append(name)
            assert m.group(2) == "GiB", f"{name}: {m.group(0)!r} — quote GiB, as doctor does"
            assert int(m.group(1)) == minimum, f"{name}: {m.group(0)!r}, but labctl/figures.py says {minimum} GiB"
            if m.group(3):
                assert int(m.group(3)) == with_models, f"{name}: {m.group(0)!r}, figures.py says {with_models} GiB"
    assert "README.md" in found and "docs/getting-started.md" in found
    # and the handout, which a student reads, says the same
    spec = LabSpec.default()
    assert figures.disk_sentence(spec) in render(spec, build_plan(spec), "md")


def test_disk_figures_follow_the_lab() -> None:
    small = LabSpec.from_dict({"nodes": {"workers": []}, "storage": {"models_size": "512Mi"}})
    assert figures.disk_needed_gib(small) == (figures.BOX_GIB + 2 * figures.VM_DISK_GIB,
                                              figures.BOX_GIB + 2 * figures.VM_DISK_GIB + 1)
    big = LabSpec.from_dict({"storage": {"models_size": "1Ti"}})
    assert figures.disk_needed_gib(big)[1] == figures.BOX_GIB + 3 * figures.VM_DISK_GIB + 1024


def test_measured_durations_are_quoted_as_measured() -> None:
    for measured in figures.MEASURED:
        for page in ("docs/development.md", "docs/benchmarks.md"):
            assert f"**{measured.value}**" in TEXTS[page], f"{page} does not quote {measured.what}: {measured.value}"
    tier_row = next(line for line in TEXTS["docs/development.md"].splitlines() if line.startswith("| e2e |"))
    assert figures.E2E_TEST.value in tier_row


# ---- links, nav, build -----------------------------------------------------------------------------
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_every_relative_link_resolves() -> None:
    broken = []
    for name, text in TEXTS.items():
        prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
        for target in LINK.findall(prose):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            path = (ROOT / name).parent / target.split("#", 1)[0]
            if not path.exists() and path.name not in PENDING_PAGES:
                broken.append(f"{name}: {target}")
    assert broken == []


def test_every_page_is_in_the_nav() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def flat(items: list) -> list[str]:
        out: list[str] = []
        for item in items:
            for value in item.values() if isinstance(item, dict) else [item]:
                out += flat(value) if isinstance(value, list) else [value]
        return out

    nav = set(flat(config["nav"]))
    pages = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert sorted(pages - nav - PENDING_PAGES) == []
    assert sorted(nav - pages) == []


@pytest.mark.validators
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    mkdocs = shutil.which("mkdocs")
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    res = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "lab-yaml" / "index.html").exists()
