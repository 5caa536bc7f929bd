"""Score a net on a split as the reference's score.py does, and export VOC test predictions.

`evaluate` walks the split in order, one image at a time at its native size (batch 1), with the
net in Caffe's TEST phase (`net.eval()`: no dropout). Per image it takes the argmax over classes
of the score blob, adds its confusion histogram (`reproduce.evaluation.metrics`), and adds the image's loss
as the test net computes it (SoftmaxWithLoss with the experiment's `normalize`: the summed pixel
loss for every VGG net, the per-pixel mean for FCN-AlexNet, whose val net normalizes too). The
reported loss is the mean of those per-image losses, as score.py averages net.blobs['loss'].
SIFT Flow scores its semantic and geometric heads in separate histograms.

`export_voc_test` writes VOC test-set predictions in the evaluation server's layout:
results/VOC2012/Segmentation/comp6_test_cls/<id>.png (palette PNGs of class indices, image-sized;
comp6 = trained with data beyond VOC, here SBD), packed as a .tar.gz whose top folder is results/.
"""
from __future__ import annotations

import os
import pickle
import tarfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import nets
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from reproduce.evaluation import metrics
from reproduce.device import resolve_device
from reproduce.experiments import Experiment
from reproduce.progress import Progress, track
from reproduce.training.loss import softmax_with_loss
from reproduce.evaluation.palette import label_image
from reproduce.atomic import atomic_file, save_png_atomic

GEO_CLASSES = 3  # SIFT Flow geometric head: sky, horizontal, vertical


def head_classes(experiment: Experiment) -> tuple[int, ...]:
    """Score channels per head (21 VOC; 40 NYUD; (33, 3) SIFT Flow; 60 PASCAL-Context)."""
    n = nets.info(experiment.name).num_classes
    return tuple(n) if isinstance(n, (tuple, list)) else (int(n),)


class _Failed:
    """A sample a DataLoader worker could not load: its exception, carried back to be raised as is."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _picklable(exc: Exception) -> Exception:
    """`exc` if it survives pickling, else the nearest built-in type it derives from, same arguments."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        base = next(c for c in type(exc).__mro__ if c.__module__ == "builtins")
        try:
            return base(*exc.args)
        except Exception:
            return base(str(exc))


class _CarryErrors(Dataset):
    """`dataset` whose load errors come back as _Failed items, so that the main process raises the
    worker's exception itself (type and message) rather than DataLoader's wrapped traceback."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except Exception as exc:  # raised again in the main process by _samples
            return _Failed(_picklable(exc))


def _samples(loader: Iterable) -> Iterator[Any]:
    """The loader's samples; a sample a worker could not load raises the worker's exception."""
    for sample in loader:
        if isinstance(sample, _Failed):
            raise sample.exc
        yield sample


def _loader(dataset: Dataset, limit: int | None, num_workers: int, pin: bool) -> tuple[DataLoader, int]:
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    n = len(dataset) if limit is None else min(int(limit), len(dataset))
    subset = dataset if n == len(dataset) else Subset(dataset, range(n))
    if num_workers > 0:
        subset = _CarryErrors(subset)
    # batch_size=None: one sample per step, numpy arrays converted to tensors, no collation.
    return DataLoader(subset, batch_size=None, shuffle=False, num_workers=num_workers, pin_memory=pin), n


def evaluate(net: torch.nn.Module, experiment: Experiment, dataset: Dataset, *,
             device: str | torch.device = "cpu", progress: bool = True, limit: int | None = None,
             num_workers: int = 0, weights: str | os.PathLike | None = None, iteration: int | None = None,
             split: str | None = None) -> dict[str, Any]:
    """Score `net` on `dataset` (a `reproduce.datasets` split of the experiment's val data).

    Args:
        net: the experiment's net (any width); it is put in eval mode.
        dataset: indexable, `len()`, each item a dict with the experiment's input and label keys.
        device: where the forward runs; histograms are accumulated on the CPU.
        limit: score only the first `limit` images (in split order).
        num_workers: DataLoader worker processes loading images while the net computes.
        weights, iteration, split: recorded in the result (split defaults to `dataset.split`,
            else the experiment's val split).
    Returns the metrics.json record (`reproduce.evaluation.metrics.metrics_record`): scores in percent,
    `loss` = mean per-image loss of the first head, SIFT Flow adds `scores_geo` / `loss_geo`;
    plus "loss_normalized" (whether the per-image loss is a pixel mean, as for FCN-AlexNet).
    """
    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    classes = head_classes(experiment)
    accumulators = [metrics.MetricsAccumulator(classes[0], metrics.scoring_for_experiment(experiment.name))]
    if len(classes) > 1:
        accumulators.append(metrics.MetricsAccumulator(classes[1]))
    loader, n = _loader(dataset, limit, num_workers, pin=device.type == "cuda")
    net.eval()
    bar = Progress(f"eval {experiment.name}", n, unit="image", show=progress)
    with torch.inference_mode(), bar:
        for sample in _samples(track(loader, bar)):
            inputs = [t.to(device, non_blocking=True) for t in experiment.net_inputs(sample)]
            labels = experiment.net_labels(sample)
            scores = experiment.net_scores(net(*inputs))
            for acc, score, label, key in zip(accumulators, scores, labels, experiment.labels):
                _check_score(score, label, acc.num_classes, experiment, key)
                acc.add(score[0].argmax(0).to(torch.uint8), label[0])
                loss = softmax_with_loss(score, label.to(device), normalize=experiment.loss_normalize)
                acc.add_loss(float(loss))
    record = metrics.metrics_record(
        experiment=experiment.name, weights=weights,
        split=split or getattr(dataset, "split", None) or experiment.val_split, iteration=iteration,
        accumulator=accumulators[0], geo_accumulator=accumulators[1] if len(accumulators) > 1 else None)
    record["loss_normalized"] = experiment.loss_normalize
    return record


def _check_score(score: torch.Tensor, label: torch.Tensor, num_classes: int, experiment: Experiment,
                 key: str) -> None:
    if score.ndim != 4 or score.shape[0] != 1 or score.shape[1] != num_classes:
        raise ValueError(f"{experiment.name}: score for {key!r} has shape {tuple(score.shape)}, "
                         f"expected 1 x {num_classes} x H x W")
    if score.shape[2:] != label.shape[1:]:
        raise ValueError(f"{experiment.name}: score is {tuple(score.shape[2:])} (H, W) but the {key!r} "
                         f"label is {tuple(label.shape[1:])}")


# ---------------------------------------------------------------------------------------------
# VOC evaluation server export


class VOCTestImages(Dataset):
    """The images of a VOC test split (no labels): {"data": float32 3 x H x W BGR minus the
    training mean}, ids from <voc_dir>/ImageSets/Segmentation/<split>.txt, images
    <voc_dir>/JPEGImages/<id>.jpg."""

    def __init__(self, voc_dir: str | os.PathLike, split: str = "test") -> None:
        from reproduce.datasets.split_lists import read_split
        self.root = Path(voc_dir)
        self.split = split
        self.split_file = self.root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not self.split_file.is_file():
            raise FileNotFoundError(f"{self.split_file}: split list not found (is {self.root} the "
                                    f"VOC test devkit folder, e.g. VOCdevkit/VOC2012?)")
        self.ids = read_split(self.split_file)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        from reproduce.datasets.conventions import VOC_MEAN_BGR
        from reproduce.datasets.image_io import caffe_bgr
        return {"data": caffe_bgr(self.root / "JPEGImages" / f"{self.ids[index]}.jpg", VOC_MEAN_BGR)}


def find_voc_dir(root: str | os.PathLike, year: int = 2012, split: str = "test") -> Path:
    """The VOC<year> folder holding ImageSets/Segmentation/<split>.txt: `root` itself,
    root/VOC<year> or root/VOCdevkit/VOC<year>. FileNotFoundError listing the places tried."""
    root = Path(root)
    tried = [root, root / f"VOC{year}", root / "VOCdevkit" / f"VOC{year}"]
    for folder in tried:
        if (folder / "ImageSets" / "Segmentation" / f"{split}.txt").is_file():
            return folder
    raise FileNotFoundError(f"no ImageSets/Segmentation/{split}.txt in any of: "
                            + ", ".join(str(t) for t in tried))


def server_result_dir(year: int = 2012, comp: str = "comp6", split: str = "test") -> Path:
    """The devkit's result folder for class segmentation, relative to the submission root:
    results/VOC<year>/Segmentation/<comp>_<split>_cls."""
    return Path("results") / f"VOC{year}" / "Segmentation" / f"{comp}_{split}_cls"


def export_voc_test(net: torch.nn.Module, experiment: Experiment, dataset: VOCTestImages,
                    out_dir: str | os.PathLike, *, year: int = 2012, comp: str = "comp6",
                    device: str | torch.device = "cpu", progress: bool = True, limit: int | None = None,
                    num_workers: int = 0) -> Path:
    """Predict every image of `dataset` and write <out_dir>/results/VOC<year>/Segmentation/
    <comp>_<split>_cls/<id>.png, then pack exactly those files into
    <out_dir>/<comp>_VOC<year>_<split>.tar.gz (entries "results/..."). Returns the archive path."""
    if experiment.dataset != "voc" or len(experiment.labels) != 1:
        raise ValueError(f"{experiment.name}: VOC test export needs a VOC experiment, not {experiment.dataset}")
    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    rel_dir = server_result_dir(year, comp, dataset.split)
    out_dir = Path(out_dir)
    loader, n = _loader(dataset, limit, num_workers, pin=device.type == "cuda")
    num_classes = head_classes(experiment)[0]
    members: list[Path] = []
    net.eval()
    bar = Progress(f"export VOC{year} {dataset.split}", n, unit="image", show=progress)
    with torch.inference_mode(), bar:
        for i, sample in enumerate(_samples(track(loader, bar))):
            score = experiment.net_scores(net(*[t.to(device) for t in experiment.net_inputs(sample)]))[0]
            if score.shape[1] != num_classes:
                raise ValueError(f"{experiment.name}: score has {score.shape[1]} channels, expected {num_classes}")
            pred = score[0].argmax(0).to(torch.uint8).cpu().numpy()
            rel = rel_dir / f"{dataset.ids[i]}.png"
            save_png_atomic(label_image(pred), out_dir / rel)
            members.append(rel)
    return pack_tar_gz(out_dir, members, out_dir / f"{comp}_VOC{year}_{dataset.split}.tar.gz")


def pack_tar_gz(base: Path, members: Sequence[Path], archive: Path) -> Path:
    """Pack base/<member> for each member (stored under its relative path) into a .tar.gz,
    atomically (temp file + os.replace). Parent folders are added as directory entries."""
    with atomic_file(archive) as f, tarfile.open(fileobj=f, mode="w:gz") as tar:
        dirs = sorted({p for m in members for p in Path(m).parents if str(p) != "."}, key=lambda p: len(p.parts))
        for d in dirs:
            tar.add(base / d, arcname=d.as_posix(), recursive=False)
        for m in members:
            tar.add(base / m, arcname=Path(m).as_posix(), recursive=False)
    return archive
