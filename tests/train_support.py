"""Small datasets and experiments shared by the training tests (this module holds no tests).

`voc_samples()` is the real VOC / SBD samples of reproduce/samples (3 VOC 2012 images and
1 SBD image with their labels, read with the project's own readers), shrunk so that the long side
is `size` pixels (area-averaged image, nearest-neighbour labels), so reduced-width nets train in
seconds on a CPU.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from reproduce import experiments

SAMPLES = Path(__file__).parent.parent / "reproduce" / "samples"  # the VOC / SBD samples (package data)


class SmallDataset:
    """An in-memory SegDataset look-alike: `ids`, `len()`, `ds[i] -> {"data", "label"}`."""

    def __init__(self, samples: list[dict[str, np.ndarray]], ids: list[str]) -> None:
        self.samples, self.ids, self.split = samples, ids, "train"
        self.calls = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        self.calls += 1
        return {k: v.copy() for k, v in self.samples[i].items()}


def shrink(sample: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Resize so that the long side is `size`: image by area averaging, label by nearest neighbour."""
    data, label = sample["data"], sample["label"]
    h, w = label.shape
    scale = size / max(h, w)
    out_hw = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = F.interpolate(torch.from_numpy(data)[None], size=out_hw, mode="area")[0].numpy()
    lab = F.interpolate(torch.from_numpy(label)[None, None].float(), size=out_hw, mode="nearest")[0, 0]
    return {"data": np.ascontiguousarray(small, dtype=np.float32), "label": lab.numpy().astype(np.uint8)}


_CACHE: dict[int, tuple[list, list]] = {}


def voc_samples(size: int = 64) -> SmallDataset:
    """The 4 real VOC/SBD fixture samples, long side `size` pixels."""
    if size not in _CACHE:
        from reproduce.datasets import open_dataset
        sources = [open_dataset("voc", SAMPLES / "voc", "sample"), open_dataset("sbd", SAMPLES / "sbd", "train")]
        samples, ids = [], []
        for ds in sources:
            for i in range(len(ds)):
                samples.append(shrink(ds[i], size))
                ids.append(ds.ids[i])
        _CACHE[size] = (samples, ids)
    samples, ids = _CACHE[size]
    return SmallDataset(list(samples), list(ids))


def tiny_experiment(**changes) -> experiments.Experiment:
    """voc-fcn32s with the given fields changed (e.g. base_lr, iter_size, max_iter)."""
    return dataclasses.replace(experiments.get("voc-fcn32s"), **changes)


def read_state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Bitwise equality of two state dicts."""
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs: max |diff| {(a[k] - b[k]).abs().max().item()}"
