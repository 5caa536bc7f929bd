"""SegDataset: the common shape of every reader (ids, length, indexing, reference order)."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .conventions import REFERENCE_SEED
from .errors import DatasetError
from .image_io import check_same_size
from .order import reference_order


@dataclass(frozen=True)
class Part:
    """One file of a sample: the output key it gives, its path, and `read`, which decodes and
    validates it (raising DatasetError naming the file) and returns the array (... x H x W).
    `what` names the array in a size mismatch ("label", "hha", ...)."""

    key: str
    path: Path
    read: Callable[[], np.ndarray]
    what: str


def check_part_sizes(parts: list[Part], arrays: dict[str, np.ndarray]) -> None:
    """Refuse a part whose H x W differs from the first part's (the image), naming both files."""
    first = parts[0]
    for part in parts[1:]:
        check_same_size(arrays[part.key].shape[-2:], arrays[first.key].shape[-2:], part.path, first.path, part.what)


class SegDataset:
    """A split of a segmentation dataset read from its official on-disk layout.

    `ds.ids` are the split's ids in list order; `ds[i]` loads `ds.ids[i]` and returns a dict of
    Caffe-ready arrays (see each subclass for its keys); `ds.order()` is the index sequence the
    reference's data layer would visit.
    """

    name: str = ""
    outputs: tuple[str, ...] = ()

    def __init__(self, root: Path, split: str, ids: list[str], split_file: Path) -> None:
        if not ids:
            raise DatasetError(split_file, f"split {split!r} lists no ids")
        self.root = Path(root)
        self.split = split
        self.ids = list(ids)
        self.split_file = Path(split_file)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if not -len(self.ids) <= index < len(self.ids):
            raise IndexError(f"index {index} out of range for {len(self.ids)} ids")
        return self.load(self.ids[index])

    def parts(self, ident: str) -> list[Part]:
        """The files one id is made of, the image first (what `load` reads and `fcn data check
        --deep` checks one by one)."""
        raise NotImplementedError

    def load(self, ident: str) -> dict[str, np.ndarray]:
        """The arrays for one id: every part read in order, then their sizes compared."""
        parts = self.parts(ident)
        arrays = {part.key: part.read() for part in parts}
        check_part_sizes(parts, arrays)
        return arrays

    def order(self, seed: int = REFERENCE_SEED, *, runtime: str = "python2") -> Iterator[int]:
        """Endless indices into `ids` in the reference's order for this split (see order.py)."""
        return reference_order(self.split, len(self.ids), seed, runtime=runtime)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, n={len(self.ids)})"
