"""Train one experiment the way the reference's `solve.py` + Caffe's `Solver::Step` do.

One iteration (Caffe's `Step`, with the reference's Python data layer):
  1. clear the gradients;
  2. for each of `iter_size` images: draw the next index of the seeded training order (sampling
     with replacement, `reproduce.datasets.order.train_order`), forward the image at its native
     size (batch 1), add up `SoftmaxWithLoss` over the net's heads and backpropagate; the
     gradients add up in `.grad`;
  3. apply Caffe's SGD update (`reproduce.training.solver.CaffeSGD`).
Every `test_interval` iterations (solve.py's `solver.step(N)` then `score.seg_tests`) the net is
scored on the validation split with `reproduce.evaluation.evaluate.evaluate`; every `snapshot` iterations a
checkpoint is written; the run ends at `max_iter` with `final.pt` and `metrics.json`.

The run directory describes itself:
    run.json        experiment config, overrides, init report, git commit, package versions, device,
                    command line of every session (start and resumes)
    log.csv         iteration, loss, lr, seconds every `display` iterations. `iteration` is Caffe's
                    (0-based: the iteration whose forward produced the loss), `loss` Caffe's display
                    loss (mean of the last `average_loss` = 20 iteration losses, each the sum over
                    the heads averaged over iter_size images), `lr` the rate of that update,
                    `seconds` training wall time since the run started (over all sessions)
    log.jsonl       the same rows ({"kind": "train"}), test passes ({"kind": "test"}) and events
    test_log.csv    iteration, loss, pixel_acc, mean_acc, mean_iu, fw_iu, seconds of each test pass
    test/iter_<N>.json  each test pass's full result; metrics.json: the final one
    snapshot/iter_<N>.pt  checkpoints (see reproduce.training.checkpoint); final.pt: the net's weights

Resume (the default): the newest checkpoint is loaded and the run continues; a run interrupted
and resumed ends with bitwise the weights of an uninterrupted one on the CPU. Dropout masks are
drawn from torch's RNG re-seeded for every image from (seed, position of the image in the
training order), so they do not depend on where a run was interrupted or on how many processes
share the images (reproduce.training.distributed). Caffe's own masks cannot be reproduced in PyTorch.

On CUDA, TF32 is switched off (`use_exact_cuda_math`): convolutions and matmuls run in full
float32 as Caffe's do. Images are decoded ahead of the computation (one background thread on the
CPU; on CUDA `DATA_WORKERS` worker processes, the tensors in pinned memory, copied to the GPU
without blocking); the order is fixed in advance, so this changes nothing but the speed. On CUDA
the host does not wait for the GPU in every iteration: the losses stay on the GPU and are read
every `display` iterations and before each test pass, snapshot and the end (`_settle`); a
non-finite loss found then stops the run naming the iteration and image, with the updates after
it applied but never saved (snapshots are written only after the losses are read). On the CPU
each loss is read at once and the update of a non-finite loss is never applied.

Choices that differ from the reference's run, none of which changes the training arithmetic:
checkpoints are also written at test intervals when the reference sets no `snapshot` (SIFT Flow)
and at `max_iter`; only the newest `keep_snapshots` checkpoints are kept (Caffe keeps all); the
final test pass always runs at `max_iter` (PASCAL-Context's solve.py loop would run past it).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import socket
import sys
import time
import warnings
from collections import deque
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from reproduce.training import checkpoint, distributed
from reproduce.training.loss import check_labels, softmax_with_loss
from reproduce.progress import Progress
from reproduce.training.run_lock import RunLock, RunLockedError
from reproduce.training.solver import CaffeSGD
from reproduce.training.stop_signals import StopSignals, TrainingInterrupted

DISPLAY = 20  # every reference solver.prototxt: display: 20
AVERAGE_LOSS = 20  # every reference solver.prototxt: average_loss: 20
ORDER_RUNTIME = "python2"  # the draws the reference's layers made (see reproduce.datasets.order)
TRAIN_FIELDS = ("iteration", "loss", "lr", "seconds")
TEST_FIELDS = ("iteration", "loss", "pixel_acc", "mean_acc", "mean_iu", "fw_iu", "seconds")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped before applying that update."""


def train(experiment, *, data_root: str | os.PathLike | None, init: str | os.PathLike | Sequence | None,
          device: str | torch.device = "cpu", max_iter: int | None = None, out_dir: str | os.PathLike,
          resume: bool = True, width: float = 1.0, test_interval: int | None = None,
          snapshot: int | None = None, display: int = DISPLAY, keep_snapshots: int = 2,
          progress: bool = True, train_dataset=None, val_dataset=None,
          command: Sequence[str] | None = None) -> Path:
    """Train `experiment` (a name or `reproduce.experiments.Experiment`) into `out_dir`; return it.

    data_root: the dataset root given to `reproduce.datasets.open_dataset` (unused for a dataset
        passed as `train_dataset` / `val_dataset`, as tests do).
    init: weight file(s) to start from (see `reproduce.training.checkpoint.load_init`); None keeps the net's
        own initialization. Ignored when resuming.
    max_iter, test_interval, snapshot: override the experiment's values (snapshot: iterations
        between checkpoints; default the experiment's solver `snapshot`, else its test_interval).
    width: trunk width multiplier (nets.build); anything but 1.0 is not the paper's net (tests only).
    display: log every `display` iterations (Caffe's display). keep_snapshots: newest checkpoints
        kept (0 = all). resume: continue from the newest checkpoint in `out_dir/snapshot`; with
        resume=False an `out_dir` holding checkpoints is an error.
    progress: the progress bar on a terminal, else a line every $FCN_PROGRESS_SECONDS (default 30)
        seconds (`reproduce.progress`), for training and its test passes; False: neither.
    The run directory is locked for the whole call (`reproduce.training.run_lock`): RunLockedError, naming
    the process holding it, if another trainer uses it.
    SIGINT / SIGTERM while resuming or training (`reproduce.training.stop_signals`, main thread only): the
    iteration in progress is finished, a snapshot written (all processes stop at the same
    iteration) and TrainingInterrupted raised; rerunning resumes from that snapshot.
    Raises NonFiniteLossError (the message names the iteration and image) if the loss is not finite.
    """
    if isinstance(experiment, str):
        from reproduce import experiments
        experiment = experiments.get(experiment)
    ctx = distributed.init_from_env(device)
    if ctx.device.type == "cuda":
        use_exact_cuda_math()
    settings = _Settings(max_iter=int(max_iter or experiment.max_iter),
                         test_interval=int(test_interval or experiment.test_interval), snapshot=snapshot,
                         display=display, keep_snapshots=keep_snapshots, progress=progress, width=width)
    with _locked(Path(out_dir), ctx):
        run = _open_run(experiment, ctx, Path(out_dir), settings, data_root, train_dataset, val_dataset)
        with StopSignals("fcn train") as stop:
            run.stop = stop
            _resume_or_start(run, resume=resume, init=init, command=command, data_root=data_root)
            _train_loop(run)
        if run.stopped_at is not None:
            distributed.shutdown(ctx)
            raise TrainingInterrupted(run.stop_signum, run.stopped_at, run.last_good)
        _finish(run)
    distributed.shutdown(ctx)
    return run.out


# ---------------------------------------------------------------------------------------------
# the steps of train()
# ---------------------------------------------------------------------------------------------
@dataclass
class _Settings:
    """What the caller chose for this run (None: the experiment's value)."""

    max_iter: int
    test_interval: int
    snapshot: int | None
    display: int
    keep_snapshots: int
    progress: bool
    width: float

    def snapshot_interval(self, exp) -> int:
        """Iterations between checkpoints: the override, else the solver's snapshot, else test_interval."""
        return int(self.snapshot or exp.snapshot or self.test_interval)


@dataclass
class _Run:
    """One training session: the net, solver, data and run directory, and the loop's running state."""

    exp: Any
    ctx: distributed.DistContext
    plan: distributed.StepPlan
    out: Path
    settings: _Settings
    net: torch.nn.Module
    solver: CaffeSGD
    train_ds: Any
    val_ds: Any
    run_key: dict
    log: "RunLog | None"
    losses: deque = field(default_factory=lambda: deque(maxlen=AVERAGE_LOSS))
    elapsed: float = 0.0  # training seconds of earlier sessions
    session_start: float = 0.0  # time.monotonic() - elapsed when this session's loop began
    last_good: Path | None = None  # the newest checkpoint written (or resumed from)
    metrics: dict | None = None  # the last test pass of this session
    stop: StopSignals | None = None  # SIGINT / SIGTERM seen by this process
    stopped_at: int | None = None  # the iteration all processes agreed to stop after
    stop_signum: int = 15  # the signal the processes stopped on (SIGTERM if they got different ones)
    lr: float | None = None  # the learning rate of the last update
    # CUDA: (iteration, per-image loss tensors on the GPU, (position, index) per image), not yet read
    pending: list = field(default_factory=list)

    @property
    def snap_dir(self) -> Path:
        return self.out / "snapshot"

    @property
    def max_iter(self) -> int:
        return self.settings.max_iter

    def seconds(self) -> float:
        """Training wall time over all sessions, in seconds."""
        return time.monotonic() - self.session_start

    def smoothed_loss(self) -> float:
        """Caffe's display loss: the mean of the last `average_loss` iteration losses."""
        return sum(self.losses) / len(self.losses) if self.losses else math.nan


@contextmanager
def _locked(out: Path, ctx: distributed.DistContext) -> Iterator[None]:
    """Hold the run directory's lock (the main process takes it; every process learns whether it
    got it, so none waits for a run that does not start). A failed start leaves no empty folder."""
    lock, refused = None, None
    if ctx.is_main:
        lock = RunLock(out)
        try:
            lock.acquire()
        except RunLockedError as e:
            refused = e
    if distributed.all_sum([float(refused is not None)], ctx)[0]:
        raise refused or RunLockedError(f"{out}: run directory in use by another process (see rank 0)")
    try:
        yield
    except BaseException:
        if lock:
            lock.release(failed=True)
        raise
    if lock:
        lock.release()


def _open_run(exp, ctx, out: Path, settings: _Settings, data_root, train_dataset, val_dataset) -> _Run:
    """Build the net and solver, open the data (val on the main process, so that missing val data
    fails before training) and remove the temporaries a killed run left in the snapshot folder."""
    plan = distributed.StepPlan.make(exp.iter_size, ctx.world_size, ctx.rank)
    if ctx.is_main and not plan.faithful:
        warnings.warn(f"{exp.name}: iter_size {exp.iter_size} cannot be split over {ctx.world_size} processes; "
                      f"training with an effective iter_size of {plan.effective} (not the reference's solver)")
    torch.manual_seed(exp.seed)  # the random init of layers no weight file covers (tests); same on every rank
    net = exp.build_net(width=settings.width).to(ctx.device)
    solver = CaffeSGD(net, base_lr=exp.base_lr, momentum=exp.momentum, weight_decay=exp.weight_decay,
                      iter_size=plan.effective, lr_policy=exp.lr_policy, max_iter=settings.max_iter,
                      gamma=getattr(exp, "gamma", None), power=getattr(exp, "power", None),
                      stepsize=getattr(exp, "stepsize", None), stepvalues=getattr(exp, "stepvalues", ()))
    train_ds = train_dataset if train_dataset is not None else _open(exp, data_root, "train")
    val_ds = None
    if ctx.is_main:
        val_ds = val_dataset if val_dataset is not None else _open(exp, data_root, "val")
    run_key = {"experiment": exp.name, "width": float(settings.width), "effective_iter_size": plan.effective,
               "seed": exp.seed, "order_runtime": ORDER_RUNTIME, "num_train_images": len(train_ds),
               "loss_normalize": bool(exp.loss_normalize)}
    log = RunLog(out) if ctx.is_main else None
    if ctx.is_main:
        for stale in checkpoint.remove_stale_temporaries(out / "snapshot"):
            print(f"removed {stale}, left by a killed run", file=sys.stderr)
    return _Run(exp, ctx, plan, out, settings, net, solver, train_ds, val_ds, run_key, log)


def _resume_or_start(run: _Run, *, resume: bool, init, command, data_root) -> None:
    """Resume from the newest valid checkpoint (damaged newer ones moved aside, logs cut back to
    it, the session added to run.json), or start: initial weights, fresh logs and run.json."""
    ctx, snap_dir = run.ctx, run.snap_dir
    latest = checkpoint.latest_snapshot(snap_dir)
    if latest is not None and not resume:
        raise FileExistsError(f"{run.out} already holds checkpoints ({latest.name}); resume, or use another --out")
    found = checkpoint.newest_valid_snapshot(snap_dir) if latest is not None and ctx.is_main else None
    distributed.barrier(ctx)  # the main process moves damaged snapshots aside before the others look
    if latest is not None and not ctx.is_main:
        found = checkpoint.newest_valid_snapshot(snap_dir)
    if found is not None:
        latest, state = found
        _check_resumable(latest, state, run.run_key)
        run.net.load_state_dict(state["net"])
        run.solver.load_state_dict(state["solver"])
        # Dropout is re-seeded per image anyway; the saved states matter to nothing else drawing from torch.
        saved_rank = min(ctx.rank, len(state["rng"]["torch_cpu"]) - 1)
        checkpoint.set_rng_state({k: v[saved_rank] for k, v in state["rng"].items()})
        run.losses.extend(state["display_losses"])
        run.elapsed, run.last_good = float(state["elapsed_seconds"]), latest
        if ctx.is_main:
            done, total = run.solver.iteration, run.max_iter
            print(f"{run.exp.name}: resuming {run.out} from {latest} (iteration {done} of {total})" if done < total
                  else f"{run.exp.name}: {run.out} is already trained (snapshot {latest.name}: iteration {done} "
                       f"of {total}); nothing to train", file=sys.stderr)
        if run.log:
            run.log.truncate_after(run.solver.iteration)
            run.log.event("resume", run.solver.iteration, checkpoint=str(latest))
            _update_run_json(run.out, command)
    else:
        report = _init_weights(run.net, run.exp, init)
        if run.log:
            s = run.settings
            run.log.reset()
            _write_run_json(run.out, run.exp, ctx, run.plan, report, command=command, overrides={
                "max_iter": s.max_iter, "test_interval": s.test_interval, "snapshot": s.snapshot_interval(run.exp),
                "width": s.width, "display": s.display, "keep_snapshots": s.keep_snapshots},
                init=init, data_root=data_root)
            run.log.event("start", 0, init=report.summary() if report else None)
            if report:
                print(report.summary(), file=sys.stderr)
    distributed.barrier(ctx)


def _train_loop(run: _Run) -> None:
    """Iterate to max_iter: one solver update, then the test pass and the checkpoint when due."""
    exp, plan, s = run.exp, run.plan, run.settings
    if run.solver.iteration >= s.max_iter:
        return
    model = distributed.wrap(run.net, run.ctx)
    order = _skip(_train_order(len(run.train_ds), exp.seed), run.solver.iteration * plan.effective)
    items = _my_images(order, plan, run.solver.iteration, s.max_iter)
    if _defer_losses(run.ctx.device) and DATA_WORKERS > 0:
        images = _worker_read_ahead(items, run.train_ds, DATA_WORKERS)
    else:
        images = _read_ahead(items, lambda item: run.train_ds[item[2]])
    run.session_start = time.monotonic() - run.elapsed
    run.net.train()
    bar = Progress(exp.name, s.max_iter, unit="iteration", start=run.solver.iteration,
                   show=run.ctx.is_main and s.progress)
    with images, bar:
        while run.solver.iteration < s.max_iter:
            stop = _one_iteration(run, model, images)
            done = run.solver.iteration
            bar.update(done, loss=run.smoothed_loss(), lr=run.lr)
            if done % s.test_interval == 0 or done == s.max_iter:
                _scheduled_test(run, done)
            snapshot_due = done % s.snapshot_interval(exp) == 0 or done == s.max_iter
            if snapshot_due:
                _snapshot(run, done)
            # One process may also stop on a signal that came after this iteration's all-reduce;
            # several stop where the all-reduce said, so that all take the same iteration.
            if not stop and not run.ctx.enabled and run.stop is not None and run.stop.requested is not None:
                stop, run.stop_signum = True, run.stop.requested
            if stop and done < s.max_iter:  # at max_iter the run just finishes
                if not snapshot_due:
                    _snapshot(run, done)
                run.stopped_at = done
                return


def _one_iteration(run: _Run, model, images) -> bool:
    """Caffe's Step for one iteration: this process's share of iter_size images forward and
    backward (gradients summed over processes), the display loss, Caffe's SGD update, the log row.
    NonFiniteLossError if any image's loss is not finite: on the CPU before the update; on CUDA
    when the losses are read (`_settle`). Returns whether the processes agreed to stop (SIGINT /
    SIGTERM): on the CPU, any process asked by the time of this iteration's all-reduce; on CUDA,
    where the losses (and the stop flags with them) are read every display iteration only, one
    process stops at once and several at the next display iteration."""
    exp, ctx, plan, dev = run.exp, run.ctx, run.plan, run.ctx.device
    defer = _defer_losses(dev)
    it = run.solver.iteration
    run.solver.zero_grad()
    loss_sum, bad, kept = 0.0, None, []
    for k in range(plan.local):
        (_, position, index), sample = next(images)
        inputs = [t.to(dev, non_blocking=defer) for t in exp.net_inputs(sample)]
        host_labels = exp.net_labels(sample)
        # (net_labels' int64 copies are pageable: pinned, their copies do not wait either)
        labels = [(t.pin_memory() if defer and dev.type == "cuda" else t).to(dev, non_blocking=defer)
                  for t in host_labels]
        torch.manual_seed(dropout_seed(exp.seed, position))
        # DDP all-reduces the gradients on the last backward of the iteration only.
        with model.no_sync() if ctx.enabled and k < plan.local - 1 else nullcontext():
            scores = exp.net_scores(model(*inputs))
            if defer:  # the label check reads values: on the host copy, not on the GPU
                for s, y in zip(scores, host_labels):
                    check_labels(y, s.shape[1])
            loss = sum(softmax_with_loss(s, y, normalize=exp.loss_normalize, labels_checked=defer)
                       for s, y in zip(scores, labels))
            if defer:  # no host synchronisation: the value is read later
                kept.append((loss.detach(), position, index))
                loss.backward()
                continue
            value = float(loss.item())
            if not math.isfinite(value):
                bad = bad or _bad_image(run, index, position, value)
                if not ctx.enabled:  # one process: stop now; several: finish the collective step
                    break
            loss.backward()
        loss_sum += value
    stop = False
    if defer:
        run.pending.append((it, kept))
    else:
        total, n_bad, n_stop, signum_sum = distributed.all_sum(
            [loss_sum, float(bad is not None), *_stop_flags(run)], ctx)
        if n_bad:
            _raise_non_finite(run, it, [b for b in distributed.gather_objects(bad, ctx) if b], deferred=False)
        run.losses.append(total / plan.effective)  # Caffe: loss /= iter_size
        stop = _agree_stop(run, n_stop, signum_sum)
    lr = run.lr = run.solver.step()
    if it % run.settings.display == 0:
        stop = _settle(run) or stop  # CUDA: the losses kept since the last display (every process)
        if run.log:
            run.log.train(iteration=it, loss=run.smoothed_loss(), lr=lr, seconds=run.seconds())
    return stop


def _stop_flags(run: _Run) -> list[float]:
    """[asked to stop, signal number] of this process, summed over processes by the caller."""
    signum = (run.stop.requested if run.stop is not None else None) or 0
    return [float(signum > 0), float(signum)]


def _agree_stop(run: _Run, n_stop: float, signum_sum: float) -> bool:
    """Whether any process was asked to stop; if so, the signal every process will name: the one
    they got, SIGTERM if they differ."""
    if n_stop:
        agreed = signum_sum / n_stop
        run.stop_signum = int(agreed) if agreed in (2.0, 15.0) else 15
    return bool(n_stop)


def _defer_losses(device: torch.device) -> bool:
    """Whether the losses stay on the device until `_settle` (CUDA: no per-iteration host sync)."""
    return device.type == "cuda"


def _bad_image(run: _Run, index: int, position: int, value: float) -> str:
    return f"image {run.train_ds.ids[index]!r} (index {index}, order position {position}): loss {value}"


def _settle(run: _Run) -> bool:
    """Read the losses kept on the GPU (one host synchronisation, one collective with several
    processes) into the display losses; NonFiniteLossError for the first non-finite one. Returns
    whether any process has been asked to stop (False when nothing was pending)."""
    pending, run.pending = run.pending, []
    if not pending:
        return False
    values = torch.stack([l for _, kept in pending for l, _, _ in kept]).double().cpu().tolist()
    sums, flags, bad, k = [], [], None, 0
    for it, kept in pending:
        mine = values[k:k + len(kept)]
        k += len(kept)
        sums.append(sum(mine))
        first = next(((v, p, i) for v, (_, p, i) in zip(mine, kept) if not math.isfinite(v)), None)
        flags.append(float(first is not None))
        if first is not None and bad is None:
            bad = (it, _bad_image(run, first[2], first[1], first[0]))
    summed = distributed.all_sum(sums + flags + _stop_flags(run), run.ctx)
    totals, any_bad = summed[:len(pending)], summed[len(pending):2 * len(pending)]
    for (it, _), total, flag in zip(pending, totals, any_bad):
        if flag:
            where = [b for b in distributed.gather_objects(bad, run.ctx) if b]
            first_it = min(w[0] for w in where)
            _raise_non_finite(run, first_it, [w[1] for w in where if w[0] == first_it], deferred=True,
                              last=pending[-1][0])
        run.losses.append(total / run.plan.effective)  # Caffe: loss /= iter_size
    return _agree_stop(run, *summed[2 * len(pending):])


def _raise_non_finite(run: _Run, it: int, where: list, *, deferred: bool, last: int | None = None) -> None:
    if deferred:
        applied = (f"On CUDA the losses are read every {run.settings.display} iterations, so the updates of "
                   f"iterations {it} to {last} were applied; nothing after the last good checkpoint was saved, "
                   f"and that checkpoint is ")
    else:
        applied = "Stopped before applying this update; the last good checkpoint is "
    message = (f"{run.exp.name}: non-finite loss at iteration {it}, {'; '.join(where)}. "
               f"{applied}{run.last_good or 'none (no snapshot written yet)'}")
    if run.log:
        run.log.event("error", it, message=message)
    raise NonFiniteLossError(message)


def _scheduled_test(run: _Run, done: int) -> None:
    """The test pass after iteration `done` (main process; the others wait)."""
    if run.stop is not None:
        run.stop.what = f"finishing the test pass after iteration {done}, then writing a snapshot"
    _settle(run)
    if run.ctx.is_main:
        run.metrics = _test_pass(run.net, run.exp, run.val_ds, run.ctx.device, run.settings.progress, done)
        run.log.test(done, run.metrics, run.seconds())
    distributed.barrier(run.ctx)
    if run.stop is not None:
        run.stop.what = "finishing the iteration in progress and writing a snapshot"


def _snapshot(run: _Run, done: int) -> None:
    """Checkpoint after iteration `done`, written by the main process (every process's RNG state
    gathered into it) only when every parameter and momentum buffer is finite; old ones pruned."""
    _settle(run)  # the display losses saved, and no snapshot past a non-finite loss
    exp, ctx, solver = run.exp, run.ctx, run.solver
    rngs = distributed.gather_objects(checkpoint.rng_state(), ctx)
    bad_entries = checkpoint.nonfinite_entries({"net": run.net.state_dict(), "momentum": solver.history})
    if ctx.is_main and bad_entries:
        warnings.warn(f"{exp.name}: snapshot at iteration {done} not written, non-finite "
                      f"{', '.join(bad_entries[:5])}{' ...' if len(bad_entries) > 5 else ''}; "
                      f"the last good checkpoint stays {run.last_good or 'none'}")
    elif ctx.is_main:
        run.last_good = checkpoint.save_atomic({
            "format": checkpoint.FORMAT, "version": checkpoint.VERSION, "iteration": done,
            "run": run.run_key, "net": checkpoint.cpu_state_dict(run.net), "solver": solver.state_dict(),
            "order": {"seed": exp.seed, "runtime": ORDER_RUNTIME, "position": done * run.plan.effective},
            "rng": {"torch_cpu": [r["torch_cpu"] for r in rngs],
                    "torch_cuda": [r["torch_cuda"] for r in rngs]},
            "display_losses": list(run.losses), "elapsed_seconds": run.seconds(),
        }, checkpoint.snapshot_path(run.snap_dir, done),
            checkpoint.training_record(exp.name, run.settings.width, run.out, done))
        checkpoint.prune_snapshots(run.snap_dir, run.settings.keep_snapshots)
    elif not bad_entries:  # the other processes know it too (the weights are the same everywhere)
        run.last_good = checkpoint.snapshot_path(run.snap_dir, done)
    distributed.barrier(ctx)


def _finish(run: _Run) -> None:
    """final.pt, the final test pass if this session ran none and metrics.json is missing, metrics.json."""
    _settle(run)
    if run.ctx.is_main:
        out, it = run.out, run.solver.iteration
        final = checkpoint.save_atomic(checkpoint.cpu_state_dict(run.net), out / "final.pt",
                                       checkpoint.training_record(run.exp.name, run.settings.width, out, it))
        metrics = run.metrics
        if metrics is None and not (out / "metrics.json").exists():
            metrics = _test_pass(run.net, run.exp, run.val_ds, run.ctx.device, run.settings.progress, it)
            run.log.test(it, metrics, run.seconds())
        if metrics is not None:
            from reproduce.atomic import write_json_atomic
            record = dict(metrics)
            record["iteration"] = it
            record["weights"] = str(final)
            write_json_atomic(out / "metrics.json", record)
        run.log.event("done", it, final=str(final))
    distributed.barrier(run.ctx)

def dropout_seed(seed: int, position: int) -> int:
    """The torch seed set before the forward of the image at `position` of the training order."""
    return (int(seed) << 32) + int(position)


def use_exact_cuda_math() -> None:
    """Keep CUDA matmuls and convolutions in full float32 (no TF32), like Caffe's cuBLAS/cuDNN calls."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


# ---------------------------------------------------------------------------------------------
# helpers of train()
# ---------------------------------------------------------------------------------------------
def _open(exp, root, which: str):
    if root is None:
        raise ValueError(f"{exp.name}: no data root given for its {which} data (pass --data-root)")
    return exp.open_split(root, which)


def _train_order(n: int, seed: int) -> Iterator[int]:
    from reproduce.datasets.order import train_order
    return train_order(n, seed, runtime=ORDER_RUNTIME)


def _my_images(order: Iterator[int], plan: distributed.StepPlan, start: int, stop: int):
    """(iteration, order position, dataset index) of every image this process takes in iterations
    start .. stop-1: each iteration draws `plan.effective` indices and keeps this rank's share."""
    for it in range(start, stop):
        drawn = [next(order) for _ in range(plan.effective)]
        yield from ((it, pos, idx) for pos, idx in zip(plan.positions(it), drawn[plan.rank::plan.world_size]))


class _read_ahead:
    """Iterate `(item, load(item))` over `items` while one background thread loads the next
    `depth` items (image decoding overlaps the forward/backward). Errors raised by `load` come out
    of `next()` for the item that raised them, as without read-ahead. Use as a context manager."""

    def __init__(self, items, load, depth: int = 3) -> None:
        from concurrent.futures import ThreadPoolExecutor
        self.items, self.load, self.depth = iter(items), load, depth
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="fcn-data")
        self.pending: deque = deque()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for _, future in self.pending:
            future.cancel()
        self.pool.shutdown(wait=True)

    def __next__(self):
        while len(self.pending) <= self.depth:
            item = next(self.items, None)
            if item is None:
                break
            self.pending.append((item, self.pool.submit(self.load, item)))
        if not self.pending:
            raise StopIteration
        item, future = self.pending.popleft()
        return item, future.result()


DATA_WORKERS = 2  # CUDA: DataLoader worker processes decoding training images ahead


class _worker_read_ahead:
    """`_read_ahead` for CUDA: `(item, dataset[item[2]])` over `items`, decoded by `workers`
    DataLoader worker processes a few items ahead, the sample's arrays as tensors in pinned memory
    (so the copies to the GPU do not block). Items are taken in chunks (a fresh loader per chunk)
    so that the order of a long run is never materialized at once. A load error comes out of
    `next()` for the item that raised it, as the worker raised it. Use as a context manager."""

    CHUNK = 4096

    def __init__(self, items, dataset, workers: int, depth: int = 2) -> None:
        self.items, self.dataset, self.workers, self.depth = iter(items), dataset, workers, depth
        self.chunk: deque = deque()
        self.loader_iter = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._close()

    def _close(self) -> None:
        it, self.loader_iter = self.loader_iter, None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()

    def _refill(self) -> bool:
        import itertools
        from torch.utils.data import DataLoader
        from reproduce.evaluation.evaluate import _CarryErrors
        self._close()
        self.chunk = deque(itertools.islice(self.items, self.CHUNK))
        if not self.chunk:
            return False
        picked = _Picked(self.dataset, [item[2] for item in self.chunk])
        loader = DataLoader(_CarryErrors(picked), batch_size=None, shuffle=False, num_workers=self.workers,
                            pin_memory=torch.cuda.is_available(), prefetch_factor=self.depth)
        self.loader_iter = iter(loader)
        return True

    def __next__(self):
        from reproduce.evaluation.evaluate import _Failed
        if not self.chunk and not self._refill():
            raise StopIteration
        item = self.chunk.popleft()
        sample = next(self.loader_iter)
        if isinstance(sample, _Failed):
            raise sample.exc
        return item, sample


class _Picked:
    """dataset[indices[k]] for k = 0 .. len(indices) - 1 (a map-style dataset for the loader)."""

    def __init__(self, dataset, indices: list[int]) -> None:
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        return self.dataset[self.indices[k]]


def _skip(order: Iterator[int], count: int) -> Iterator[int]:
    """`order` after drawing and dropping `count` indices (the position a checkpoint recorded)."""
    for _ in range(count):
        next(order)
    return order


def _check_resumable(path: Path, state: dict, run_key: dict) -> None:
    """The checkpoint must come from the same training problem. The number of processes may change
    as long as the effective iter_size does not (images and dropout masks follow order positions)."""
    saved = state.get("run", {})
    diff = {k: (saved.get(k), v) for k, v in run_key.items() if saved.get(k) != v}
    if diff:
        detail = ", ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"{path}: cannot resume, the run's settings differ ({detail}); use another --out")


def _init_weights(net, exp, init) -> checkpoint.InitReport | None:
    if init is None or (isinstance(init, (list, tuple)) and not init):
        return None
    paths = [init] if isinstance(init, (str, os.PathLike)) else list(init)
    if len(paths) > 1 and len(getattr(net, "streams", ())) != len(paths):
        raise ValueError(f"{exp.name}: {len(paths)} init files given, but the net has no "
                         f"{len(paths)} streams to put them in")
    return checkpoint.load_init(net, paths)


def _test_pass(net, exp, dataset, device, progress: bool, iteration: int) -> dict:
    """Score the net on the validation split (TEST phase: dropout off), then back to TRAIN."""
    from reproduce.evaluation.evaluate import evaluate
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            return evaluate(net, exp, dataset, device=device, progress=progress, iteration=iteration)
    finally:
        net.train(was_training)


# ---------------------------------------------------------------------------------------------
# the run directory: logs and run.json
# ---------------------------------------------------------------------------------------------
class RunLog:
    """log.jsonl (the record of everything), log.csv and test_log.csv (the same rows as tables).

    Rows are appended and flushed one at a time; on resume the files are rewritten atomically
    without the rows past the checkpoint (a torn last line of an interrupted run is dropped).
    """

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.jsonl, self.csv, self.test_csv = (self.out / n for n in ("log.jsonl", "log.csv", "test_log.csv"))

    def reset(self) -> None:
        self._rewrite([])

    def train(self, *, iteration: int, loss: float, lr: float, seconds: float) -> None:
        row = {"iteration": iteration, "loss": loss, "lr": lr, "seconds": round(seconds, 3)}
        self._append(self.jsonl, json.dumps({"kind": "train", **row}) + "\n")
        self._append(self.csv, _csv_line(row, TRAIN_FIELDS))

    def test(self, iteration: int, metrics: dict, seconds: float) -> None:
        from reproduce.atomic import write_json_atomic
        write_json_atomic(self.out / "test" / f"iter_{iteration}.json", {**metrics, "iteration": iteration})
        scores = metrics.get("scores", {})
        row = {"iteration": iteration, "loss": metrics.get("loss"), **{k: scores.get(k) for k in TEST_FIELDS[2:6]},
               "seconds": round(seconds, 3)}
        record = {"kind": "test", **row}
        if "scores_geo" in metrics:
            record["scores_geo"] = metrics["scores_geo"]
        self._append(self.jsonl, json.dumps(_finite_or_none(record)) + "\n")
        self._append(self.test_csv, _csv_line(row, TEST_FIELDS))

    def event(self, kind: str, iteration: int, **fields) -> None:
        when = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._append(self.jsonl, json.dumps({"kind": kind, "iteration": iteration, "time": when, **fields}) + "\n")

    def records(self) -> list[dict]:
        if not self.jsonl.exists():
            return []
        out = []
        for line in self.jsonl.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line torn by an interruption
        return out

    def truncate_after(self, iteration: int) -> None:
        """Keep what a run stopped at checkpoint `iteration` had logged: train rows of iterations
        before it, test passes up to it, and every event."""
        keep = [r for r in self.records()
                if (r.get("kind") == "train" and r["iteration"] < iteration)
                or (r.get("kind") == "test" and r["iteration"] <= iteration)
                or r.get("kind") not in ("train", "test")]
        self._rewrite(keep)

    def _rewrite(self, records: list[dict]) -> None:
        from reproduce.atomic import write_text_atomic
        train_rows = [r for r in records if r.get("kind") == "train"]
        test_rows = [r for r in records if r.get("kind") == "test"]
        write_text_atomic(self.jsonl, "".join(json.dumps(r) + "\n" for r in records))
        write_text_atomic(self.csv, _csv_line(None, TRAIN_FIELDS) + "".join(_csv_line(r, TRAIN_FIELDS) for r in train_rows))
        write_text_atomic(self.test_csv, _csv_line(None, TEST_FIELDS) + "".join(_csv_line(r, TEST_FIELDS) for r in test_rows))

    @staticmethod
    def _append(path: Path, text: str) -> None:
        with open(path, "a", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()


def _finite_or_none(obj: Any) -> Any:
    """NaN / infinity -> None, recursively (JSON has no NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_none(v) for v in obj]
    return obj


def _csv_line(row: dict | None, fields: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(fields if row is None else ["" if row.get(k) is None else row.get(k) for k in fields])
    return buf.getvalue()


def _write_run_json(out: Path, exp, ctx, plan, report, *, command, overrides: dict, init, data_root) -> None:
    from reproduce.atomic import write_json_atomic
    paper_net = overrides["width"] == 1.0 and plan.faithful
    description = {
        "experiment": exp.to_dict() if hasattr(exp, "to_dict") else repr(exp),
        "overrides": overrides,
        "faithful": paper_net,
        "faithfulness_notes": ([] if overrides["width"] == 1.0 else [f"width {overrides['width']}: not the paper's net"])
        + ([] if plan.faithful else [f"effective iter_size {plan.effective}, the experiment's is {plan.experiment_iter_size}"]),
        "solver": {"iter_size_experiment": plan.experiment_iter_size, "iter_size_per_process": plan.local,
                   "iter_size_effective": plan.effective, "world_size": ctx.world_size},
        "init": {"files": [str(p) for p in ([init] if isinstance(init, (str, os.PathLike)) else (init or []))],
                 "report": report.to_dict() if report else None},
        "data_root": None if data_root is None else str(data_root),
        "git": _git_state(),
        "versions": _versions(),
        "device": _device_description(ctx.device),
        "sessions": [_session(command, 0)],
    }
    write_json_atomic(out / "run.json", description)


def _update_run_json(out: Path, command) -> None:
    from reproduce.atomic import write_json_atomic
    path = out / "run.json"
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read the run description to resume ({e})") from e
    description.setdefault("sessions", []).append(_session(command, None))
    write_json_atomic(path, description)


def _session(command, start_iteration) -> dict:
    return {"command": list(command) if command is not None else list(sys.argv),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "host": socket.gethostname(), "resumed": start_iteration is None, "git": _git_state()}


def _git_state() -> dict:
    from weight_convert.provenance import git_state
    return dict(git_state())


def _versions() -> dict:
    from importlib import metadata
    out = {"python": platform.python_version(), "torch": torch.__version__,
           "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None}
    for package in ("fcn-repro", "numpy", "scipy", "pillow", "h5py", "click"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def _device_description(device: torch.device) -> dict:
    d = {"device": str(device), "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
         "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        d["gpu"] = torch.cuda.get_device_name(device)
        d["tf32"] = {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}
    return d
