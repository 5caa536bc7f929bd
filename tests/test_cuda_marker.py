"""The `cuda` marker (tests/conftest.py): skipped with the reason where CUDA is absent, counted in
pytest's summary line; `make test-gpu` (FCN_REQUIRE_CUDA=1) refuses to run without CUDA."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour on a machine without CUDA")


def _pytest(*args: str, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "FCN_REQUIRE_CUDA"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=ROOT,
                          capture_output=True, text=True, env={**environ, **env}, timeout=300)


def test_cuda_tests_are_skipped_with_the_reason_and_counted():
    result = _pytest("-m", "cuda", "tests/test_cuda.py", "-k", "tf32 or infer")
    assert result.returncode == 0, result.stdout + result.stderr
    from reproduce.device import cuda_unavailable_reason
    # -ra lists the reason: a CPU build's ("torch ... is built without CUDA") or a CUDA build's without a GPU
    assert f"needs a CUDA GPU: {cuda_unavailable_reason()}" in result.stdout
    assert "2 skipped" in result.stdout.splitlines()[-1]


def test_make_test_gpu_fails_without_cuda():
    result = _pytest("-m", "cuda", "tests/test_cuda.py", FCN_REQUIRE_CUDA="1")
    assert result.returncode == 3
    assert "make test-gpu: no usable CUDA device here" in result.stdout + result.stderr


def test_the_marker_is_registered():
    result = _pytest("--markers")
    assert "@pytest.mark.cuda:" in result.stdout


def test_the_prepared_gpu_check_script_parses_and_refuses_without_cuda(tmp_path):
    script = ROOT / "tools" / "gpu_check.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "-m cuda" in text and "bench.case_gpu" in text and "FCN_REQUIRE_CUDA=1" in text
    r = subprocess.run(["bash", str(script), str(tmp_path / "out")], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "PY": sys.executable})
    assert r.returncode == 3 and "no Python here whose torch sees a CUDA GPU" in r.stderr
