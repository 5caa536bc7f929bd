"""NYUDv2 in the layout the reference prepared it (nyud.tar.gz), read as nyud_layers.py reads it.

    <nyud_dir>/data/images/img_<id>.png        RGB colour
    <nyud_dir>/data/depth/img_<id>.png         single-channel depth (filled in; log(0) is refused)
    <nyud_dir>/data/hha/img_<id>.png           HHA (Gupta et al., saveHHA.m), 3 channels
    <nyud_dir>/segmentation/img_<id>.mat       variable 'segmentation': 0 = void, 1..40 classes
    <nyud_dir>/<split>.txt                     ids 5001..6449 (train 381, val 414, test 654)

Outputs (any subset, chosen with `tops`, as the reference layer's `tops` parameter):
    color  float32 3xHxW  BGR minus (116.190, 97.203, 92.318)
    hha    float32 3xHxW  HHA channels in file order minus (132.431, 94.076, 118.477)
    depth  float32 1xHxW  log(depth PNG value) - 7.844
    label  uint8   HxW    segmentation - 1 on uint8, so 1..40 -> 0..39 and void 0 -> 255

Split lists missing from <nyud_dir> fall back to the reference's copies in lists/nyud/.
The nets train on split "trainval"; when no trainval.txt exists it is train.txt followed by
val.txt (UNVERIFIED: the order of the reference's own trainval.txt, if its archive has one,
is not known here; the order decides which image each random draw picks).
"""
from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .base import Part, SegDataset
from .conventions import NUM_CLASSES, NYUD_MEAN_BGR, NYUD_MEAN_HHA, NYUD_MEAN_LOG_DEPTH
from .errors import DatasetError
from .image_io import (caffe_bgr, caffe_hha, check_value_range, integer_label_array,
                       load_depth_png, load_mat_variable)
from .split_lists import packaged_list, read_split

__all__ = ["NYUDDataset", "NYUD_TOPS", "nyud_split_ids", "log_depth", "shift_nyud_label"]

NYUD_TOPS = ("color", "hha", "depth", "label")


def nyud_split_ids(list_dir: Path, split: str) -> tuple[list[str], Path]:
    """Ids of an NYUD split and the list file they came from.

    A list in `list_dir` wins; train/val/test fall back to the reference's lists shipped in
    lists/nyud/; "trainval" without a trainval.txt is train followed by val.
    """
    def locate(name: str) -> Path:
        own = list_dir / f"{name}.txt"
        if own.is_file() or name not in ("train", "val", "test"):
            return own
        return packaged_list(f"nyud/{name}.txt")

    if split == "trainval" and not (list_dir / "trainval.txt").is_file():
        train_file, val_file = locate("train"), locate("val")
        return read_split(train_file) + read_split(val_file), train_file
    split_file = locate(split)
    return read_split(split_file), split_file


def log_depth(depth: np.ndarray, path: str | os.PathLike[str]) -> np.ndarray:
    """float32 1xHxW log(depth) - 7.844 from float32 HxW depth values, as load_depth does.

    The reference would turn a zero (missing) depth into -inf; that poisons training, so it is
    refused instead, naming the file (the prepared depth is filled in and has no zeros).
    """
    nonpositive = int(np.count_nonzero(~(depth > 0)))
    if nonpositive:
        raise DatasetError(path, f"depth has {nonpositive} pixels <= 0 (or NaN); log(depth) needs "
                                 "filled-in depth, not raw depth with holes")
    d = np.log(depth.astype(np.float32, copy=False))
    d -= NYUD_MEAN_LOG_DEPTH
    return d[np.newaxis, ...]


def shift_nyud_label(values: np.ndarray, path: str | os.PathLike[str], what: str) -> np.ndarray:
    """40-class labels 0 (void)..40 -> uint8 0..39 with void 255, as `label -= 1` on uint8."""
    values = integer_label_array(values, path, what)
    check_value_range(values, 0, NUM_CLASSES["nyud"], path, what)
    label = values.astype(np.uint8)
    label -= 1
    return label


class NYUDDataset(SegDataset):
    """NYUDv2 split in the reference's prepared layout (see the module docstring)."""

    name = "nyud"
    outputs = NYUD_TOPS

    def __init__(self, nyud_dir: str | os.PathLike[str], split: str = "trainval", *,
                 tops: Sequence[str] = NYUD_TOPS) -> None:
        nyud_dir = Path(nyud_dir)
        unknown = [t for t in tops if t not in NYUD_TOPS]
        if unknown or not tops:
            raise ValueError(f"tops must be a non-empty subset of {NYUD_TOPS}, got {tuple(tops)}")
        ids, split_file = nyud_split_ids(nyud_dir, split)
        super().__init__(nyud_dir, split, ids, split_file)
        self.tops = tuple(tops)

    def path(self, top: str, ident: str) -> Path:
        if top == "label":
            return self.root / "segmentation" / f"img_{ident}.mat"
        folder = {"color": "images", "depth": "depth", "hha": "hha"}[top]
        return self.root / "data" / folder / f"img_{ident}.png"

    def parts(self, ident: str) -> list[Part]:
        return [Part(top, self.path(top, ident), functools.partial(_READERS[top], self.path(top, ident)), top)
                for top in self.tops]


_READERS = {
    "color": lambda path: caffe_bgr(path, NYUD_MEAN_BGR),
    "hha": lambda path: caffe_hha(path, NYUD_MEAN_HHA),
    "depth": lambda path: log_depth(load_depth_png(path), path),
    "label": lambda path: shift_nyud_label(load_mat_variable(path, "segmentation"), path, "segmentation"),
}
