"""`fcn train EXPERIMENT`: train one reference experiment (reproduce.training.train) from the command line.

More than one GPU: `torchrun --nproc_per_node=N --no-python fcn train EXPERIMENT ...` (see
reproduce.training.distributed for how the images are shared out and what that does to iter_size).
"""
from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import click
import torch

from reproduce import experiments
from reproduce.commands.cli_options import DATA_ROOT, DEVICE, WIDTH
from reproduce.training.init_files import MissingInitError, default_init

@click.command("train")
@click.argument("experiment", type=click.Choice(experiments.names()), metavar="EXPERIMENT")
@DATA_ROOT
@click.option("--init", "init", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Weights to start from (.caffemodel or .pt); twice for late fusion (color, then hha). "
                   "Default: the converted ILSVRC net under data/weights, or the coarser stage's "
                   "runs/<name>/final.pt.")
@DEVICE
@click.option("--max-iter", type=click.IntRange(min=1), default=None, help="Stop here (default: the experiment's).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run directory  [default: runs/EXPERIMENT]")
@WIDTH
@click.option("--test-interval", type=click.IntRange(min=1), default=None,
              help="Iterations between test passes (default: the experiment's).")
@click.option("--snapshot", type=click.IntRange(min=1), default=None,
              help="Write a checkpoint every N iterations (and at --max-iter).  [default: the experiment's "
                   "solver snapshot interval, else its test interval]")
@click.option("--base-lr", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Override the solver's base_lr. Smoke runs and tests only: not the reference's solver "
                   "(recorded in run.json).")
@click.option("--momentum", type=click.FloatRange(min=0, max=1), default=None,
              help="Override the solver's momentum. Smoke runs and tests only (recorded in run.json).")
@click.option("--display", type=click.IntRange(min=1), default=20, show_default=True,
              help="Log the smoothed loss every N iterations (Caffe's display).")
@click.option("--keep-snapshots", type=click.IntRange(min=0), default=2, show_default=True,
              help="Newest checkpoints kept (0: all).")
@click.option("--resume/--no-resume", default=True, show_default=True,
              help="Continue from the newest checkpoint in --out.")
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show progress on stderr: a bar on a terminal, else a line every $FCN_PROGRESS_SECONDS "
                   "(default 30) seconds with iteration, smoothed loss, lr, iterations/s and ETA, for "
                   "training and its test passes. --no-progress: neither (the resume line stays).")
def train_command(experiment: str, data_root: Path, init: tuple[Path, ...], device: torch.device,
                  max_iter: int | None, out: Path | None, width: float | None, test_interval: int | None,
                  snapshot: int | None, base_lr: float | None, momentum: float | None, display: int, keep_snapshots: int, resume: bool, progress: bool) -> None:
    """Train EXPERIMENT as the reference's solve.py does (Caffe SGD, batch 1, seeded order).

    Writes run.json, log.csv, log.jsonl, test_log.csv, snapshot/iter_N.pt, final.pt and
    metrics.json to the run directory. An interrupted run resumes from its newest checkpoint.
    --width defaults to what the --init file (or the snapshot resumed) records; a reduced-width
    net without --init starts from random trunk weights.

    SIGINT (Ctrl-C) or SIGTERM: the iteration in progress is finished, a snapshot written and the
    command exits with status 130 (SIGINT) or 143 (SIGTERM), saying how to resume: run the same
    command again.

    Several GPUs: torchrun --nproc_per_node=N --no-python fcn train EXPERIMENT ... sums the
    gradients of N processes (batch 1 each) as Caffe's iter_size does; an experiment iter_size
    not divisible by N becomes iter_size x N (recorded in run.json).
    """
    from reproduce.training.run_lock import RunLockedError
    from reproduce.training.stop_signals import TrainingInterrupted, exit_status, resume_hint, signal_name
    from reproduce.training.train import NonFiniteLossError, train

    exp = experiments.get(experiment)
    overrides = {k: v for k, v in (("base_lr", base_lr), ("momentum", momentum)) if v is not None}
    if overrides:
        exp = dataclasses.replace(exp, **overrides)
        click.echo(f"{experiment}: solver overridden ({overrides}): not the reference's solver", err=True)
    out = out or Path("runs") / experiment
    resuming = resume and any((out / "snapshot").glob("iter_*.pt"))
    if init:
        paths = list(init)
    elif resuming or (width or 1.0) != 1.0:
        paths = []  # resuming ignores init; a reduced-width net cannot load full-width weights
    else:
        try:
            paths = default_init(exp, out, data_root)
        except MissingInitError as e:
            raise click.UsageError(str(e)) from None
    try:  # the width the weights started from or resumed were written at, unless --width says
        from reproduce.training.checkpoint import latest_snapshot, width_from_records
        width = width_from_records(paths or ([latest_snapshot(out / "snapshot")] if resuming else []), width)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--width") from None
    command = [os.path.basename(sys.argv[0]), *sys.argv[1:]]
    try:
        train(exp, data_root=data_root, init=paths or None, device=device, max_iter=max_iter, out_dir=out,
              resume=resume, width=width, test_interval=test_interval, snapshot=snapshot, display=display,
              keep_snapshots=keep_snapshots, progress=progress, command=command)
    except TrainingInterrupted as e:
        if int(os.environ.get("RANK", "0") or 0) == 0:
            where = f"snapshot {e.snapshot}" if e.snapshot else "no snapshot yet"
            click.echo(f"{experiment}: stopped by {signal_name(e.signum)} after iteration {e.iteration} "
                       f"({where}); to resume, {resume_hint(command)}", err=True)
        sys.exit(exit_status(e.signum))
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (loading, the final pass): nothing half-written
        click.echo(f"{experiment}: interrupted (SIGINT) before or after training; the run directory {out} "
                   f"is consistent; to resume, {resume_hint(command)}", err=True)
        sys.exit(130)
    except (NonFiniteLossError, RunLockedError) as e:
        raise click.ClickException(str(e)) from None
    except (FileNotFoundError, FileExistsError, ValueError, KeyError) as e:
        raise click.ClickException(f"{type(e).__name__}: {e}") from e
    click.echo(f"{experiment}: run directory {out}", err=True)
