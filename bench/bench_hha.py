"""HHA speed and exactness: one 640x480 frame single-process, and NYUDv2's 1,449 frames with 2 processes.

Run: `.venv/bin/python -m bench.bench_hha [--frames 32] [--runs 7]`. Writes results/bench/hha.json
and results/bench/hha.md.

- Single frame: median wall time of `hha()` on the Depth2HHA-python demo frame (tests/fixtures/hha)
  over several runs after warm-up, without and with the raw-depth missing mask.
- Whole NYUDv2: a real `fcn data hha`-style batch run (`convert_all`, 2 processes, spawn, PNG
  writes, progress off) over N full-size frames of a generated .mat in the official layout, timed
  end to end (pool start-up included), then extrapolated linearly to 1,449 frames. That projection
  is an extrapolation, not a measured full run; it counts the pool start-up once per N frames, so
  it overestimates.
- Exactness: mismatching pixels per channel against Gupta et al.'s MATLAB output.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from reproduce.datasets.hha import NYUD_COLOR_CAMERA, hha
from reproduce.datasets.hha_batch import convert_all, mat_frames

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "hha"
OUT = ROOT / "results" / "bench"
NYUD_FRAMES = 1449
GOAL_FRAME_S = 0.5
GOAL_NYUD_S = 360.0


def _png(name: str) -> np.ndarray:
    with Image.open(FIXTURES / name) as im:
        return np.asarray(im)


def time_frame(depth: np.ndarray, missing: np.ndarray | None, runs: int,
               warmup: int = 2) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds of this process) of `runs` calls of hha() after `warmup` calls.

    The CPU time is what the frame costs on an otherwise idle core; the wall time also counts
    waiting for a core when other work shares the machine.
    """
    for _ in range(warmup):
        hha(depth, NYUD_COLOR_CAMERA, missing)
    wall, cpu = [], []
    for _ in range(runs):
        c0, t0 = time.process_time(), time.perf_counter()
        hha(depth, NYUD_COLOR_CAMERA, missing)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def write_bench_mat(path: Path, depth: np.ndarray, raw: np.ndarray, n: int) -> None:
    """n full-size frames in the official nyu_depth_v2_labeled.mat layout (N x W x H, single metres).

    Frames are the demo frame, mirrored and shifted so that no two are identical (the work per
    frame does not depend on the content).
    """
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        d = f.create_dataset("depths", (n,) + depth.T.shape, dtype=np.float32)
        r = f.create_dataset("rawDepths", (n,) + raw.T.shape, dtype=np.float32)
        for i in range(n):
            shift = int(rng.integers(0, depth.shape[1]))
            di, ri = np.roll(depth, shift, axis=1), np.roll(raw, shift, axis=1)
            if i % 2:
                di, ri = di[:, ::-1], ri[:, ::-1]
            d[i] = di.T.astype(np.float32)
            r[i] = ri.T.astype(np.float32)


def time_batch(depth: np.ndarray, raw: np.ndarray, n: int, jobs: int) -> tuple[float, float]:
    """(end-to-end wall seconds, CPU seconds of parent + worker processes) of a batch run of n frames."""
    with tempfile.TemporaryDirectory(prefix="bench_hha_") as tmp:
        mat = Path(tmp) / "nyu_depth_v2_labeled.mat"
        write_bench_mat(mat, depth, raw, n)
        frames = mat_frames(mat)
        before = _cpu_self_and_children()
        t0 = time.perf_counter()
        result = convert_all(frames, Path(tmp) / "hha", jobs=jobs, progress=False)
        elapsed = time.perf_counter() - t0
        cpu = _cpu_self_and_children() - before      # the pool's workers are reaped by now
        if result.failed or len(result.written) != n:
            raise RuntimeError(f"bench batch run failed: {result.failed}")
    return elapsed, cpu


def _cpu_self_and_children() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def render_markdown(report: dict) -> str:
    """results/bench/hha.md from the JSON report."""
    m, one, nyud = report["machine"], report["single_frame_s"], report["nyud_1449"]
    mismatch = report["exact_match_matlab"]["mismatching_pixels_per_channel"]
    filled, masked = one["no_missing_mask"], one["raw_missing_mask"]
    n, jobs = nyud["measured_frames"], nyud["processes"]
    goal_min = f"<= {nyud['goal_s'] / 60:.0f} min"
    rows = [
        ("Equal to Gupta et al.'s MATLAB output (demo frame, no missing pixels)",
         f"mismatching pixels per channel {mismatch}: "
         + ("**equal**" if report["exact_match_matlab"]["equal"] else "**NOT equal**"), "equal"),
        (f"One 640x480 frame, 1 process, median of {len(filled['runs'])} runs after 2 warm-up runs",
         f"{filled['median']:.3f} s wall, {filled['cpu_median']:.3f} s CPU (raw missing mask: "
         f"{masked['median']:.3f} s wall, {masked['cpu_median']:.3f} s CPU)", f"<= {one['goal']} s"),
        (f"Measured: {n} frames, {jobs} processes, end to end (.mat read, PNG write, pool start-up)",
         f"{nyud['measured_wall_s']:.1f} s wall ({nyud['wall_s_per_frame']:.3f} s per frame), "
         f"{nyud['measured_cpu_s_all_processes']:.1f} s CPU over all processes", ""),
        (f"NYUDv2, 1,449 frames, {jobs} processes, **projected** from that run's wall time",
         f"{nyud['projected_wall_s']:.0f} s = {nyud['projected_wall_s'] / 60:.1f} min", goal_min),
        (f"same, **projected** from that run's CPU time / {jobs} (cores not shared with other work)",
         f"{nyud['projected_wall_s_idle_cores']:.0f} s = {nyud['projected_wall_s_idle_cores'] / 60:.1f} min",
         goal_min),
    ]
    lines = [
        "# HHA benchmark", "",
        f"`.venv/bin/python -m bench.bench_hha` on {m['cpus']} CPU(s), {m['platform']}, "
        f"numpy {m['numpy']}; 1-minute load average {m['load_average_1min_before_after'][0]:.2f} "
        f"before, {m['load_average_1min_before_after'][1]:.2f} after (other work on the machine "
        "inflates the wall times).", "",
        "Projections are linear extrapolations of the measured run, not measured full runs.", "",
        "| What | Figure | Goal |", "|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=32, help="frames of the measured 2-process run")
    ap.add_argument("--runs", type=int, default=7, help="timed single-frame runs (after 2 warm-up runs)")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)

    depth = _png("0.png") / 10000.0
    raw = _png("0_raw.png") / 10000.0
    missing = raw == 0
    matlab = _png("matlab_hha.png")

    mismatch = (hha(depth, NYUD_COLOR_CAMERA) != matlab).sum(axis=(0, 1)).tolist()
    load_before = os.getloadavg()[0]
    t_filled, c_filled = time_frame(depth, None, args.runs)
    t_raw, c_raw = time_frame(depth, missing, args.runs)
    t_batch, cpu_batch = time_batch(depth, raw, args.frames, args.jobs)
    load_after = os.getloadavg()[0]
    per_frame_batch = t_batch / args.frames
    projected = per_frame_batch * NYUD_FRAMES
    # What the same run needs on otherwise idle cores: its CPU seconds shared by the processes.
    projected_idle = cpu_batch / args.jobs / args.frames * NYUD_FRAMES

    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "numpy": np.__version__,
                    "load_average_1min_before_after": [load_before, load_after]},
        "frame_shape": list(depth.shape),
        "exact_match_matlab": {"mismatching_pixels_per_channel": mismatch, "equal": mismatch == [0, 0, 0]},
        "single_frame_s": {
            "no_missing_mask": {"median": statistics.median(t_filled), "runs": t_filled,
                                "cpu_median": statistics.median(c_filled)},
            "raw_missing_mask": {"median": statistics.median(t_raw), "runs": t_raw,
                                 "cpu_median": statistics.median(c_raw)},
            "goal": GOAL_FRAME_S,
        },
        "nyud_1449": {
            "measured_frames": args.frames,
            "processes": args.jobs,
            "measured_wall_s": t_batch,
            "wall_s_per_frame": per_frame_batch,
            "measured_cpu_s_all_processes": cpu_batch,
            "projected_wall_s": projected,
            "projected_wall_s_idle_cores": projected_idle,
            "projection": (f"linear extrapolation of a real {args.frames}-frame run "
                           f"(pool start-up, HDF5 reads, PNG writes included) to {NYUD_FRAMES} frames; "
                           "not a measured full run; projected_wall_s_idle_cores = CPU seconds of "
                           "the run (parent + workers) / processes, extrapolated the same way: "
                           "the wall time when the machine's cores are not shared with other work"),
            "goal_s": GOAL_NYUD_S,
        },
    }
    _write_atomic(OUT / "hha.json", json.dumps(report, indent=2) + "\n")
    md = render_markdown(report)
    _write_atomic(OUT / "hha.md", md)
    print(md)
    return report


if __name__ == "__main__":
    main()
