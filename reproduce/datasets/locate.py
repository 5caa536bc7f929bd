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

SEARCH_DEPTH = 4  # folder levels searched below a data root

# big leaf folders never searched below (they hold thousands of files and no dataset folder)
_LEAVES = {"JPEGImages", "SegmentationClass", "SegmentationObject", "Annotations", "img", "cls", "inst",
           "trainval", "images", "depth", "hha", "segmentation", "Images", "SemanticLabels", "GeoLabels"}


def matches(folder: Path, layout: str) -> bool:
    """True when `folder` holds every marker path of `layout`."""
    return all((folder / marker).is_dir() for marker in MARKERS[layout])


def find_layout(base: Path, layout: str, max_depth: int = SEARCH_DEPTH) -> Path | None:
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


def closest_partial(base: Path, layout: str, max_depth: int = SEARCH_DEPTH) -> tuple[Path, list[str]] | None:
    """The folder at or under `base` holding the most (but not all) marker paths of `layout`
    (shallowest first on ties) and the markers it holds, or None when no folder holds any."""
    base = Path(base)
    if not base.is_dir():
        return None
    best: tuple[Path, list[str]] | None = None
    queue: deque[tuple[Path, int]] = deque([(base, 0)])
    while queue:
        folder, depth = queue.popleft()
        present = [m for m in MARKERS[layout] if (folder / m).is_dir()]
        if present and (best is None or len(present) > len(best[1])):
            best = (folder, present)
        if depth == max_depth or (depth > 0 and folder.name in _LEAVES):
            continue
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            continue
        queue.extend((child, depth + 1) for child in children)
    return best



def what_is_missing(base: Path, layout: str) -> str:
    """Which marker folders of `layout` are missing at or under `base`, said of the folder that
    comes closest, e.g. "data/voc2011/VOCdevkit/VOC2011 has JPEGImages/ and SegmentationClass/ but
    no ImageSets/Segmentation/"."""
    base = Path(base)
    markers = MARKERS[layout]
    if not base.exists():
        return f"{base} does not exist"
    if not base.is_dir():
        return f"{base} is not a folder"
    partial = closest_partial(base, layout)
    if partial is None:
        return f"no folder there holds any of {_and(markers, 'or')} (searched {SEARCH_DEPTH} levels down)"
    folder, present = partial
    missing = [m for m in markers if m not in present]
    return f"{folder} has {_and(present)} but no {_and(missing, 'or')}"


def _and(items: list[str] | tuple[str, ...], word: str = "and") -> str:
    names = [f"{item}/" for item in items]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {word} {names[-1]}"
