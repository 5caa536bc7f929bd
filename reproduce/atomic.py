"""Atomic file writes: nothing half-written after a crash.

Everything `reproduce` writes (checkpoints, metrics, tables, PNGs, archives, checksum records)
goes through `atomic_file`: a temporary file in the destination's folder, renamed onto the
destination only once it is complete, with the permissions a plain `open` would have given it.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "wb", *, fsync: bool = False) -> Iterator[IO]:
    """Open a temporary file beside `path` for writing; on success rename it onto `path`.

    mode: "wb", "w+b" (readable too) or "w" (text: UTF-8, "\\n" newlines). fsync: flush to disk before the rename
    (for checkpoints, which must survive a power cut). On an exception the temporary file is
    removed and `path` is left as it was. The temporary is `.<name>.<pid>.<random>.tmp`, so that
    one a killed process left behind can be told from one being written now
    (`weight_convert.writers.remove_stale_temporaries`).
    """
    if mode not in ("wb", "w+b", "w"):
        raise ValueError(f"mode must be 'wb', 'w+b' or 'w', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        text = {} if "b" in mode else {"encoding": "utf-8", "newline": "\n"}
        with os.fdopen(fd, mode, **text) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
