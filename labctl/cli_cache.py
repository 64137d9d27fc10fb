"""`labctl cache fill/status`: the warm cache a classroom shares. Click only; the work is in
labctl/cache.py."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from labctl.cli_common import (
    LabctlGroup,
    lab_file_option,
    load_spec,
)


@click.group(cls=LabctlGroup)
def cache() -> None:
    """Warm cache for rooms with poor Wi-Fi: fill it once, create every lab from it.

    \b
    Example:
      labctl cache fill ~/labcache && labctl cache status ~/labcache
      labctl create --cache ~/labcache
    """


@cache.command("fill")
@lab_file_option
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=Path("labctl-cache"))
@click.option("--mirror", default=None, metavar="URL",
              help="Fetch every item from this base URL (http://, https:// or file://) laid out like a cache, "
                   "instead of from upstream — e.g. another instructor's cache served over HTTP.")
@click.option("--only", type=click.Choice(["box", "deb", "image", "model", "manifest", "release"]), multiple=True,
              help="Fetch only these kinds of item (repeatable).")
@click.option("--arch", "arches", type=click.Choice(["amd64", "arm64", "all"]), multiple=True,
              help="Fill for these architectures (repeatable; all = amd64 and arm64). Default: the lab's.")
def cache_fill(
    lab_file: Path | None, directory: Path, mirror: str | None, only: tuple[str, ...], arches: tuple[str, ...]
) -> None:
    """Download everything the lab needs into DIRECTORY (box, .debs, image tarballs, models).

    Items already present with the right size and digest are not fetched again.

    \b
    Example:
      labctl cache fill ~/labcache
      labctl cache fill --mirror http://instructor.local:8000 ~/labcache
      labctl cache fill --arch all ~/labcache     # a room of Intel laptops and Apple Silicon Macs
    """
    from labctl.arch import ARCHES, with_arch
    from labctl.cache import fill_cache
    from labctl.lock import check_lock

    spec = load_spec(lab_file)
    check_lock(spec, lab_file)
    wanted = [a for a in ARCHES if a in arches or "all" in arches] or [spec.arch]
    failed = False
    for arch in wanted:
        if len(wanted) > 1:
            click.echo(f"==> {arch}")
        report = fill_cache(with_arch(spec, arch), directory, mirror=mirror, kinds=set(only) or None, echo=click.echo)
        click.echo(report.summary())
        failed |= bool(report.failed)
    if failed:
        sys.exit(1)


@cache.command("status")
@lab_file_option
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=Path("labctl-cache"))
def cache_status(lab_file: Path | None, directory: Path) -> None:
    """Show each item the lab needs: present or missing in DIRECTORY, with its size, and which
    architectures (amd64, arm64) the cache can serve.

    Exits 1 when something the lab's own architecture needs is missing, so scripts can test a cache
    before class.

    \b
    Example:
      labctl cache status ~/labcache
    """
    from labctl.cache import status_table

    spec = load_spec(lab_file)
    text, complete = status_table(spec, directory)
    click.echo(text, nl=False)
    if not complete:
        sys.exit(1)
