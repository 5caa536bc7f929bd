"""Two CPU processes (gloo, DistributedDataParallel) train exactly like one process with iter_size 2.

Process r takes the images at order positions r, r+2, ... of each iteration and the gradients are
summed across processes before Caffe's 1/iter_size normalization (reproduce.training.distributed).
"""
import csv
import os
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from reproduce.training.distributed import StepPlan
from reproduce.training.train import train
from train_support import read_state, tiny_experiment, voc_samples

WIDTH = 1 / 16
MAX_ITER = 4
# (experiment iter_size, world size): (1, 2) -> effective iter_size 2, one image per process;
# (4, 2) -> the experiment's iter_size 4, two images per process (no_sync accumulation).
CONFIGS = ((1, 2), (4, 2))


def _experiment(iter_size: int):
    return tiny_experiment(base_lr=1e-7, momentum=0.99, iter_size=iter_size, max_iter=MAX_ITER,
                           test_interval=MAX_ITER, snapshot=2)


def _worker(rank: int, world: int, init_file: str, root: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        for iter_size, _ in CONFIGS:
            train(_experiment(iter_size), data_root=None, init=None, out_dir=os.path.join(root, f"ddp{iter_size}"),
                  width=WIDTH, train_dataset=voc_samples(32), val_dataset=voc_samples(32), progress=False,
                  display=1)
    finally:
        dist.destroy_process_group()


def _losses(path):
    with open(path, newline="") as f:
        return [float(r["loss"]) for r in csv.DictReader(f)]


def max_relative_difference(a: dict, b: dict) -> float:
    """max over tensors of max|a - b| / max|a| (0 for tensors that are zero in both)."""
    worst = 0.0
    for k in a:
        scale = a[k].abs().max().item()
        diff = (a[k] - b[k]).abs().max().item()
        worst = max(worst, diff / scale if scale else diff)
    return worst


def test_step_plan_shares_images_as_one_process_would_take_them():
    plan = [StepPlan.make(1, 2, r) for r in range(2)]
    assert [p.positions(5) for p in plan] == [[10], [11]] and plan[0].effective == 2 and not plan[0].faithful
    plan = [StepPlan.make(20, 4, r) for r in range(4)]
    assert plan[1].positions(0) == [1, 5, 9, 13, 17] and plan[1].effective == 20 and plan[1].faithful
    assert sorted(sum((p.positions(3) for p in plan), [])) == list(range(60, 80))
    assert StepPlan.make(3, 2, 1).positions(0) == [1, 3, 5]  # 3 is not divisible by 2: 3 each, 6 in all


@pytest.fixture
def one_thread():
    """One intra-op thread, as in the workers (oneDNN's summation order depends on the thread count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_two_gloo_processes_equal_one_process_with_iter_size_two(tmp_path, one_thread):
    mp.spawn(_worker, args=(2, str(tmp_path / "rendezvous"), str(tmp_path)), nprocs=2, join=True)
    for iter_size, world in CONFIGS:
        effective = StepPlan.make(iter_size, world).effective
        single = tmp_path / f"single{iter_size}"
        train(_experiment(effective), data_root=None, init=None, out_dir=single, width=WIDTH,
              train_dataset=voc_samples(32), val_dataset=voc_samples(32), progress=False, display=1)
        a, b = read_state(single / "final.pt"), read_state(tmp_path / f"ddp{iter_size}" / "final.pt")
        torch.manual_seed(1337)  # as train() seeds the layers no init file covers
        start = _experiment(1).build_net(width=WIDTH).state_dict()
        assert max_relative_difference(a, start) > 1e-4, "the weights did not move"
        worst = max_relative_difference(a, b)
        print(f"iter_size {iter_size} on {world} processes vs one process with iter_size {effective}: "
              f"max relative weight difference {worst:.3g}", file=sys.stderr)
        if StepPlan.make(iter_size, world).local == 1:
            assert worst == 0.0  # g0 + g1 summed by gloo is g0 + g1 accumulated by autograd, bit for bit
        else:
            assert worst <= 1e-6  # (g0 + g2) + (g1 + g3) vs ((g0 + g1) + g2) + g3: float32 rounding only
        assert _losses(single / "log.csv") == pytest.approx(_losses(tmp_path / f"ddp{iter_size}" / "log.csv"), rel=1e-6)


def _stopping_worker(rank: int, world: int, init_file: str, out: str, delay: float) -> None:
    """One process of a 2-process run whose images load slowly; writes what TrainingInterrupted said."""
    import json
    from reproduce.training.stop_signals import TrainingInterrupted, exit_status
    from train_runner import SlowDataset
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        train(_experiment(1), data_root=None, init=None, out_dir=out, width=WIDTH, display=1, progress=False,
              train_dataset=SlowDataset(voc_samples(32), delay), val_dataset=voc_samples(32), max_iter=16,
              test_interval=16, snapshot=100)
    except TrainingInterrupted as e:
        with open(os.path.join(os.path.dirname(out), f"stopped{rank}.json"), "w") as f:
            json.dump({"signum": e.signum, "iteration": e.iteration, "snapshot": str(e.snapshot)}, f)
        sys.exit(exit_status(e.signum))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    sys.exit(0)


def test_a_signal_to_one_process_stops_both_at_the_same_iteration_and_resumes_bit_for_bit(tmp_path, one_thread):
    """SIGTERM to rank 1 only: both ranks stop after the same iteration, rank 0 writes the snapshot,
    neither hangs; resuming that snapshot in one process with iter_size 2 ends with the weights of
    an uninterrupted one-process run (bitwise: one image per process, see the test above)."""
    import json
    import signal
    import time
    from reproduce.training import checkpoint
    out = tmp_path / "ddp"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_stopping_worker, args=(r, 2, str(tmp_path / "rendezvous"), str(out), 0.1))
             for r in range(2)]
    for p in procs:
        p.start()
    try:
        end = time.monotonic() + 120
        while not (out / "log.csv").exists() or len((out / "log.csv").read_text().splitlines()) < 3:
            assert time.monotonic() < end and all(p.exitcode is None for p in procs), "no iterations logged"
            time.sleep(0.02)
        os.kill(procs[1].pid, signal.SIGTERM)
        for p in procs:
            p.join(timeout=120)
        assert [p.exitcode for p in procs] == [143, 143]
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    stopped = [json.loads((tmp_path / f"stopped{r}.json").read_text()) for r in range(2)]
    assert stopped[0] == stopped[1] and stopped[0]["signum"] == signal.SIGTERM
    iteration = stopped[0]["iteration"]
    assert 2 <= iteration < 16
    snapshot = out / "snapshot" / f"iter_{iteration}.pt"
    assert stopped[0]["snapshot"] == str(snapshot) and checkpoint.load_checkpoint(snapshot)["iteration"] == iteration
    assert not (out / "final.pt").exists()

    kw = dict(data_root=None, init=None, width=WIDTH, train_dataset=voc_samples(32), val_dataset=voc_samples(32),
              progress=False, display=1, max_iter=16, test_interval=16, snapshot=100)
    train(_experiment(2), out_dir=out, **kw)  # resumes: the same effective iter_size 2
    train(_experiment(2), out_dir=tmp_path / "single", **kw)
    a, b = read_state(out / "final.pt"), read_state(tmp_path / "single" / "final.pt")
    assert max_relative_difference(a, b) == 0.0
