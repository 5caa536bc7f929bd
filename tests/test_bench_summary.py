"""bench/summary.py renders summary.md again from the files a bench run left (python -m bench.summary)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.summary import load_results, render

RESULTS = Path(__file__).resolve().parents[1] / "results" / "bench"


def test_the_committed_bench_files_render_every_section(tmp_path: Path) -> None:
    results, run = load_results(RESULTS)
    text = render(results, {**run, "out_dir": str(RESULTS)})
    for heading in ("## Forward", "## Region forward", "## Training step profile", "## Opt-in bf16 mode"):
        assert heading in text
    # the profile's figures are the stored ones, not recomputed
    step_plain = results["train_profile"]["median_s"]["plain"]["step"]
    assert f"| step | {step_plain:.3f} |" in text

def test_a_folder_without_a_bench_run_is_named(tmp_path: Path) -> None:
    shutil.copy(RESULTS / "nets.json", tmp_path / "nets.json")
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "run.json")):
        load_results(tmp_path)
