"""PASCAL VOC (val: seg11valid) and SBD (train) readers, as voc_layers.py reads them.

VOC layout (VOC2011 or VOC2012 devkit folder):
    <voc_dir>/JPEGImages/<id>.jpg
    <voc_dir>/SegmentationClass/<id>.png        palette indices 0..20, 255 = void/boundary
    <voc_dir>/ImageSets/Segmentation/<split>.txt
The FCN validation split `seg11valid` (736 ids) is not part of the VOC devkit; when
ImageSets/Segmentation/seg11valid.txt is absent the copy shipped in lists/pascal/ is used.

SBD layout (the `dataset` folder of benchmark_RELEASE):
    <sbdd_dir>/img/<id>.jpg
    <sbdd_dir>/cls/<id>.mat                     GTcls.Segmentation, uint8 0..20
    <sbdd_dir>/<split>.txt                      train.txt = 8,498 ids
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import Part, SegDataset
from .conventions import NUM_CLASSES, VOC_MEAN_BGR
from .errors import DatasetError
from .image_io import (caffe_bgr, check_label_uint8, check_value_range,
                       integer_label_array, load_index_png, load_mat_variable)
from .split_lists import packaged_list, read_split

__all__ = ["VOCSegDataset", "SBDDataset"]


class VOCSegDataset(SegDataset):
    """VOC segmentation split: {"data": float32 3xHxW BGR minus mean, "label": uint8 HxW}."""

    name = "voc"
    outputs = ("data", "label")

    def __init__(self, voc_dir: str | os.PathLike[str], split: str = "seg11valid", *,
                 mean_bgr: np.ndarray = VOC_MEAN_BGR) -> None:
        voc_dir = Path(voc_dir)
        split_file = voc_dir / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not split_file.is_file() and split == "seg11valid":
            split_file = packaged_list("pascal/seg11valid.txt")
        super().__init__(voc_dir, split, read_split(split_file), split_file)
        self.mean_bgr = mean_bgr

    def image_path(self, ident: str) -> Path:
        return self.root / "JPEGImages" / f"{ident}.jpg"

    def label_path(self, ident: str) -> Path:
        return self.root / "SegmentationClass" / f"{ident}.png"

    def parts(self, ident: str) -> list[Part]:
        image_path, label_path = self.image_path(ident), self.label_path(ident)
        return [Part("data", image_path, lambda: caffe_bgr(image_path, self.mean_bgr), "image"),
                Part("label", label_path, lambda: voc_label(label_path), "label")]


def voc_label(path: Path) -> np.ndarray:
    """A SegmentationClass PNG as uint8 H x W, its values checked to be 0..20 or 255."""
    label = load_index_png(path)
    check_label_uint8(label, NUM_CLASSES["voc"], path)
    return label


def sbd_segmentation(path: Path) -> np.ndarray:
    """`GTcls.Segmentation` of an SBD cls/<id>.mat, validated, as uint8 H x W (the reference's
    `mat['GTcls'][0]['Segmentation'][0].astype(np.uint8)`)."""
    gtcls = load_mat_variable(path, "GTcls")
    try:
        segmentation = gtcls[0]["Segmentation"][0]
    except (IndexError, KeyError, ValueError, TypeError):
        raise DatasetError(path, "GTcls is not a struct with a 'Segmentation' field") from None
    values = integer_label_array(segmentation, path, "GTcls.Segmentation")
    check_value_range(values, 0, NUM_CLASSES["voc"] - 1, path, "GTcls.Segmentation", allowed_extra=(255,))
    return values.astype(np.uint8)


class SBDDataset(SegDataset):
    """SBD split: {"data": float32 3xHxW BGR minus mean, "label": uint8 HxW}."""

    name = "sbd"
    outputs = ("data", "label")

    def __init__(self, sbdd_dir: str | os.PathLike[str], split: str = "train", *,
                 mean_bgr: np.ndarray = VOC_MEAN_BGR) -> None:
        sbdd_dir = Path(sbdd_dir)
        split_file = sbdd_dir / f"{split}.txt"
        super().__init__(sbdd_dir, split, read_split(split_file), split_file)
        self.mean_bgr = mean_bgr

    def image_path(self, ident: str) -> Path:
        return self.root / "img" / f"{ident}.jpg"

    def label_path(self, ident: str) -> Path:
        return self.root / "cls" / f"{ident}.mat"

    def parts(self, ident: str) -> list[Part]:
        image_path, label_path = self.image_path(ident), self.label_path(ident)
        return [Part("data", image_path, lambda: caffe_bgr(image_path, self.mean_bgr), "image"),
                Part("label", label_path, lambda: sbd_segmentation(label_path), "GTcls.Segmentation")]
