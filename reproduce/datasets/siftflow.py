"""SIFT Flow (LabelMe outdoor scenes, Liu et al.), read as siftflow_layers.py reads it.

    <siftflow_dir>/Images/spatial_envelope_256x256_static_8outdoorcategories/<id>.jpg
    <siftflow_dir>/SemanticLabels/spatial_envelope_256x256_static_8outdoorcategories/<id>.mat   'S': 0 void, 1..33
    <siftflow_dir>/GeoLabels/spatial_envelope_256x256_static_8outdoorcategories/<id>.mat        'S': -1 void, 1..3
    <siftflow_dir>/<split>.txt     trainval 2,486 ids / test 200 (the reference's lists; shipped in lists/sift-flow/)

Outputs: data float32 3x256x256 (BGR minus (114.578, 115.294, 108.353)); sem uint8 HxW 0..32 and
255; geo uint8 HxW 0..2 (sky, horizontal, vertical) and 255. As the reference: geometric -1 is set
to 0, both maps are cast to uint8 and reduced by 1, so 0 wraps to 255 (ignored).
The paper's 2,488 training images include highway_bost181 and street_urb506, which have no
annotation and are left out of the lists. Semantic classes cow, desert and moon never occur in
test; evaluation must leave them out (see lists/sift-flow/classes.txt).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import Part, SegDataset
from .conventions import NUM_CLASSES, SIFTFLOW_MEAN_BGR
from .image_io import (caffe_bgr, check_value_range, integer_label_array,
                       load_mat_variable)
from .split_lists import packaged_list, read_split

__all__ = ["SIFTFlowDataset", "SIFTFLOW_SUBDIR"]

SIFTFLOW_SUBDIR = "spatial_envelope_256x256_static_8outdoorcategories"


def semantic_label(values: np.ndarray, path: Path) -> np.ndarray:
    values = integer_label_array(values, path, "semantic S")
    check_value_range(values, 0, NUM_CLASSES["siftflow-sem"], path, "semantic S")
    label = values.astype(np.uint8)
    label -= 1
    return label


def geometric_label(values: np.ndarray, path: Path) -> np.ndarray:
    values = integer_label_array(values, path, "geometric S")
    check_value_range(values, 0, NUM_CLASSES["siftflow-geo"], path, "geometric S", allowed_extra=(-1,))
    values[values == -1] = 0
    label = values.astype(np.uint8)
    label -= 1
    return label


class SIFTFlowDataset(SegDataset):
    """SIFT Flow split: {"data": float32 3xHxW, "sem": uint8 HxW, "geo": uint8 HxW}."""

    name = "siftflow"
    outputs = ("data", "sem", "geo")

    def __init__(self, siftflow_dir: str | os.PathLike[str], split: str = "trainval") -> None:
        siftflow_dir = Path(siftflow_dir)
        split_file = siftflow_dir / f"{split}.txt"
        if not split_file.is_file() and split in ("trainval", "test"):
            split_file = packaged_list(f"sift-flow/{split}.txt")
        super().__init__(siftflow_dir, split, read_split(split_file), split_file)

    def image_path(self, ident: str) -> Path:
        return self.root / "Images" / SIFTFLOW_SUBDIR / f"{ident}.jpg"

    def semantic_path(self, ident: str) -> Path:
        return self.root / "SemanticLabels" / SIFTFLOW_SUBDIR / f"{ident}.mat"

    def geometric_path(self, ident: str) -> Path:
        return self.root / "GeoLabels" / SIFTFLOW_SUBDIR / f"{ident}.mat"

    def parts(self, ident: str) -> list[Part]:
        image_path = self.image_path(ident)
        sem_path, geo_path = self.semantic_path(ident), self.geometric_path(ident)
        return [Part("data", image_path, lambda: caffe_bgr(image_path, SIFTFLOW_MEAN_BGR), "image"),
                Part("sem", sem_path, lambda: semantic_label(load_mat_variable(sem_path, "S"), sem_path),
                     "semantic label"),
                Part("geo", geo_path, lambda: geometric_label(load_mat_variable(geo_path, "S"), geo_path),
                     "geometric label")]
