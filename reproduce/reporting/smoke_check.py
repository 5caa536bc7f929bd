"""Check what `make reproduce-smoke` produced and summarize it in `RESULTS_DIR/summary.md`
(`runs/smoke/tables/summary.md` under `make reproduce-smoke`).

Fails (exit 1) when a stage's files are missing, a metric is not finite, or the first stage's
training loss did not fall: the smoke run must show that the pipeline trains, not just that it runs.

    python -m reproduce.reporting.smoke_check RUNS_DIR RESULTS_DIR
"""
from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import torch

from reproduce.atomic import write_text_atomic

STAGES = ("voc-fcn32s", "voc-fcn16s", "voc-fcn8s")


class SmokeCheckFailed(RuntimeError):
    """The smoke run's output is missing a file or shows no training; the message names which."""


def training_losses(run: Path) -> list[float]:
    """The logged (smoothed) training losses of a run, in iteration order."""
    with open(run / "log.csv", newline="") as f:
        return [float(row["loss"]) for row in csv.DictReader(f) if row.get("loss")]


def check(runs: Path, results: Path) -> list[str]:
    """Return the summary lines; raise SmokeCheckFailed with a message naming the problem."""
    lines = ["# Smoke run (reduced width, shipped samples, CPU): a check of the pipeline, not the paper's numbers",
             "",
             f"Threads: {torch.get_num_threads()} (torch's default here). The scores change with the thread count and "
             "the CPU (a different summation order at 1/16 width and 4 training images), so they are not "
             "compared with any committed number: the check is that every stage ran, its scores are finite and "
             "the first stage's loss fell.", "",
             "| stage | first logged loss | last logged loss | pixel acc | mean acc | mean IU | fw IU |",
             "|---|---|---|---|---|---|---|"]
    for stage in STAGES:
        run, metrics_file = runs / stage, runs / "eval" / stage / "metrics.json"
        for needed in (run / "final.pt", run / "log.csv", run / "run.json", metrics_file):
            if not needed.is_file():
                raise SmokeCheckFailed(f"smoke check: {needed} is missing")
        losses = training_losses(run)
        if len(losses) < 2 or not all(map(math.isfinite, losses)):
            raise SmokeCheckFailed(f"smoke check: {run / 'log.csv'} has too few or non-finite losses: {losses}")
        scores = json.loads(metrics_file.read_text())["scores"]
        values = [scores[k] for k in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu")]
        if not all(v is not None and math.isfinite(v) for v in values):
            raise SmokeCheckFailed(f"smoke check: {metrics_file} has non-finite scores {scores}")
        if stage == STAGES[0] and not losses[-1] < losses[0]:
            raise SmokeCheckFailed(f"smoke check: {stage}'s training loss did not fall ({losses[0]} -> {losses[-1]})")
        lines.append(f"| {stage} | {losses[0]:.1f} | {losses[-1]:.1f} | "
                     + " | ".join(f"{v:.1f}" for v in values) + " |")
    if not (results / "index.md").is_file():
        raise SmokeCheckFailed(f"smoke check: {results / 'index.md'} (fcn tables) is missing")
    return lines


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit(__doc__)
    runs, results = map(Path, argv)
    try:
        lines = check(runs, results)
    except SmokeCheckFailed as e:
        raise SystemExit(str(e)) from None
    write_text_atomic(results / "summary.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
