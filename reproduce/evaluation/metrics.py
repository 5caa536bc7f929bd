"""Segmentation metrics exactly as the reference's score.py computes them.

The reference (shelhamer/fcn.berkeleyvision.org, score.py) accumulates one confusion histogram over
the whole split (ground truth as rows, prediction as columns) and reports four numbers:

* pixel accuracy  = trace(H) / sum(H)
* mean accuracy   = nanmean_i( H[i, i] / rowsum_i )
* mean IU         = nanmean_i( H[i, i] / (rowsum_i + colsum_i - H[i, i]) )
* f.w. IU         = sum over classes with freq_i > 0 of freq_i * IU_i, freq_i = rowsum_i / sum(H)

"nanmean" leaves out a class whose denominator is 0. For IU that is a class absent from both
ground truth and prediction; a class present only in the prediction has IU 0 and counts. All scores
here are in percent (0..100), as the paper prints them.

Dataset-specific readings (docs/reference.md §6, item 12):

* SIFT Flow: the semantic task has 33 classes, three of which (cow, desert, moon) never occur in the
  test set. The paper averages over the classes present in test only, so :func:`siftflow_semantic_scores`
  takes the class means over the other 30. The geometric task (sky / horizontal / vertical) is
  scored normally; the paper's "geom. acc." is its pixel accuracy.
* PASCAL-Context: labels never use 255, so background (class 0) is trained and scored and the
  reference histogram is 60-way. Whether the paper's "59 class" numbers include background is
  UNVERIFIED; :func:`context_scores` gives both readings.

The metrics.json schema written by :func:`write_metrics_json` is documented in
:data:`METRICS_SCHEMA_DOC` and in results/README.md.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from reproduce.atomic import write_json_atomic, write_text_atomic  # noqa: F401 - their home is reproduce.atomic

IGNORE_LABEL = 255
SCORE_KEYS = ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")

# SIFT Flow semantic classes in label order after the reference's "minus one" (0 = awning ... 32 = window).
# Copied from the reference repo's data/sift-flow/classes.txt (there numbered 1..33, 0 = void).
SIFTFLOW_SEMANTIC_CLASSES: tuple[str, ...] = (
    "awning", "balcony", "bird", "boat", "bridge", "building", "bus", "car", "cow", "crosswalk",
    "desert", "door", "fence", "field", "grass", "moon", "mountain", "person", "plant", "pole",
    "river", "road", "rock", "sand", "sea", "sidewalk", "sign", "sky", "staircase", "streetlight",
    "sun", "tree", "window",
)
SIFTFLOW_GEOMETRIC_CLASSES: tuple[str, ...] = ("sky", "horizontal", "vertical")
# classes.txt: "Three classes (cow, desert, and moon) are absent from the test set, so they are
# excluded from evaluation."
SIFTFLOW_ABSENT_IN_TEST: tuple[str, ...] = ("cow", "desert", "moon")
SIFTFLOW_EVAL_CLASSES: tuple[int, ...] = tuple(
    i for i, name in enumerate(SIFTFLOW_SEMANTIC_CLASSES) if name not in SIFTFLOW_ABSENT_IN_TEST
)

CONTEXT_NUM_CLASSES = 60  # 59 classes + background (class 0), as the reference's score layer
CONTEXT_BACKGROUND = 0

# Scoring modes understood by MetricsAccumulator.
SCORING_STANDARD = "standard"
SCORING_SIFTFLOW_SEMANTIC = "siftflow-semantic"
SCORING_CONTEXT = "context"
SCORINGS = (SCORING_STANDARD, SCORING_SIFTFLOW_SEMANTIC, SCORING_CONTEXT)

METRICS_SCHEMA_VERSION = 1
METRICS_SCHEMA_DOC = """\
metrics.json (schema_version 1), keys in this order:
  schema_version  int, 1
  experiment      str, experiment id (one of nets.names(), or e.g. "upper-bound")
  weights         str or null, the weights file that was scored
  split           str, the split that was scored (e.g. "seg11valid", "test", "val")
  num_images      int, images scored
  iteration       int or null, the training iteration of the weights (null: released/converted)
  loss            float or null, mean over images of each image's summed (unnormalized) pixel loss,
                  as score.py reports it; for SIFT Flow this is the semantic loss ("loss" blob)
  scores          {pixel_acc, mean_acc, mean_iu, fw_iu} in percent. SIFT Flow: semantic scores over
                  the 30 classes present in test. PASCAL-Context: the reference's 60-way reading
                  (background included)
  optional:
  scores_geo      {pixel_acc, mean_acc, mean_iu, fw_iu} of SIFT Flow's geometric head ("geom. acc." =
                  scores_geo.pixel_acc)
  loss_geo        float, SIFT Flow geometric loss, same averaging as loss
  scores_all_classes   SIFT Flow semantic scores over all 33 classes (what score.py prints as is)
  scores_without_background  PASCAL-Context scores over the 59 classes with background pixels
                  ignored (the other reading; which one the paper used is UNVERIFIED)
  per_class_iu    list of floats (percent) or null (class left out by nanmean), in class order
  per_class_acc   same, per-class accuracy
  per_class_iu_geo, per_class_acc_geo   the same for SIFT Flow's geometric head
Floats that are NaN are written as null. The file ends with a newline and is written atomically.
"""


# ---------------------------------------------------------------------------------------------
# histogram and the four scores


def fast_hist(gt: np.ndarray, pred: np.ndarray, n: int) -> np.ndarray:
    """Confusion histogram of one label map, as score.py's fast_hist.

    gt, pred: integer arrays of the same shape (any shape, e.g. H x W). Pixels whose ground truth
    is outside 0 <= gt < n (e.g. 255 = ignore) are dropped. Returns an (n, n) int64 array,
    H[i, j] = number of pixels of ground-truth class i predicted as class j.
    Raises ValueError if shapes differ or a kept pixel's prediction is outside 0..n-1.
    """
    gt = np.asarray(gt)
    pred = np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f"fast_hist: ground truth shape {gt.shape} != prediction shape {pred.shape}")
    if n < 1:
        raise ValueError(f"fast_hist: n must be >= 1, got {n}")
    gt = gt.astype(np.int64, copy=False).ravel()
    pred = pred.astype(np.int64, copy=False).ravel()
    keep = (gt >= 0) & (gt < n)
    gt_k = gt[keep]
    pred_k = pred[keep]
    if pred_k.size and (pred_k.min() < 0 or pred_k.max() >= n):
        bad = pred_k[(pred_k < 0) | (pred_k >= n)][0]
        raise ValueError(f"fast_hist: prediction value {bad} outside 0..{n - 1}")
    return np.bincount(n * gt_k + pred_k, minlength=n * n).reshape(n, n).astype(np.int64, copy=False)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise with NaN where den == 0 (as numpy's 0/0 in score.py, without warnings)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def per_class_acc(hist: np.ndarray) -> np.ndarray:
    """Per-class accuracy H[i, i] / rowsum_i as a float64 (n,) array in percent; NaN where rowsum is 0."""
    hist = _check_hist(hist)
    return 100.0 * _ratio(np.diag(hist), hist.sum(1))


def per_class_iu(hist: np.ndarray) -> np.ndarray:
    """Per-class IU H[i, i] / (rowsum_i + colsum_i - H[i, i]) as a float64 (n,) array in percent;
    NaN where the class is absent from both ground truth and prediction."""
    hist = _check_hist(hist)
    diag = np.diag(hist)
    return 100.0 * _ratio(diag, hist.sum(1) + hist.sum(0) - diag)


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def scores(hist: np.ndarray, classes: Sequence[int] | None = None) -> dict[str, float]:
    """The reference's four scores of a confusion histogram, in percent.

    hist: (n, n) histogram, ground truth rows (from :func:`fast_hist`, summed over images).
    classes: if given, mean accuracy and mean IU are averaged over these class indices only (SIFT
    Flow's present classes). Pixel accuracy and f.w. IU always use the whole histogram; to leave
    some ground-truth pixels out of those, zero their rows first (see :func:`context_scores`).
    Returns {"pixel_acc", "mean_acc", "mean_iu", "fw_iu"}; a score with nothing to average is NaN.
    """
    hist = _check_hist(hist)
    total = hist.sum()
    acc = per_class_acc(hist)
    iu = per_class_iu(hist)
    if classes is not None:
        idx = np.asarray(list(classes), dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= hist.shape[0]):
            raise ValueError(f"scores: class index outside 0..{hist.shape[0] - 1} in {list(classes)}")
        acc, iu_mean = acc[idx], iu[idx]
    else:
        iu_mean = iu
    freq = hist.sum(1) / total if total else np.zeros(hist.shape[0])
    present = freq > 0
    return {
        "pixel_acc": 100.0 * float(np.trace(hist)) / float(total) if total else math.nan,
        "mean_acc": _nanmean(acc),
        "mean_iu": _nanmean(iu_mean),
        "fw_iu": float((freq[present] * iu[present]).sum()) if total else math.nan,
    }


def siftflow_semantic_scores(hist: np.ndarray) -> dict[str, float]:
    """SIFT Flow semantic scores as the paper reports them: class means over the 30 classes present
    in test (cow, desert, moon left out). hist is the 33-way semantic histogram."""
    hist = _check_hist(hist)
    if hist.shape[0] != len(SIFTFLOW_SEMANTIC_CLASSES):
        raise ValueError(f"SIFT Flow semantic histogram must be 33 x 33, got {hist.shape}")
    return scores(hist, classes=SIFTFLOW_EVAL_CLASSES)


def context_scores(hist: np.ndarray) -> dict[str, dict[str, float]]:
    """PASCAL-Context scores of the 60-way histogram (class 0 = background), in both readings.

    "with_background": score.py applied to the 60-way histogram as is: what the reference code
        prints, background counted as a 60th class.
    "without_background": 59 classes only. Ground-truth background pixels are ignored (row 0
        zeroed, as if labelled 255); a non-background pixel predicted as background still counts
        as wrong; class means over classes 1..59.
    Which reading the paper's "59 class" Table 6 used is UNVERIFIED (docs/reference.md §6,
    item 12): the repo cannot tell.
    """
    hist = _check_hist(hist)
    if hist.shape[0] != CONTEXT_NUM_CLASSES:
        raise ValueError(f"PASCAL-Context histogram must be 60 x 60 (59 + background), got {hist.shape}")
    without = hist.copy()
    without[CONTEXT_BACKGROUND, :] = 0
    return {
        "with_background": scores(hist),
        "without_background": scores(without, classes=range(1, CONTEXT_NUM_CLASSES)),
    }


def _check_hist(hist: np.ndarray) -> np.ndarray:
    hist = np.asarray(hist)
    if hist.ndim != 2 or hist.shape[0] != hist.shape[1]:
        raise ValueError(f"histogram must be square n x n, got shape {hist.shape}")
    return hist


# ---------------------------------------------------------------------------------------------
# accumulation over a split


class MetricsAccumulator:
    """Sums the histogram and the loss over a split, as score.py's compute_hist does.

    num_classes: number of score channels (21 VOC, 40 NYUD, 33 / 3 SIFT Flow, 60 Context).
    scoring: "standard" (score.py as is), "siftflow-semantic" (means over present classes) or
        "context" (both background readings; "scores" holds the 60-way reference reading).
    Call add(pred, gt) once per image and add_loss(value) once per image with that image's summed
    pixel loss; result() gives the scores.
    """

    def __init__(self, num_classes: int, scoring: str = SCORING_STANDARD) -> None:
        if scoring not in SCORINGS:
            raise ValueError(f"unknown scoring {scoring!r}; expected one of {SCORINGS}")
        if scoring == SCORING_SIFTFLOW_SEMANTIC and num_classes != len(SIFTFLOW_SEMANTIC_CLASSES):
            raise ValueError(f"siftflow-semantic scoring needs 33 classes, got {num_classes}")
        if scoring == SCORING_CONTEXT and num_classes != CONTEXT_NUM_CLASSES:
            raise ValueError(f"context scoring needs 60 classes (59 + background), got {num_classes}")
        self.num_classes = int(num_classes)
        self.scoring = scoring
        self.hist = np.zeros((num_classes, num_classes), dtype=np.int64)
        self.num_images = 0
        self._loss_sum = 0.0
        self._loss_count = 0

    def add(self, pred_argmax: Any, gt: Any) -> None:
        """Add one image: pred_argmax and gt are H x W integer maps (numpy arrays or torch tensors;
        a leading singleton dimension, e.g. 1 x H x W, is accepted on either)."""
        pred = _to_numpy(pred_argmax)
        label = _to_numpy(gt)
        pred, label = np.squeeze(pred), np.squeeze(label)
        self.hist += fast_hist(label, pred, self.num_classes)
        self.num_images += 1

    def add_loss(self, value: float) -> None:
        """Add one image's loss (the summed, unnormalized pixel loss of that image)."""
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"non-finite loss {value} added to the metrics")
        self._loss_sum += value
        self._loss_count += 1

    @property
    def loss(self) -> float | None:
        """Mean over images of the per-image loss; None if no loss was added."""
        return self._loss_sum / self._loss_count if self._loss_count else None

    def result(self) -> dict[str, Any]:
        """{"num_images", "loss", "scores", "per_class_iu", "per_class_acc"} plus, for SIFT Flow,
        "scores_all_classes" and, for Context, "scores_without_background". Percent throughout."""
        out: dict[str, Any] = {"num_images": self.num_images, "loss": self.loss}
        if self.scoring == SCORING_SIFTFLOW_SEMANTIC:
            out["scores"] = siftflow_semantic_scores(self.hist)
            out["scores_all_classes"] = scores(self.hist)
        elif self.scoring == SCORING_CONTEXT:
            both = context_scores(self.hist)
            out["scores"] = both["with_background"]
            out["scores_without_background"] = both["without_background"]
        else:
            out["scores"] = scores(self.hist)
        out["per_class_iu"] = per_class_iu(self.hist).tolist()
        out["per_class_acc"] = per_class_acc(self.hist).tolist()
        return out


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def scoring_for_experiment(experiment: str) -> str:
    """The scoring mode of an experiment's main head: siftflow-* -> "siftflow-semantic",
    pascalcontext-* -> "context", anything else -> "standard"."""
    if experiment.startswith("siftflow-"):
        return SCORING_SIFTFLOW_SEMANTIC
    if experiment.startswith("pascalcontext-"):
        return SCORING_CONTEXT
    return SCORING_STANDARD


# ---------------------------------------------------------------------------------------------
# metrics.json


def metrics_record(
    *,
    experiment: str,
    weights: str | os.PathLike | None,
    split: str,
    iteration: int | None,
    accumulator: MetricsAccumulator,
    geo_accumulator: MetricsAccumulator | None = None,
    per_class: bool = True,
) -> dict[str, Any]:
    """Build the metrics.json record (see METRICS_SCHEMA_DOC) with keys in schema order."""
    res = accumulator.result()
    rec: dict[str, Any] = {
        "schema_version": METRICS_SCHEMA_VERSION,
        "experiment": str(experiment),
        "weights": None if weights is None else str(weights),
        "split": str(split),
        "num_images": int(res["num_images"]),
        "iteration": None if iteration is None else int(iteration),
        "loss": res["loss"],
        "scores": _ordered_scores(res["scores"]),
    }
    if geo_accumulator is not None:
        geo = geo_accumulator.result()
        if geo["num_images"] != res["num_images"]:
            raise ValueError(
                f"geometric head scored {geo['num_images']} images, semantic head {res['num_images']}"
            )
        rec["scores_geo"] = _ordered_scores(geo["scores"])
        if geo["loss"] is not None:
            rec["loss_geo"] = geo["loss"]
    for key in ("scores_all_classes", "scores_without_background"):
        if key in res:
            rec[key] = _ordered_scores(res[key])
    if per_class:
        rec["per_class_iu"] = res["per_class_iu"]
        rec["per_class_acc"] = res["per_class_acc"]
        if geo_accumulator is not None:
            rec["per_class_iu_geo"] = geo["per_class_iu"]
            rec["per_class_acc_geo"] = geo["per_class_acc"]
    return rec


def _ordered_scores(s: Mapping[str, float]) -> dict[str, float]:
    return {k: s[k] for k in SCORE_KEYS}


def write_metrics_json(
    path: str | os.PathLike,
    *,
    experiment: str,
    weights: str | os.PathLike | None,
    split: str,
    iteration: int | None,
    accumulator: MetricsAccumulator,
    geo_accumulator: MetricsAccumulator | None = None,
    per_class: bool = True,
) -> dict[str, Any]:
    """Write metrics.json atomically (temp file + os.replace) with a stable key order; returns the
    record written. NaN scores are written as null."""
    rec = metrics_record(
        experiment=experiment, weights=weights, split=split, iteration=iteration,
        accumulator=accumulator, geo_accumulator=geo_accumulator, per_class=per_class,
    )
    write_json_atomic(path, rec)
    return rec


def read_metrics_json(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a metrics.json; raises ValueError naming the file and what is wrong."""
    path = Path(path)
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(rec, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(rec).__name__}")
    for key in ("experiment", "split", "num_images", "scores"):
        if key not in rec:
            raise ValueError(f"{path}: missing key {key!r} (see reproduce.evaluation.metrics.METRICS_SCHEMA_DOC)")
    for key in ("scores", "scores_geo", "scores_all_classes", "scores_without_background"):
        if key in rec:
            block = rec[key]
            if not isinstance(block, dict) or any(k not in block for k in SCORE_KEYS):
                raise ValueError(f"{path}: {key!r} must hold {', '.join(SCORE_KEYS)}")
    return rec

