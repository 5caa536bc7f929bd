"""reproduce.stage_record: each pipeline stage records its wall time, peak RSS and disk."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from reproduce.stage_record import disk_bytes, run_stage

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
    result = subprocess.run([sys.executable, "-m", "reproduce.stage_record", str(tmp_path / "stage-c.json"),
                             "--stage", "c", "--disk", str(tmp_path), "--", sys.executable, "-c", "raise SystemExit(5)"])
    assert result.returncode == 5
    assert json.loads((tmp_path / "stage-c.json").read_text())["attempts"][0]["exit_status"] == 5
