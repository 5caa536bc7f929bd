"""Atomic file writes: nothing half-written after a crash.

Everything `reproduce` writes (checkpoints, metrics, tables, PNGs, archives, checksum records)
goes through `atomic_file`: a temporary file in the destination's folder, renamed onto the
destination only once it is complete, with the permissions a plain `open` would have given it.
The writers of JSON, text and PNG files live here too (one home; tests/test_layering.py checks
that nothing reaches them through another module).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator, Mapping

import numpy as np


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


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, (np.floating,)):
        return _json_safe(float(obj))
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write obj as indented JSON (insertion key order, NaN -> null, trailing newline) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_json_safe(obj), indent=2, allow_nan=False) + "\n"
    write_text_atomic(path, text)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write text to path via a temp file in the same directory and os.replace."""
    with atomic_file(path, "w") as f:
        f.write(text)


def save_png_atomic(image, path: str | os.PathLike) -> Path:
    """Save the PIL `image` as PNG at `path` atomically; returns the path."""
    with atomic_file(path) as f:
        image.save(f, format="PNG")
    return Path(path)
