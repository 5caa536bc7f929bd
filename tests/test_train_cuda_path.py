"""The CUDA training loop's host side, run on the CPU: losses kept on the device and read every
`display` iterations (reproduce.training.train._settle) and images decoded by worker processes
(reproduce.training.train._worker_read_ahead). Switched on here by patching `_defer_losses`; the
arithmetic must be the eager loop's bit for bit, and a non-finite loss must still stop the run
before anything past it is saved. (On a GPU: tests/test_cuda.py.)"""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from reproduce.training import checkpoint
from reproduce.training import train as training
from reproduce.training.distributed import StepPlan
from reproduce.training.train import NonFiniteLossError, train
from train_support import SmallDataset, assert_states_equal, read_state, tiny_experiment, voc_samples

WIDTH = 1 / 16


def _rows(path):
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def _run(out, dataset, display, **changes):
    settings = dict(base_lr=1e-7, momentum=0.99, iter_size=2, max_iter=7, test_interval=7, snapshot=3)
    settings.update(changes)
    return train(tiny_experiment(**settings), data_root=None, init=None, out_dir=out, width=WIDTH,
                 train_dataset=dataset, val_dataset=voc_samples(32), progress=False, display=display,
                 keep_snapshots=0)


@pytest.fixture
def deferred(monkeypatch):
    """The CUDA path's host logic on the CPU: deferred losses and 2 data worker processes."""
    monkeypatch.setattr(training, "_defer_losses", lambda device: True)
    monkeypatch.setattr(training._worker_read_ahead, "CHUNK", 5)  # several loaders in a 7-iteration run
    seen = []
    real = training._worker_read_ahead.__init__
    monkeypatch.setattr(training._worker_read_ahead, "__init__",
                        lambda self, *a, **k: (seen.append(a[2]), real(self, *a, **k))[1])
    return seen


def test_deferred_losses_and_worker_processes_train_bitwise_as_the_eager_loop(tmp_path, deferred):
    eager, lazy = tmp_path / "eager", tmp_path / "deferred"
    with pytest.MonkeyPatch.context() as m:
        m.setattr(training, "_defer_losses", lambda device: False)
        _run(eager, voc_samples(32), display=4)
    _run(lazy, voc_samples(32), display=4)
    assert deferred == [training.DATA_WORKERS]  # the worker read-ahead ran
    assert_states_equal(read_state(eager / "final.pt"), read_state(lazy / "final.pt"))
    assert _rows(eager / "log.csv") == _rows(lazy / "log.csv")
    assert [r["iteration"] for r in _rows(lazy / "log.csv")] == ["0", "4"]
    for it in (3, 6, 7):  # the display losses saved in snapshots include the unread ones
        a, b = (checkpoint.load_checkpoint(d / "snapshot" / f"iter_{it}.pt") for d in (eager, lazy))
        assert a["display_losses"] == b["display_losses"] and len(a["display_losses"]) == it


class NaNAtIndex(SmallDataset):
    """Image `index` of the dataset is all NaN (in whichever process loads it)."""

    def __init__(self, base: SmallDataset, index: int) -> None:
        super().__init__(base.samples, base.ids)
        self.index = index

    def __getitem__(self, i):
        sample = super().__getitem__(i)
        if i == self.index:
            sample["data"][:] = np.nan
        return sample


def test_a_non_finite_loss_found_at_the_read_stops_before_the_next_snapshot(tmp_path, deferred):
    base = voc_samples(32)
    bad_index = 2
    plan = StepPlan.make(1)
    order = training._train_order(len(base), 1337)
    items = list(training._my_images(order, plan, 0, 40))
    first = next(it for it, _, idx in items if idx == bad_index)
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as err:
        _run(out, NaNAtIndex(base, bad_index), display=10, iter_size=1, max_iter=40, test_interval=40, snapshot=1)
    message = str(err.value)
    assert f"iteration {first}," in message and repr(base.ids[bad_index]) in message
    assert "losses are read every 10 iterations" in message
    snaps = [i for i, _ in checkpoint.list_snapshots(out / "snapshot")]
    assert snaps == list(range(1, first + 1))  # every one before the bad iteration, none after
    assert not (out / "final.pt").exists()
    for i in snaps:
        assert all(torch.isfinite(v).all() for v in checkpoint.load_checkpoint(out / "snapshot" / f"iter_{i}.pt")["net"].values())


def test_worker_read_ahead_keeps_the_order_and_carries_errors():
    class Boom(SmallDataset):
        def __getitem__(self, i):
            if i == 3:
                raise ValueError("image 3 is broken")
            return {"data": np.full((1,), i, np.float32)}

    ds = Boom([{}] * 5, [f"i{k}" for k in range(5)])
    items = [(k, k, idx) for k, idx in enumerate([0, 1, 2, 0, 4, 1, 3, 2])]
    got = []
    with training._worker_read_ahead(items, ds, workers=2) as reader:
        reader.CHUNK = 3
        with pytest.raises(ValueError, match="image 3 is broken"):
            while True:
                item, sample = next(reader)
                got.append((item, float(sample["data"][0])))
    assert got == [(it, float(it[2])) for it in items[:6]]
