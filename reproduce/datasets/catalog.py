"""open_dataset: one entry point to every reader, given a dataset folder or the data root."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .base import SegDataset
from .errors import DatasetError
from .locate import find_in, what_is_missing
from .nyud import NYUDDataset
from .nyud_labeled import MAPPING_HELP, NYUDLabeledMat
from .pascal_context import PASCALContextDataset
from .siftflow import SIFTFlowDataset
from .voc import SBDDataset, VOCSegDataset

__all__ = ["open_dataset", "DATASETS", "DEFAULT_SPLITS"]

# reader name -> (default split, the `fcn data fetch` names that provide it)
DATASETS: dict[str, tuple[str, tuple[str, ...]]] = {
    "voc": ("seg11valid", ("voc2011", "voc2012")),
    "sbd": ("train", ("sbd",)),
    "nyud": ("trainval", ("nyud",)),
    "nyud-labeled": ("trainval", ("nyud-labeled", "nyud-mapping40")),
    "siftflow": ("trainval", ("siftflow",)),
    "pascal-context": ("train", ("pascal-context", "voc2010")),
}
DEFAULT_SPLITS = {name: split for name, (split, _) in DATASETS.items()}

NYUD_LABELED_FILE = "nyu_depth_v2_labeled.mat"
MAPPING_FILE = "classMapping40.mat"


def _need(found: Path | None, root: Path, what: str, fetch: str, layout: str | None = None) -> Path:
    if found is None:
        detail = f" ({what_is_missing(root, layout)})" if layout is not None else ""
        raise DatasetError(root, f"no {what} found here or below{detail}; get it with `fcn data fetch {fetch}`")
    return found


def open_dataset(name: str, root: str | os.PathLike[str], split: str | None = None,
                 **options: Any) -> SegDataset:
    """A reader for split `split` (default: the split the reference trains on) of dataset `name`.

    name: voc | sbd | nyud | nyud-labeled | siftflow | pascal-context.
    root: the dataset's own folder (what the reference layer takes, e.g. .../VOC2011 or
        .../benchmark_RELEASE/dataset) or a data root holding `fcn data fetch` folders
        (data/voc2011, data/sbd, ...); the folder is found below it.
    options: passed to the reader: NYUD `tops`; nyud-labeled `mapping` (path of
        classMapping40.mat, default: found under root), `hha_dir`, `list_dir`; pascal-context
        `voc_dir` (default: found under root, preferring root/voc2010).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")
    root = Path(root)
    if not root.exists():
        raise DatasetError(root, "data folder not found")
    split = split or DEFAULT_SPLITS[name]
    if name == "voc":
        return VOCSegDataset(_need(find_in(root, "voc", ("voc2011", "voc2012")), root,
                                   "VOC devkit folder (JPEGImages, SegmentationClass, ImageSets/Segmentation)", "voc2012", "voc"),
                             split, **options)
    if name == "sbd":
        return SBDDataset(_need(find_in(root, "sbd", ("sbd",)), root, "SBD dataset folder (img, cls)", "sbd", "sbd"),
                          split, **options)
    if name == "nyud":
        return NYUDDataset(_need(find_in(root, "nyud", ("nyud",)), root,
                                 "prepared NYUDv2 folder (data/images, segmentation)", "nyud", "nyud"), split, **options)
    if name == "siftflow":
        return SIFTFlowDataset(_need(find_in(root, "siftflow", ("siftflow",)), root,
                                     "SIFT Flow folder (Images/...)", "siftflow", "siftflow"), split, **options)
    if name == "pascal-context":
        context_dir = _need(find_in(root, "pascal-context", ("pascal-context",)), root,
                            "PASCAL-Context annotation folder (trainval/)", "pascal-context", "pascal-context")
        voc_dir = options.pop("voc_dir", None)
        if voc_dir is None:
            voc_dir = _need(find_in(root, "voc-main", ("voc2010",)), root,
                            "VOC2010 devkit folder (JPEGImages, ImageSets/Main)", "voc2010", "voc-main")
        return PASCALContextDataset(voc_dir, context_dir, split, **options)
    # nyud-labeled
    mat = root if root.is_file() else _find_file(root, NYUD_LABELED_FILE, ("nyud-labeled",))
    mat = _need(mat, root, NYUD_LABELED_FILE, "nyud-labeled")
    if options.get("mapping") is None:
        search_root = root if root.is_dir() else root.parent
        mapping = _find_file(search_root, MAPPING_FILE, ("nyud-mapping40",)) or \
            _find_file(search_root.parent, MAPPING_FILE, ("nyud-mapping40",))
        if mapping is None:
            raise DatasetError(search_root, f"no {MAPPING_FILE} found here or below; {MAPPING_HELP}")
        options["mapping"] = mapping
    return NYUDLabeledMat(mat, split, **options)


def _find_file(root: Path, filename: str, preferred: tuple[str, ...]) -> Path | None:
    """root/filename, root/<preferred>/filename, or the first one anywhere below root/<preferred>."""
    for folder in (root, *(root / p for p in preferred)):
        if (folder / filename).is_file():
            return folder / filename
    for folder in (root / p for p in preferred):
        if folder.is_dir():
            hits = sorted(folder.rglob(filename))
            if hits:
                return hits[0]
    return None
