"""PASCAL-Context (Mottaghi et al.), 59-class task, read as pascalcontext_layers.py reads it.

    <voc_dir>/JPEGImages/<id>.jpg                 the VOC2010 devkit folder
    <voc_dir>/ImageSets/Main/<split>.txt          train 4,998 / val 5,105 ids
    <context_dir>/trainval/<id>.mat               'LabelMap': ids into the full label list (1-based)

Label translation, as the reference: the full list (labels.txt, 459 names) and the 59-class list
are read, spaces removed from every name; in the 59 list diningtable, bedcloth and clothes are
renamed table, bedclothes and cloth (the full list's names); then every LabelMap value equal to
(position in the full list + 1) of the k-th 59-class name (k = 0..58) becomes k + 1, and every
other value becomes 0 (background). No 255 is produced: class 0 is trained and scored (60 outputs).

The lists are <context_dir>/labels.txt and 59_labels.txt when present (the files the reference
reads), else the reference repository's classes-400.txt and classes-59.txt shipped in
lists/pascal-context/. A 'background' entry in the 59 list is dropped: the reference's lookup of
each 59-class name in the full list would fail on it, so its own 59 list cannot have held one.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import Part, SegDataset
from .conventions import PASCALCONTEXT_MEAN_BGR
from .errors import DatasetError
from .image_io import (caffe_bgr, check_value_range, integer_label_array,
                       load_mat_variable)
from .split_lists import first_existing, packaged_list, read_split

__all__ = ["PASCALContextDataset", "read_class_names", "context_lookup_table", "CONTEXT_RENAMES"]

# (name in the 59-class task list, name in the full list)
CONTEXT_RENAMES = (("diningtable", "table"), ("bedcloth", "bedclothes"), ("clothes", "cloth"))


def read_class_names(path: Path) -> list[str]:
    """Names of an "<index>: <name>" list, in file order, with all spaces removed."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DatasetError(path, f"class list unreadable ({exc})") from None
    names = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if ":" not in line:
            raise DatasetError(path, f"line {lineno} is not '<index>: <name>': {line!r}")
        names.append(line.split(":", 1)[1].replace(" ", ""))
    return names


def context_lookup_table(labels_400: list[str], labels_59: list[str], list_path: Path) -> np.ndarray:
    """uint8 table: full-list label id 0..len(labels_400) -> 59-class label 0..59."""
    task = [name for name in labels_59 if name != "background"]
    for task_name, main_name in CONTEXT_RENAMES:
        if task_name in task:
            task[task.index(task_name)] = main_name
    if len(task) != 59:
        raise DatasetError(list_path, f"expected 59 class names (besides background), found {len(task)}")
    table = np.zeros(len(labels_400) + 1, dtype=np.uint8)
    for index, name in enumerate(task):
        if name not in labels_400:
            raise DatasetError(list_path, f"class {name!r} is not in the full label list")
        table[labels_400.index(name) + 1] = index + 1
    return table


class PASCALContextDataset(SegDataset):
    """PASCAL-Context split: {"data": float32 3xHxW BGR minus mean, "label": uint8 HxW 0..59}."""

    name = "pascal-context"
    outputs = ("data", "label")

    def __init__(self, voc_dir: str | os.PathLike[str], context_dir: str | os.PathLike[str],
                 split: str = "train") -> None:
        voc_dir, context_dir = Path(voc_dir), Path(context_dir)
        if not (voc_dir / "JPEGImages").is_dir() and (voc_dir / "VOC2010" / "JPEGImages").is_dir():
            voc_dir = voc_dir / "VOC2010"  # the reference's voc_dir is the parent of VOC2010
        split_file = voc_dir / "ImageSets" / "Main" / f"{split}.txt"
        super().__init__(voc_dir, split, read_split(split_file), split_file)
        self.context_dir = context_dir
        full_list = first_existing(context_dir / "labels.txt") or packaged_list("pascal-context/classes-400.txt")
        task_list = first_existing(context_dir / "59_labels.txt") or packaged_list("pascal-context/classes-59.txt")
        self.labels_400 = read_class_names(full_list)
        self.table = context_lookup_table(self.labels_400, read_class_names(task_list), task_list)

    def image_path(self, ident: str) -> Path:
        return self.root / "JPEGImages" / f"{ident}.jpg"

    def label_path(self, ident: str) -> Path:
        return self.context_dir / "trainval" / f"{ident}.mat"

    def parts(self, ident: str) -> list[Part]:
        image_path, label_path = self.image_path(ident), self.label_path(ident)
        return [Part("data", image_path, lambda: caffe_bgr(image_path, PASCALCONTEXT_MEAN_BGR), "image"),
                Part("label", label_path, lambda: self.label(label_path), "LabelMap")]

    def label(self, path: Path) -> np.ndarray:
        """A trainval/<id>.mat LabelMap as the 59-class uint8 H x W map (0 = background)."""
        values = integer_label_array(load_mat_variable(path, "LabelMap"), path, "LabelMap")
        check_value_range(values, 0, len(self.labels_400), path, "LabelMap")
        return self.table[values]
