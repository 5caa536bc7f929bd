"""Loading images, label maps and .mat files, preprocessed exactly as the reference data layers do.

Every failure (missing file, undecodable image, wrong mode, wrong size, label value out of range)
raises DatasetError naming the file and the problem.

JPEGs are decoded by the installed Pillow/libjpeg; the reference's 2015-16 decoder may have
produced slightly different pixel values on some images (UNVERIFIED; not checkable here).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image, UnidentifiedImageError

from .conventions import IGNORE_LABEL
from .errors import DatasetError


def open_image(path: str | os.PathLike[str]) -> Image.Image:
    """Open and fully decode an image file (PIL decodes lazily; force it so errors surface here)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "file not found")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(path, f"unreadable image ({exc})") from None
    return image


def load_rgb_array(path: str | os.PathLike[str]) -> np.ndarray:
    """An RGB image as float32 H x W x 3 (0..255), as `np.array(Image.open(p), dtype=np.float32)`."""
    image = open_image(path)
    if image.mode != "RGB":
        raise DatasetError(path, f"expected an RGB image, got PIL mode {image.mode!r}")
    return np.array(image, dtype=np.float32)


def caffe_bgr(path: str | os.PathLike[str], mean_bgr: np.ndarray) -> np.ndarray:
    """Caffe input from an RGB file: float32 3 x H x W, channels B, G, R, minus `mean_bgr`."""
    return bgr_from_rgb(load_rgb_array(path), mean_bgr)


def bgr_from_rgb(rgb: np.ndarray, mean_bgr: np.ndarray) -> np.ndarray:
    """float32 3 x H x W BGR minus `mean_bgr` from an H x W x 3 RGB array (0..255).

    The steps and their order are the reference's load_image: cast to float32, reverse the channel
    axis, subtract the mean in place (in the mean's own dtype, see conventions.py), transpose.
    """
    in_ = np.array(rgb, dtype=np.float32)
    in_ = in_[:, :, ::-1]
    in_ -= mean_bgr
    return np.ascontiguousarray(in_.transpose((2, 0, 1)))


def caffe_hha(path: str | os.PathLike[str], mean_hha: np.ndarray) -> np.ndarray:
    """HHA input: float32 3 x H x W in the file's channel order (not reversed), minus `mean_hha`."""
    hha = load_rgb_array(path)
    hha -= mean_hha
    return np.ascontiguousarray(hha.transpose((2, 0, 1)))


def load_depth_png(path: str | os.PathLike[str]) -> np.ndarray:
    """A single-channel depth PNG as float32 H x W (the stored integer values, no unit change)."""
    image = open_image(path)
    if image.mode not in ("I;16", "I;16B", "I", "L", "F"):
        raise DatasetError(path, f"expected a single-channel depth image, got PIL mode {image.mode!r}")
    return np.array(image, dtype=np.float32)


def load_index_png(path: str | os.PathLike[str]) -> np.ndarray:
    """A palette (or greyscale) label PNG as its uint8 H x W index array."""
    image = open_image(path)
    if image.mode not in ("P", "L"):
        raise DatasetError(path, f"expected a palette or greyscale label PNG, got PIL mode {image.mode!r}")
    return np.array(image, dtype=np.uint8)


def load_mat_variable(path: str | os.PathLike[str], key: str) -> np.ndarray:
    """Variable `key` of a MATLAB (v5/v7) .mat file, loaded with scipy.io.loadmat defaults."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, "file not found")
    try:
        contents = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises many types (MatReadError, ValueError, OSError, ...)
        raise DatasetError(path, f"unreadable .mat file ({type(exc).__name__}: {exc})") from None
    if key not in contents:
        found = sorted(k for k in contents if not k.startswith("__"))
        raise DatasetError(path, f"no variable {key!r} in .mat file (found {found})")
    return contents[key]


def integer_label_array(values: np.ndarray, path: str | os.PathLike[str], what: str) -> np.ndarray:
    """`values` as an int64 H x W array, refusing non-2-D or non-integer contents."""
    values = np.asarray(values)
    if values.ndim != 2:
        raise DatasetError(path, f"{what} must be a 2-D array, got shape {values.shape}")
    if values.dtype.kind == "f":
        if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
            raise DatasetError(path, f"{what} has non-integer values")
    elif values.dtype.kind not in "iub":
        raise DatasetError(path, f"{what} has dtype {values.dtype}, expected integers")
    return values.astype(np.int64)


def check_value_range(values: np.ndarray, low: int, high: int, path: str | os.PathLike[str],
                      what: str, *, allowed_extra: tuple[int, ...] = ()) -> None:
    """Refuse values outside low..high (inclusive) other than `allowed_extra`, listing the bad ones."""
    bad = (values < low) | (values > high)
    for extra in allowed_extra:
        bad &= values != extra
    if np.any(bad):
        offending = np.unique(values[bad])[:10].tolist()
        extra = f" or {', '.join(map(str, allowed_extra))}" if allowed_extra else ""
        raise DatasetError(path, f"{what} has values {offending} outside {low}..{high}{extra}")


def check_label_uint8(label: np.ndarray, num_classes: int, path: str | os.PathLike[str],
                      what: str = "label") -> None:
    """Refuse a final label map with values other than 0..num_classes-1 and 255 (ignore)."""
    check_value_range(label, 0, num_classes - 1, path, what, allowed_extra=(IGNORE_LABEL,))


def check_same_size(shape_hw: tuple[int, int], reference_hw: tuple[int, int],
                    path: str | os.PathLike[str], reference_path: str | os.PathLike[str], what: str) -> None:
    """Refuse a map whose H x W differs from its image's."""
    if tuple(shape_hw) != tuple(reference_hw):
        raise DatasetError(path, f"{what} is {shape_hw[0]}x{shape_hw[1]} (HxW) but its image "
                                 f"{Path(reference_path).name} is {reference_hw[0]}x{reference_hw[1]}")
