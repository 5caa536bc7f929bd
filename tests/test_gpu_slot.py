"""reproduce.pipeline.gpu_slot: concurrent jobs get distinct GPUs, a dead job frees its GPU, and the
Makefile pins every train and eval job of `make -j N reproduce-all GPUS=...` through it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reproduce.pipeline import gpu_slot

ROOT = Path(__file__).resolve().parents[1]
SLOT = [sys.executable, "-m", "reproduce.pipeline.gpu_slot"]


def _job(lock_dir: Path, gpus: str, code: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([*SLOT, "--gpus", gpus, "--lock-dir", str(lock_dir), *extra, "--",
                             sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


REPORT = "import os, time; print(os.environ['CUDA_VISIBLE_DEVICES'], flush=True); time.sleep({})"


def test_concurrent_jobs_get_distinct_gpus(tmp_path):
    jobs = [_job(tmp_path, "0,1,2", REPORT.format(2)) for _ in range(3)]
    outs = [j.communicate(timeout=60) for j in jobs]
    assert all(j.returncode == 0 for j in jobs), outs
    assert sorted(o.strip() for o, _ in outs) == ["0", "1", "2"]
    assert all("gpu_slot: GPU" in e for _, e in outs)


def test_a_job_waits_for_a_free_gpu_then_takes_it(tmp_path):
    held = gpu_slot.try_acquire(["0", "1"], tmp_path)
    other = gpu_slot.try_acquire(["0", "1"], tmp_path)
    assert held[0] == "0" and other[0] == "1"
    assert gpu_slot.try_acquire(["0", "1"], tmp_path) is None  # both held
    late = _job(tmp_path, "0,1", REPORT.format(0))
    time.sleep(1.5)
    assert late.poll() is None  # waiting
    os.close(other[1])  # GPU 1 frees
    out, err = late.communicate(timeout=30)
    assert late.returncode == 0 and out.strip() == "1" and "all busy; waiting" in err
    os.close(held[1])


def test_timeout_when_no_gpu_frees(tmp_path):
    held = gpu_slot.try_acquire(["5"], tmp_path)
    job = _job(tmp_path, "5", "print('ran')", "--timeout", "0.5")
    out, err = job.communicate(timeout=30)
    assert job.returncode == gpu_slot.EXIT_NO_SLOT and "ran" not in out and "no free GPU among 5" in err
    os.close(held[1])


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_dead_job_frees_its_gpu(tmp_path, sig):
    job = _job(tmp_path, "0", REPORT.format(60))
    assert job.stdout.readline().strip() == "0"  # running, and the command itself holds the lock
    assert gpu_slot.try_acquire(["0"], tmp_path) is None
    assert f"pid {job.pid}" in (tmp_path / "gpu-0.lock").read_text()  # exec: the job is the command
    job.send_signal(sig)
    job.wait(timeout=30)
    got = gpu_slot.try_acquire(["0"], tmp_path)
    assert got is not None and got[0] == "0"
    os.close(got[1])


def test_bad_gpu_lists_and_commands():
    for text in ("", "0,0", "a,1"):
        with pytest.raises(ValueError, match="GPUS="):
            gpu_slot.parse_gpus(text)
    assert gpu_slot.parse_gpus(" 0, 2,3 ") == ["0", "2", "3"]
    r = subprocess.run([*SLOT, "--gpus", "0,0", "--lock-dir", "/tmp", "--", "true"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "listed twice" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([*SLOT, "--gpus", "0", "--lock-dir", "/tmp/fcn-slot-test", "--", "/nonexistent/cmd"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 127 and "cannot run" in r.stderr


def test_makefile_pins_every_train_and_eval_job_of_reproduce_all(tmp_path):
    def dry(*extra):
        r = subprocess.run(["make", "-n", "-j4", f"RUNS={tmp_path}/runs", f"DATA={tmp_path}/data", *extra,
                            f"{tmp_path}/runs/eval/voc-fcn8s/metrics.json", f"{tmp_path}/runs/eval/nyud-fcn16s-color-hha/metrics.json"],
                           cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return [l for l in r.stdout.splitlines() if " train " in l or " eval " in l and "fcn eval" in l]
    pinned = dry("GPUS=0,1,2")
    trains = [l for l in pinned if "fcn train" in l]
    evals = [l for l in pinned if "fcn eval" in l]
    assert len(trains) == 3 + 4 and len(evals) == 2  # voc 32s, 16s, 8s; nyud color, hha, color-hha, 16s
    slot = f"-m reproduce.pipeline.gpu_slot --gpus 0,1,2 --lock-dir {tmp_path}/runs/.gpu-slots -- .venv/bin/fcn"
    assert all(slot in l for l in trains + evals), pinned
    assert not any("gpu_slot" in l for l in dry())  # without GPUS: as before
    r = subprocess.run(["make", "-n", "reproduce-all", "GPUS=0,1", f"RUNS={tmp_path}/runs"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0 and "check-device" in r.stdout and "voc-fcn-googlenet/metrics.json" in r.stdout
