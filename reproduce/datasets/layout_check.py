"""`fcn data check NAME`: is a fetched source complete? Says exactly what is missing and which
command provides it.

Counts checked (reference lists and papers): seg11valid 736; SBD train 8,498; NYUDv2 train 381 +
val 414 = 795 trainval, test 654; SIFT Flow trainval 2,486 (the paper's 2,488 less the two
unannotated images) and test 200; VOC2010 (PASCAL-Context) train 4,998, val 5,105.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .checksums import file_digests, read_recorded_sha256
from .deep_check import PROGRESS_EVERY, deep_check
from .errors import DatasetError
from .locate import find_in, what_is_missing
from .nyud import nyud_split_ids
from .nyud_labeled import load_class_mapping_40
from .siftflow import SIFTFLOW_SUBDIR
from .sources import SOURCES, Source, get_source, override_counts, override_path
from .split_lists import packaged_list, read_split
from .weights_check import weights_problem

__all__ = ["EXPECTED_COUNTS", "CheckReport", "check_source", "expected_counts", "missing_files",
           "own_problems", "forget_command"]

EXPECTED_COUNTS: dict[str, int] = {
    "seg11valid": 736,
    "sbd/train": 8498,
    "nyud/train": 381,
    "nyud/val": 414,
    "nyud/test": 654,
    "siftflow/trainval": 2486,
    "siftflow/test": 200,
    "voc2010/train": 4998,
    "voc2010/val": 5105,
}


def expected_counts() -> dict[str, int]:
    """EXPECTED_COUNTS, with the split sizes of the FCN_SOURCES registry override (see sources.py)."""
    counts = override_counts()
    unknown = sorted(set(counts) - set(EXPECTED_COUNTS))
    if unknown:
        raise ValueError(f"{override_path()}: expected_counts names unknown splits {', '.join(unknown)}; "
                         f"known: {', '.join(EXPECTED_COUNTS)}")
    return {**EXPECTED_COUNTS, **counts}


def forget_command(name: str, data_root_arg: str = "") -> str:
    """The command that forgets the sha256 an earlier fetch recorded for `name`."""
    return f"fcn data forget {name}{data_root_arg}"


NYUD_LABELED_SHAPES = {"images": (1449, 3, 640, 480), "depths": (1449, 640, 480), "labels": (1449, 640, 480)}
SHOW = 5  # missing paths listed per problem


@dataclass
class CheckReport:
    """Outcome of checking one source: what is fine, what is wrong, and how to fix it."""

    name: str
    location: Path | None = None
    good: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)  # commands that provide what is missing

    @property
    def ok(self) -> bool:
        return not self.problems

    def fix(self, command: str) -> None:
        if command not in self.fixes:
            self.fixes.append(command)

    def render(self) -> str:
        lines = [f"{self.name}: {self.location if self.location else 'not found'}"]
        lines += [f"  ok       {line}" for line in self.good]
        lines += [f"  PROBLEM  {line}" for line in self.problems]
        if self.ok:
            lines.append(f"{self.name}: complete")
        else:
            lines.append(f"{self.name}: INCOMPLETE; to fix run: " + " ; ".join(self.fixes))
        return "\n".join(lines)


def missing_files(folder: Path, ids: list[str], templates: tuple[str, ...]) -> list[str]:
    """Relative paths `template.format(id=...)` under `folder` that do not exist, in list order."""
    return [rel for ident in ids for rel in (t.format(id=ident) for t in templates)
            if not (folder / rel).exists()]


def _summarise(paths: list[str], total: int, what: str) -> str:
    shown = ", ".join(paths[:SHOW]) + (", ..." if len(paths) > SHOW else "")
    return f"{len(paths)} of {total} {what} missing: {shown}"


def _fetch_cmd(name: str, data_root_arg: str) -> str:
    return f"fcn data fetch {name}{data_root_arg}"


def _count(report: CheckReport, label: str, ids: list[str], expected: int | None, source: str) -> None:
    if expected is None or len(ids) == expected:
        report.good.append(f"{label}: {len(ids)} ids ({source})")
    else:
        report.problems.append(f"{label}: {len(ids)} ids, expected {expected} ({source})")


def _ids_and_files(report: CheckReport, folder: Path, ids: list[str], templates: tuple[str, ...],
                   what: str, fix: str) -> list[str]:
    missing = missing_files(folder, ids, templates)
    if missing:
        report.problems.append(_summarise(missing, len(ids) * len(templates), what))
        report.fix(fix)
    else:
        report.good.append(f"all {len(ids) * len(templates)} {what} present")
    return missing


def _locate(report: CheckReport, base: Path, layout: str, description: str, fix: str) -> Path | None:
    folder = find_in(base, layout, ()) if base.exists() else None
    if folder is None:
        report.problems.append(f"no {description} under {base}: {what_is_missing(base, layout)}")
        report.fix(fix)
    report.location = folder
    return folder


def _list_ids(report: CheckReport, path: Path, label: str, fix: str) -> list[str] | None:
    try:
        return read_split(path)
    except DatasetError as exc:
        report.problems.append(f"{label}: {exc}")
        report.fix(fix)
        return None


def _check_voc(report: CheckReport, base: Path, fix: str, expected: dict[str, int]) -> None:
    folder = _locate(report, base, "voc", "VOC devkit folder (JPEGImages, SegmentationClass, "
                                          "ImageSets/Segmentation)", fix)
    if folder is None:
        return
    own = folder / "ImageSets" / "Segmentation" / "seg11valid.txt"
    list_path = own if own.is_file() else packaged_list("pascal/seg11valid.txt")
    ids = read_split(list_path)
    _count(report, "seg11valid", ids, expected.get("seg11valid"),
           "devkit list" if own.is_file() else "fcn-repro's copy of the reference list")
    _ids_and_files(report, folder, ids, ("JPEGImages/{id}.jpg", "SegmentationClass/{id}.png"),
                   "seg11valid images and labels", fix)


def _check_sbd(report: CheckReport, base: Path, fix: str, expected: dict[str, int]) -> None:
    folder = _locate(report, base, "sbd", "SBD dataset folder (img/, cls/)", fix)
    if folder is None:
        return
    ids = _list_ids(report, folder / "train.txt", "train.txt", fix)
    if ids is None:
        return
    _count(report, "train.txt", ids, expected.get("sbd/train"), "SBD")
    _ids_and_files(report, folder, ids, ("img/{id}.jpg", "cls/{id}.mat"), "train images and labels", fix)


def _check_nyud(report: CheckReport, base: Path, fix: str, expected: dict[str, int]) -> None:
    folder = _locate(report, base, "nyud", "prepared NYUDv2 folder (data/images, segmentation)", fix)
    if folder is None:
        return
    all_ids: list[str] = []
    for split in ("train", "val", "test"):
        ids, list_path = nyud_split_ids(folder, split)
        source = "archive list" if list_path.parent == folder else "fcn-repro's copy of the reference list"
        _count(report, f"{split}.txt", ids, expected.get(f"nyud/{split}"), source)
        all_ids += ids
    _ids_and_files(report, folder, all_ids, ("data/images/img_{id}.png", "data/depth/img_{id}.png",
                                              "segmentation/img_{id}.mat"), "colour, depth and label files", fix)
    missing_hha = missing_files(folder, all_ids, ("data/hha/img_{id}.png",))
    if missing_hha:
        report.problems.append(_summarise(missing_hha, len(all_ids), "HHA images"))
        report.fix(fix)
        report.fix(f"or compute HHA from the depth: fcn data hha --depth-dir {folder / 'data' / 'depth'} "
                   f"--out {folder / 'data' / 'hha'}")
    else:
        report.good.append(f"all {len(all_ids)} HHA images present")


def _check_siftflow(report: CheckReport, base: Path, fix: str, expected: dict[str, int]) -> None:
    folder = _locate(report, base, "siftflow", f"SIFT Flow folder (Images/{SIFTFLOW_SUBDIR})", fix)
    if folder is None:
        return
    all_ids: list[str] = []
    for split in ("trainval", "test"):
        own = folder / f"{split}.txt"
        ids = read_split(own if own.is_file() else packaged_list(f"sift-flow/{split}.txt"))
        _count(report, f"{split}.txt", ids, expected.get(f"siftflow/{split}"),
               "archive list" if own.is_file() else "fcn-repro's copy of the reference list")
        all_ids += ids
    _ids_and_files(report, folder, all_ids, (f"Images/{SIFTFLOW_SUBDIR}/{{id}}.jpg",
                                              f"SemanticLabels/{SIFTFLOW_SUBDIR}/{{id}}.mat",
                                              f"GeoLabels/{SIFTFLOW_SUBDIR}/{{id}}.mat"),
                   "images and label files", fix)


def _voc2010_ids(report: CheckReport, folder: Path, fix: str, expected: dict[str, int]) -> list[str] | None:
    all_ids: list[str] = []
    for split in ("train", "val"):
        ids = _list_ids(report, folder / "ImageSets" / "Main" / f"{split}.txt", f"ImageSets/Main/{split}.txt", fix)
        if ids is None:
            return None
        _count(report, f"ImageSets/Main/{split}.txt", ids, expected.get(f"voc2010/{split}"), "VOC2010")
        all_ids += ids
    return all_ids


def _check_voc2010(report: CheckReport, base: Path, fix: str, expected: dict[str, int]) -> None:
    folder = _locate(report, base, "voc-main", "VOC devkit folder (JPEGImages, ImageSets/Main)", fix)
    if folder is None:
        return
    ids = _voc2010_ids(report, folder, fix, expected)
    if ids is not None:
        _ids_and_files(report, folder, ids, ("JPEGImages/{id}.jpg",), "train+val images", fix)


def _check_context(report: CheckReport, base: Path, fix: str, expected: dict[str, int],
                   data_root: Path, data_root_arg: str) -> None:
    folder = _locate(report, base, "pascal-context", "PASCAL-Context folder (trainval/)", fix)
    if folder is None:
        return
    voc_fix = _fetch_cmd("voc2010", data_root_arg)
    voc = find_in(data_root / "voc2010", "voc-main", ()) if (data_root / "voc2010").exists() else None
    if voc is None:
        report.problems.append(f"the VOC2010 images and split lists are needed too (not found under "
                               f"{data_root / 'voc2010'})")
        report.fix(voc_fix)
        return
    ids = _voc2010_ids(report, voc, voc_fix, expected)
    if ids is not None:
        _ids_and_files(report, folder, ids, ("trainval/{id}.mat",), "train+val LabelMap files", fix)


def _check_single_file(report: CheckReport, source: Source, data_root: Path, fix: str, path: Path,
                       verify_checksums: bool, data_root_arg: str, width: float) -> Path | None:
    report.location = path
    if not path.is_file() or path.stat().st_size == 0:
        report.problems.append(f"{path} is missing or empty")
        report.fix(fix)
        return None
    size = path.stat().st_size
    if source.size is not None and size != source.size:
        report.problems.append(f"{path.name}: {size} bytes, expected {source.size} ({source.size_origin or 'registry'})")
        report.fix(f"{fix} --force")
        return None
    report.good.append(f"{path.name}: {size} bytes" + (" (the expected size)" if source.size is not None else ""))
    recorded = read_recorded_sha256(data_root, source.filename)
    if not verify_checksums:
        pass
    elif source.checksums or recorded:
        digests = file_digests(path, label=path.name)
        expected = dict(source.checksums) or {"sha256": recorded}
        bad = [algo for algo, value in expected.items() if digests[algo] != value.lower()]
        if bad:
            origin = "" if source.checksums else (f" (the one an earlier fetch recorded; if that record is the "
                                                  f"wrong one: {forget_command(source.name, data_root_arg)})")
            report.problems.append(f"{path.name}: {', '.join(bad)} does not match the expected checksum{origin}")
            report.fix(f"{fix} --force")
        else:
            report.good.append(f"{path.name}: {', '.join(expected)} verified")
    else:
        report.good.append(f"{path.name}: not verified ({source.checksum_origin}; no recorded sha256)")
    if source.kind == "weights" and not report.problems:
        problem = weights_problem(source.name, path, width=width)
        if problem:
            report.problems.append(f"{path.name}: not the expected weights: {problem}")
            report.fix(f"{fix} --force")
            return None
        report.good.append(f"{path.name}: parses, holds the layers and shapes its consumers need")
    return path


def _check_nyud_labeled(report: CheckReport, path: Path) -> None:
    import h5py
    try:
        with h5py.File(path, "r") as f:
            for key, shape in NYUD_LABELED_SHAPES.items():
                if key not in f:
                    report.problems.append(f"{path.name}: no dataset {key!r}")
                elif f[key].shape != shape:
                    report.problems.append(f"{path.name}: {key} has shape {f[key].shape}, expected {shape}")
                else:
                    report.good.append(f"{key}: {shape}")
    except OSError as exc:
        report.problems.append(f"{path.name}: not a MATLAB v7.3 (HDF5) file ({exc})")


def check_source(name: str, data_root: str | Path, *, data_root_arg: str = "",
                 expected: dict[str, int] | None = None, at: Path | None = None,
                 verify_checksums: bool = True, width: float = 1.0, source: Source | None = None,
                 deep: bool = False, progress: Callable[[str], None] | None = None,
                 progress_every: int = PROGRESS_EVERY) -> CheckReport:
    """Check source `name` under `data_root`. `data_root_arg` is appended to suggested commands
    (e.g. " --data-root /big/disk"). `expected`: split sizes (default `expected_counts()`).
    `at`: check this folder or file instead of <data_root>/<dest> (what fetch does before it
    installs); `verify_checksums=False` skips the checksums (fetch has just verified them).
    `width`: the nets' width for the weights' content check (1.0: the real files). `source`: the
    Source to check (default: the registry's `name`). `deep`: also decode every image and label
    (reproduce.datasets.deep_check), `progress` getting a line every `progress_every` samples."""
    source = get_source(name) if source is None else source
    data_root = Path(data_root)
    expected = expected_counts() if expected is None else expected
    report = CheckReport(name)
    fix = _fetch_cmd(name, data_root_arg)
    base = data_root / source.dest if at is None else Path(at)
    if name in ("voc2011", "voc2012"):
        _check_voc(report, base, fix, expected)
    elif name == "sbd":
        _check_sbd(report, base, fix, expected)
    elif name == "nyud":
        _check_nyud(report, base, fix, expected)
    elif name == "siftflow":
        _check_siftflow(report, base, fix, expected)
    elif name == "voc2010":
        _check_voc2010(report, base, fix, expected)
    elif name == "pascal-context":
        _check_context(report, base, fix, expected, data_root, data_root_arg)
    elif source.is_archive:  # nyud-gupta: its layout is not verified here
        report.location = base
        if base.is_dir() and any(base.iterdir()):
            report.good.append("extracted (contents not checked: their layout is not verified here)")
        else:
            report.problems.append(f"{base} is missing or empty")
            report.fix(fix)
    else:
        path = _check_single_file(report, source, data_root, fix, base, verify_checksums, data_root_arg, width)
        if path is not None and name == "voc2011-lists":
            _count(report, "seg11valid.txt", read_split(path), expected.get("seg11valid"), "list")
        elif path is not None and name == "nyud-labeled":
            _check_nyud_labeled(report, path)
        elif path is not None and name == "nyud-mapping40":
            try:
                load_class_mapping_40(path)
                report.good.append("mapClass: 894 entries, values 0..40")
            except DatasetError as exc:
                report.problems.append(str(exc))
                report.fix(f"{fix} --force")
    if deep:
        good, problems = deep_check(name, data_root, report.location, progress=progress,
                                    progress_every=progress_every)
        report.good += good
        report.problems += problems
        if problems:
            report.fix(f"{fix} --force")
    if report.problems and not report.fixes:
        report.fix(f"{fix} --force")
    return report


def own_problems(report: CheckReport) -> list[str]:
    """The report's problems, unless every one is for another source to fix (pascal-context
    without VOC2010: its lists are needed to count the LabelMaps)."""
    own = _fetch_cmd(report.name, "")
    if any(f == own or f.startswith(own + " ") for f in report.fixes):
        return report.problems
    return []


def check_names() -> list[str]:
    """Every name `check` accepts."""
    return list(SOURCES)
