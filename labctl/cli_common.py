"""What every command module of the CLI shares: the error handling group, the -f option and how it
becomes a lab, and the plan `plan`, `create` and `handout` start from. Click only."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

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
    from labctl.spec_warnings import spec_warnings

    if lab_file is None and Path(DEFAULT_FILE).exists():
        lab_file = Path(DEFAULT_FILE)
    spec = LabSpec.load(lab_file) if lab_file is not None else LabSpec.default()
    if not quiet:
        for warning in spec_warnings(spec):
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


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


class LabctlGroup(click.Group):
    """Turns every LabctlError into its one-line message and exit code, never a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        """The one place where labctl's exit code is chosen: from the error's class (errors.EXIT_CODES)."""
        import signal

        from labctl.errors import ExitCode, LabctlError

        # SIGTERM (a CI job cancelled, `timeout labctl create`) ends labctl like Ctrl-C does: the
        # runner stops the commands on the hosts before labctl exits.
        with contextlib.suppress(ValueError):  # not the main thread (tests calling invoke from a thread)
            signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            return super().invoke(ctx)
        except LabctlError as err:
            lines = str(err).splitlines() or [type(err).__name__]
            for line in lines:
                click.echo(f"error: {line}", err=True)
            sys.exit(int(err.exit_code) or ExitCode.FAILED)
        except KeyboardInterrupt:
            click.echo("\ninterrupted — re-run the same command to resume; finished steps are skipped", err=True)
            sys.exit(ExitCode.INTERRUPTED)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def classroom_plan(lab_file: Path | None, cache_dir: Path | None = None):  # type: ignore[no-untyped-def]
    """The spec (checked against its lock, if one exists) and the plan `create` would run."""
    from labctl.lock import check_lock
    from labctl.plan import build_plan

    spec = load_spec(lab_file)
    check_lock(spec, lab_file)
    cache = None
    if cache_dir is not None:
        from labctl.cache import inspect_cache  # only with --cache: a dry run without one never needs it

        cache = inspect_cache(cache_dir, spec)
    return spec, build_plan(spec, cache=cache)


def print_plan(lab_file: Path | None, output: str, cache_dir: Path | None = None) -> None:
    _, plan = classroom_plan(lab_file, cache_dir)  # checks lab.lock.yaml when there is one
    click.echo(plan.to_json() if output == "json" else plan.to_text(), nl=False)
