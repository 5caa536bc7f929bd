"""`fcn data`: fetch datasets and weights, and check that they are complete.

The lead registers `data_group` as `fcn data` in reproduce/commands/cli.py.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import click

from reproduce.commands import cli_options
from reproduce.commands.cli_options import DEFAULT_DATA_ROOT
from .checksums import forget_recorded, recorded_checksums
from .deep_check import DEEP_READERS, PROGRESS_EVERY
from .download import FetchError
from .fetch import fetch
from .layout_check import check_names, check_source
from .sources import (NO_OFFICIAL_CHECKSUM, SOURCES, SourcesOverrideError, get_source, override_path, registry,
                      sources_as_json)

#: `fcn data fetch` creates the data root, so it need not exist yet.
data_root_option = cli_options.data_root_option(must_exist=False)


def _data_root_arg(data_root: Path) -> str:
    return "" if str(data_root) == DEFAULT_DATA_ROOT else f" --data-root {data_root}"


def _known(name: str) -> None:
    if name not in SOURCES:
        raise click.BadParameter(f"unknown name {name!r}; `fcn data list` shows the known names",
                                 param_hint="NAME")


@click.group("data")
def data_group() -> None:
    """Datasets and weights: fetch them (checksummed, resumable) and check them."""


@data_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON (what data/sources.json holds).")
def list_command(as_json: bool) -> None:
    """List every NAME `fetch` and `check` accept, with its destination and checksum status."""
    try:
        sources = registry()
    except SourcesOverrideError as exc:
        raise click.ClickException(str(exc)) from None
    if override_path() is not None:
        click.echo(f"registry override in effect: {override_path()} ($FCN_SOURCES)", err=True)
    if as_json:
        click.echo(json.dumps(sources_as_json(sources), indent=2))
        return
    for source in sources.values():
        checksum = ", ".join(source.checksums) if source.checksums else NO_OFFICIAL_CHECKSUM
        click.echo(f"{source.name:24} {source.kind:8} -> {source.dest}  [{checksum}]")
        click.echo(f"{'':24} {source.description}")


@data_group.command("fetch")
@click.argument("name")
@data_root_option
@click.option("--mirror", metavar="URL", help="Download <URL>/<file name> instead of the official URL.")
@click.option("--from-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Use a local copy of the file instead of downloading (it is verified all the same).")
@click.option("--force", is_flag=True, help="Fetch and install again even if already present.")
@click.option("--retries", type=click.IntRange(0, 100), default=3, show_default=True,
              help="Resume a broken-off transfer up to this many times.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Network timeout in seconds.")
@click.option("--keep-download", is_flag=True, help="Keep the downloaded archive after extraction.")
@click.option("--retry-wait", type=float, default=2.0, hidden=True)
def fetch_command(name: str, data_root: Path, mirror: str | None, from_file: Path | None, force: bool,
                  retries: int, timeout: float, keep_download: bool, retry_wait: float) -> None:
    """Download NAME (a dataset, list or weight file; see `fcn data list`), verify its checksum and
    install it under the data root; archives are extracted into <data-root>/<NAME>/."""
    _known(name)
    try:
        fetch(get_source(name), data_root, mirror=mirror, from_file=from_file, force=force, retries=retries,
              timeout=timeout, retry_wait=retry_wait, keep_download=keep_download, say=click.echo)
    except (FetchError, SourcesOverrideError) as exc:
        raise click.ClickException(str(exc)) from None


@data_group.command("check")
@click.argument("names", nargs=-1, required=True)
@data_root_option
@click.option("--deep", is_flag=True,
              help="Also decode every image and label of the splits the experiments read: sizes agree, labels "
                   "in 0..C-1 or 255, depth/HHA present where an experiment needs them. Lists every bad file.")
@click.option("--progress-every", type=click.IntRange(min=1), default=PROGRESS_EVERY, show_default=True,
              help="With --deep: a progress line on stderr every N samples.")
def check_command(names: tuple[str, ...], data_root: Path, deep: bool, progress_every: int) -> None:
    """Verify that NAMES (or `all`) are complete: layout, split counts, every listed file, checksums
    (a shallow check: files are not decoded; --deep decodes them). Exits with status 1 when anything
    is missing or bad, naming the command that fetches it."""
    selected = check_names() if names == ("all",) else list(names)
    for name in selected:
        _known(name)
    progress = functools.partial(click.echo, err=True)
    try:
        reports = []
        for name in selected:
            reports.append(check_source(name, data_root, data_root_arg=_data_root_arg(data_root), deep=deep,
                                        progress=progress, progress_every=progress_every))
            click.echo(reports[-1].render())
            if not deep and name in DEEP_READERS:
                click.echo(f"{name}: shallow check (layout, counts, files present, checksums; nothing decoded): "
                           f"`fcn data check {name}{_data_root_arg(data_root)} --deep` decodes every image and label")
    except (FetchError, SourcesOverrideError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if not all(report.ok for report in reports):
        raise SystemExit(1)


@data_group.command("checksums")
@data_root_option
def checksums_command(data_root: Path) -> None:
    """List the sha256 each earlier fetch recorded for a file without a published checksum
    (<data-root>/checksums/); later fetches and checks must match them."""
    rows = recorded_checksums(data_root)
    if not rows:
        click.echo(f"no recorded checksums under {data_root / 'checksums'}")
        return
    names = {s.filename: s.name for s in SOURCES.values()}
    for filename, digest, path in rows:
        click.echo(f"{names.get(filename, '(no source)'):24} {digest}  {filename}  ({path})")
    click.echo(f"forget one (the recorded file was the wrong one) with: fcn data forget NAME{_data_root_arg(data_root)}")


@data_group.command("forget")
@click.argument("names", nargs=-1, required=True)
@data_root_option
def forget_command(names: tuple[str, ...], data_root: Path) -> None:
    """Forget the sha256 an earlier fetch recorded for NAMES, so that the next fetch records the
    file it gets (the installed file, if any, is left as it is: fetch it again with --force)."""
    for name in names:
        _known(name)
    for name in names:
        source = SOURCES[name]
        removed = forget_recorded(data_root, source.filename)
        if removed is None:
            click.echo(f"{name}: no recorded sha256 (nothing to forget)")
        else:
            click.echo(f"{name}: forgot the recorded sha256 ({removed} deleted); fetch it again with "
                       f"`fcn data fetch {name}{_data_root_arg(data_root)} --force`")
