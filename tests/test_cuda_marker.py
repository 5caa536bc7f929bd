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


def test_the_gpu_check_stops_a_part_at_its_limit_and_still_runs_the_next(tmp_path):
    """With a stand-in Python that 'sees a GPU': tests that hang are interrupted at TEST_SECONDS, the
    bench still runs and writes its record; `bench` alone runs no tests; a wrong part is a usage error."""
    fake = tmp_path / "python"
    fake.write_text('#!/bin/bash\n'
                    'if [ "$1" = -c ]; then echo "stand-in torch"; exit 0; fi\n'
                    'if [ "$2" = pytest ]; then echo "pytest started"; exec sleep 60; fi\n'
                    'echo "bench ran"; echo "{}" > "$4"\n')
    fake.chmod(0o755)
    script = str(ROOT / "tools" / "gpu_check.sh")

    def check(*args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", script, *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PY": str(fake), **env})

    out = tmp_path / "out"
    r = check(str(out), TEST_SECONDS="1")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "gpu_check: cuda tests stopped at their 1 s limit" in r.stdout and "gpu_check: bench-gpu exit 0" in r.stdout
    assert "pytest started" in (out / "test-gpu.log").read_text() and (out / "gpu.json").read_text() == "{}\n"
    only = tmp_path / "only"
    r = check(str(only), "bench")
    assert r.returncode == 0 and not (only / "test-gpu.log").exists() and (only / "gpu.json").exists()
    r = check(str(only), "everything")
    assert r.returncode == 2 and "usage" in r.stderr
