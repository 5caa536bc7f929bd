"""Batch HHA conversion: the official NYUDv2 `.mat` or a folder of depth PNGs -> one HHA PNG per frame.

Output: `<out>/<name>.png`, RGB uint8 (disparity, height, angle), which is the layout the reference's
NYUD data layer reads as `data/hha/img_<id>.png`. Frames from the official
`nyu_depth_v2_labeled.mat` are named `img_<first_id + index>` (5001..6449, the numbering of
Gupta et al.'s NYUD2 files that the reference's split files use); frames from a PNG folder keep
their file stem.

Restartable: every PNG is written to a temporary file in the output folder and renamed into place
(`os.replace`), so a file under its final name is always complete; frames whose PNG exists are
skipped; temporary files left by an interrupted run are removed at the next start. Run one
conversion per output folder at a time.
"""
from __future__ import annotations

import functools
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence, Union

import numpy as np
from PIL import Image

from reproduce.datasets.hha import NYUD_COLOR_CAMERA, hha
from reproduce.progress import Progress

__all__ = [
    "NYUD_FIRST_ID", "MatFrame", "PngFrame", "BatchResult",
    "mat_frames", "png_frames", "load_frame", "to_millimetres", "convert_frame", "convert_all",
    "write_png_atomic",
]

NYUD_FIRST_ID = 5001
MAT_DEPTH, MAT_RAW = "depths", "rawDepths"
_TEMP_MARK = ".png.tmp-"


@dataclass(frozen=True)
class MatFrame:
    """Frame `index` (0-based) of the `depths` / `rawDepths` datasets of an official NYUDv2 .mat.

    millimetres: first round the metres to whole millimetres as MATLAB's uint16(depth * 1000)
    would (see `to_millimetres`), because saveHHA.m reads Gupta et al.'s uint16 millimetre depth
    PNGs and divides by 1000. UNVERIFIED that their PNGs were made exactly that way.
    """

    name: str
    mat_path: str
    index: int
    millimetres: bool = True


@dataclass(frozen=True)
class PngFrame:
    """A depth PNG (integer values, `scale` per metre) and optionally its raw depth PNG (0 = missing)."""

    name: str
    depth_path: str
    raw_path: str | None
    scale: float


Frame = Union[MatFrame, PngFrame]


@dataclass
class BatchResult:
    """What a batch run did: frames written, skipped (already done), and failed (name, reason)."""

    total: int
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def mat_frames(mat_path: str | os.PathLike, first_id: int = NYUD_FIRST_ID,
               millimetres: bool = True) -> list[MatFrame]:
    """The frames of an official `nyu_depth_v2_labeled.mat` (MATLAB v7.3, i.e. HDF5).

    MATLAB stores its H x W x N arrays column-major, so HDF5 shows `depths` and `rawDepths` as
    N x W x H; frame i is `dataset[i].T` (H x W, metres). Raises ValueError naming the file when
    it is not HDF5 or lacks the two datasets with equal 3-D shapes.
    """
    import h5py

    path = str(mat_path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ValueError(f"{path}: cannot be read as a MATLAB v7.3 (HDF5) .mat file ({e})") from None
    with f:
        shapes = {}
        for key in (MAT_DEPTH, MAT_RAW):
            if key not in f or not isinstance(f[key], h5py.Dataset):
                raise ValueError(f"{path}: no dataset {key!r} (found {sorted(f.keys())}); "
                                 "expected the official nyu_depth_v2_labeled.mat")
            shapes[key] = f[key].shape
            if len(shapes[key]) != 3:
                raise ValueError(f"{path}: dataset {key!r} has shape {shapes[key]}, expected "
                                 "N x W x H (MATLAB's H x W x N)")
        if shapes[MAT_DEPTH] != shapes[MAT_RAW]:
            raise ValueError(f"{path}: {MAT_DEPTH!r} has shape {shapes[MAT_DEPTH]} but "
                             f"{MAT_RAW!r} has {shapes[MAT_RAW]}")
        n = shapes[MAT_DEPTH][0]
    return [MatFrame(f"img_{first_id + i}", path, i, millimetres) for i in range(n)]


def png_frames(depth_dir: str | os.PathLike, raw_dir: str | os.PathLike | None = None,
               scale: float = 1000.0) -> list[PngFrame]:
    """The depth PNGs of `depth_dir` (sorted by name); `raw_dir` must hold a PNG of the same name each.

    scale: PNG value per metre (1000 for millimetre PNGs as in NYUD2/rcnn-depth, 10000 for the
    Depth2HHA-python demo files). Without `raw_dir` a depth PNG is its own raw depth (0 = missing).
    """
    depth_dir = Path(depth_dir)
    if not scale > 0:
        raise ValueError(f"depth scale must be positive, got {scale}")
    paths = sorted(p for p in depth_dir.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not paths:
        raise ValueError(f"{depth_dir}: no .png depth files")
    frames = []
    for p in paths:
        raw = None
        if raw_dir is not None:
            raw = Path(raw_dir) / p.name
            if not raw.is_file():
                raise ValueError(f"{raw}: raw depth PNG for {p} not found")
        frames.append(PngFrame(p.stem, str(p), None if raw is None else str(raw), float(scale)))
    return frames


def load_frame(frame: Frame) -> tuple[np.ndarray, np.ndarray]:
    """(depth in metres H x W, missing mask H x W bool) of one frame; ValueError names the frame."""
    if isinstance(frame, MatFrame):
        f = _open_mat(frame.mat_path)
        depth = np.asarray(f[MAT_DEPTH][frame.index]).T
        raw = np.asarray(f[MAT_RAW][frame.index]).T
        if frame.millimetres:
            # saveHHA: D = double(D) ./ 1000 on the uint16 millimetre PNG
            return to_millimetres(depth) / 1000.0, to_millimetres(raw) == 0
        if not np.issubdtype(depth.dtype, np.floating):
            depth = depth.astype(np.float64)   # hha() wants metres as floats; the .mat holds metres
        return depth, raw == 0
    depth = _read_depth_png(frame.depth_path, frame.name) / frame.scale
    if frame.raw_path is None:
        return depth, depth == 0
    raw = _read_depth_png(frame.raw_path, frame.name)
    if raw.shape != depth.shape:
        raise ValueError(f"HHA input {frame.name!r}: raw depth {frame.raw_path} has shape "
                         f"{raw.shape}, depth {frame.depth_path} has {depth.shape}")
    return depth, raw == 0


def to_millimetres(metres: np.ndarray) -> np.ndarray:
    """MATLAB's uint16(metres * 1000) as float64: the product in the array's own precision (single
    for the official file), rounded half away from zero, saturated to 0..65535.

    Non-finite and negative values are passed through (times 1000) so that `hha` rejects them
    instead of them turning silently into 0 = missing.
    """
    m = np.asarray(metres)
    if not np.issubdtype(m.dtype, np.floating):
        m = m.astype(np.float64)
    x = (m * m.dtype.type(1000)).astype(np.float64)
    ok = np.isfinite(x) & (x >= 0)
    safe = np.where(ok, x, 0.0)
    whole = np.floor(safe)
    rounded = np.minimum(whole + (safe - whole >= 0.5), 65535.0)
    return np.where(ok, rounded, x)


def convert_frame(frame: Frame, out_dir: str | os.PathLike,
                  camera: np.ndarray = NYUD_COLOR_CAMERA) -> Path:
    """Compute one frame's HHA and write `<out_dir>/<name>.png` atomically; returns the path."""
    depth, missing = load_frame(frame)
    image = hha(depth, camera, missing, frame=frame.name)
    path = Path(out_dir) / f"{frame.name}.png"
    write_png_atomic(path, image)
    return path


def write_png_atomic(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write an H x W x 3 uint8 array as an RGB PNG: temporary file next to it, then os.replace."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}{_TEMP_MARK}{os.getpid()}")
    try:
        # zlib level 1: a quarter of level 6's time for ~25% larger files; the pixels are the same
        image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
        image.save(tmp, format="PNG", compress_level=1)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def convert_all(frames: Sequence[Frame], out_dir: str | os.PathLike, *,
                camera: np.ndarray = NYUD_COLOR_CAMERA, jobs: int = 2,
                progress: bool = True) -> BatchResult:
    """Convert every frame whose PNG is not in `out_dir` yet, with `jobs` processes.

    Bad frames (ValueError from the checks, unreadable files) are collected in `failed` and the
    others still run. `progress`: one step per frame on stderr (reproduce.progress).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(out)
    result = BatchResult(total=len(frames))
    todo = []
    for fr in frames:
        if (out / f"{fr.name}.png").is_file():
            result.skipped.append(fr.name)
        else:
            todo.append(fr)
    if not todo:
        return result
    camera = np.asarray(camera, dtype=np.float64)
    label = f"HHA ({min(jobs, len(todo))} process{'es' * (min(jobs, len(todo)) > 1)})"
    with Progress(label, len(todo), unit="frame", show=progress) as bar:
        for name, error in _run(todo, str(out), camera, jobs):
            if error is None:
                result.written.append(name)
            else:
                result.failed.append((name, error))
            bar.advance()
    return result


def _run(todo: list[Frame], out: str, camera: np.ndarray, jobs: int) -> Iterator[tuple[str, str | None]]:
    work = functools.partial(_convert_task, out_dir=out, camera=camera)
    if jobs <= 1 or len(todo) == 1:
        try:
            yield from map(work, todo)
        finally:
            _close_mats()
        return
    import multiprocessing

    # spawn: no fork of a parent that may hold threads (torch) or an open HDF5 handle. Each worker
    # runs single-threaded BLAS: the processes are the parallelism.
    ctx = multiprocessing.get_context("spawn")
    with _single_threaded_children():
        pool = ctx.Pool(min(jobs, len(todo)))     # the workers start here, with that environment
    with pool:
        yield from pool.imap_unordered(work, todo, chunksize=1)


def _convert_task(frame: Frame, out_dir: str, camera: np.ndarray) -> tuple[str, str | None]:
    try:
        convert_frame(frame, out_dir, camera)
    except (ValueError, OSError, KeyError) as e:
        return frame.name, str(e)
    return frame.name, None


@contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Environment for spawned workers: one BLAS/OpenMP thread each (restored afterwards)."""
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: "1" for k in keys})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


_MATS: dict = {}


def _open_mat(path: str):
    """One read-only h5py handle per .mat per process (h5py handles cannot cross processes)."""
    if path not in _MATS:
        import h5py
        _MATS[path] = h5py.File(path, "r")
    return _MATS[path]


def _close_mats() -> None:
    while _MATS:
        _, f = _MATS.popitem()
        f.close()


def _read_depth_png(path: str, name: str) -> np.ndarray:
    with Image.open(path) as im:
        mode = im.mode
        a = np.asarray(im)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"HHA input {name!r}: {path} is not a single-channel integer depth PNG "
                         f"(mode {mode}, shape {a.shape})")
    return a.astype(np.float64)


def _remove_stale_temps(out: Path) -> None:
    for p in out.iterdir():
        if p.name.startswith(".") and _TEMP_MARK in p.name and p.is_file():
            p.unlink()
