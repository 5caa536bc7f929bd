"""Run operations of `fcn train` under injected faults, with real trainer processes
(tests/train_runner.py: the command line on the fixture samples at 32 px, width 1/16):
a second trainer on a locked run directory, a failed start, SIGINT / SIGTERM mid-run (stop after
the iteration with a snapshot, exit 130 / 143, resume bit for bit), --snapshot N, and the progress
lines printed without a terminal."""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reproduce.training import checkpoint
from reproduce.training.run_lock import RunLock, RunLockedError
from reproduce.training.train import train
from train_support import assert_states_equal, read_state

RUNNER = Path(__file__).parent / "train_runner.py"
MAX_ITER = 16


def _args(out, data_root, *extra):
    return ["voc-fcn32s", "--data-root", str(data_root), "--out", str(out), "--width", "0.0625",
            "--max-iter", str(MAX_ITER), "--test-interval", "8", "--base-lr", "1e-7", "--display", "1",
            "--device", "cpu", *extra]


def _env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", **extra)
    for name in ("FCN_TEST_SECONDS_PER_IMAGE", "FCN_TEST_SECONDS_PER_SNAPSHOT", "FCN_PROGRESS_SECONDS", "MAKELEVEL"):
        env.pop(name, None)
    env.update(extra)
    return env


def _start(args, *, delay=0.0, stderr=subprocess.PIPE, **env):
    env = _env(**env, **({"FCN_TEST_SECONDS_PER_IMAGE": str(delay)} if delay else {}))
    return subprocess.Popen([sys.executable, str(RUNNER), *args], stdout=subprocess.PIPE,
                            stderr=stderr, text=True, env=env)


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
    first = _start(_args(out, tmp_path, "--no-progress", "--snapshot", "8"), delay=0.1)
    _wait_for_iterations(first, out, 9)  # past the iteration-8 checkpoint
    assert (out / "snapshot" / "iter_8.pt").is_file()
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert (out / ".lock").read_text().split()[0] == str(first.pid)  # left behind, but not held
    code, err = _run(_args(out, tmp_path, "--no-progress", "--snapshot", "8"))
    assert code == 0, err
    assert "resuming" in err and "(iteration 8 of 16)" in err, err
    assert_states_equal(read_state(out / "final.pt"), read_state(reference / "final.pt"))


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_after_the_iteration_with_a_snapshot_and_the_rerun_resumes_bit_for_bit(
        tmp_path, reference, signum, status):
    out = tmp_path / "run"
    trainer = _start(_args(out, tmp_path, "--no-progress"), delay=0.1)
    try:
        _wait_for_iterations(trainer, out, 3)
        trainer.send_signal(signum)
        _, err = trainer.communicate(timeout=120)
    finally:
        trainer.kill()
        trainer.wait()
    assert trainer.returncode == status, err
    assert "Traceback" not in err
    resume_lines = [line for line in err.splitlines() if "to resume" in line]
    assert len(resume_lines) == 1, err
    name = signal.Signals(signum).name
    stopped = re.fullmatch(rf"voc-fcn32s: stopped by {name} after iteration (\d+) \(snapshot (.+)\); to resume, "
                           rf"rerun the same command \(resume is automatic\): fcn train voc-fcn32s .*", resume_lines[0])
    assert stopped, resume_lines[0]
    iteration, snapshot = int(stopped.group(1)), Path(stopped.group(2))
    assert 3 <= iteration < MAX_ITER and snapshot == out / "snapshot" / f"iter_{iteration}.pt"
    # the default snapshot interval (the solver's 4000) would write none before 16: this one is the stop's
    assert [p.name for p in (out / "snapshot").iterdir()] == [snapshot.name]
    state = checkpoint.load_checkpoint(snapshot)  # checksum verified
    assert state["iteration"] == iteration
    assert _logged_iterations(out) == iteration  # the iteration in progress finished, no further one began
    assert not (out / "final.pt").exists()

    code, err = _run(_args(out, tmp_path, "--no-progress"))
    assert code == 0, err
    assert f"voc-fcn32s: resuming {out} from {snapshot} (iteration {iteration} of {MAX_ITER})" in err.splitlines()
    assert_states_equal(read_state(out / "final.pt"), read_state(reference / "final.pt"))
    rows = [line.split(",")[0] for line in (out / "log.csv").read_text().splitlines()[1:]]
    assert rows == [str(i) for i in range(MAX_ITER)]


def test_a_second_signal_while_the_snapshot_is_written_says_so_and_the_snapshot_completes(tmp_path):
    out = tmp_path / "run"
    trainer = _start(_args(out, tmp_path, "--no-progress"), delay=0.1, FCN_TEST_SECONDS_PER_SNAPSHOT="1.5")
    try:
        _wait_for_iterations(trainer, out, 2)
        trainer.send_signal(signal.SIGINT)
        lines = []
        for line in trainer.stderr:  # the handler's note, printed as the first signal arrives
            lines.append(line)
            if "SIGINT received" in line:
                break
        time.sleep(0.5)  # the iteration in progress (<= 0.1 s) is done: the 1.5 s snapshot write is under way
        trainer.send_signal(signal.SIGINT)
        rest = trainer.communicate(timeout=120)[1]
    finally:
        trainer.kill()
        trainer.wait()
    err = "".join(lines) + rest
    assert trainer.returncode == 130, err
    assert "SIGINT received again: still stopping" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "to resume" in line]) == 1, err
    iteration = int(re.search(r"stopped by SIGINT after iteration (\d+)", err).group(1))
    assert checkpoint.load_checkpoint(out / "snapshot" / f"iter_{iteration}.pt")["iteration"] == iteration
    assert not list((out / "snapshot").glob(".*.tmp"))


_TRAIN_LINE = re.compile(r"voc-fcn32s: iteration (\d+)/16 \([\d.]+%\), loss [-\d.e+]+, lr 1e-07, "
                         r"[\d.e+]+ iterations/s, (ETA \d+s|done in \d+s)")
_EVAL_LINE = re.compile(r"eval voc-fcn32s: image (\d)/4 \([\d.]+%\), [\d.e+]+ images/s, (ETA \d+s|done in \d+s)")


def test_snapshot_every_n_and_progress_lines_without_a_terminal(tmp_path, reference):
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    with open(log, "w") as stderr:  # a file, not a terminal: no bar, periodic lines
        trainer = _start(_args(out, tmp_path, "--snapshot", "5", "--keep-snapshots", "0"), delay=0.1,
                         stderr=stderr, FCN_PROGRESS_SECONDS="0.4")
        trainer.communicate(timeout=600)
    err = log.read_text()
    assert trainer.returncode == 0, err
    snapshots = checkpoint.list_snapshots(out / "snapshot")
    assert [i for i, _ in snapshots] == [5, 10, 15, 16]
    assert [checkpoint.load_checkpoint(p)["iteration"] for _, p in snapshots] == [5, 10, 15, 16]
    assert_states_equal(read_state(out / "final.pt"), read_state(reference / "final.pt"))

    lines = err.splitlines()
    train_lines = [line for line in lines if line.startswith("voc-fcn32s: iteration")]
    assert train_lines[0] == "voc-fcn32s: iteration 0/16 (0%), starting"
    assert _TRAIN_LINE.fullmatch(train_lines[-1]) and train_lines[-1].startswith("voc-fcn32s: iteration 16/16 (100%)")
    assert "done in" in train_lines[-1]
    periodic = train_lines[1:-1]
    # 16 iterations of >= 0.1 s at one line per 0.4 s: a few lines, not one per iteration
    assert 2 <= len(periodic) < MAX_ITER - 1, err
    for line in periodic:
        assert _TRAIN_LINE.fullmatch(line) and "ETA" in line, line
    done = [int(_TRAIN_LINE.fullmatch(line).group(1)) for line in periodic]
    assert done == sorted(set(done)) and 0 < done[0] and done[-1] < MAX_ITER
    # the test passes at 8 and 16 report as evaluations do: a start and an end line each
    assert sum(line.startswith("eval voc-fcn32s: image 4/4 (100%)") for line in lines) == 2

    code, err = _run(_args(out, tmp_path))  # once more: already trained
    assert code == 0, err
    assert (f"voc-fcn32s: {out} is already trained (snapshot iter_16.pt: iteration 16 of 16); nothing to train"
            in err.splitlines()), err
    assert not any(line.startswith("voc-fcn32s: iteration") for line in err.splitlines())


def test_eval_without_a_terminal_prints_progress_lines(tmp_path, reference):
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:
        proc = _start(["eval", "voc-fcn32s", "--weights", str(reference / "final.pt"), "--data-root", str(tmp_path),
                       "--out", str(tmp_path / "metrics.json"), "--workers", "0", "--device", "cpu"],
                      stderr=stderr, FCN_PROGRESS_SECONDS="0")
        proc.communicate(timeout=600)
    lines = log.read_text().splitlines()
    assert proc.returncode == 0, lines
    progress = [line for line in lines if line.startswith("eval voc-fcn32s")]
    assert progress[0] == "eval voc-fcn32s: image 0/4 (0%), starting"
    assert [int(_EVAL_LINE.fullmatch(line).group(1)) for line in progress[1:]] == [1, 2, 3, 4], progress
    assert all("ETA" in line for line in progress[1:-1]) and "done in" in progress[-1]
    assert (tmp_path / "metrics.json").is_file()


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
