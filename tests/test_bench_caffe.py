"""bench/case_caffe.py without Caffe: the refusal names the way out, the summary lines say what ran."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench import case_caffe


def test_without_the_chroot_the_case_exits_3_naming_how_to_build_it(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("ORACLE_CHROOT", str(tmp_path / "none"))
    why = case_caffe.caffe_available()
    assert why is not None
    if case_caffe.os.geteuid() == 0:
        assert "build_chroot.sh" in why and str(tmp_path / "none") in why
    assert case_caffe.main(["--out", str(tmp_path / "x.json")]) == 3
    assert not (tmp_path / "x.json").exists()
    assert why in capsys.readouterr().err


def test_summary_lines_show_the_medians_and_ratios() -> None:
    record = {"net": "voc-fcn8s", "input": "1x3x500x500", "dtype": "float32", "threads": 2, "caffe_version": "1.0.0",
              "rounds": 3, "runs_per_round": 2, "median_s": {"caffe": 2.8, "default": 1.0, "plain": 2.0},
              "default_over_caffe": 1.0 / 2.8, "plain_over_caffe": 2.0 / 2.8, "max_rel_score_diff": 1.5e-6,
              "machine_before": {"load_average": [1.0, 1.0, 1.0]}, "machine_after": {"load_average": [1.2, 1.0, 1.0]}}
    text = "\n".join(case_caffe.markdown_lines(record))
    assert "| Caffe 1.0 | 2.80 | 1.00x |" in text and "| 1.00 | 0.36x |" in text and "1.5e-06" in text
    assert case_caffe.markdown_lines({"skipped": "no chroot"}) == ["Not run: no chroot."]
