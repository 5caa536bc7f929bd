"""Checksums of downloaded files: computing, verifying against the registry, recording.

Where a source has no published checksum, the sha256 of the first file fetched is recorded in
<data-root>/checksums/<filename>.sha256 ("<hex>  <filename>", as sha256sum writes it) and every
later fetch or check must match it. A record is written only once the file has passed every
check (size, content, layout) and is installed; `fcn data checksums` lists the records and
`fcn data forget NAME` deletes one (an earlier fetch recorded the wrong file).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from .download import FetchError
from .sources import Source
from reproduce.atomic import atomic_file
from reproduce.progress import Progress

__all__ = ["file_digests", "recorded_sha256_path", "read_recorded_sha256", "record_sha256",
           "verify_file", "record_if_unpinned", "recorded_checksums", "forget_recorded"]


def file_digests(path: Path, algorithms: tuple[str, ...] = ("md5", "sha1", "sha256"), *,
                 label: str | None = None, chunk_size: int = 1 << 22) -> dict[str, str]:
    """Hex digests of the file for each hashlib algorithm, in one pass (progress in bytes on stderr)."""
    path = Path(path)
    hashes = {algo: hashlib.new(algo) for algo in algorithms}
    size = path.stat().st_size
    with open(path, "rb") as f, Progress(f"checking {label or path.name}", size, unit="byte") as bar:
        while True:
            block = f.read(chunk_size)
            if not block:
                break
            for h in hashes.values():
                h.update(block)
            bar.advance(len(block))
    return {algo: h.hexdigest() for algo, h in hashes.items()}


def recorded_sha256_path(data_root: Path, filename: str) -> Path:
    return Path(data_root) / "checksums" / f"{filename}.sha256"


def read_recorded_sha256(data_root: Path, filename: str) -> str | None:
    """The sha256 recorded by an earlier fetch, or None."""
    path = recorded_sha256_path(data_root, filename)
    if not path.is_file():
        return None
    fields = path.read_text().split()
    if not fields or len(fields[0]) != 64:
        raise FetchError(f"{path}: not a sha256 record ('<64 hex digits>  {filename}')")
    return fields[0].lower()


def record_sha256(data_root: Path, filename: str, digest: str) -> Path:
    """Write the record atomically (temp file + os.replace)."""
    path = recorded_sha256_path(data_root, filename)
    with atomic_file(path, "w") as f:
        f.write(f"{digest}  {filename}\n")
    return path


def verify_file(path: Path, source: Source, data_root: Path) -> dict[str, str]:
    """Check `path` against the source's checksums, or else the sha256 an earlier fetch recorded;
    returns its md5/sha1/sha256. Raises FetchError on a mismatch. Records nothing (fetch records
    the sha256 once the file is installed, so a file that fails to install is never recorded).
    """
    digests = file_digests(path, label=source.filename)
    for algo, expected in source.checksums.items():
        if digests[algo] != expected.lower():
            raise FetchError(f"{path}: {algo} mismatch for {source.name}: expected {expected}, got "
                             f"{digests[algo]} (checksum from: {source.checksum_origin})")
    if not source.checksums:
        recorded = read_recorded_sha256(data_root, source.filename)
        if recorded is not None and recorded != digests["sha256"]:
            raise FetchError(f"{path}: sha256 {digests['sha256']} differs from the one an earlier fetch "
                             f"recorded in {recorded_sha256_path(data_root, source.filename)} ({recorded}); "
                             f"if that record is the wrong one, forget it with `fcn data forget {source.name} "
                             f"--data-root {data_root}` and fetch again (`fcn data checksums` lists the records)")
    return digests


def record_if_unpinned(source: Source, data_root: Path, digests: dict[str, str], *,
                       say: Callable[[str], None] = print) -> Path | None:
    """Record the sha256 of an installed file whose source publishes no checksum (first fetch only);
    `say` is told what was recorded where. Returns the record's path, or None when nothing was recorded."""
    if source.checksums or read_recorded_sha256(data_root, source.filename) is not None:
        return None
    path = record_sha256(data_root, source.filename, digests["sha256"])
    say(f"{source.name}: {source.checksum_origin}; recorded sha256 {digests['sha256']} in {path} "
        "(later fetches and checks must match it)")
    return path


def recorded_checksums(data_root: Path) -> list[tuple[str, str, Path]]:
    """(file name, recorded sha256, record path) of every record under <data_root>/checksums/, by name."""
    folder = Path(data_root) / "checksums"
    rows = []
    for path in sorted(folder.glob("*.sha256")) if folder.is_dir() else []:
        filename = path.name.removesuffix(".sha256")
        try:
            digest = read_recorded_sha256(data_root, filename)
        except FetchError:
            digest = "(not a sha256 record)"
        rows.append((filename, digest, path))
    return rows


def forget_recorded(data_root: Path, filename: str) -> Path | None:
    """Delete the sha256 record of `filename`; returns the deleted record's path, or None if there was none."""
    path = recorded_sha256_path(data_root, filename)
    if not path.is_file():
        return None
    path.unlink()
    return path
