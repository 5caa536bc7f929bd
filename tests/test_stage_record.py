"""reproduce.pipeline.stage_record: each pipeline stage records its wall time, peak RSS and disk."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from reproduce.pipeline.stage_record import disk_bytes, run_stage

ALLOCATE_200_MIB = "import sys; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); sys.exit(3)"


def test_records_exit_status_wall_time_peak_rss_and_disk(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "weights.bin").write_bytes(b"\0" * 12345)
    status = run_stage(out / "stage-x.json", "x", [sys.executable, "-c", ALLOCATE_200_MIB], [out])
    assert status == 3
    record = json.loads((out / "stage-x.json").read_text())
    [attempt] = record["attempts"]
    assert record["stage"] == "x" and attempt["status"] == "failed" and attempt["exit_status"] == 3
    assert attempt["peak_rss_mib"] >= 200  # the child touched 200 MiB
    assert attempt["wall_seconds"] > 0
    assert attempt["disk_bytes"][str(out)] >= 12345  # the record itself is written after measuring


def test_a_killed_attempt_stays_visible_and_the_next_one_is_appended(tmp_path: Path) -> None:
    record = tmp_path / "stage-t.json"
    record.write_text(json.dumps({"stage": "t", "attempts": [{"status": "running", "started": "x"}]}))
    assert run_stage(record, "t", [sys.executable, "-c", "pass"]) == 0
    attempts = json.loads(record.read_text())["attempts"]
    assert [a["status"] for a in attempts] == ["ended without a record (killed)", "finished"]


def test_no_record_and_no_folder_when_the_command_created_none(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "voc-fcn32s"
    status = run_stage(run_dir / "stage-train.json", "train", [sys.executable, "-c", "raise SystemExit(2)"], [run_dir])
    assert status == 2 and not run_dir.exists()


def test_disk_bytes_counts_files_under_a_folder_and_not_links(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f").write_bytes(b"12345")
    (tmp_path / "a" / "g").write_bytes(b"678")
    (tmp_path / "a" / "link").symlink_to(tmp_path / "a" / "f")
    assert disk_bytes(tmp_path / "a") == 8
    assert disk_bytes(tmp_path / "a" / "f") == 5
    assert disk_bytes(tmp_path / "missing") == 0


def test_command_line_passes_the_exit_status_through(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "reproduce.pipeline.stage_record", str(tmp_path / "stage-c.json"),
                             "--stage", "c", "--disk", str(tmp_path), "--", sys.executable, "-c", "raise SystemExit(5)"])
    assert result.returncode == 5
    assert json.loads((tmp_path / "stage-c.json").read_text())["attempts"][0]["exit_status"] == 5


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"ended early ({proc.returncode})"
        assert time.monotonic() < end, f"{path} did not appear"
        time.sleep(0.05)


def test_an_attempt_killed_after_its_command_made_the_folder_stays_visible(tmp_path: Path) -> None:
    # as fcn train does: the run directory (the record's folder) appears only once the command runs
    run_dir = tmp_path / "runs" / "voc-fcn32s"
    record = run_dir / "stage-train.json"
    make_and_wait = f"import os, time; os.makedirs({str(run_dir)!r}); time.sleep(60)"
    wrapper = subprocess.Popen([sys.executable, "-m", "reproduce.pipeline.stage_record", str(record), "--stage", "train",
                                "--disk", str(run_dir), "--", sys.executable, "-c", make_and_wait],
                               start_new_session=True)
    try:
        _wait_for(record, wrapper)
        assert [a["status"] for a in json.loads(record.read_text())["attempts"]] == ["running"]
    finally:
        os.killpg(wrapper.pid, signal.SIGKILL)  # the wrapper and the command, as a killed make chain
        wrapper.wait()
    assert run_stage(record, "train", [sys.executable, "-c", "pass"], [run_dir]) == 0
    attempts = json.loads(record.read_text())["attempts"]
    assert [a["status"] for a in attempts] == ["ended without a record (killed)", "finished"]


CHILD = """
import signal, sys, time
from pathlib import Path
out = Path(sys.argv[1])
def on_signal(signum, frame):
    out.with_name("got").write_text(signal.Signals(signum).name)
    sys.exit(128 + signum)
signal.signal(signal.SIGINT, on_signal)
signal.signal(signal.SIGTERM, on_signal)
out.write_text("ready")
time.sleep(60)
"""


def test_sigterm_is_passed_on_to_the_command_and_sigint_to_the_wrapper_alone_is_ignored(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    wrapper = subprocess.Popen([sys.executable, "-m", "reproduce.pipeline.stage_record", str(tmp_path / "stage-s.json"),
                                "--stage", "s", "--", sys.executable, "-c", CHILD, str(ready)])
    try:
        _wait_for(ready, wrapper)
        wrapper.send_signal(signal.SIGINT)  # Ctrl-C reaches the command directly; the wrapper must not kill it
        time.sleep(0.5)
        assert wrapper.poll() is None and not (tmp_path / "got").exists()
        wrapper.send_signal(signal.SIGTERM)  # a scheduler's SIGTERM to the wrapper reaches the command
        assert wrapper.wait(timeout=30) == 143
    finally:
        wrapper.kill()
        wrapper.wait()
    assert (tmp_path / "got").read_text() == "SIGTERM"
    assert json.loads((tmp_path / "stage-s.json").read_text())["attempts"][0]["exit_status"] == 143
    assert json.loads((tmp_path / "stage-s.json").read_text())["attempts"][0]["status"] == "stopped by SIGTERM"


def test_status_words_say_how_an_attempt_ended() -> None:
    from reproduce.pipeline.stage_record import _status_word
    assert [_status_word(s) for s in (0, 1, 130, 143, -9, -15)] == [
        "finished", "failed", "stopped by SIGINT", "stopped by SIGTERM", "killed by SIGKILL", "killed by SIGTERM"]
