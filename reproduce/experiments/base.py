"""The `Experiment` record: everything the reference's `<model dir>/` (solver.prototxt, solve.py,
net.py's data layer) says about one experiment, plus the numbers it should reach.

Solver values come from docs/reference.md §1c, data splits
and inputs from sections 1a and 3, published numbers from sections 1b and 5.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch

DATASETS = ("voc", "nyud", "siftflow", "pascalcontext")
IGNORE_LABEL = 255
WEIGHT_DECAY = 0.0005  # every reference solver.prototxt sets weight_decay 0.0005
SEED = 1337  # the reference's train data layers seed Python's `random` with 1337


@dataclass(frozen=True)
class Expected:
    """Published numbers an experiment should reach, from one source.

    scores: metrics.json dotted path -> value in percent, e.g. {"scores.mean_iu": 63.6,
        "scores_geo.pixel_acc": 94.3}.
    split: the split the numbers were measured on (our split names: "seg11valid", "test", ...).
    source: where the numbers are printed (source key of docs/reference.md §0 and table).
    unverified: True where docs/reference.md marks the numbers UNVERIFIED.
    note: how the source's setup differs from this experiment's, if it does.
    """

    source: str
    split: str
    scores: Mapping[str, float]
    unverified: bool = False
    note: str = ""


@dataclass(frozen=True)
class Experiment:
    """One reference experiment: data, net, initialization, Caffe solver settings, expected results.

    name: the experiment and net name (one of `nets.names()`).
    dataset: "voc" | "nyud" | "siftflow" | "pascalcontext" (the `reproduce.datasets` name).
    train_split / val_split: split names given to `reproduce.datasets.open_dataset`.
    train_reader / val_reader: the `open_dataset` reader of each (VOC trains on "sbd", validates on "voc").
    inputs: dataset sample keys fed to the net, in the net's input order; with `concat_inputs`
        they are concatenated along channels into the one `data` blob (NYUD color-D early fusion).
    labels: dataset sample keys of the ground truth, one per score head.
    scores: the net's output blob per head, aligned with `labels` ("score" or "score_sem"/"score_geo").
    init: what the trunk is initialized from: "vgg16" / "alexnet" / "googlenet" (the converted ILSVRC
        classifier), the name of the coarser experiment whose final weights are loaded, or a tuple
        of experiment names for late fusion (copied with the net's stream suffixes).
    base_lr, momentum, weight_decay, iter_size, max_iter, lr_policy: Caffe SGD solver settings.
    test_interval: iterations between test passes (the reference's solve.py loop step, since the
        solver's own test_interval is 999999999).
    test_iter: images in the reference's test pass (the val/test split size).
    snapshot: Caffe's snapshot interval in iterations; None where the reference sets none.
    loss_normalize: SoftmaxWithLoss `normalize` (False: summed over pixels; True: pixel mean).
    seed: seed of the training order.
    paper: published numbers, keyed by a short source label.
    notes: anything a reader must know that the fields do not say (our choices, reference quirks).
    """

    name: str
    dataset: str
    train_split: str
    val_split: str
    train_reader: str
    val_reader: str
    inputs: tuple[str, ...]
    labels: tuple[str, ...]
    init: str | tuple[str, ...]
    base_lr: float
    momentum: float
    iter_size: int
    max_iter: int
    test_interval: int
    test_iter: int
    snapshot: int | None
    loss_normalize: bool = False
    weight_decay: float = WEIGHT_DECAY
    lr_policy: str = "fixed"
    seed: int = SEED
    concat_inputs: bool = False
    scores: tuple[str, ...] = ("score",)
    paper: Mapping[str, Expected] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"experiment {self.name}: dataset {self.dataset!r} not in {DATASETS}")
        if len(self.scores) != len(self.labels):
            raise ValueError(f"experiment {self.name}: one score blob per label needed, "
                             f"got scores {self.scores} and labels {self.labels}")
        if self.concat_inputs and len(self.inputs) < 2:
            raise ValueError(f"experiment {self.name}: concat_inputs needs two or more inputs")
        for what in ("base_lr", "iter_size", "max_iter", "test_interval", "test_iter"):
            if not getattr(self, what) > 0:
                raise ValueError(f"experiment {self.name}: {what} must be positive")

    def net_inputs(self, sample: Mapping[str, Any]) -> list[torch.Tensor]:
        """The net's forward arguments for one dataset sample: float32 1 x C x H x W tensors in
        `net.inputs` order (one 4-channel tensor for color-D: Concat(color, depth))."""
        tensors = [_as_tensor(sample, key, self.name).float() for key in self.inputs]
        for key, t in zip(self.inputs, tensors):
            if t.ndim != 3:
                raise ValueError(f"{self.name}: sample[{key!r}] must be C x H x W, got shape {tuple(t.shape)}")
        if self.concat_inputs:
            tensors = [torch.cat(tensors, dim=0)]
        return [t.unsqueeze(0) for t in tensors]

    def net_labels(self, sample: Mapping[str, Any]) -> list[torch.Tensor]:
        """The ground truth of one sample per head: int64 1 x H x W tensors (255 = ignore)."""
        out = []
        for key in self.labels:
            t = _as_tensor(sample, key, self.name)
            if t.ndim == 3 and t.shape[0] == 1:  # the reference's layers emit 1 x H x W
                t = t[0]
            if t.ndim != 2:
                raise ValueError(f"{self.name}: sample[{key!r}] must be H x W, got shape {tuple(t.shape)}")
            out.append(t.long().unsqueeze(0))
        return out

    def net_scores(self, output: torch.Tensor | Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
        """The net's output as a list aligned with `labels` (the score blob of each head)."""
        if isinstance(output, Mapping):
            missing = [s for s in self.scores if s not in output]
            if missing:
                raise KeyError(f"{self.name}: net output lacks {missing}; it has {sorted(output)}")
            return [output[s] for s in self.scores]
        if len(self.scores) != 1:
            raise TypeError(f"{self.name}: expected a dict with {self.scores} from the net, got a tensor")
        return [output]

    def open_split(self, data_root: str | os.PathLike, which: str = "val", *, split: str | None = None):
        """`reproduce.datasets.open_dataset` for this experiment's train or val data.

        which: "train" or "val" (picks the reader and default split); split: overrides the split name.
        NYUD readers load only the inputs and labels this experiment uses."""
        from reproduce.datasets import open_dataset
        if which not in ("train", "val"):
            raise ValueError(f"which must be 'train' or 'val', not {which!r}")
        reader = self.train_reader if which == "train" else self.val_reader
        split = split or (self.train_split if which == "train" else self.val_split)
        options = {"tops": tuple(dict.fromkeys(self.inputs + self.labels))} if reader == "nyud" else {}
        return open_dataset(reader, data_root, split, **options)

    def build_net(self, *, width: float = 1.0) -> torch.nn.Module:
        """`nets.build(self.name, width=width)`: the experiment's net, Caffe-initialized."""
        import nets
        return nets.build(self.name, width=width)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (for run.json)."""
        return _jsonable(dataclasses.asdict(self))


def _as_tensor(sample: Mapping[str, Any], key: str, name: str) -> torch.Tensor:
    if key not in sample:
        raise KeyError(f"{name}: sample has no {key!r} (it has {sorted(sample)})")
    value = sample[key]
    if isinstance(value, torch.Tensor):
        return value
    return torch.from_numpy(np.ascontiguousarray(value))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def vgg_trunk_note() -> str:
    """The note shared by every experiment initialized from VGG16."""
    return ("init vgg16: the converted VGG_ILSVRC_16_layers caffemodel with fc6/fc7 transplanted "
            "into convolutions (the reference's vgg16-fcn.caffemodel); score layers start at zero, "
            "upsampling layers bilinear (solve.py's surgery.interp)")


def staged_note(coarser: str) -> str:
    """The note of a staged (FCN-16s / FCN-8s) experiment."""
    return (f"init {coarser}: that experiment's final weights copied by layer name (Caffe copy_from); "
            "the new skip score layers start at zero, upsampling layers bilinear")


def as_expected(source: str, split: str, values: Sequence[float | None], *, keys: Sequence[str] = (
        "scores.pixel_acc", "scores.mean_acc", "scores.mean_iu", "scores.fw_iu"),
        unverified: bool = False, note: str = "") -> Expected:
    """An `Expected` from a table row printed in the usual metric order (None = not printed)."""
    if len(values) != len(keys):
        raise ValueError(f"{source}: {len(values)} values for {len(keys)} metrics")
    return Expected(source, split, {k: float(v) for k, v in zip(keys, values) if v is not None},
                    unverified=unverified, note=note)
