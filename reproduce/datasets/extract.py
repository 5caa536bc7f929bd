"""Atomic extraction of .tar / .tar.gz / .tgz / .zip archives.

The archive is unpacked into a hidden temporary folder beside the destination, which is renamed
into place only when every member has been written; on any failure the temporary folder is
removed, so <dest> is either absent (or its previous version) or complete. Members that would
land outside the destination (absolute paths, "..", links pointing out, device files) are refused.
"""
from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from reproduce.progress import Progress, track

from .download import FetchError

__all__ = ["extract_atomically", "remove_stale_temporaries"]

_TEMP_TAGS = (".extracting-", ".old-")
_FilterError = getattr(tarfile, "FilterError", ())  # () catches nothing on Pythons without filters


def remove_stale_temporaries(dest: Path) -> list[Path]:
    """Delete hidden leftovers of an earlier extraction into `dest` that was killed; returns them."""
    dest = Path(dest)
    removed = []
    if dest.parent.is_dir():
        for path in dest.parent.iterdir():
            if path.name.startswith(f".{dest.name}.") and any(tag in path.name for tag in _TEMP_TAGS):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def _safe_member_name(name: str, archive: Path) -> None:
    pure = PurePosixPath(name.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (pure.parts and ":" in pure.parts[0]):
        raise FetchError(f"{archive}: refusing archive member with an unsafe path: {name!r}")


def _extract_tar(archive: Path, into: Path) -> None:
    """One pass over the archive (a .tgz is decompressed once); progress = compressed bytes read."""
    size = archive.stat().st_size
    with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tar, \
            Progress(f"extracting {archive.name}", size, unit="byte") as bar:
        for member in tar:
            _safe_member_name(member.name, archive)
            if member.isdev():
                raise FetchError(f"{archive}: refusing device file member {member.name!r}")
            if hasattr(tarfile, "data_filter"):
                tar.extract(member, into, filter="data")
            else:  # Python without extraction filters: names already checked; refuse links
                if member.issym() or member.islnk():
                    raise FetchError(f"{archive}: refusing link member {member.name!r}")
                tar.extract(member, into)
            bar.update(raw.tell())


def _extract_zip(archive: Path, into: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:
            _safe_member_name(info.filename, archive)
        with Progress(f"extracting {archive.name}", len(infos), unit="member") as bar:
            for info in track(infos, bar):
                zf.extract(info, into)


def extract_atomically(archive: Path, dest: Path, *, replace: bool = False,
                       validate: Callable[[Path], None] | None = None) -> Path:
    """Extract `archive` so that `dest` appears complete or not at all; returns `dest`.

    An existing `dest` is an error unless `replace`, in which case it is swapped out only after
    the new extraction succeeded. `validate(folder)` is called on the complete extraction before
    it is renamed into place; whatever it raises removes the extraction and propagates.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists() and not replace:
        raise FetchError(f"{dest} already exists; remove it or pass --force")
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dest)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.extracting-", dir=dest.parent))
    try:
        name = archive.name.lower()
        if name.endswith(".zip"):
            _extract_zip(archive, tmp)
        elif name.endswith((".tar", ".tar.gz", ".tgz")):
            _extract_tar(archive, tmp)
        else:
            raise FetchError(f"{archive}: not an archive this tool extracts (.tar, .tar.gz, .tgz, .zip)")
        if validate is not None:
            validate(tmp)
        if dest.exists():
            old = dest.parent / f".{dest.name}.old-{os.getpid()}"
            os.rename(dest, old)
            os.rename(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, dest)
    except _FilterError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FetchError(f"{archive}: refusing unsafe archive member ({exc}); nothing was extracted "
                         f"into {dest}") from None
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise FetchError(f"{archive}: archive is damaged or incomplete ({type(exc).__name__}: {exc}); "
                         f"nothing was extracted into {dest}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
