"""Run one pipeline stage as a child process and record what it cost: wall time, peak RSS, disk.

    python -m reproduce.pipeline.stage_record RECORD.json --stage NAME --disk PATH [--disk PATH ...] -- CMD ...

Every `make reproduce-*` recipe (fetch, convert, train, evaluate) runs through this, so each run
directory says what its stage took. RECORD.json holds one entry per attempt (a stage killed and
rerun has two): a "running" entry is written before the command starts (or, when the record's
folder does not exist yet, as soon as the command has created it) and completed when it ends, so
an attempt that was killed stays visible as "running" and is marked "ended without a record" by
the next attempt. The exit status of CMD is this command's exit status.

Signals: SIGINT (Ctrl-C reaches the command itself, which is in the same process group) is
ignored while the command runs, and SIGTERM is passed on to it, so that `fcn train` can finish
its iteration and write a snapshot (reproduce.training.stop_signals) instead of being killed with this
wrapper; the command's exit status (130, 143) is returned as usual.

Fields of an attempt: started (UTC), wall_seconds, peak_rss_mib (the largest resident set of the
command and its descendants, from getrusage(RUSAGE_CHILDREN); MiB = 2**20 bytes), exit_status,
disk_bytes (bytes under each --disk path after the stage), free_disk_bytes (on the first --disk
path's file system, before and after).
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import threading
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from reproduce.atomic import atomic_file

__all__ = ["disk_bytes", "run_stage"]


def disk_bytes(path: str | os.PathLike) -> int:
    """Apparent size in bytes of a file, or of every file under a folder (symbolic links not
    followed); 0 when `path` does not exist."""
    path = Path(path)
    if path.is_symlink() or not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            p = Path(root, name)
            if not p.is_symlink():
                try:
                    total += p.stat().st_size
                except OSError:  # removed while walking (a temporary file)
                    pass
    return total


def _free(path: Path) -> int | None:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def _read(record: Path) -> list[dict]:
    try:
        attempts = json.loads(record.read_text(encoding="utf-8"))["attempts"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return attempts if isinstance(attempts, list) else []


def _write(record: Path, stage: str, attempts: list[dict]) -> None:
    with atomic_file(record, "w") as f:
        json.dump({"stage": stage, "attempts": attempts}, f, indent=2)
        f.write("\n")


def run_stage(record: str | os.PathLike, stage: str, command: Sequence[str],
              disks: Sequence[str | os.PathLike] = ()) -> int:
    """Run `command`, append its attempt to `record` (see the module docstring); return its exit status."""
    record = Path(record)
    disks = [Path(d) for d in disks]
    attempts = _read(record)
    for a in attempts:
        if a.get("status") == "running":
            a["status"] = "ended without a record (killed)"
    attempt = {"status": "running", "command": list(command),
               "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "free_disk_bytes_before": _free(disks[0]) if disks else None}
    attempts.append(attempt)
    # A stage whose command fails before creating its folder (a run directory) leaves no folder behind.
    written = record.parent.is_dir()
    if written:
        _write(record, stage, attempts)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(list(command))
    except OSError as exc:
        print(f"stage {stage}: cannot run {command[0]!r}: {exc}", file=sys.stderr)
        status = 127
    else:
        with _passing_signals_to(proc):
            while True:
                try:
                    status = proc.wait(timeout=1.0)
                    break
                except subprocess.TimeoutExpired:
                    if not written and record.parent.is_dir():  # the command made its folder
                        _write(record, stage, attempts)
                        written = True
    attempt.update({
        "status": _status_word(status),
        "exit_status": status,
        "wall_seconds": round(time.monotonic() - start, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "disk_bytes": {str(d): disk_bytes(d) for d in disks},
        "free_disk_bytes_after": _free(disks[0]) if disks else None,
    })
    if record.parent.is_dir():
        _write(record, stage, attempts)
    return status


def _status_word(status: int) -> str:
    """'finished' (0), 'stopped by SIGINT' / 'stopped by SIGTERM' (130 / 143: the command stopped
    itself on the signal, its state saved, as fcn train does), 'killed by SIGKILL' (a negative
    status: the signal ended it) or 'failed'."""
    if status == 0:
        return "finished"
    if status in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        return f"stopped by {signal.Signals(status - 128).name}"
    if status < 0:
        try:
            return f"killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"killed by signal {-status}"
    return "failed"


class _passing_signals_to:
    """While active (main thread only): SIGINT ignored (the terminal sends it to the child too),
    SIGTERM sent on to `proc`; the previous handlers restored on exit."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.previous = proc, {}

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
            self.previous[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._forward)

    def _forward(self, signum, frame) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        print("usage: python -m reproduce.pipeline.stage_record RECORD --stage NAME [--disk PATH ...] -- CMD ...",
              file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="python -m reproduce.pipeline.stage_record", description=__doc__.splitlines()[0])
    parser.add_argument("record", help="the JSON file the attempts are recorded in")
    parser.add_argument("--stage", required=True, help="the stage's name (recorded)")
    parser.add_argument("--disk", action="append", default=[], help="a path whose size is recorded after the stage")
    args = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    if not command:
        parser.error("no command given after --")
    return run_stage(args.record, args.stage, command, args.disk)


if __name__ == "__main__":
    raise SystemExit(main())
