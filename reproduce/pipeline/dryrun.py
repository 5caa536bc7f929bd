"""`make reproduce-voc-dryrun`: the real VOC chain, end to end, at full size, on the CPU, in minutes.

`make reproduce-smoke` shows that the pipeline trains, at 1/16 width. This shows that the chain a
user runs (`make reproduce-voc`) works at the real nets' size: the same Makefile targets, the same
`fcn data fetch` (through a loopback mirror), a caffemodel as large as VGG16's, full-width
FCN-32s -> 16s -> 8s and FCN-8s at-once, evaluation and tables. Only three things differ, and they
are named here: the data are the VOC/SBD samples shipped in `reproduce/samples` (packed in the
official archives' layouts), the VGG16 weights are random (written by the project's own caffemodel
writer, V1 format, every blob of the real file's shape), and each stage trains 2 iterations.

Steps, in DIR (default runs/dryrun):
  1. serve/: benchmark.tgz, VOCtrainval_25-May-2011.tar and VGG_ILSVRC_16_layers.caffemodel, and
     sources.json: the registry override (`FCN_SOURCES`) giving their sha256 and size and the
     samples' split sizes, since the official checksums are of the real files;
  2. an HTTP server on 127.0.0.1 serves serve/ (the `--mirror` of every fetch);
  3. `make reproduce-voc` with DATA, RUNS and RESULTS under DIR and DEVICE=cpu is started, killed
     (SIGKILL to its whole process group) once the stage named by --kill-during has written its
     first snapshot, and run again: the rerun must finish the chain without redoing the stages
     that had finished. With --kill-signal TERM (a cluster preempting the job) or INT (Ctrl-C) the
     signal goes to the group as soon as that stage has written its run.json, and the trainer must
     stop by itself (exit 143 / 130) with a snapshot the rerun resumes from;
  4. summary.md / summary.json: per stage wall time, peak RSS and disk (each stage's own record,
     `reproduce.pipeline.stage_record`), the kill and what the rerun did.
Exit status 1, naming the problem, when any of it fails.
"""
from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

from reproduce.atomic import atomic_file
from reproduce.datasets.sources import get_source
from reproduce.pipeline.stage_record import disk_bytes

DEFAULT_DIR = Path("runs/dryrun")
STAGES = ("voc-fcn32s", "voc-fcn16s", "voc-fcn8s", "voc-fcn8s-atonce")
TRAIN_FLAGS = "--max-iter 2 --test-interval 2 --snapshot 1 --keep-snapshots 1"
SOURCES = ("sbd", "voc2011", "vgg16")
KILL_SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM, "INT": signal.SIGINT}


class DryRunError(RuntimeError):
    """A step of the dry run failed; the message says which and why."""


# ---------------------------------------------------------------------------------------------
# 1. what the mirror serves
# ---------------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(functools.partial(f.read, 1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _tar(folder: Path, arcname: str, archive: Path, mode: str) -> None:
    with atomic_file(archive) as f, tarfile.open(fileobj=f, mode=mode) as tar:
        tar.add(folder, arcname=arcname)


def prepare(directory: Path, width: float = 1.0) -> Path:
    """Write serve/ (archives in the official layouts, a VGG16-shaped caffemodel at `width`: 1.0 is
    the real file's size) and sources.json under `directory`; returns the registry override's path.
    Reuses files already written."""
    from reproduce.pipeline.smoke import prepare_data, vgg16_layers
    from weight_convert.caffe_writer import write_caffemodel

    serve = directory / "serve"
    serve.mkdir(parents=True, exist_ok=True)
    samples = directory / "samples"
    if not samples.is_dir():
        prepare_data(samples)  # the smoke run's layout: samples/sbd/dataset, samples/voc2011
    files = {name: serve / get_source(name).filename for name in SOURCES}
    if not files["sbd"].is_file():  # SBD's benchmark.tgz unpacks to benchmark_RELEASE/dataset
        _tar(samples / "sbd" / "dataset", "benchmark_RELEASE/dataset", files["sbd"], "w:gz")
    if not files["voc2011"].is_file():  # VOC2011's trainval tar unpacks to TrainVal/VOCdevkit/VOC2011
        _tar(samples / "voc2011", "TrainVal/VOCdevkit/VOC2011", files["voc2011"], "w")
    if not files["vgg16"].is_file():
        print(f"dry run: writing a full-width VGG16-shaped V1 caffemodel to {files['vgg16']}", file=sys.stderr)
        write_caffemodel(files["vgg16"], "VGG_ILSVRC_16_layers", vgg16_layers(width), version=1)

    entries = []
    for name, path in files.items():
        entry = _source_entry(name)
        entry.update(md5=None, sha1=None, sha256=_sha256(path), size=path.stat().st_size,
                     checksum_origin="fcn-repro dry run: a generated stand-in for the real file")
        entries.append(entry)
    train_ids = (samples / "sbd" / "dataset" / "train.txt").read_text().split()
    val_ids = (samples / "voc2011" / "ImageSets" / "Segmentation" / "seg11valid.txt").read_text().split()
    override = {"format": "fcn-repro data sources v1 (dry-run override)", "sources": entries,
                "expected_counts": {"seg11valid": len(val_ids), "sbd/train": len(train_ids)}}
    path = directory / "sources.json"
    with atomic_file(path, "w") as f:
        json.dump(override, f, indent=2)
    return path


def _source_entry(name: str) -> dict[str, Any]:
    from dataclasses import asdict
    return asdict(get_source(name))


# ---------------------------------------------------------------------------------------------
# 2. the loopback mirror
# ---------------------------------------------------------------------------------------------
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # the fetches print their own progress
        pass


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve `folder` on 127.0.0.1 (a free port) from a daemon thread; returns (server, base URL)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


# ---------------------------------------------------------------------------------------------
# 3. the chain, killed once and run again
# ---------------------------------------------------------------------------------------------
def make_command(directory: Path, mirror: str) -> list[str]:
    """The `make reproduce-voc` command line of the dry run."""
    return [os.environ.get("MAKE", "make"), "--no-print-directory", "reproduce-voc",
            f"DATA={directory / 'data'}", f"RUNS={directory / 'runs'}", f"RESULTS={directory / 'results'}",
            f"TABLES={directory / 'results' / 'tables'}", "DEVICE=cpu",
            f"FETCH_FLAGS=--mirror {mirror}", f"TRAIN_FLAGS={TRAIN_FLAGS}"]


def _run(command: list[str], env: dict[str, str], log: Path, kill_when: Path | None,
         signum: int = signal.SIGKILL) -> tuple[int, bool]:
    """Run `command` in its own process group, output appended to `log` (and echoed); send `signum`
    to the group as soon as `kill_when` exists, then wait for it to end. Returns (exit status,
    whether the signal was sent)."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        pump = threading.Thread(target=_tee, args=(proc.stdout, out), daemon=True)
        pump.start()
        killed = False
        while proc.poll() is None:
            if kill_when is not None and kill_when.exists():
                os.killpg(proc.pid, signum)
                killed = True
                proc.wait()
                break
            time.sleep(0.2)
        _wait_for_group(proc.pid)  # a trainer still writing its stop snapshot is part of the attempt
        pump.join()
    return proc.returncode, killed


def _wait_for_group(pgid: int, timeout: float = 900.0) -> None:
    """Wait until no process of group `pgid` is left (DryRunError after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:
            raise DryRunError(f"processes of group {pgid} still running {timeout:.0f} s after the command ended")
        time.sleep(0.2)


def _tee(stream, out) -> None:
    for line in iter(stream.readline, b""):
        out.write(line)
        out.flush()
        sys.stderr.buffer.write(line)
        sys.stderr.flush()


def _mtime(path: Path) -> float | None:
    return path.stat().st_mtime if path.exists() else None


def run(directory: Path = DEFAULT_DIR, kill_during: str | None = "voc-fcn16s",
        kill_signal: str = "KILL") -> dict[str, Any]:
    """The whole dry run (see the module docstring); returns the summary it writes. kill_signal:
    KILL, TERM or INT."""
    signum = KILL_SIGNALS[kill_signal]
    directory = Path(directory)
    started = time.monotonic()
    override = prepare(directory)
    server, url = serve(directory / "serve")
    env = dict(os.environ, FCN_SOURCES=str(override.resolve()), PYTHONUNBUFFERED="1")
    runs = directory / "runs"
    log = directory / "make.log"
    command = make_command(directory, url)
    summary: dict[str, Any] = {"command": command, "mirror": url, "registry_override": str(override)}
    try:
        stage_dir = None if kill_during is None else runs / kill_during
        kill_when = None if stage_dir is None else (
            stage_dir / "snapshot" / "iter_1.pt" if signum == signal.SIGKILL else stage_dir / "run.json")
        status, killed = _run(command, env, log, kill_when, signum)
        finished_before = {s: _mtime(runs / s / "final.pt") for s in STAGES}
        summary["first_attempt"] = {"exit_status": status, "killed_during": kill_during if killed else None,
                                    "signal": f"SIG{kill_signal}",
                                    "snapshots_after": sorted(p.name for p in (stage_dir / "snapshot").glob("*.pt"))
                                    if killed and (stage_dir / "snapshot").is_dir() else [],
                                    "stages_finished": [s for s, t in finished_before.items() if t is not None]}
        if kill_during is not None and not killed:
            raise DryRunError(f"the chain ended (exit {status}) before {kill_when} appeared; see {log}")
        if killed:
            status, _ = _run(command, env, log, None)
            summary["rerun"] = {"exit_status": status}
        if status != 0:
            raise DryRunError(f"`{' '.join(command)}` failed with exit status {status}; see {log}")
    finally:
        server.shutdown()
    redone = [s for s, t in finished_before.items() if t is not None and _mtime(runs / s / "final.pt") != t]
    if redone:
        raise DryRunError(f"the rerun redid finished stages {redone}")
    summary["stages"] = _stage_records(directory)
    if kill_during is not None:
        sessions = json.loads((runs / kill_during / "run.json").read_text())["sessions"]
        summary["rerun"]["killed_stage_sessions"] = len(sessions)
        summary["rerun"]["killed_stage_resumed"] = any(s.get("resumed") for s in sessions)
    table = directory / "results" / "voc.md"
    if not table.is_file():
        raise DryRunError(f"{table} was not written")
    summary["tables"] = str(table)
    summary["wall_seconds"] = round(time.monotonic() - started, 1)
    summary["disk_bytes"] = {"total": disk_bytes(directory), "data": disk_bytes(directory / "data"),
                             "runs": disk_bytes(runs), "serve": disk_bytes(directory / "serve")}
    _write_summary(directory, summary)
    return summary


def _stage_records(directory: Path) -> list[dict[str, Any]]:
    """Every stage record (`stage-*.json`) under DATA and RUNS, in the order the stages started."""
    rows = []
    for record in sorted((directory / "data").rglob("stage-*.json")) + sorted((directory / "runs").rglob("stage-*.json")):
        data = json.loads(record.read_text())
        for attempt in data["attempts"]:
            rows.append({"stage": data["stage"], "record": str(record), **attempt})
    return sorted(rows, key=lambda r: r.get("started", ""))


def _write_summary(directory: Path, summary: dict[str, Any]) -> None:
    with atomic_file(directory / "summary.json", "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    mib = 2 ** 20
    lines = ["# Dry run of `make reproduce-voc` (full-width nets, CPU, 2 iterations per stage)", "",
             "Shipped VOC/SBD samples through a loopback mirror, random VGG16-shaped weights: this checks",
             "the chain at full size, not the paper's numbers.", "",
             "| stage | attempt status | wall s | peak RSS MiB | disk after (MiB) |", "|---|---|---:|---:|---:|"]
    for row in summary["stages"]:
        disk = sum((row.get("disk_bytes") or {}).values()) / mib
        wall = row.get("wall_seconds")
        lines.append(f"| {row['stage']} | {row['status']} | {'' if wall is None else f'{wall:.1f}'} | "
                     f"{row.get('peak_rss_mib', '')} | {disk:.0f} |")
    first = summary["first_attempt"]
    when = "after its first snapshot" if first["signal"] == "SIGKILL" else "once it had written its run.json"
    lines += ["", f"Killed ({first['signal']} to make's process group) during {first['killed_during']}, {when} "
              f"(make's exit status {first['exit_status']}; the stage's snapshots then: "
              f"{', '.join(first['snapshots_after']) or 'none'}); stages finished before the kill: "
              f"{', '.join(first['stages_finished']) or 'none'}.",
              f"The rerun finished the chain (exit {summary['rerun']['exit_status']}); the killed stage has "
              f"{summary['rerun']['killed_stage_sessions']} sessions in its run.json (resumed: "
              f"{summary['rerun']['killed_stage_resumed']})." if "rerun" in summary else "",
              f"Total wall time {summary['wall_seconds']:.0f} s; disk {summary['disk_bytes']['total'] / mib:.0f} MiB "
              f"(data {summary['disk_bytes']['data'] / mib:.0f}, runs {summary['disk_bytes']['runs'] / mib:.0f}, "
              f"served files {summary['disk_bytes']['serve'] / mib:.0f}).", ""]
    with atomic_file(directory / "summary.md", "w") as f:
        f.write("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python -m reproduce.pipeline.dryrun", description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--kill-during", default="voc-fcn16s", choices=[*STAGES, "none"],
                        help="the stage to kill after its first snapshot (none: no kill)")
    parser.add_argument("--kill-signal", default="KILL", choices=sorted(KILL_SIGNALS),
                        help="KILL: after the stage's first snapshot; TERM / INT: once it has started, "
                             "and the trainer must stop by itself with a snapshot")
    parser.add_argument("--fresh", action="store_true", help="delete DIRECTORY's runs and data first")
    args = parser.parse_args(argv)
    if args.fresh:
        for sub in ("data", "runs", "results", "make.log", "summary.md", "summary.json"):
            target = args.directory / sub
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    try:
        summary = run(args.directory, None if args.kill_during == "none" else args.kill_during, args.kill_signal)
    except DryRunError as exc:
        print(f"dry run: {exc}", file=sys.stderr)
        return 1
    print((args.directory / "summary.md").read_text())
    print(f"dry run: finished in {summary['wall_seconds']:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
