"""Split files (one id per line) and the copies of the reference's lists shipped in `lists/`."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import DatasetError

LISTS_DIR = Path(__file__).resolve().parent / "lists"


def packaged_list(relative: str) -> Path:
    """Path of a list shipped with fcn-repro, e.g. packaged_list("pascal/seg11valid.txt")."""
    path = LISTS_DIR / relative
    if not path.is_file():
        raise DatasetError(path, "packaged list is missing from this installation of fcn-repro")
    return path


def read_split(path: str | os.PathLike[str]) -> list[str]:
    """Ids of a split file, read as the reference does: `open(f).read().splitlines()`.

    A blank line or an id with surrounding whitespace would make the reference look for a file
    that cannot exist; it is refused here, naming the list and the line.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DatasetError(path, "split list not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(path, f"split list unreadable ({exc})") from None
    ids = text.splitlines()
    for lineno, ident in enumerate(ids, 1):
        if not ident.strip() or ident != ident.strip():
            raise DatasetError(path, f"line {lineno} is blank or has surrounding whitespace: {ident!r}")
    return ids


def first_existing(*candidates: Path) -> Path | None:
    """The first candidate path that is a file, or None."""
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None
