"""Templates precompiled into the wheel render exactly what compiling them at run time renders.

The wheel build (setup.py) compiles every playbook template to a Python module (labctl.plan:
precompile_templates) so that an installed labctl starts faster. These tests build such a folder
into tmp_path, point labctl at it, and hold that (1) the plans are byte-identical to the ones built
by compiling each template at run time, for the default, a 3-worker and a GPU/libvirt lab, in text
and JSON, (2) every template really came from the folder, and (3) a template whose text changed
after the build is not served stale: it misses and is compiled from its new text.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import jinja2
import pytest

from labctl import plan as plan_mod
from labctl import resources
from labctl.spec import LabSpec

GOLDEN = Path(__file__).resolve().parent / "golden" / "vagrant"
LABS = {
    "default": LabSpec.default,
    "three-workers": lambda: LabSpec.load(GOLDEN / "three-workers.yaml"),
    "gpu-libvirt": lambda: LabSpec.load(GOLDEN / "gpu-libvirt.yaml"),
}


@pytest.fixture
def precompiled(tmp_path: Path) -> Path:
    folder = tmp_path / "compiled-templates"
    count = plan_mod.precompile_templates(folder)
    assert count == len(list(folder.glob("tmpl_*.py"))) and count > 20
    return folder


def _plan(monkeypatch: pytest.MonkeyPatch, folder: Path | None, spec: LabSpec, books=None):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(resources, "precompiled_templates_dir", lambda: folder)
    return plan_mod.build_plan(spec, books)


@pytest.mark.parametrize("lab", sorted(LABS))
def test_precompiled_plan_is_byte_identical(lab: str, precompiled: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = LABS[lab]()
    compiled_now = _plan(monkeypatch, None, spec)

    def no_compiling(self, source, *args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError(f"compiled at run time although precompiled: {source[:60]!r}")

    monkeypatch.setattr(jinja2.Environment, "from_string", no_compiling)
    from_folder = _plan(monkeypatch, precompiled, spec)
    assert from_folder.to_text() == compiled_now.to_text()
    assert from_folder.to_json() == compiled_now.to_json()


def test_a_template_edited_after_the_build_is_compiled_from_its_new_text(
    precompiled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    edited = tmp_path / "playbooks"
    shutil.copytree(resources.playbooks_dir(), edited)
    book = next(p for p in sorted(edited.glob("*.yaml")) if "{{ node.name }}" in p.read_text(encoding="utf-8"))
    book.write_text(
        book.read_text(encoding="utf-8").replace("{{ node.name }}", "{{ node.name }}-edited", 1), encoding="utf-8"
    )
    books = plan_mod.load_playbooks(edited)
    text = _plan(monkeypatch, precompiled, LabSpec.default(), books).to_text()
    assert "master-edited" in text or "worker1-edited" in text or "nfs-edited" in text
    assert text == _plan(monkeypatch, None, LabSpec.default(), books).to_text()


def test_the_key_names_jinja_options_so_other_settings_miss(monkeypatch: pytest.MonkeyPatch) -> None:
    before = plan_mod.template_key("{{ node.name }}")
    monkeypatch.setitem(plan_mod.JINJA_OPTIONS, "trim_blocks", False)
    assert plan_mod.template_key("{{ node.name }}") != before
