"""`fcn data fetch NAME`: download (or take a local copy of) one source, verify it, install it.

Steps: (1) get the file: download from the official URL or `mirror`/<filename> into
<data-root>/.downloads/<filename>.part (resumable), or use `from_file`; (2) verify md5/sha1/sha256
(or the recorded sha256, see checksums.py); a mismatch deletes the download and stops;
(3) install: archives are extracted atomically into <data-root>/<dest>/, other files are moved
(or copied, for `from_file`) to <data-root>/<dest> through a temporary file and os.replace.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import click

from .checksums import record_if_unpinned, verify_file
from .download import FetchError, download
from .extract import extract_atomically
from .sources import Source
from reproduce.atomic import atomic_file

__all__ = ["fetch", "source_url", "download_dir"]


def download_dir(data_root: Path) -> Path:
    return Path(data_root) / ".downloads"


def source_url(source: Source, mirror: str | None = None) -> str:
    """The official URL, or <mirror>/<filename> when a mirror base URL is given."""
    if mirror:
        return f"{mirror.rstrip('/')}/{source.filename}"
    return source.url


def _install_file(src: Path, dest: Path, *, move: bool) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if move:
        os.replace(src, dest)
        return
    with open(src, "rb") as fin, atomic_file(dest) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def fetch(source: Source, data_root: str | os.PathLike[str], *, mirror: str | None = None,
          from_file: str | os.PathLike[str] | None = None, force: bool = False, retries: int = 3,
          timeout: float = 60.0, retry_wait: float = 2.0, keep_download: bool = False) -> Path:
    """Fetch, verify and install `source` under `data_root`; returns the installed path.

    Does nothing (and says so) when the destination already exists, unless `force`.
    """
    data_root = Path(data_root)
    dest = data_root / source.dest
    if dest.exists() and not force:
        click.echo(f"{source.name}: already present at {dest} (use --force to fetch it again)")
        return dest

    if from_file is not None:
        local = Path(from_file)
        if not local.is_file():
            raise FetchError(f"{local}: --from-file does not name a file")
        click.echo(f"{source.name}: using local file {local}")
        digests = verify_file(local, source, data_root)
        if source.is_archive:
            extract_atomically(local, dest, replace=force)
        else:
            _install_file(local, dest, move=False)
        record_if_unpinned(source, data_root, digests)
        click.echo(f"{source.name}: installed at {dest}")
        return dest

    url = source_url(source, mirror)
    downloaded = download_dir(data_root) / source.filename
    part = downloaded.with_name(downloaded.name + ".part")
    if downloaded.is_file():
        click.echo(f"{source.name}: reusing the earlier complete download {downloaded}")
    else:
        click.echo(f"{source.name}: {url}")
        download(url, part, retries=retries, timeout=timeout, retry_wait=retry_wait, label=source.filename)
        os.replace(part, downloaded)
    try:
        digests = verify_file(downloaded, source, data_root)
    except FetchError as exc:
        downloaded.unlink(missing_ok=True)
        hint = " (the mirror serves a different file)" if mirror else ""
        raise FetchError(f"{exc}; the download was deleted{hint}") from None
    if source.is_archive:
        extract_atomically(downloaded, dest, replace=force)
        if not keep_download:
            downloaded.unlink()
    else:
        _install_file(downloaded, dest, move=True)
    record_if_unpinned(source, data_root, digests)
    click.echo(f"{source.name}: installed at {dest}")
    return dest
