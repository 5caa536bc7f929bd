"""PyTorch .pt files that say when they are damaged: a content checksum inside the file, checked
on every load.

`torch.load` checks neither the zip records' CRC-32s nor anything else, so a file with bytes
flipped in the middle of a tensor loads silently with wrong numbers. Every .pt the project writes
(training snapshots, `final.pt`, `convert-caffe` outputs) carries one more zip record,
`<archive>/.data/fcn_sha256`: the hex sha256 of every other record (its name, size and bytes, in
file order). torch ignores the record, so the file stays an ordinary `torch.load`-able file.

`load_pt` is the one way the project reads a .pt: it checks the checksum, and the CRC-32 of every
record whose CRC field is set (the converter's records carry 0, as torch's `skip_data` leaves
them), then loads with `weights_only=True`. A damaged, truncated or empty file raises
`DamagedFileError` naming the file; a file without the checksum record (written before it
existed, or by another program) loads with a warning.
"""
from __future__ import annotations

import hashlib
import os
import struct
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import IO, Any, Mapping

import torch

CHECKSUM_RECORD = ".data/fcn_sha256"
_CHUNK = 1 << 24
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, ..., file name length, extra field length


class DamagedFileError(ValueError):
    """A .pt file whose bytes are not the ones written (bad checksum or CRC, truncated, empty)."""


def add_checksum(f: IO[bytes], record: Mapping[str, Any] | None = None) -> str:
    """Append the checksum record to the torch zip archive open in `f` (read/write, seekable);
    returns the hex digest. `record`: the weights' self-description (`weight_convert.record`),
    appended first as `.data/fcn_record.json`, so that the checksum covers it."""
    f.flush()
    f.seek(0)
    with zipfile.ZipFile(f, "a") as z:
        infos = z.infolist()
        if any(_short(i.filename) == CHECKSUM_RECORD for i in infos):
            raise ValueError("the archive already holds a checksum record")
        prefix = infos[0].filename.split("/", 1)[0]
        if record is not None:
            from .record import PT_RECORD, to_json
            z.writestr(f"{prefix}/{PT_RECORD}", to_json(record))
            infos = z.infolist()
        digest = _digest(f, infos)
        z.writestr(f"{prefix}/{CHECKSUM_RECORD}", digest)
    f.flush()
    return digest


def verify(path: str | os.PathLike) -> bool:
    """Check `path`'s checksum record and record CRC-32s. True: verified; False: a zip archive
    without a checksum record, or not a zip (a legacy torch file) - nothing to verify against.
    Raises DamagedFileError naming the file when anything does not match."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4)
        if not head:
            raise DamagedFileError(f"{path}: empty file (0 bytes)")
        if head != b"PK\x03\x04":
            return False
        try:
            with zipfile.ZipFile(f) as z:
                infos = z.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise DamagedFileError(f"{path}: damaged or truncated zip archive ({e})") from None
        stored = None
        content = []
        try:
            for info in infos:
                if _short(info.filename) == CHECKSUM_RECORD:
                    stored = b"".join(_read(f, info, path)).decode("ascii", "replace")
                else:
                    content.append(info)
            actual = _digest(f, content, path=path)
        except (OSError, struct.error, ValueError) as e:
            if isinstance(e, DamagedFileError):
                raise
            raise DamagedFileError(f"{path}: damaged or truncated ({e})") from None
    if stored is None:
        return False
    if stored != actual:
        raise DamagedFileError(f"{path}: checksum mismatch (stored sha256 {stored[:16]}..., contents "
                               f"{actual[:16]}...): the file was damaged after it was written")
    return True


def load_pt(path: str | os.PathLike, *, mmap: bool = False) -> Any:
    """`torch.load(path, map_location="cpu", weights_only=True)` after `verify(path)`.

    Raises FileNotFoundError, DamagedFileError (damaged, truncated, empty), or ValueError naming
    the file when torch cannot read it. Warns when the file has no checksum to check.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    if not verify(path):
        warnings.warn(f"{path}: no content checksum (written by an older fcn-repro or another program); "
                      "loaded without verifying its bytes", stacklevel=2)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # noqa: BLE001 - pickle, zip and weights_only errors come in many types
        raise ValueError(f"{path}: not a loadable PyTorch file ({type(e).__name__}: {e})") from None


def _short(name: str) -> str:
    return name.split("/", 1)[-1]


def _digest(f: IO[bytes], infos: list[zipfile.ZipInfo], path: Path | None = None) -> str:
    """sha256 over each record's central-directory fields, local header and bytes: a flip anywhere
    that could change what a zip reader (torch's included) makes of the record changes it."""
    h = hashlib.sha256()
    for info in sorted(infos, key=lambda i: i.header_offset):
        central = repr((info.filename, info.header_offset, info.file_size, info.compress_size, info.CRC,
                        info.compress_type, info.flag_bits, info.external_attr, info.internal_attr,
                        info.create_system, info.create_version, info.extract_version, info.extra,
                        info.comment)).encode()
        h.update(struct.pack("<Q", len(central)) + central)
        for chunk in _read(f, info, path, h):
            h.update(chunk)
    return h.hexdigest()


def _read(f: IO[bytes], info: zipfile.ZipInfo, path: Path | None, header_hash=None):
    """The stored bytes of one record, in chunks; checks the record's CRC-32 when it is set.
    `header_hash`: a hash that the record's raw local header is fed into first."""
    where = path or "archive"
    if info.compress_type != zipfile.ZIP_STORED or info.compress_size != info.file_size:
        raise DamagedFileError(f"{where}: record {info.filename} is not stored uncompressed")
    f.seek(info.header_offset)
    sig, n_name, n_extra = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size))
    if sig != b"PK\x03\x04":
        raise DamagedFileError(f"{where}: record {info.filename}: bad local header")
    f.seek(info.header_offset)
    header = f.read(_LOCAL_HEADER.size + n_name + n_extra)
    if header_hash is not None:
        header_hash.update(header)
    left, crc = info.file_size, 0
    while left:
        chunk = f.read(min(left, _CHUNK))
        if not chunk:
            raise DamagedFileError(f"{where}: truncated in record {info.filename}")
        crc = zlib.crc32(chunk, crc)
        left -= len(chunk)
        yield chunk
    if path is not None and info.CRC != 0 and crc != info.CRC:
        raise DamagedFileError(f"{where}: CRC-32 mismatch in record {info.filename}: the file was damaged")
