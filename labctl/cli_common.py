"""What every command module of the CLI shares: the -f option and how it becomes a lab. Click only."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from labctl.spec import LabSpec

DEFAULT_FILE = "lab.yaml"


def lab_file_option(f):  # type: ignore[no-untyped-def]
    return click.option(
        "-f",
        "--file",
        "lab_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"The lab spec. Default: ./{DEFAULT_FILE} if it exists, else the built-in seed lab.",
    )(f)


def load_spec(lab_file: Path | None, *, quiet: bool = False) -> LabSpec:
    """The lab from --file, ./lab.yaml, or the built-in default — and its warnings on stderr."""
    from labctl.spec import LabSpec

    if lab_file is None and Path(DEFAULT_FILE).exists():
        lab_file = Path(DEFAULT_FILE)
    spec = LabSpec.load(lab_file) if lab_file is not None else LabSpec.default()
    if not quiet:
        for warning in spec.warnings():
            click.echo(f"warning: {warning}", err=True)
    return spec


def lab_source(lab_file: Path | None) -> str:
    if lab_file is None and Path(DEFAULT_FILE).exists():
        return DEFAULT_FILE
    return str(lab_file) if lab_file is not None else "the built-in default lab"


def lab_of(lab_file: Path | None, *, quiet: bool = False) -> Any:
    """The lab.Lab of -f (or ./lab.yaml, or the seed lab)."""
    from labctl.lab import Lab

    return Lab.of(load_spec(lab_file, quiet=quiet), lab_source(lab_file))
