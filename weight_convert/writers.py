"""Write named arrays to .pt (PyTorch state dict), .h5 (one dataset per entry) or .npz, atomically.

Entries are numpy arrays (often read-only views of a memory-mapped caffemodel) or torch tensors.
Data are streamed to disk in chunks and, after each chunk, ``release(chunk)`` may drop the
source's mapped pages, so peak memory stays near one chunk rather than the whole model.

Every writer writes a temporary file next to the destination and ``os.replace``s it into place
only when everything has been written: the destination is never half-written. (No fsync: the
guarantee is about errors during conversion, not about power loss.) The temporary is named
``.<DST name>.<pid>.<random>.tmp``; a conversion that was killed leaves it behind, and
``remove_stale_temporaries`` (run at the start of the next conversion to DST) deletes it.

.pt files are written with ``torch.serialization.skip_data`` (torch >= 2.5): torch writes the
archive's structure with empty space for each tensor's bytes, and we fill the space in with
``os.pwrite``. The records' CRC-32 fields are left at 0, as ``skip_data`` and torch's own
``set_crc32_options(False)`` leave them; ``torch.load`` does not check them. Every .pt then gets
its content checksum record (``ptfile.add_checksum``), which ``ptfile.load_pt`` checks. With an older torch
the file is written by a plain ``torch.save`` of materialized tensors instead.
"""
from __future__ import annotations

import contextlib
import os
import re
import struct
import sys
import tempfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch

from .ptfile import add_checksum

CHUNK_BYTES = 1 << 24  # 16 MiB per write
SUFFIXES = (".pt", ".h5", ".npz")


def write_arrays(path: str | os.PathLike, entries: Mapping[str, object], *,
                 dtypes: Mapping[str, np.dtype] | None = None,
                 release: Callable[[np.ndarray], None] | None = None,
                 locate: Callable[[np.ndarray], tuple[int, int] | None] | None = None,
                 record: Mapping[str, object] | None = None) -> None:
    """Write ``entries`` (name -> array or tensor) to ``path``; the format follows its suffix.

    ``dtypes`` optionally gives each entry's stored dtype (e.g. float32 for net parameters
    filled from float64 ``double_data`` blobs); by default each entry keeps its own dtype.
    ``release(chunk)`` is called after each chunk of an entry has been written. ``locate(array)``
    may return (file descriptor, offset) of a file holding the array's bytes as they are to be
    stored; the .pt writer then copies them file to file (``os.copy_file_range``), without
    touching them in this process. ``record``: what the weights are (``weight_convert.record``),
    stored in the file (.pt: a zip record under the checksum; .h5: a root attribute; .npz: an entry).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"{path}: unknown output format {suffix!r}; use one of {', '.join(SUFFIXES)}")
    arrays = {k: _as_numpy(v) for k, v in entries.items()}
    dtypes = {k: np.dtype((dtypes or {}).get(k, a.dtype)) for k, a in arrays.items()}
    with atomic_path(path) as tmp:
        if suffix == ".pt":
            _write_pt(tmp, arrays, dtypes, release, locate, record)
        else:
            {".h5": _write_h5, ".npz": _write_npz}[suffix](tmp, arrays, dtypes, release, record)


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success, delete it on error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give DST the usual permissions
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporaries that killed conversions to ``path`` left in its folder; return them.

    Only files named as ``atomic_path`` names them for this very ``path`` are considered, and
    one whose writer process is still alive on this machine (a conversion running now) is kept.
    A pid reused since by another process only delays the removal to a later run.
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:(\d+)\.)?[A-Za-z0-9_]+\.tmp")
    removed = []
    try:
        names = os.listdir(path.parent)
    except FileNotFoundError:
        return removed
    for name in sorted(names):
        match = pattern.fullmatch(name)
        if match is None or (match.group(1) is not None and _alive(int(match.group(1)))):
            continue
        stale = path.parent / name
        if stale.is_file() and not stale.is_symlink():
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()
                removed.append(stale)
    return removed


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (signal 0 checks without signalling)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except PermissionError:  # exists, owned by another user
        return True
    except (ProcessLookupError, OverflowError, ValueError):
        return False
    return True


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _as_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _chunks(array: np.ndarray, dtype: np.dtype, release):
    """Yield (byte offset, little-endian bytes buffer) pieces of ``array`` in C order."""
    flat = array.reshape(-1)
    step = max(1, CHUNK_BYTES // max(1, dtype.itemsize))
    le = dtype.newbyteorder("<")
    for start in range(0, flat.size, step):
        chunk = flat[start:start + step]
        data = chunk if chunk.dtype == le and chunk.flags.c_contiguous else np.ascontiguousarray(chunk, dtype=le)
        yield start * dtype.itemsize, memoryview(data).cast("B")
        if release is not None:
            release(chunk)


# -- .pt ----------------------------------------------------------------------------------------
def _write_pt(tmp: Path, arrays, dtypes, release, locate, record) -> None:
    if sys.byteorder != "little" or not hasattr(torch.serialization, "skip_data"):
        tensors = {k: torch.from_numpy(np.array(a, dtype=dtypes[k])) for k, a in arrays.items()}
        with open(tmp, "w+b") as f:
            torch.save(tensors, f)
            add_checksum(f, record)
        return
    placeholders = {k: torch.empty(a.shape, dtype=_torch_dtype(dtypes[k])) for k, a in arrays.items()}
    with torch.serialization.skip_data():
        torch.save(placeholders, tmp)
    offsets = _pt_record_offsets(tmp, [int(a.size) * dtypes[k].itemsize for k, a in arrays.items()])
    fd = os.open(tmp, os.O_RDWR)
    try:
        for (key, array), base in zip(arrays.items(), offsets):
            span = locate(array) if locate is not None and array.dtype == dtypes[key].newbyteorder("<") else None
            if span is not None and _copy_file_range_all(span[0], fd, array.nbytes, span[1], base):
                continue
            for offset, data in _chunks(array, dtypes[key], release):
                _pwrite_all(fd, data, base + offset)
    finally:
        os.close(fd)
    with open(tmp, "r+b") as f:
        add_checksum(f, record)


def _torch_dtype(dtype: np.dtype) -> torch.dtype:
    return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype


def _pt_record_offsets(path: Path, sizes: list[int]) -> list[int]:
    """File offsets of the data records ``data/0``, ``data/1``, ... of a torch zip archive.

    torch numbers storages in the order it pickles them, i.e. the dict's order; every record's
    size is checked against the expected tensor size.
    """
    with zipfile.ZipFile(path) as z:
        infos = {zi.filename.split("/", 1)[-1]: zi for zi in z.infolist()}
    offsets = []
    with open(path, "rb") as f:
        for i, size in enumerate(sizes):
            info = infos.get(f"data/{i}")
            if size == 0 and info is None:
                offsets.append(0)
                continue
            if info is None or info.file_size != size:
                raise RuntimeError(f"unexpected torch archive layout at record data/{i}")
            f.seek(info.header_offset)
            header = f.read(30)
            signature, name_len, extra_len = struct.unpack("<I22xHH", header)
            if signature != 0x04034B50:
                raise RuntimeError(f"bad zip local header for record data/{i}")
            offsets.append(info.header_offset + 30 + name_len + extra_len)
    return offsets


def _copy_file_range_all(src_fd: int, dst_fd: int, count: int, src_offset: int, dst_offset: int) -> bool:
    """Copy ``count`` bytes between files inside the kernel; False if the system cannot (the
    caller then writes the bytes itself). Partial copies are simply overwritten by the caller."""
    if not hasattr(os, "copy_file_range"):
        return False
    done = 0
    try:
        while done < count:
            n = os.copy_file_range(src_fd, dst_fd, min(count - done, 1 << 30),
                                   src_offset + done, dst_offset + done)
            if n <= 0:
                return False
            done += n
    except OSError:  # e.g. EXDEV on old kernels, ENOSYS, EINVAL on some file systems
        return False
    return True


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while len(data):
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


# -- .npz ---------------------------------------------------------------------------------------
def _write_npz(tmp: Path, arrays, dtypes, release, record) -> None:
    from .record import NPZ_KEY, to_json
    if record is not None and NPZ_KEY in arrays:
        raise ValueError(f"an entry is named {NPZ_KEY!r}, the name of the record")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
        if record is not None:
            with z.open(f"{NPZ_KEY}.npy", "w") as f:
                np.lib.format.write_array(f, np.array(to_json(record)), allow_pickle=False)
        for key, array in arrays.items():
            with z.open(f"{key}.npy", "w", force_zip64=True) as f:
                header = {"descr": np.lib.format.dtype_to_descr(dtypes[key].newbyteorder("<")),
                          "fortran_order": False, "shape": tuple(array.shape)}
                np.lib.format.write_array_header_2_0(f, header)
                for _, data in _chunks(array, dtypes[key], release):
                    f.write(data)


# -- .h5 ----------------------------------------------------------------------------------------
def _write_h5(tmp: Path, arrays, dtypes, release, record) -> None:
    import h5py

    from .record import H5_ATTRIBUTE, to_json
    with h5py.File(tmp, "w") as h5:
        if record is not None:
            h5.attrs[H5_ATTRIBUTE] = to_json(record)
        for key, array in arrays.items():
            dset = h5.create_dataset(key, shape=array.shape, dtype=dtypes[key].newbyteorder("<"))
            if array.ndim == 0:
                dset[()] = array
                continue
            row_bytes = max(1, int(np.prod(array.shape[1:], dtype=np.int64)) * dtypes[key].itemsize)
            rows = max(1, CHUNK_BYTES // row_bytes)
            for start in range(0, array.shape[0], rows):
                part = array[start:start + rows]
                dset[start:start + part.shape[0]] = np.asarray(part, dtype=dtypes[key])
                if release is not None:
                    release(part)
