"""Which weights a training stage starts from: the files named by an experiment's `init` chain.

An experiment's `init` (reproduce/experiments/) names either an ILSVRC classifier ("vgg16",
"alexnet", "googlenet": `CLASSIFIERS`) or the coarser stage it continues ("voc-fcn32s"), one
name per stream for late fusion. A stage's weights are its run directory's `final.pt`. Two
callers turn the chain into files: `fcn train` without --init (`default_init`: the classifier as
`fcn data fetch` stored it under the data root) and the Makefile / Slurm chain
(`reproduce.pipeline.plan.init_files`: the classifier as the Makefile converted it under runs/init/).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # plan.py imports this module; the experiments registry loads only when used
    from reproduce.experiments import Experiment

#: ILSVRC classifier an `init` names -> its `fcn data fetch` name (the Makefile's WEIGHT_NAME_*).
#: The reference's FCN-AlexNet starts from CaffeNet, not BVLC AlexNet (reproduce.datasets.sources).
CLASSIFIERS: dict[str, str] = {"vgg16": "vgg16", "alexnet": "caffenet", "googlenet": "googlenet"}

#: Where `fcn train` looks for each classifier when --init is not given, in order, relative to the
#: data root (`fcn data fetch vgg16` / `caffenet` store them as <data root>/weights/<file>).
BASE_WEIGHTS: dict[str, tuple[str, ...]] = {
    "vgg16": ("weights/vgg16-fcn.caffemodel", "weights/VGG_ILSVRC_16_layers.caffemodel"),
    "alexnet": ("weights/alexnet-fcn.caffemodel", "weights/bvlc_reference_caffenet.caffemodel"),
    "googlenet": ("weights/bvlc_googlenet.caffemodel",),  # loaded by layer name, classifiers dropped
}


class MissingInitError(FileNotFoundError):
    """No file for one name of an experiment's `init` chain; the message names what was looked for."""


def init_chain(experiment: Experiment) -> tuple[str, ...]:
    """The names `experiment` starts from, one per stream (a classifier or a stage name)."""
    return experiment.init if isinstance(experiment.init, tuple) else (experiment.init,)


def stage_weights(runs: Path, stage: str) -> Path:
    """The weights training stage `stage` leaves in the runs folder `runs`: <runs>/<stage>/final.pt."""
    return Path(runs) / stage / "final.pt"


def default_init(experiment: Experiment, out: Path, data_dir: Path) -> list[Path]:
    """The weights `experiment` starts from when --init is not given, one per stream.

    A classifier: the first of its BASE_WEIGHTS found under `data_dir`; a coarser stage: its
    `final.pt` in the sibling run directory `<out>/../<name>/final.pt` (`out`: this run's directory).
    Raises MissingInitError naming what was looked for when a file is missing.
    """
    found = []
    for name in init_chain(experiment):
        if name in BASE_WEIGHTS:
            candidates = [Path(data_dir) / c for c in BASE_WEIGHTS[name]]
        else:
            candidates = [stage_weights(Path(out).parent, name)]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            raise MissingInitError(f"{experiment.name} starts from {name!r}, but none of "
                                   f"{', '.join(map(str, candidates))} exists; pass --init")
        found.append(hit)
    return found
