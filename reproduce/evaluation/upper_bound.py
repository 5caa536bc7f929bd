"""Appendix A of the CVPR paper: the mean IU upper bound of predicting at a coarse resolution.

The ground-truth label map is downsampled by a factor (4 ... 128), upsampled back to full size and
scored against the original with the reference metrics; the paper reports mean IU on the PASCAL VOC
2011 val subset (seg11valid).

ASSUMPTION (the paper does not say how it resampled): nearest neighbour on the factor x factor grid
anchored at the top-left pixel. Downsampling keeps, for each block, the label at its centre pixel
(offset factor // 2 along each axis, as PIL's NEAREST picks for an integer factor; a truncated block
at the right/bottom edge takes the centre of what remains, offset length // 2). Upsampling fills the
whole block with that label. A block whose sampled label is void (255, or any value outside
0..n-1) predicts no class: by default ("wrong") its pixels count as wrong for their ground-truth
class and as a prediction of no class; the alternative "ignore" leaves those pixels out of the
score. Ground-truth void pixels are ignored as usual. Which void handling matches the paper is
unknown; both are offered so the full seg11valid run can show which comes closer.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from reproduce.atomic import write_json_atomic, write_text_atomic
from reproduce.evaluation.metrics import SCORE_KEYS, fast_hist, scores
from reproduce.progress import Progress, track

PAPER_FACTORS = (4, 8, 16, 32, 64, 128)
VOC_NUM_CLASSES = 21
VOID_POLICIES = ("wrong", "ignore")
METHOD = ("nearest: each factor x factor block (anchored top-left) takes the label at its centre pixel "
          "(offset min(factor, remaining) // 2) and fills the block with it")
VOID_METHOD = {
    "wrong": "a block that sampled void predicts no class (its pixels count as wrong)",
    "ignore": "pixels of a block that sampled void are left out of the score",
}


def downsample_upsample(label: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour down- then upsampling of an H x W label map by an integer factor >= 1.

    Returns an H x W array of the same dtype in which every factor x factor block (the last
    row/column of blocks may be truncated) holds the label found at that block's centre pixel.
    factor 1 returns a copy of the input.
    """
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"label map must be H x W, got shape {label.shape}")
    if int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be an integer >= 1, got {factor}")
    factor = int(factor)
    h, w = label.shape
    ys = _block_centres(h, factor)
    xs = _block_centres(w, factor)
    low = label[np.ix_(ys, xs)]
    return np.repeat(np.repeat(low, factor, axis=0), factor, axis=1)[:h, :w].copy()


def _block_centres(size: int, factor: int) -> np.ndarray:
    starts = np.arange(0, size, factor)
    lengths = np.minimum(factor, size - starts)
    return starts + lengths // 2


def upper_bound_hist(label: np.ndarray, factor: int, num_classes: int, void: str = "wrong") -> np.ndarray:
    """(n+1) x (n+1) histogram of the resampled map against the original; index n = "no class"
    (void sampled; with void="ignore" those pixels are dropped instead). Ground-truth pixels
    outside 0..n-1 are dropped."""
    if void not in VOID_POLICIES:
        raise ValueError(f"void must be one of {VOID_POLICIES}, got {void!r}")
    pred = downsample_upsample(label, factor).astype(np.int64)
    void_pred = (pred < 0) | (pred >= num_classes)
    pred[void_pred] = num_classes
    gt = np.asarray(label).astype(np.int64)
    gt[(gt < 0) | (gt >= num_classes)] = -1  # void (255) and the "no class" index are not ground truth
    if void == "ignore":
        gt[void_pred] = -1
    return fast_hist(gt, pred, num_classes + 1)


def upper_bound_scores(
    labels: Iterable[np.ndarray],
    factors: Sequence[int] = PAPER_FACTORS,
    num_classes: int = VOC_NUM_CLASSES,
    void: str = "wrong",
) -> tuple[dict[int, dict[str, float]], int]:
    """Scores (percent; the reference's four metrics over classes 0..n-1) of each factor over all
    label maps, void samples handled per `void` ("wrong" or "ignore").
    Returns ({factor: scores}, number of label maps)."""
    hists = {f: np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64) for f in factors}
    count = 0
    for label in labels:
        for f in factors:
            hists[f] += upper_bound_hist(label, f, num_classes, void)
        count += 1
    classes = range(num_classes)
    return {f: scores(h, classes=classes) for f, h in hists.items()}, count


def read_voc_label(path: str | os.PathLike) -> np.ndarray:
    """A VOC SegmentationClass PNG as an H x W uint8 array of palette indices (255 = void)."""
    path = Path(path)
    with Image.open(path) as im:
        if im.mode not in ("P", "L"):
            raise ValueError(f"{path}: expected a palette (P) or grey (L) label PNG, got mode {im.mode}")
        return np.array(im, dtype=np.uint8)


def voc_split_ids(voc_dir: Path, split: str, split_file: Path | None = None) -> tuple[list[str], Path]:
    """Image ids of a split: split_file if given, else <voc_dir>/ImageSets/Segmentation/<split>.txt,
    else <voc_dir>/<split>.txt."""
    candidates = [split_file] if split_file else [voc_dir / "ImageSets" / "Segmentation" / f"{split}.txt",
                                                  voc_dir / f"{split}.txt"]
    for c in candidates:
        if c is not None and c.is_file():
            ids = [line.strip() for line in c.read_text().splitlines() if line.strip()]
            if not ids:
                raise ValueError(f"{c}: split file is empty")
            return ids, c
    raise FileNotFoundError(f"split {split!r} not found; looked for {', '.join(str(c) for c in candidates)}")


def render_upper_bound_markdown(record: dict, paper: dict[int, str] | None = None) -> str:
    """Markdown of an upper-bound record, with the paper's Appendix A mean IU beside ours."""
    lines = [
        "# Appendix A: mean IU upper bound from ground truth at reduced resolution",
        "",
        f"Split: {record['split']} ({record['num_images']} label maps), {record['num_classes']} classes.",
        f"Resampling (ASSUMPTION, not stated in the paper): {record['method']}.",
        "",
        "| factor | pixel acc. | mean acc. | mean IU | f.w. IU | paper mean IU |",
        "|---|---|---|---|---|---|",
    ]
    for f in record["factors"]:
        s = record["scores_by_factor"][str(f)]
        vals = [("–" if s[k] is None else f"{s[k]:.1f}") for k in SCORE_KEYS]
        lines.append(f"| {f} | " + " | ".join(vals) + f" | {(paper or {}).get(f, '–')} |")
    lines.append("")
    return "\n".join(lines)


def _paper_appendix_a() -> dict[int, str]:
    from reproduce.reporting.paper import load_paper_table

    table = load_paper_table("appendix_a_upper_bound")
    return {int(r.labels["factor"]): r.printed["mean_iu"] for r in table.rows}


def labelled_split(voc_dir: Path, split: str, split_file: Path | None = None) -> tuple[list[str], Path]:
    """(ids of `split`, <voc_dir>/SegmentationClass) once every id has its label PNG there.
    FileNotFoundError / ValueError naming the list and the first id without a label otherwise."""
    ids, list_path = voc_split_ids(voc_dir, split, split_file)
    label_dir = voc_dir / "SegmentationClass"
    missing = [i for i in ids if not (label_dir / f"{i}.png").is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(ids)} ids in {list_path} have no label in {label_dir} "
                                f"(first: {missing[0]}.png)")
    return ids, label_dir


def write_upper_bound(ids: Sequence[str], label_dir: Path, split: str, factors: Sequence[int], num_classes: int,
                      void: str, out: Path, *, progress: bool = True) -> tuple[Path, Path]:
    """Score the labels `<label_dir>/<id>.png` at each downsampling factor; write upper_bound.json
    (the scores, fractions in [0, 1]) and upper_bound.md (beside the paper's Appendix A) into `out`;
    returns their paths. `progress`: one step per image on stderr (reproduce.progress)."""
    factor_list = list(factors)
    with Progress(f"upper bound on {split}", len(ids), unit="image", show=progress) as bar:
        by_factor, n = upper_bound_scores((read_voc_label(label_dir / f"{i}.png") for i in track(ids, bar)),
                                          factor_list, num_classes, void)
    record = {
        "schema_version": 1,
        "experiment": "upper-bound",
        "weights": None,
        "split": split,
        "num_images": n,
        "iteration": None,
        "loss": None,
        "num_classes": num_classes,
        "method": f"{METHOD}; {VOID_METHOD[void]}",
        "void": void,
        "factors": factor_list,
        "scores_by_factor": {str(f): {k: by_factor[f][k] for k in SCORE_KEYS} for f in factor_list},
    }
    write_json_atomic(out / "upper_bound.json", record)
    try:
        paper = _paper_appendix_a()
    except (FileNotFoundError, KeyError, ValueError):
        paper = None
    # Read back through the JSON writer's NaN -> null mapping so the markdown matches the file.
    stored = json.loads((out / "upper_bound.json").read_text())
    write_text_atomic(out / "upper_bound.md", render_upper_bound_markdown(stored, paper))
    return out / "upper_bound.json", out / "upper_bound.md"
