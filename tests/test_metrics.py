"""reproduce.evaluation.metrics against hand-made histograms and the reference score.py formulas."""
from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reproduce.evaluation import metrics as M

FIXTURES = Path(__file__).parent / "fixtures" / "metrics"


def reference_scores(hist: np.ndarray) -> dict[str, float]:
    """score.py's formulas written out literally (numpy nanmean, 0/0 -> NaN), in percent."""
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        hist = hist.astype(np.float64)
        acc = np.diag(hist).sum() / hist.sum()
        cl_acc = np.nanmean(np.diag(hist) / hist.sum(1))
        iu = np.diag(hist) / (hist.sum(1) + hist.sum(0) - np.diag(hist))
        freq = hist.sum(1) / hist.sum()
        fw = (freq[freq > 0] * iu[freq > 0]).sum()
        return {"pixel_acc": 100 * acc, "mean_acc": 100 * cl_acc, "mean_iu": 100 * np.nanmean(iu), "fw_iu": 100 * fw}


# --- fast_hist ---------------------------------------------------------------------------------


def test_fast_hist_rows_are_ground_truth_and_255_is_dropped():
    gt = np.array([[0, 1, 1], [2, 255, 2]], dtype=np.uint8)
    pred = np.array([[0, 0, 1], [1, 2, 2]], dtype=np.int64)
    h = M.fast_hist(gt, pred, 3)
    assert h.dtype == np.int64
    np.testing.assert_array_equal(h, [[1, 0, 0], [1, 1, 0], [0, 1, 1]])
    assert h.sum() == 5  # the 255 pixel (predicted 2) is not counted


def test_fast_hist_drops_out_of_range_ground_truth_but_rejects_bad_predictions():
    gt = np.array([0, 3, -1, 1])
    pred = np.array([0, 1, 1, 1])
    np.testing.assert_array_equal(M.fast_hist(gt, pred, 2), [[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="prediction value 5"):
        M.fast_hist(np.array([0, 1]), np.array([0, 5]), 2)
    with pytest.raises(ValueError, match="shape"):
        M.fast_hist(np.zeros((2, 2)), np.zeros((2, 3)), 2)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 30), st.integers(0, 2**31 - 1))
def test_fast_hist_matches_a_pixel_loop(n, size, seed):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, n + 1, size)
    gt[gt == n] = 255
    pred = rng.integers(0, n, size)
    expected = np.zeros((n, n), dtype=np.int64)
    for g, p in zip(gt, pred):
        if g < n:
            expected[g, p] += 1
    np.testing.assert_array_equal(M.fast_hist(gt, pred, n), expected)


# --- scores ------------------------------------------------------------------------------------


def test_scores_hand_made_histogram_with_nanmean_rules():
    # class 0 and 1 in ground truth; class 2 only in the prediction (IU 0, counts);
    # class 3 absent from both (left out).
    h = np.array([[3, 1, 1, 0],
                  [2, 4, 0, 0],
                  [0, 0, 0, 0],
                  [0, 0, 0, 0]])
    s = M.scores(h)
    assert s["pixel_acc"] == pytest.approx(100 * 7 / 11)
    assert s["mean_acc"] == pytest.approx(100 * (3 / 5 + 4 / 6) / 2)
    assert s["mean_iu"] == pytest.approx(100 * (3 / 7 + 4 / 7 + 0) / 3)
    assert s["fw_iu"] == pytest.approx(100 * (5 / 11 * 3 / 7 + 6 / 11 * 4 / 7))
    iu = M.per_class_iu(h)
    assert iu[2] == 0.0 and math.isnan(iu[3])
    acc = M.per_class_acc(h)
    assert math.isnan(acc[2]) and math.isnan(acc[3])


def test_class_only_in_prediction_lowers_mean_iu():
    base = np.array([[5, 0, 0], [0, 5, 0], [0, 0, 0]])
    assert M.scores(base)["mean_iu"] == pytest.approx(100.0)  # class 2 absent from both: left out
    spoiled = np.array([[4, 0, 1], [0, 5, 0], [0, 0, 0]])
    assert M.scores(spoiled)["mean_iu"] == pytest.approx(100 * (4 / 5 + 1 + 0) / 3)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 8), st.integers(0, 2**31 - 1), st.floats(0.0, 0.9))
def test_scores_match_reference_formulas(n, seed, zero_frac):
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 20, (n, n))
    h[rng.random((n, n)) < zero_frac] = 0
    if h.sum() == 0:
        h[0, 0] = 1
    ours, ref = M.scores(h), reference_scores(h)
    for k in M.SCORE_KEYS:
        if math.isnan(ref[k]):
            assert math.isnan(ours[k])
        else:
            assert ours[k] == pytest.approx(ref[k], rel=1e-12, abs=1e-12)


def test_scores_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        M.scores(np.zeros((2, 3)))


# --- SIFT Flow ---------------------------------------------------------------------------------


def _parse_siftflow_classes(path: Path) -> tuple[list[str], list[str], list[str]]:
    text = path.read_text()
    sem_block = text.split("Semantic:", 1)[1].split("Geometric:", 1)[0]
    geo_block = text.split("Geometric:", 1)[1].split("N.B.", 1)[0]
    sem = [(int(a), b) for a, b in re.findall(r"^(\d\d) (\w+)$", sem_block, re.M)]
    geo = [(int(a), b) for a, b in re.findall(r"^(\d\d) (\w+)$", geo_block, re.M)]
    assert [i for i, _ in sem] == list(range(1, 34)) and [i for i, _ in geo] == [1, 2, 3]
    nb = text.split("N.B.", 1)[1]
    absent = re.search(r"Three classes \(([^)]*)\)", nb).group(1)
    absent_names = [w for w in re.split(r"[,\s]+", absent) if w and w != "and"]
    return [b for _, b in sem], [b for _, b in geo], absent_names


def test_siftflow_class_list_is_the_datasets_classes_txt():
    sem, geo, absent = _parse_siftflow_classes(FIXTURES / "siftflow_classes.txt")
    assert list(M.SIFTFLOW_SEMANTIC_CLASSES) == sem  # label k (after the reference's minus one) = line k+1
    assert list(M.SIFTFLOW_GEOMETRIC_CLASSES) == geo
    assert sorted(M.SIFTFLOW_ABSENT_IN_TEST) == sorted(absent) == ["cow", "desert", "moon"]
    assert set(range(33)) - set(M.SIFTFLOW_EVAL_CLASSES) == {8, 10, 15}
    assert len(M.SIFTFLOW_EVAL_CLASSES) == 30


def test_siftflow_semantic_scores_leave_out_cow_desert_moon():
    h = np.zeros((33, 33), dtype=np.int64)
    h[0, 0] = 6        # awning right
    h[1, 1] = 4        # balcony right
    h[1, 8] = 2        # balcony predicted as cow: cow (absent in test) gets IU 0 in the raw reading
    raw = M.scores(h)
    paper = M.siftflow_semantic_scores(h)
    assert raw["mean_iu"] == pytest.approx(100 * (1 + 4 / 6 + 0) / 3)
    assert paper["mean_iu"] == pytest.approx(100 * (1 + 4 / 6) / 2)
    # pixel accuracy, mean accuracy and f.w. IU do not change: absent classes have no ground truth
    for k in ("pixel_acc", "mean_acc", "fw_iu"):
        assert paper[k] == pytest.approx(raw[k])
    # an excluded class present in ground truth would still be left out of the means
    with pytest.raises(ValueError, match="33 x 33"):
        M.siftflow_semantic_scores(np.zeros((3, 3)))


# --- PASCAL-Context ----------------------------------------------------------------------------


def test_context_scores_with_and_without_background():
    h = np.zeros((60, 60), dtype=np.int64)
    h[0, 0] = 10   # background right
    h[0, 1] = 2    # background predicted as class 1
    h[1, 1] = 6    # class 1 right
    h[1, 0] = 3    # class 1 predicted as background
    h[2, 2] = 9    # class 2 right
    both = M.context_scores(h)
    w, wo = both["with_background"], both["without_background"]
    assert w == M.scores(h)
    assert w["pixel_acc"] == pytest.approx(100 * 25 / 30)
    assert w["mean_iu"] == pytest.approx(100 * (10 / 15 + 6 / 11 + 1) / 3)
    # without: ground-truth background ignored, class 1 -> background still wrong, means over 1..59
    assert wo["pixel_acc"] == pytest.approx(100 * 15 / 18)
    assert wo["mean_acc"] == pytest.approx(100 * (6 / 9 + 1) / 2)
    assert wo["mean_iu"] == pytest.approx(100 * (6 / 9 + 1) / 2)
    assert wo["fw_iu"] == pytest.approx(100 * (9 / 18 * 6 / 9 + 9 / 18 * 1))
    with pytest.raises(ValueError, match="60 x 60"):
        M.context_scores(np.zeros((59, 59)))


def test_context_docstring_says_unverified():
    assert "UNVERIFIED" in M.context_scores.__doc__
    assert "UNVERIFIED" in M.__doc__


# --- accumulator and metrics.json --------------------------------------------------------------


def test_accumulator_sums_images_and_averages_loss():
    rng = np.random.default_rng(0)
    acc = M.MetricsAccumulator(5)
    total = np.zeros((5, 5), dtype=np.int64)
    for i in range(3):
        gt = rng.integers(0, 6, (7, 9)).astype(np.uint8)
        gt[gt == 5] = 255
        pred = rng.integers(0, 5, (7, 9))
        total += M.fast_hist(gt, pred, 5)
        # torch tensors with a leading singleton dimension are accepted
        acc.add(torch.from_numpy(pred)[None], torch.from_numpy(gt)[None] if i == 1 else gt)
        acc.add_loss(10.0 * (i + 1))
    res = acc.result()
    np.testing.assert_array_equal(acc.hist, total)
    assert res["num_images"] == 3
    assert res["loss"] == pytest.approx(20.0)
    assert res["scores"] == M.scores(total)
    assert len(res["per_class_iu"]) == 5
    with pytest.raises(ValueError, match="non-finite"):
        acc.add_loss(float("nan"))


def test_accumulator_modes():
    assert M.MetricsAccumulator(10).loss is None
    with pytest.raises(ValueError, match="33"):
        M.MetricsAccumulator(21, M.SCORING_SIFTFLOW_SEMANTIC)
    with pytest.raises(ValueError, match="60"):
        M.MetricsAccumulator(59, M.SCORING_CONTEXT)
    with pytest.raises(ValueError, match="unknown scoring"):
        M.MetricsAccumulator(21, "voc")
    ctx = M.MetricsAccumulator(60, M.SCORING_CONTEXT)
    gt = np.array([[0, 1], [2, 2]])
    ctx.add(np.array([[1, 1], [2, 0]]), gt)
    r = ctx.result()
    assert r["scores"] == M.context_scores(ctx.hist)["with_background"]
    assert r["scores_without_background"] == M.context_scores(ctx.hist)["without_background"]
    sf = M.MetricsAccumulator(33, M.SCORING_SIFTFLOW_SEMANTIC)
    sf.add(np.array([8, 0]), np.array([0, 0]))
    r = sf.result()
    assert r["scores"]["mean_iu"] == pytest.approx(50.0)
    assert r["scores_all_classes"]["mean_iu"] == pytest.approx(25.0)
    assert M.scoring_for_experiment("siftflow-fcn16s") == M.SCORING_SIFTFLOW_SEMANTIC
    assert M.scoring_for_experiment("pascalcontext-fcn8s") == M.SCORING_CONTEXT
    assert M.scoring_for_experiment("voc-fcn8s") == M.SCORING_STANDARD


def test_write_metrics_json_schema_order_nan_and_stability(tmp_path):
    sem = M.MetricsAccumulator(33, M.SCORING_SIFTFLOW_SEMANTIC)
    geo = M.MetricsAccumulator(3)
    sem.add(np.array([[0, 1], [1, 1]]), np.array([[0, 1], [255, 1]]))
    sem.add_loss(4.0)
    geo.add(np.array([[0, 2], [2, 2]]), np.array([[0, 2], [1, 2]]))
    geo.add_loss(2.0)
    path = tmp_path / "run" / "metrics.json"
    rec = M.write_metrics_json(path, experiment="siftflow-fcn16s", weights=Path("w.pt"), split="test",
                               iteration=4000, accumulator=sem, geo_accumulator=geo)
    first = path.read_bytes()
    assert first.endswith(b"\n")
    data = json.loads(first)
    assert list(data)[:8] == ["schema_version", "experiment", "weights", "split", "num_images", "iteration",
                              "loss", "scores"]
    assert data["weights"] == "w.pt" and data["num_images"] == 1 and data["loss"] == 4.0
    assert data["scores_geo"]["pixel_acc"] == pytest.approx(75.0)
    assert data["loss_geo"] == 2.0
    assert list(data["scores"]) == list(M.SCORE_KEYS)
    assert data["per_class_iu"][5] is None  # NaN (absent class) written as null
    assert data == json.loads(json.dumps(rec, allow_nan=True).replace("NaN", "null"))
    M.write_metrics_json(path, experiment="siftflow-fcn16s", weights=Path("w.pt"), split="test",
                         iteration=4000, accumulator=sem, geo_accumulator=geo)
    assert path.read_bytes() == first
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]  # no temp files left
    assert M.read_metrics_json(path)["experiment"] == "siftflow-fcn16s"


def test_write_metrics_json_refuses_mismatched_heads(tmp_path):
    sem, geo = M.MetricsAccumulator(33, M.SCORING_SIFTFLOW_SEMANTIC), M.MetricsAccumulator(3)
    sem.add(np.array([0]), np.array([0]))
    with pytest.raises(ValueError, match="geometric head scored 0"):
        M.write_metrics_json(tmp_path / "m.json", experiment="x", weights=None, split="test", iteration=None,
                             accumulator=sem, geo_accumulator=geo)
    assert not (tmp_path / "m.json").exists()


def test_read_metrics_json_names_file_and_problem(tmp_path):
    p = tmp_path / "metrics.json"
    p.write_text('{"experiment": "voc-fcn8s", "split": "seg11valid", "num_images": 1}')
    with pytest.raises(ValueError, match=r"metrics\.json: missing key 'scores'"):
        M.read_metrics_json(p)
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        M.read_metrics_json(p)
