"""Weight files that say what they are: the record every file the project writes carries.

A record is a JSON-ready dict:
    format, version   "fcn-repro-weights", 1
    net               the experiment / net name (`nets.names()`), or None for a blob dump
                      (`convert-caffe` without --net: no net to say)
    width             trunk width multiplier the net was built at (None for a blob dump)
    num_classes       class count (a list [semantic, geometric] for SIFT Flow), None for a dump
    inputs            the net's input blobs ("data", or "color", "hha" for late fusion)
    build             the `nets.build(net, **build)` arguments: {"num_classes", "width"}
    source            where the weights came from, one of
                        {"kind": "caffemodel" | "file", "name", "sha256", "from", "hha", "record"}
                          (`convert-caffe`: SRC's file name and sha256 of its bytes, --from, the
                          --hha file as {"name", "sha256"}, and SRC's own record if it has one)
                        {"kind": "training", "run_dir", "iteration"} (snapshots and final.pt)
    writer            {"name", "version", "commit", "dirty"} of the fcn-repro that wrote it
                      (`weight_convert.provenance.record()`)

Where it is stored: in a .pt, as the zip record `<archive>/.data/fcn_record.json` next to the
content checksum (written before it, so the checksum covers it; torch ignores both, and the file's
object - a state dict, a training checkpoint - is unchanged); in a .h5, as the root attribute
`fcn_record` (the JSON text); in a .npz, as the entry `fcn_record` (a 0-d unicode array of the
JSON text; entry names of weights always hold a '/' or a '.', so it cannot collide).

`read(path)` gives a file's record, or None for a file without one (a .caffemodel, a state dict
from elsewhere, a file written before records existed). `resolve(...)` merges a record with what a
caller asked for (an EXPERIMENT argument, --width): a missing value comes from the record, a
contradicting one is a `RecordMismatchError` naming both values.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

FORMAT, VERSION = "fcn-repro-weights", 1
PT_RECORD = ".data/fcn_record.json"
H5_ATTRIBUTE = NPZ_KEY = "fcn_record"
_CHUNK = 1 << 24


class RecordMismatchError(ValueError):
    """What the caller asked for (a net name, a width, class counts) contradicts the file's record."""


def make(net: str | None, *, width: float | None, source: Mapping[str, Any],
         num_classes: int | Sequence[int] | None = None) -> dict[str, Any]:
    """The record of weights for net `net` at `width` (`num_classes`: the net's default when None)
    that came from `source` (see the module docstring)."""
    from .provenance import record as writer
    inputs = None
    if net is not None:
        import nets
        info = nets.info(net)
        num_classes = info.num_classes if num_classes is None else num_classes
        inputs = list(info.inputs)
        width = 1.0 if width is None else float(width)
    classes = list(num_classes) if isinstance(num_classes, (list, tuple)) else num_classes
    return {"format": FORMAT, "version": VERSION, "net": net, "width": width, "num_classes": classes,
            "inputs": inputs, "build": None if net is None else {"num_classes": classes, "width": width},
            "source": dict(source), "writer": writer()}


def file_source(path: str | os.PathLike, **extra: Any) -> dict[str, Any]:
    """{"kind", "name", "sha256", **extra} of an input file: kind "caffemodel" for a .caffemodel,
    "file" otherwise (with "record": the file's own record, when it has one)."""
    path = Path(path)
    kind = "caffemodel" if path.suffix.lower() == ".caffemodel" else "file"
    out: dict[str, Any] = {"kind": kind, "name": path.name, "sha256": sha256_file(path)}
    if kind == "file":
        parent = read(path)
        if parent is not None:
            out["record"] = parent
    out.update(extra)
    return out


def training_source(run_dir: str | os.PathLike, iteration: int) -> dict[str, Any]:
    """The source of a training snapshot or final.pt: the run directory (absolute) and iteration."""
    return {"kind": "training", "run_dir": str(Path(run_dir).resolve()), "iteration": int(iteration)}


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 16 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def to_json(record: Mapping[str, Any]) -> str:
    """The record as the JSON text the files store (sorted keys, no NaN)."""
    return json.dumps(record, sort_keys=True, allow_nan=False)


def read(path: str | os.PathLike) -> dict[str, Any] | None:
    """The record of the weights file `path` (.pt, .h5, .npz), or None when it has none (any other
    suffix, e.g. .caffemodel; a file written by another program or before records existed).
    ValueError naming the file when a record is there but is not valid JSON of this format."""
    path = Path(path)
    suffix = path.suffix.lower()
    text = None
    if suffix in (".pt", ".pth"):
        text = _read_pt(path)
    elif suffix == ".h5":
        import h5py
        with h5py.File(path, "r") as h5:
            value = h5.attrs.get(H5_ATTRIBUTE)
        text = value.decode() if isinstance(value, bytes) else value
    elif suffix == ".npz":
        import numpy as np
        with np.load(path, allow_pickle=False) as npz:
            text = str(npz[NPZ_KEY][()]) if NPZ_KEY in npz.files else None
    if text is None:
        return None
    try:
        record = json.loads(text)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: its fcn-repro record is not valid JSON ({e})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f"{path}: its fcn-repro record is not of format {FORMAT!r}")
    if record.get("version") != VERSION:
        raise ValueError(f"{path}: record version {record.get('version')}, this code reads {VERSION}")
    return record


def _read_pt(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as z:
            name = next((i.filename for i in z.infolist() if i.filename.split("/", 1)[-1] == PT_RECORD), None)
            return None if name is None else z.read(name).decode("utf-8")
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError):
        return None  # not a zip (legacy torch file) or damaged: load_pt says what is wrong


@dataclass(frozen=True)
class BuildArgs:
    """What to build for a weights file: `nets.build(net, num_classes=num_classes, width=width)`."""

    net: str | None
    width: float
    num_classes: int | tuple[int, ...] | None
    record: dict[str, Any] | None


def resolve(record: Mapping[str, Any] | None, path: str | os.PathLike, *, net: str | None = None,
            width: float | None = None, num_classes: int | Sequence[int] | None = None,
            check_net: bool = True) -> BuildArgs:
    """Merge a file's `record` (or None) with what the caller asked for. A value the caller leaves
    None comes from the record (width: 1.0 when neither says); a value both give must agree, else
    RecordMismatchError naming the file and both values. `check_net=False`: the record's net may
    differ from `net` (initializing one experiment from another's weights: `net` is kept)."""
    path = Path(path)
    if record is None or record.get("net") is None:
        return BuildArgs(net, 1.0 if width is None else float(width), _classes(num_classes), None)
    if check_net and net is not None and net != record["net"]:
        raise RecordMismatchError(f"{path} holds the weights of {record['net']} (its record), not {net}: "
                                  f"use {record['net']}, or other weights for {net}")
    kept = record["net"] if net is None else net
    saved_width = float(record.get("width") or 1.0)
    if width is not None and abs(float(width) - saved_width) > 1e-12:
        raise RecordMismatchError(f"{path} was written at --width {saved_width:g} (its record), but --width "
                                  f"{float(width):g} was given: leave --width out to use the record's")
    saved_classes = _classes(record.get("num_classes"))
    if check_net and num_classes is not None and _classes(num_classes) != saved_classes:
        raise RecordMismatchError(f"{path} has {saved_classes} classes (its record), but {_classes(num_classes)} "
                                  "were asked for")
    classes = saved_classes if check_net or kept == record["net"] else _classes(num_classes)
    return BuildArgs(kept, saved_width, classes, dict(record))


def _classes(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value
