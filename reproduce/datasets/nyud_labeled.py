"""NYUDv2 read straight from the official `nyu_depth_v2_labeled.mat` (MATLAB v7.3 = HDF5).

For users who hold only the official file: colour, depth and the 40-class labels come out as
NYUDDataset gives them (same keys, shapes, means and label shift). HHA is not in the official
file; compute it with reproduce.datasets.hha into a folder of img_<id>.png and pass `hha_dir`.

Official file (h5py view; MATLAB arrays appear with their axes reversed):
    images  uint8   (1449, 3, 640, 480)   -> image i is images[i].transpose(2, 1, 0), H x W x RGB
    depths  float32 (1449, 640, 480)      metres, filled in -> depths[i].T
    labels  uint16  (1449, 640, 480)      0 = unlabeled, 1..894 -> labels[i].T

Ids: the reference's lists use ids 5001..6449; id k is image k - 5001 (0-based) of the file.
(Inferred: the sorted test list starts 5001, 5002, 5009, 5014, ..., matching the official
splits.mat testNdxs 1, 2, 9, 14, ... as recalled; UNVERIFIED against splits.mat here.)

The 894 -> 40 class mapping is `mapClass` of classMapping40.mat from Gupta et al.'s data
(http://people.eecs.berkeley.edu/~sgupta/cvpr13/data.tgz; a copy is in the
ankurhanda/nyuv2-meta-data repository). It is not shipped here; pass its path as `mapping`.

Depth: the prepared depth PNGs are taken to be millimetres (exp(7.844) = 2.55 m is a plausible
mean NYU depth), so metres are turned into the integer millimetres a uint16 PNG written by
MATLAB would hold (round half away from zero) before log(d) - 7.844. UNVERIFIED that Gupta's
depth PNGs are exactly round(1000 * depths).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .base import SegDataset
from .conventions import NUM_CLASSES, NYUD_MEAN_BGR, NYUD_MEAN_HHA
from .errors import DatasetError
from .image_io import (bgr_from_rgb, caffe_hha, check_same_size, check_value_range, integer_label_array,
                       load_mat_variable)
from .nyud import NYUD_TOPS, log_depth, nyud_split_ids, shift_nyud_label

__all__ = ["NYUDLabeledMat", "load_class_mapping_40", "matlab_uint16_millimetres", "FIRST_NYUD_ID", "NYU_RAW_CLASSES",
           "MAPPING_HELP"]

FIRST_NYUD_ID = 5001
NYU_RAW_CLASSES = 894
MAPPING_HELP = ("the 894 -> 40 class mapping is classMapping40.mat (variable 'mapClass') from Gupta et al. "
                "(http://people.eecs.berkeley.edu/~sgupta/cvpr13/data.tgz, or "
                "https://github.com/ankurhanda/nyuv2-meta-data/raw/master/classMapping40.mat); "
                "get it with `fcn data fetch nyud-mapping40` and pass its path")


def load_class_mapping_40(path: str | os.PathLike[str]) -> np.ndarray:
    """Lookup table uint8 (895,): raw NYU class 0..894 -> 40-class label 0..40 (0 = void).

    Entry 0 (unlabeled) maps to 0; entry k is mapClass[k - 1].
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(path, f"class mapping not found; {MAPPING_HELP}")
    values = load_mat_variable(path, "mapClass")
    values = np.asarray(values).reshape(-1)
    if values.size != NYU_RAW_CLASSES:
        raise DatasetError(path, f"mapClass has {values.size} entries, expected {NYU_RAW_CLASSES}")
    values = integer_label_array(values[np.newaxis, :], path, "mapClass")[0]
    check_value_range(values, 0, NUM_CLASSES["nyud"], path, "mapClass")
    return np.concatenate([[0], values]).astype(np.uint8)


def matlab_uint16_millimetres(metres: np.ndarray) -> np.ndarray:
    """MATLAB's uint16(metres * 1000) as float32: the product in the array's own precision
    (single for the official file), rounded half away from zero, saturated at 65535.
    The same conversion the HHA batch tool applies (hha_batch.to_millimetres)."""
    m = np.asarray(metres)
    if not np.issubdtype(m.dtype, np.floating):
        m = m.astype(np.float64)
    x = (m * m.dtype.type(1000)).astype(np.float64)
    return np.clip(np.floor(x + 0.5), None, 65535.0).astype(np.float32)


class NYUDLabeledMat(SegDataset):
    """NYUDv2 split read from nyu_depth_v2_labeled.mat (see the module docstring)."""

    name = "nyud-labeled"
    outputs = NYUD_TOPS

    def __init__(self, mat_path: str | os.PathLike[str], split: str = "trainval", *,
                 mapping: str | os.PathLike[str] | np.ndarray,
                 tops: Sequence[str] = ("color", "depth", "label"),
                 hha_dir: str | os.PathLike[str] | None = None,
                 list_dir: str | os.PathLike[str] | None = None) -> None:
        mat_path = Path(mat_path)
        unknown = [t for t in tops if t not in NYUD_TOPS]
        if unknown or not tops:
            raise ValueError(f"tops must be a non-empty subset of {NYUD_TOPS}, got {tuple(tops)}")
        if "hha" in tops and hha_dir is None:
            raise DatasetError(mat_path, "HHA is not stored in the official file; compute it with the "
                                         "HHA command (reproduce.datasets.hha) and pass hha_dir")
        ids, split_file = nyud_split_ids(Path(list_dir) if list_dir else mat_path.parent, split)
        super().__init__(mat_path.parent, split, ids, split_file)
        self.mat_path = mat_path
        self.tops = tuple(tops)
        self.hha_dir = Path(hha_dir) if hha_dir is not None else None
        self.lut = mapping if isinstance(mapping, np.ndarray) else load_class_mapping_40(mapping)
        self._file = None
        self._check_file()

    def _h5(self):
        if self._file is None:
            import h5py
            if not self.mat_path.is_file():
                raise DatasetError(self.mat_path, "file not found; get it with `fcn data fetch nyud-labeled`")
            try:
                self._file = h5py.File(self.mat_path, "r")
            except OSError as exc:
                raise DatasetError(self.mat_path, f"not a MATLAB v7.3 (HDF5) file ({exc})") from None
        return self._file

    def _check_file(self) -> None:
        f = self._h5()
        for key, ndim in (("images", 4), ("depths", 3), ("labels", 3)):
            if key not in f:
                raise DatasetError(self.mat_path, f"no dataset {key!r} (found {sorted(f.keys())})")
            if f[key].ndim != ndim:
                raise DatasetError(self.mat_path, f"{key!r} has shape {f[key].shape}, expected {ndim} axes")
        n = f["images"].shape[0]
        if f["images"].shape[1] != 3 or f["depths"].shape != f["images"].shape[:1] + f["images"].shape[2:] \
                or f["labels"].shape != f["depths"].shape:
            raise DatasetError(self.mat_path, f"inconsistent shapes: images {f['images'].shape}, "
                                              f"depths {f['depths'].shape}, labels {f['labels'].shape}")
        self.num_images = n

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None  # h5py handles do not pickle (DataLoader workers reopen the file)
        return state

    def index_of(self, ident: str) -> int:
        """0-based image index in the file of reference id `ident` (5001 -> 0)."""
        try:
            index = int(ident) - FIRST_NYUD_ID
        except ValueError:
            raise DatasetError(self.split_file, f"id {ident!r} is not a number") from None
        if not 0 <= index < self.num_images:
            raise DatasetError(self.mat_path, f"id {ident} maps to image {index}, outside 0..{self.num_images - 1}")
        return index

    def load(self, ident: str) -> dict[str, np.ndarray]:
        f = self._h5()
        i = self.index_of(ident)
        where = f"{self.mat_path.name}[{i}]"
        out: dict[str, np.ndarray] = {}
        if "color" in self.tops:
            rgb = np.asarray(f["images"][i]).transpose(2, 1, 0)
            out["color"] = bgr_from_rgb(rgb, NYUD_MEAN_BGR)
        if "depth" in self.tops:
            millimetres = matlab_uint16_millimetres(np.asarray(f["depths"][i]).T)
            out["depth"] = log_depth(millimetres, self.mat_path / f"depths[{i}]")
        if "hha" in self.tops:
            assert self.hha_dir is not None
            hha_path = self.hha_dir / f"img_{ident}.png"
            out["hha"] = caffe_hha(hha_path, NYUD_MEAN_HHA)
        if "label" in self.tops:
            raw = integer_label_array(np.asarray(f["labels"][i]).T, self.mat_path, f"labels[{i}]")
            check_value_range(raw, 0, NYU_RAW_CLASSES, self.mat_path, f"labels[{i}]")
            out["label"] = shift_nyud_label(self.lut[raw], self.mat_path, f"labels[{i}] mapped to 40 classes")
        shapes = {top: arr.shape[-2:] for top, arr in out.items()}
        first = next(iter(shapes.values()))
        for top, shape in shapes.items():
            check_same_size(shape, first, self.mat_path if top != "hha" else self.hha_dir / f"img_{ident}.png",
                            where, top)
        return out
