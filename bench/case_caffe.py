"""Real Caffe's forward against ours on the same machine: voc-fcn8s, 1 x 3 x S x S (S = 500), fp32.

Run: `.venv/bin/python -m bench.case_caffe --out x.json [--md x.md]` as root, with the Caffe
oracle chroot built (tools/caffe_oracle/build_chroot.sh; ORACLE_CHROOT or .oracle/chroot). Without
it, exit 3 naming the way to build it; `make bench` then lists the case as not run.

The net is ours with random-ish weights (bench.common.random_net), exported by `fcn export caffe`'s
code (reproduce.reporting.export.export_caffe) with a 500 x 500 Input, so both frameworks run the
same layers on the same weights and input. Caffe 1.0 (Debian's CPU build, OpenBLAS with as many
threads as torch uses here) runs in the chroot (tools/caffe_oracle/time_forward.py: the load is
not timed, one warm-up forward, then the timed ones); ours runs in this process,
`net.eval()` under `torch.inference_mode()`: the default build (fast kernels and the region
forward) and the plain build, each round also one untimed forward first, as Caffe's. The three
alternate round by round (Caffe, default, plain, Caffe, ...) so that a change in the machine's
load hits all alike. (On the development VM, for some 10 s after a process that used a few GB
exits, as Caffe's does each round, forwards here run up to 15 % slower, about every other one;
the per-round warm-up absorbs only part of that: it counts against ours, never for.) Also the largest score difference
between Caffe and ours, relative to the largest score: the comparison is of the same function.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from bench.common import (ROOT, inputs_for, machine, peak_rss_mib, random_net, set_threads, write_json,
                          write_text)

NET = "voc-fcn8s"


def chroot_dir() -> Path:
    """The oracle chroot: $ORACLE_CHROOT, else <repo>/.oracle/chroot (tools/caffe_oracle/run.sh's default)."""
    return Path(os.environ.get("ORACLE_CHROOT") or ROOT / ".oracle" / "chroot")


def caffe_available() -> str | None:
    """None when Caffe can be run here, else why not (one line)."""
    if os.geteuid() != 0:
        return "the Caffe oracle needs root (mount and chroot)"
    if not (chroot_dir() / ".caffe-oracle-ready").is_file():
        return (f"no Caffe chroot at {chroot_dir()}: build it with tools/caffe_oracle/build_chroot.sh "
                "(Debian bullseye + Caffe 1.0, about a minute and 0.8 GB)")
    return None


def prepare(directory: Path, size: int) -> tuple[torch.nn.Module, torch.nn.Module, torch.Tensor]:
    """Our default and plain nets (same random weights), the input, and their Caffe export in `directory`."""
    from reproduce.reporting.export import export_caffe
    default = random_net(NET, fast=True).eval()
    plain = random_net(NET, fast=False).eval()
    plain.load_state_dict(default.state_dict())
    (x,) = inputs_for(default, size)
    torch.save(default.state_dict(), directory / "weights.pt")
    with warnings.catch_warnings():  # a plain torch.save has no content checksum: known, not news
        warnings.simplefilter("ignore", UserWarning)
        export_caffe(NET, directory / "weights.pt", directory, input_size=(1, size, size), force=True)
    (directory / "weights.pt").unlink()
    np.save(directory / "input.npy", x.numpy())
    return default, plain, x


def caffe_round(directory: Path, runs: int, threads: int) -> dict:
    """One Caffe process: load, a warm-up forward, `runs` timed forwards (tools/caffe_oracle/time_forward.py)."""
    # run.sh bind-mounts the repository at /repo: the exported files must live under it
    rel = directory.relative_to(ROOT)
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), ORACLE_CHROOT=str(chroot_dir()))
    proc = subprocess.run(["bash", str(ROOT / "tools" / "caffe_oracle" / "run.sh"),
                           "tools/caffe_oracle/time_forward.py", str(rel), NET, str(runs), "1"],
                          capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"Caffe forward failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ours_round(net: torch.nn.Module, x: torch.Tensor, runs: int) -> list[float]:
    """One untimed forward, then `runs` timed ones (s)."""
    out = []
    with torch.inference_mode():
        net(x)
        for _ in range(runs):
            start = time.perf_counter()
            net(x)
            out.append(time.perf_counter() - start)
    return out


def caffe_scores(directory: Path) -> np.ndarray:
    """Caffe's `score` blob on input.npy (tools/caffe_oracle/export_forward.py's files)."""
    from nets.prototxt import layers_of, parse_net
    layer = layers_of(parse_net((directory / "deploy.prototxt").read_text(), "deploy"))[0]
    np.savez(directory / "project.npz", **{f"input/{layer.tops[0]}": np.load(directory / "input.npy")},
             **{"score/score": np.zeros(1, np.float32)})
    env = dict(os.environ, ORACLE_CHROOT=str(chroot_dir()))
    parent = directory.parent.relative_to(ROOT)
    subprocess.run(["bash", str(ROOT / "tools" / "caffe_oracle" / "run.sh"), "tools/caffe_oracle/export_forward.py",
                    str(parent)], check=True, capture_output=True, env=env, timeout=900)
    return np.load(directory / "caffe.npz")["score/score"]


def measure(size: int, rounds: int, runs: int) -> dict:
    threads = set_threads()
    work = Path(tempfile.mkdtemp(prefix=".bench-caffe-", dir=ROOT))
    try:
        d = work / NET
        d.mkdir()
        default, plain, x = prepare(d, size)
        ours_round(default, x, 0)  # warm-ups: packing, the region's geometry and background
        ours_round(plain, x, 0)
        times: dict[str, list[float]] = {"caffe": [], "default": [], "plain": []}
        version = None
        for _ in range(rounds):
            record = caffe_round(d, runs, threads)
            version = record["caffe"]
            times["caffe"] += record["seconds"]
            times["default"] += ours_round(default, x, runs)
            times["plain"] += ours_round(plain, x, runs)
        with torch.inference_mode():
            out = default(x)
        ours = (out[0] if isinstance(out, (tuple, list)) else out).numpy()
        theirs = caffe_scores(d)
        rel = float(np.abs(ours - theirs).max() / np.abs(ours).max()) if ours.shape == theirs.shape else float("inf")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"net": NET, "input": f"1x3x{size}x{size}", "dtype": "float32", "threads": threads,
            "caffe_version": version, "rounds": rounds, "runs_per_round": runs, "seconds": times,
            "median_s": med, "default_over_caffe": med["default"] / med["caffe"],
            "plain_over_caffe": med["plain"] / med["caffe"], "default_over_plain": med["default"] / med["plain"],
            "max_rel_score_diff": rel}


def markdown_lines(record: dict | None) -> list[str]:
    """The summary's section: medians and ratios, or why the case did not run."""
    if not record:
        return ["Not run (no record)."]
    if record.get("skipped"):
        return [f"Not run: {record['skipped']}."]
    m = record["median_s"]
    lb, la = record["machine_before"]["load_average"], record["machine_after"]["load_average"]
    return [f"{record['net']}, {record['input']}, {record['dtype']}, {record['threads']} threads (Caffe: OpenBLAS "
            f"with as many); {record['rounds']} rounds of {record['runs_per_round']} forwards each, Caffe "
            f"{record['caffe_version']} in the oracle chroot and ours alternating round by round; medians; load "
            f"average {lb[0]:.2f} before, {la[0]:.2f} after (`python -m bench.case_caffe`).", "",
            "| forward | median s | vs Caffe |", "|---|---:|---:|",
            f"| Caffe 1.0 | {m['caffe']:.2f} | 1.00x |",
            f"| plain build | {m['plain']:.2f} | {record['plain_over_caffe']:.2f}x |",
            f"| default (fast kernels + region forward) | {m['default']:.2f} | {record['default_over_caffe']:.2f}x |",
            "", f"Same function: max |Caffe - ours| / max |ours| of the scores = {record['max_rel_score_diff']:.1e}."]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=2, help="timed forwards per round and framework")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--md", type=Path, default=None)
    args = ap.parse_args(argv)
    why = caffe_available()
    if why is not None:
        print(f"bench.case_caffe: {why}", file=sys.stderr)
        return 3
    before = machine()
    record = {"what": "caffe", "machine_before": before, **measure(args.size, args.rounds, args.runs),
              "machine_after": machine(), "peak_rss_mib": peak_rss_mib()}
    write_json(args.out, record)
    if args.md is not None:
        write_text(args.md, "\n".join(["# Caffe against ours (`python -m bench.case_caffe`)", "", *markdown_lines(record), ""]))
    print("\n".join(markdown_lines(record)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
