"""`fcn data check NAME --deep`: decode every file of every split the experiments read from NAME.

The shallow check (layout_check) sees that files exist. This reads each one with the readers' own
decoding and validation (reproduce.datasets.<reader>.parts), so a corrupt JPEG, a label PNG of
another size than its image, a label value outside 0..C-1 (other than 255; C from the dataset) or
a missing depth/HHA image that an experiment needs is found before a run of days meets it. Every
bad file is listed (path and what is wrong), not only the first.

Which splits and inputs: those of the experiments (reproduce.experiments) whose train or val
reader reads NAME's folder; NYUD's depth and HHA images are checked because some experiments need
them, and their problems say which.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .base import Part, SegDataset
from .errors import DatasetError
from .image_io import check_same_size
from .locate import find_in

__all__ = ["DEEP_READERS", "DeepResult", "deep_check", "deep_check_dataset", "reader_splits"]

#: fetch name -> the reader that reads its folder (voc2010's images are read by pascal-context's)
DEEP_READERS = {"voc2011": "voc", "voc2012": "voc", "sbd": "sbd", "nyud": "nyud", "siftflow": "siftflow",
                "pascal-context": "pascal-context"}
#: fetch names whose files another name's deep check reads
DEEP_ELSEWHERE = {"voc2010": "pascal-context"}
PROGRESS_EVERY = 500  # samples between progress lines


@dataclass
class DeepResult:
    """What a deep check of one split found: samples and files read, and each bad file's line."""

    label: str
    samples: int = 0
    files: int = 0
    shared: int = 0  # files already read for another split
    bad: list[str] | None = None

    def __post_init__(self) -> None:
        self.bad = [] if self.bad is None else self.bad


def reader_splits(reader: str) -> dict[str, dict[str, tuple[str, ...]]]:
    """For every split the experiments read with `reader`: {split: {sample key: experiments that use it}}."""
    from reproduce import experiments
    found: dict[str, dict[str, tuple[str, ...]]] = {}
    for exp in experiments.all_experiments():
        for which in ("train", "val"):
            if (exp.train_reader if which == "train" else exp.val_reader) != reader:
                continue
            split = exp.train_split if which == "train" else exp.val_split
            keys = found.setdefault(split, {})
            for key in dict.fromkeys(exp.inputs + exp.labels):
                if exp.name not in keys.get(key, ()):
                    keys[key] = keys.get(key, ()) + (exp.name,)
    return found


def deep_check_dataset(dataset: SegDataset, label: str, needed_by: dict[str, tuple[str, ...]] | None = None, *,
                       progress: Callable[[str], None] | None = None, progress_every: int = PROGRESS_EVERY,
                       seen: set[Path] | None = None) -> DeepResult:
    """Read every part of every id of `dataset` on its own, then compare each sample's sizes.

    needed_by: sample key -> experiments that read it; a problem line of a key not every
        experiment reads names those that do. progress: called with a line every
        `progress_every` samples and at the end. seen: paths already read by another split
        (skipped; updated).
    """
    result = DeepResult(label)
    needed_by = needed_by or {}
    everyone = set().union(*needed_by.values()) if needed_by else set()
    seen = set() if seen is None else seen
    started = time.monotonic()
    total = len(dataset.ids)
    for index, ident in enumerate(dataset.ids, 1):
        parts = dataset.parts(ident)
        shapes: dict[str, tuple[Part, tuple[int, ...]]] = {}
        for part in parts:
            if part.path in seen:
                result.shared += 1
                continue
            seen.add(part.path)
            result.files += 1
            try:
                shapes[part.key] = (part, tuple(part.read().shape[-2:]))
            except DatasetError as exc:
                users = needed_by.get(part.key, ())
                note = f" (needed by {', '.join(users)})" if users and set(users) != everyone else ""
                result.bad.append(f"{exc}{note}")
        read = list(shapes.values())
        for part, shape in read[1:]:
            first, first_shape = read[0]
            try:
                check_same_size(shape, first_shape, part.path, first.path, part.what)
            except DatasetError as exc:
                result.bad.append(str(exc))
        result.samples += 1
        if progress is not None and (index % progress_every == 0 or index == total):
            progress(f"{label}: {index}/{total} samples checked, {len(result.bad)} bad so far "
                     f"({time.monotonic() - started:.0f} s)")
    return result


def deep_check(name: str, data_root: Path, location: Path | None, *,
               progress: Callable[[str], None] | None = None,
               progress_every: int = PROGRESS_EVERY) -> tuple[list[str], list[str]]:
    """(good lines, problem lines) of the deep check of fetch name `name`, whose folder the
    shallow check found at `location` (None: not found, nothing to read)."""
    from .catalog import open_dataset
    if name in DEEP_ELSEWHERE:
        other = DEEP_ELSEWHERE[name]
        return [f"deep: its files are decoded by `fcn data check {other} --deep`"], []
    reader = DEEP_READERS.get(name)
    if reader is None:
        return ["deep: nothing more to decode (the checks above are complete for this file)"], []
    if location is None:
        return [], []  # the shallow check says what is missing
    good: list[str] = []
    problems: list[str] = []
    seen: set[Path] = set()
    for split, needed_by in reader_splits(reader).items():
        options: dict = {}
        if reader == "nyud":
            options["tops"] = tuple(needed_by)
        if reader == "pascal-context":
            voc = find_in(data_root / "voc2010", "voc-main", ()) if (data_root / "voc2010").is_dir() else None
            if voc is None:
                problems.append(f"deep: {split}: the VOC2010 images are needed (not found under {data_root / 'voc2010'})")
                continue
            options["voc_dir"] = voc
        label = f"{name} {split}"
        try:
            dataset = open_dataset(reader, location, split, **options)
        except DatasetError as exc:
            problems.append(f"deep: {split}: {exc}")
            continue
        result = deep_check_dataset(dataset, label, needed_by, progress=progress, progress_every=progress_every,
                                    seen=seen)
        if result.bad:
            problems.append(f"deep: {split}: {len(result.bad)} problems in {result.files} files of "
                            f"{result.samples} samples:")
            problems += [f"deep: {line}" for line in result.bad]
        else:
            shared = f" ({result.shared} read for another split)" if result.shared else ""
            good.append(f"deep: {split}: {result.samples} samples, {result.files} files decoded{shared}: sizes agree, "
                        f"labels in range")
    return good, problems
