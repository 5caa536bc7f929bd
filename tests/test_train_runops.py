"""Run operations of `fcn train` under injected faults, with real trainer processes
(tests/train_runner.py: the command line on the fixture samples at 32 px, width 1/16):
a second trainer on a locked run directory, a failed start."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reproduce.run_lock import RunLock, RunLockedError
from reproduce.train import train
from train_support import assert_states_equal, read_state

RUNNER = Path(__file__).parent / "train_runner.py"
MAX_ITER = 16


def _args(out, data_root, *extra):
    return ["voc-fcn32s", "--data-root", str(data_root), "--out", str(out), "--width", "0.0625",
            "--max-iter", str(MAX_ITER), "--test-interval", "8", "--base-lr", "1e-7", "--display", "1",
            "--device", "cpu", *extra]


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", **extra)
    env.pop("FCN_TEST_SECONDS_PER_IMAGE", None)
    env.update(extra)
    return env


def _start(args, *, delay=0.0, **env):
    env = _env(**env, **({"FCN_TEST_SECONDS_PER_IMAGE": str(delay)} if delay else {}))
    return subprocess.Popen([sys.executable, str(RUNNER), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _run(args, **env):
    proc = _start(args, **env)
    out, err = proc.communicate(timeout=600)
    return proc.returncode, err


def _logged_iterations(out):
    try:
        return max(0, len((out / "log.csv").read_text().splitlines()) - 1)
    except FileNotFoundError:
        return 0


def _wait_for_iterations(proc, out, n, timeout=300):
    """Wait until the trainer has logged `n` iterations (display 1: one log.csv row each)."""
    end = time.monotonic() + timeout
    while _logged_iterations(out) < n:
        if proc.poll() is not None:
            raise AssertionError(f"trainer ended early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > end:
            raise AssertionError(f"no {n} iterations logged within {timeout} s")
        time.sleep(0.02)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run's directory."""
    root = tmp_path_factory.mktemp("reference")
    code, err = _run(_args(root / "run", root, "--no-progress"))
    assert code == 0, err
    return root / "run"


def test_a_second_trainer_on_a_locked_run_gets_one_line_naming_the_holder(tmp_path, reference):
    out = tmp_path / "run"
    first = _start(_args(out, tmp_path, "--no-progress"), delay=0.6)  # ~10 s: outlasts the second's start
    try:
        _wait_for_iterations(first, out, 2)
        code, err = _run(_args(out, tmp_path, "--no-progress"))
        assert code == 1
        # the note of the --base-lr override (printed before training starts), then one line
        lines = [line for line in err.strip().splitlines() if "solver overridden" not in line]
        assert len(lines) == 1, err
        assert f"process {first.pid} on " in lines[0] and str(out) in lines[0] and "Traceback" not in err
        assert first.poll() is None  # the first trainer goes on
        _, first_err = first.communicate(timeout=600)
    finally:
        first.kill()
        first.wait()
    assert first.returncode == 0, first_err
    rows = [line.split(",")[0] for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert rows == [str(i) for i in range(MAX_ITER)]  # one row per iteration: nothing interleaved
    assert_states_equal(read_state(out / "final.pt"), read_state(reference / "final.pt"))


def test_the_lock_dies_with_a_killed_trainer(tmp_path, reference):
    out = tmp_path / "run"
    first = _start(_args(out, tmp_path, "--no-progress"), delay=0.1)
    _wait_for_iterations(first, out, 9)  # past the iteration-8 checkpoint
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert (out / ".lock").read_text().split()[0] == str(first.pid)  # left behind, but not held
    code, err = _run(_args(out, tmp_path, "--no-progress"))
    assert code == 0, err
    assert_states_equal(read_state(out / "final.pt"), read_state(reference / "final.pt"))


def test_run_lock_in_one_process(tmp_path):
    out = tmp_path / "a" / "b" / "run"
    with RunLock(out) as lock:
        assert lock.path.read_text().split()[0] == str(os.getpid())
        with pytest.raises(RunLockedError, match=rf"in use by process {os.getpid()} on .*{out}|{out}.*process {os.getpid()}"):
            RunLock(out).acquire()
        (out / "log.csv").write_text("x\n")
    assert (out / ".lock").exists() and (out / ".lock").read_text() == ""  # emptied, not held
    with RunLock(out):  # free again
        pass


def test_a_failed_start_leaves_no_empty_run_directory(tmp_path):
    out = tmp_path / "runs" / "voc-fcn32s"
    with pytest.raises(ValueError, match="no data root"):
        train("voc-fcn32s", data_root=None, init=None, out_dir=out, width=1 / 16, progress=False)
    assert not (tmp_path / "runs").exists()
    # a directory that was there already stays
    out.mkdir(parents=True)
    with pytest.raises(ValueError, match="no data root"):
        train("voc-fcn32s", data_root=None, init=None, out_dir=out, width=1 / 16, progress=False)
    assert out.is_dir() and os.listdir(out) == []
