"""Finding a dataset's folder under a data root, whatever top folder its archive unpacked to.

`fcn data fetch` extracts each archive as-is into <data-root>/<name>/, so the folder a reader
needs sits a few levels down (e.g. data/voc2012/VOCdevkit/VOC2012). Each layout is recognised by
the paths it must contain.
"""
from __future__ import annotations

from collections import deque
from pathlib import Path

from .siftflow import SIFTFLOW_SUBDIR

# layout -> paths (relative to the folder) that identify it
MARKERS: dict[str, tuple[str, ...]] = {
    "voc": ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"),
    "voc-main": ("JPEGImages", "ImageSets/Main"),
    "sbd": ("img", "cls"),
    "nyud": ("data/images", "segmentation"),
    "siftflow": (f"Images/{SIFTFLOW_SUBDIR}",),
    "pascal-context": ("trainval",),
}

# big leaf folders never searched below (they hold thousands of files and no dataset folder)
_LEAVES = {"JPEGImages", "SegmentationClass", "SegmentationObject", "Annotations", "img", "cls", "inst",
           "trainval", "images", "depth", "hha", "segmentation", "Images", "SemanticLabels", "GeoLabels"}


def matches(folder: Path, layout: str) -> bool:
    """True when `folder` holds every marker path of `layout`."""
    return all((folder / marker).is_dir() for marker in MARKERS[layout])


def find_layout(base: Path, layout: str, max_depth: int = 4) -> Path | None:
    """The shallowest folder at or under `base` (breadth-first, hidden folders skipped) that
    matches `layout`, or None."""
    base = Path(base)
    if not base.is_dir():
        return None
    queue: deque[tuple[Path, int]] = deque([(base, 0)])
    while queue:
        folder, depth = queue.popleft()
        if matches(folder, layout):
            return folder
        if depth == max_depth or (depth > 0 and folder.name in _LEAVES):
            continue
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            continue
        queue.extend((child, depth + 1) for child in children)
    return None


def find_in(root: Path, layout: str, preferred: tuple[str, ...]) -> Path | None:
    """`root` itself if it matches, else the first match under root/<preferred[i]>, else under root."""
    root = Path(root)
    if matches(root, layout):
        return root
    for name in preferred:
        found = find_layout(root / name, layout)
        if found is not None:
            return found
    return find_layout(root, layout)
