"""Appendix A upper bound: exact cases of the nearest-neighbour resampling and its scores."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from reproduce.evaluation.metrics import fast_hist, scores
from reproduce.evaluation.upper_bound import (
    downsample_upsample,
    read_voc_label,
    upper_bound_hist,
    upper_bound_scores,
)
from reproduce.commands.upper_bound_cli import upper_bound_command

FIXTURES = Path(__file__).parent / "fixtures" / "metrics"


def brute_force_resample(label: np.ndarray, f: int) -> np.ndarray:
    """The documented method, pixel by pixel: each pixel takes the label at the centre of its block."""
    h, w = label.shape
    out = np.empty_like(label)
    for y in range(h):
        by = (y // f) * f
        cy = by + min(f, h - by) // 2
        for x in range(w):
            bx = (x // f) * f
            cx = bx + min(f, w - bx) // 2
            out[y, x] = label[cy, cx]
    return out


def test_factor_one_is_identity_and_scores_100():
    rng = np.random.default_rng(1)
    label = rng.integers(0, 21, (13, 17)).astype(np.uint8)
    np.testing.assert_array_equal(downsample_upsample(label, 1), label)
    by_factor, n = upper_bound_scores([label], factors=[1])
    assert n == 1
    assert by_factor[1] == {"pixel_acc": 100.0, "mean_acc": 100.0, "mean_iu": 100.0, "fw_iu": 100.0}


@pytest.mark.parametrize("f", [2, 4, 8])
def test_grid_aligned_blocks_score_100_at_their_factor_and_below(f):
    rng = np.random.default_rng(f)
    blocks = rng.integers(0, 21, (3, 4)).astype(np.uint8)
    label = np.kron(blocks, np.ones((f, f), dtype=np.uint8))  # 3f x 4f, one label per f x f block
    for g in (1, f // 2 if f > 2 else 1, f):
        by_factor, _ = upper_bound_scores([label], factors=[g])
        assert by_factor[g]["mean_iu"] == 100.0
    # one factor coarser, and the blocks no longer survive
    by_factor, _ = upper_bound_scores([label], factors=[2 * f])
    assert by_factor[2 * f]["mean_iu"] < 100.0


def test_half_and_half_block_exact_scores():
    # 4 x 4: columns 0-1 class 0, columns 2-3 class 1. Factor 4 samples pixel (2, 2) = class 1.
    label = np.array([[0, 0, 1, 1]] * 4, dtype=np.uint8)
    np.testing.assert_array_equal(downsample_upsample(label, 4), np.ones((4, 4)))
    s, _ = upper_bound_scores([label], factors=[4], num_classes=2)
    assert s[4]["pixel_acc"] == pytest.approx(50.0)
    assert s[4]["mean_acc"] == pytest.approx(50.0)  # class 0: 0/8, class 1: 8/8
    assert s[4]["mean_iu"] == pytest.approx(25.0)  # class 0: 0, class 1: 8 / (8 + 16 - 8)


def test_truncated_edge_block_takes_its_own_centre():
    label = np.arange(25, dtype=np.uint8).reshape(5, 5)
    # blocks of 4: rows/cols [0..3] sample index 2, the truncated [4] samples index 4
    expected = np.array([[12, 12, 12, 12, 14]] * 4 + [[22, 22, 22, 22, 24]], dtype=np.uint8)
    np.testing.assert_array_equal(downsample_upsample(label, 4), expected)
    # factor larger than the image: one block, centre (2, 2)
    np.testing.assert_array_equal(downsample_upsample(label, 8), np.full((5, 5), 12))


def test_void_sample_counts_as_wrong_or_is_ignored():
    label = np.zeros((4, 4), dtype=np.uint8)
    label[2, 2] = 255  # the factor-4 sample is void
    wrong = upper_bound_hist(label, 4, num_classes=2)
    assert wrong.shape == (3, 3)
    assert wrong[0, 2] == 15 and wrong.sum() == 15  # 15 class-0 pixels predicted "no class"; void gt dropped
    s_wrong, _ = upper_bound_scores([label], factors=[4], num_classes=2)
    assert s_wrong[4]["pixel_acc"] == 0.0 and s_wrong[4]["mean_iu"] == 0.0
    assert upper_bound_hist(label, 4, num_classes=2, void="ignore").sum() == 0
    label[0, 0] = 1  # ground-truth void pixels are never scored, whatever is predicted there
    h = upper_bound_hist(label, 1, num_classes=2)
    assert h.sum() == 15 and np.trace(h) == 15


def test_real_voc_label_matches_brute_force_for_every_paper_factor():
    label = read_voc_label(FIXTURES / "voc_2007_004189.png")
    assert label.shape == (333, 500) and set(np.unique(label)) == {0, 12, 255}
    for f in (1, 4, 8, 16, 32, 64, 128):
        ours = downsample_upsample(label, f)
        np.testing.assert_array_equal(ours, brute_force_resample(label, f))
    by_factor, _ = upper_bound_scores([label], factors=(1, 4, 128))
    assert by_factor[1]["mean_iu"] == 100.0
    # hand-check factor 4 against the histogram of the brute-force map, void sample -> "no class"
    pred = brute_force_resample(label, 4).astype(np.int64)
    pred[pred == 255] = 21
    gt = label.astype(np.int64)
    gt[gt == 255] = -1
    assert by_factor[4] == scores(fast_hist(gt, pred, 22), classes=range(21))
    assert 0 < by_factor[128]["mean_iu"] < by_factor[4]["mean_iu"] < 100


def _write_voc(tmp_path: Path, labels: dict[str, np.ndarray]) -> Path:
    voc = tmp_path / "VOC2011"
    (voc / "SegmentationClass").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    for name, lab in labels.items():
        im = Image.fromarray(lab).convert("P")  # uint8 H x W -> "L" -> palette
        im.save(voc / "SegmentationClass" / f"{name}.png")
    (voc / "ImageSets" / "Segmentation" / "seg11valid.txt").write_text("\n".join(labels) + "\n")
    return voc


def test_upper_bound_command_writes_json_and_markdown(tmp_path):
    blocks = np.kron(np.array([[0, 15], [3, 255]], dtype=np.uint8), np.ones((128, 128), dtype=np.uint8))
    voc = _write_voc(tmp_path, {"a": blocks, "b": blocks[:, ::-1].copy()})
    out = tmp_path / "ub"
    res = CliRunner().invoke(upper_bound_command, ["--voc-dir", str(voc), "--out", str(out), "--factors", "4,128"])
    assert res.exit_code == 0, res.output
    rec = json.loads((out / "upper_bound.json").read_text())
    assert rec["experiment"] == "upper-bound" and rec["split"] == "seg11valid" and rec["num_images"] == 2
    assert rec["factors"] == [4, 128] and rec["void"] == "wrong"
    assert rec["scores_by_factor"]["128"]["mean_iu"] == 100.0
    md = (out / "upper_bound.md").read_text()
    assert "| 4 | 100.0 | 100.0 | 100.0 | 100.0 | 98.5 |" in md
    assert "ASSUMPTION" in md


def test_upper_bound_command_names_missing_labels(tmp_path):
    voc = _write_voc(tmp_path, {"a": np.zeros((8, 8), dtype=np.uint8)})
    (voc / "ImageSets" / "Segmentation" / "seg11valid.txt").write_text("a\nmissing_id\n")
    res = CliRunner().invoke(upper_bound_command, ["--voc-dir", str(voc), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0
    assert "missing_id.png" in res.output and "1 of 2" in res.output
