"""`fcn data fetch NAME`: download (or take a local copy of) one source, verify it, install it.

Steps: (1) get the file: download from the official URL or `mirror`/<filename> into
<data-root>/.downloads/<filename>.part (resumable), or use `from_file`; (2) verify it: its size
(where the registry knows it), md5/sha1/sha256 (or the sha256 an earlier fetch recorded, see
checksums.py), and its content (a caffemodel must parse and hold the layers its consumers need,
weights_check.py; a list or .mat file must pass `fcn data check`); (3) install: archives are
extracted into a hidden folder, which must pass `fcn data check` (layout, split sizes, every
listed file) before it is renamed to <data-root>/<dest>/; other files are moved (or copied, for
`from_file`) to <data-root>/<dest> through a temporary file and os.replace. Only then, for a source
without a published checksum, is the sha256 recorded. A download that fails (2) or (3) is deleted.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from .checksums import record_if_unpinned, verify_file
from .download import FetchError, TransferFailed, download
from .extract import extract_atomically
from .layout_check import check_source, own_problems
from .sources import Source, overridden_names, override_path
from reproduce.atomic import atomic_file

__all__ = ["fetch", "source_url", "download_dir", "ways_out"]


def download_dir(data_root: Path) -> Path:
    return Path(data_root) / ".downloads"


def source_url(source: Source, mirror: str | None = None) -> str:
    """The official URL, or <mirror>/<filename> when a mirror base URL is given."""
    if mirror:
        return f"{mirror.rstrip('/')}/{source.filename}"
    return source.url


def ways_out(source: Source, data_root: Path) -> str:
    """What a user can do when `source` cannot be downloaded from where it was tried."""
    root = f" --data-root {data_root}"
    return (f"ways out: run the same command again when the network is back; download {source.filename} "
            f"from another server with `fcn data fetch {source.name}{root} --mirror URL` (fetches "
            f"URL/{source.filename}); use a copy you already have with `fcn data fetch {source.name}{root} "
            f"--from-file PATH` (verified all the same); or try the whole pipeline on the shipped samples, "
            f"with nothing to download, with `make reproduce-smoke`")


def _install_file(src: Path, dest: Path, *, move: bool) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if move:
        os.replace(src, dest)
        return
    with open(src, "rb") as fin, atomic_file(dest) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def _check_size(path: Path, source: Source) -> None:
    size = path.stat().st_size
    if source.size is not None and size != source.size:
        short = " (the transfer ended early?)" if size < source.size else ""
        raise FetchError(f"{path}: {size} bytes, {source.name} is {source.size} bytes{short} "
                         f"(size from: {source.size_origin or 'the registry'})")


def _refuse_if(problems: list[str], path: Path, source: Source) -> None:
    if problems:
        raise FetchError(f"{path} is not a complete {source.name}: " + "; ".join(problems))


def _check_content(path: Path, source: Source, data_root: Path, width: float) -> None:
    """Refuse a non-archive file whose content `fcn data check` would refuse."""
    report = check_source(source.name, data_root, at=path, verify_checksums=False, width=width,
                          source=source)
    _refuse_if(own_problems(report), path, source)


def _verify_and_install(path: Path, source: Source, data_root: Path, dest: Path, *, move: bool,
                        force: bool, width: float, say: Callable[[str], None]) -> None:
    """Steps (2) and (3) of the module docstring, then the sha256 record; FetchError on any refusal
    (nothing is installed or recorded then)."""
    _check_size(path, source)
    digests = verify_file(path, source, data_root)
    if source.is_archive:
        def validate(folder: Path) -> None:
            report = check_source(source.name, data_root, at=folder, verify_checksums=False,
                                  width=width, source=source)
            _refuse_if(own_problems(report), path, source)
        extract_atomically(path, dest, replace=force, validate=validate)
    else:
        _check_content(path, source, data_root, width)
        _install_file(path, dest, move=move)
    record_if_unpinned(source, data_root, digests, say=say)


def fetch(source: Source, data_root: str | os.PathLike[str], *, mirror: str | None = None,
          from_file: str | os.PathLike[str] | None = None, force: bool = False, retries: int = 3,
          timeout: float = 60.0, retry_wait: float = 2.0, keep_download: bool = False,
          width: float = 1.0, say: Callable[[str], None] = print) -> Path:
    """Fetch, verify and install `source` under `data_root`; returns the installed path.

    Does nothing (and says so) when the destination already exists, unless `force`. `width`: the
    nets' width for the weights' content check (1.0: the real files; tests use smaller ones).
    `say` is told each step (one line each: `fcn data fetch` passes click.echo); the progress of
    downloading, checking and extracting goes to stderr (reproduce.progress). FetchError on any
    refusal, naming the file and what to do.
    """
    data_root = Path(data_root)
    dest = data_root / source.dest
    if dest.exists() and not force:
        say(f"{source.name}: already present at {dest} (use --force to fetch it again)")
        return dest
    if source.name in overridden_names():
        say(f"{source.name}: checksums and size from the registry override {override_path()} "
                   "($FCN_SOURCES), not the official ones")

    if from_file is not None:
        local = Path(from_file)
        if not local.is_file():
            raise FetchError(f"{local}: --from-file does not name a file")
        say(f"{source.name}: using local file {local}")
        try:
            _verify_and_install(local, source, data_root, dest, move=False, force=force, width=width,
                                say=say)
        except FetchError as exc:
            raise FetchError(f"{exc}; --from-file {local} was refused (the file itself is left as it is)") from None
        say(f"{source.name}: installed at {dest}")
        return dest

    url = source_url(source, mirror)
    downloaded = download_dir(data_root) / source.filename
    part = downloaded.with_name(downloaded.name + ".part")
    if downloaded.is_file():
        say(f"{source.name}: reusing the earlier complete download {downloaded}")
    else:
        say(f"{source.name}: {url}")
        try:
            download(url, part, retries=retries, timeout=timeout, retry_wait=retry_wait, label=source.filename,
                     expected_size=source.size, say=say)
        except FetchError as exc:
            tried = f"tried {url}" + (f" (the --mirror {mirror})" if mirror else " (the official URL)")
            if isinstance(exc, TransferFailed) and exc.kept:
                raise FetchError(f"{source.name}: {tried}: {exc}; or, {ways_out(source, data_root)}") from None
            raise FetchError(f"{source.name}: {tried}: {exc}; {ways_out(source, data_root)}") from None
        os.replace(part, downloaded)
    try:
        _verify_and_install(downloaded, source, data_root, dest, move=True, force=force, width=width, say=say)
    except FetchError as exc:
        downloaded.unlink(missing_ok=True)
        hint = " (the mirror serves a different file?)" if mirror else ""
        raise FetchError(f"{exc}; the download was deleted, nothing was installed or recorded{hint}") from None
    if source.is_archive and not keep_download:
        downloaded.unlink()
    say(f"{source.name}: installed at {dest}")
    return dest
