"""bench/case_gpu.py (make bench-gpu) on a machine without CUDA: it refuses with exit 2 and a clear
line; its arithmetic and report writer on a made-up record (the figures come only from a GPU)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import case_gpu

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_cuda_it_exits_2_saying_why(tmp_path):
    r = subprocess.run([sys.executable, "-m", "bench.case_gpu", "--out", str(tmp_path / "gpu.json")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "bench-gpu: no CUDA device here" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "gpu.json").exists()


def test_projection_and_busy_fraction():
    assert case_gpu.projected_hours(0.18) == pytest.approx(5.0)
    assert case_gpu.busy_fraction(0.1, 0.09) == pytest.approx(0.9)
    assert case_gpu.busy_fraction(0.1, 0.12) == 1.0


def _timing(s: float, mib: float = 1000.0, hours: bool = False) -> dict:
    t = {"median_s": s, "peak_gpu_mib": mib}
    if hours:
        t["hours_per_100k"] = case_gpu.projected_hours(s)
    return t


def test_report_writer():
    size = {"forward_exact": _timing(0.030), "train_exact": _timing(0.090, 9000, True),
            "forward_bf16": _timing(0.012), "train_bf16": _timing(0.040, 5000, True),
            "forward_bf16_compile": {**_timing(0.008), "first_call_s": 41.0},
            "bf16_vs_exact": {"max_rel_logit_diff": 0.011, "argmax_agreement": 0.987}}
    record = {"gpu": "NVIDIA H100", "torch": "2.13.0", "cuda": "12.8", "cudnn": 91000, "runs": 10, "warmup": 3,
              "sizes": {"500x500": size, "500x375": size},
              "deterministic": {"size": "500x375", "on": _timing(0.1), "off": _timing(0.09), "slowdown": 1.111},
              "loop": {"images": ["500x333", "500x375"], "window": [20, 80], "iterations": 100,
                       "s_per_iteration": 0.1, "compute_s": 0.093, "busy_fraction": 0.93, "hours_per_100k": 2.78}}
    md = case_gpu.render_md(record)
    assert md.startswith("# voc-fcn8s on NVIDIA H100")
    assert "| 500x375 | train exact | 90.0 | 9000 | 2.50 |" in md
    assert "| 500x500 | forward bf16 compile | 8.0 | 1000 |  |" in md
    assert "argmax agreement 98.70 %" in md and "first call at 500x500: 41.0 s" in md
    assert "(1.11x)" in md and "busy 93.0 %" in md and "2.78 h per 100k" in md
