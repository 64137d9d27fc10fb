"""Rendering: lab spec → Vagrantfile (vagrant/ templates) and manifests (manifests/ templates)."""

from __future__ import annotations

from pathlib import Path

from labctl.spec import LabSpec


def _env(folder: Path):
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def render_vagrantfile(spec: LabSpec, *, source: str = "the built-in default lab") -> str:
    """The multi-machine Vagrantfile for ``spec``. ``source`` names the lab.yaml in its header."""
    from labctl import __version__
    from labctl.plan import template_context
    from labctl.resources import vagrant_dir

    template = _env(vagrant_dir()).get_template("Vagrantfile.j2")
    return template.render(**template_context(spec), source=source, labctl_version=__version__)


def render_all(spec: LabSpec, out_dir: Path, *, source: str = "the built-in default lab") -> list[Path]:
    """Write the Vagrantfile and every manifest for ``spec`` below ``out_dir``; return the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "Vagrantfile"]
    written[0].write_text(render_vagrantfile(spec, source=source), encoding="utf-8")
    return written
