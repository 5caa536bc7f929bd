"""Run an experiment's trained net on image files: load weights, preprocess as the reference's data
layers do, forward, argmax, and write the VOC-palette prediction and an input | prediction image.

    net, _ = load_net(experiments.get("voc-fcn8s"), "final.pt")
    infer_files(net, experiment, ["cat.jpg"], out_dir="out/")   # out/cat.png, out/cat_side.png
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from nets.loading import WeightsError, load_weights  # noqa: F401 - the loaders live with the nets
from reproduce.datasets import conventions
from reproduce.datasets.image_io import bgr_from_rgb, caffe_hha, load_depth_png
from reproduce.datasets.nyud import log_depth
from reproduce.experiments import Experiment
from reproduce.evaluation.palette import colorize, label_image
from reproduce.atomic import atomic_file, save_png_atomic
from reproduce.progress import Progress, track

# ---------------------------------------------------------------------------------------------
# weights



def load_net(experiment: Experiment, weights: str | os.PathLike, *, width: float | None = None,
             device: str | torch.device = "cpu") -> tuple[torch.nn.Module, int | None]:
    """The experiment's net with `weights` loaded (`nets.open_weights`), on `device`, in eval mode.
    `width`: None takes the file's record (1 for a file without one); a width, or an experiment,
    that contradicts the record is a ValueError naming both. Returns (net, iteration or None)."""
    import nets
    net, loaded = nets.open_weights(weights, net=experiment.name, width=width)
    return net.to(device).eval(), loaded.iteration


# ---------------------------------------------------------------------------------------------
# preprocessing (as the reference's data layers)


def input_mean(experiment: Experiment, key: str) -> np.ndarray:
    """The mean the reference subtracts from input `key` of this experiment's dataset."""
    if experiment.dataset == "voc":
        # voc-fcn8s/infer.py's digits of the ILSVRC mean (net.py's training layers round them).
        return conventions.VOC_MEAN_BGR_INFER
    if experiment.dataset == "pascalcontext":
        return conventions.PASCALCONTEXT_MEAN_BGR
    if experiment.dataset == "siftflow":
        return conventions.SIFTFLOW_MEAN_BGR
    return {"color": conventions.NYUD_MEAN_BGR, "hha": conventions.NYUD_MEAN_HHA,
            "depth": conventions.NYUD_MEAN_LOG_DEPTH}[key]


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB (greyscale / RGBA / palette converted to RGB)."""
    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: unreadable image ({exc})") from None


def preprocess(experiment: Experiment, paths: Mapping[str, str | os.PathLike]) -> dict[str, np.ndarray]:
    """A dataset-style sample {input key: float32 C x H x W} from one file per `experiment.inputs`
    key: RGB images become BGR minus mean, HHA images HHA minus mean, depth PNGs log(depth) - 7.844."""
    sample: dict[str, np.ndarray] = {}
    for key in experiment.inputs:
        if key not in paths:
            raise ValueError(f"{experiment.name} needs a {key!r} input file")
        path = Path(paths[key])
        if key == "hha":
            sample[key] = caffe_hha(path, input_mean(experiment, key))
        elif key == "depth":
            sample[key] = log_depth(load_depth_png(path), path)
        else:
            sample[key] = bgr_from_rgb(read_rgb(path), input_mean(experiment, key))
    shapes = {k: v.shape[1:] for k, v in sample.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"input files of one sample differ in size (H, W): "
                         f"{ {k: (str(paths[k]), v) for k, v in shapes.items()} }")
    return sample


# ---------------------------------------------------------------------------------------------
# forward


@torch.inference_mode()
def predict(net: torch.nn.Module, experiment: Experiment, sample: Mapping[str, Any], *,
            device: str | torch.device = "cpu") -> list[np.ndarray]:
    """Argmax over classes of each head's score for one sample: uint8 H x W arrays, in
    `experiment.labels` order (semantic then geometric for SIFT Flow)."""
    inputs = [t.to(device) for t in experiment.net_inputs(sample)]
    scores = experiment.net_scores(net(*inputs))
    return [s[0].argmax(0).to(torch.uint8).cpu().numpy() for s in scores]


# ---------------------------------------------------------------------------------------------
# images out


def side_by_side(images: Sequence[Image.Image], *, gap: int = 4, background=(255, 255, 255)) -> Image.Image:
    """Images pasted left to right (top-aligned) on one RGB canvas with `gap` pixels between."""
    if not images:
        raise ValueError("side_by_side needs at least one image")
    width = sum(im.width for im in images) + gap * (len(images) - 1)
    height = max(im.height for im in images)
    canvas = Image.new("RGB", (width, height), background)
    x = 0
    for im in images:
        canvas.paste(im.convert("RGB"), (x, 0))
        x += im.width + gap
    return canvas


def infer_label_maps(net: torch.nn.Module, experiment: Experiment, images: Sequence[str | os.PathLike], *,
                     device: str | torch.device = "cpu", progress: bool = False) -> list[np.ndarray]:
    """The first head's argmax (uint8 H x W) for each image file, for single-input experiments."""
    if len(experiment.inputs) != 1:
        raise ValueError(f"{experiment.name} needs inputs {experiment.inputs}; give them to `fcn infer`")
    out = []
    with Progress(f"predict {experiment.name}", len(images), unit="image", show=progress) as bar:
        for path in track(images, bar):
            out.append(predict(net, experiment, preprocess(experiment, {experiment.inputs[0]: path}),
                               device=device)[0])
    return out


def planned_outputs(experiment: Experiment, images: Sequence[str | os.PathLike],
                    out_dir: str | os.PathLike) -> list[list[Path]]:
    """Per image (stem S), the files `infer_files` writes into out_dir, in writing order:
    S.png (SIFT Flow: S_sem.png, S_geo.png), then S_side.png."""
    suffixes = [""] if len(experiment.labels) == 1 else [f"_{k}" for k in experiment.labels]
    out_dir = Path(out_dir)
    return [[out_dir / f"{Path(p).stem}{s}.png" for s in suffixes] + [out_dir / f"{Path(p).stem}_side.png"]
            for p in images]


def check_outputs(outputs: Sequence[Path], inputs: Sequence[str | os.PathLike], *, force: bool = False) -> None:
    """Refuse (ValueError, before anything is written) outputs that would overwrite an input file
    (compared after resolving symlinks, and as the same file: hard links), even with `force`;
    two outputs of one name; and, unless `force`, outputs that exist already."""
    resolved = {Path(p).resolve(): Path(p) for p in inputs}
    seen: dict[Path, Path] = {}
    existing = []
    for out in outputs:
        target = out.resolve()
        source = resolved.get(target) or next(
            (p for p in inputs if out.exists() and Path(p).exists() and out.samefile(p)), None)
        if source is not None:
            raise ValueError(f"{out}: writing the prediction there would overwrite the input file {source}; "
                             "choose another --out folder")
        if target in seen:
            raise ValueError(f"{out}: two outputs of this name (images with clashing names, e.g. "
                             f"'a.png' and 'a_side.png'); their outputs would overwrite each other")
        seen[target] = out
        if out.exists() or out.is_symlink():
            existing.append(out)
    if existing and not force:
        shown = ", ".join(map(str, existing[:3])) + (f", ... ({len(existing)} in all)" if len(existing) > 3 else "")
        raise ValueError(f"{shown} already exist{'s' if len(existing) == 1 else ''}: not overwriting "
                         "(give --force to replace existing outputs)")


def infer_files(net: torch.nn.Module, experiment: Experiment, images: Sequence[str | os.PathLike],
                out_dir: str | os.PathLike, *, extra: Mapping[str, Sequence[str | os.PathLike]] | None = None,
                device: str | torch.device = "cpu", progress: bool = True, force: bool = False) -> list[Path]:
    """Predict every image and write, per image stem S, into out_dir:
    S.png (the argmax as a VOC-palette PNG; SIFT Flow: S_sem.png and S_geo.png) and
    S_side.png (input | prediction(s), RGB). `images` feed the experiment's first input; `extra`
    gives the files of its other inputs (e.g. {"hha": [...]}) in the same order.
    Every output is checked before the first is written (`check_outputs`): an input file is never
    overwritten, an existing output only with `force`. Returns the paths written."""
    extra = dict(extra or {})
    first, others = experiment.inputs[0], experiment.inputs[1:]
    for key in others:
        if len(extra.get(key, ())) != len(images):
            raise ValueError(f"{experiment.name} needs one {key} file per image "
                                   f"({len(images)} images, {len(extra.get(key, ()))} {key} files)")
    stems = [Path(p).stem for p in images]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise ValueError(f"images share file names {dupes}; their outputs would overwrite each other")
    outputs = planned_outputs(experiment, images, out_dir)
    inputs = list(images) + [p for k in others for p in extra[k]]
    check_outputs([p for per_image in outputs for p in per_image], inputs, force=force)
    written: list[Path] = []
    with Progress("infer", len(images), unit="image", show=progress) as bar:
        for i in track(range(len(images)), bar):
            paths = {first: images[i], **{k: extra[k][i] for k in others}}
            sample = preprocess(experiment, paths)
            preds = predict(net, experiment, sample, device=device)
            panels = [Image.fromarray(read_rgb(images[i]))]
            for path, pred in zip(outputs[i], preds):
                written.append(save_png_atomic(label_image(pred), path))
                panels.append(colorize(pred))
            written.append(save_png_atomic(side_by_side(panels), outputs[i][-1]))
    return written
