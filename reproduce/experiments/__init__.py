"""Every reference experiment as a config: one module per experiment, `<name with - as _>.py`,
each defining `EXPERIMENT = Experiment(...)` (see `reproduce.experiments.base`).

    >>> from reproduce import experiments
    >>> experiments.get("voc-fcn8s").base_lr
    1e-14
"""
from __future__ import annotations

import importlib

from reproduce.experiments.base import Expected, Experiment

__all__ = ["Experiment", "Expected", "get", "names", "all_experiments"]

# In nets.names() order.
_NAMES = (
    "voc-fcn32s", "voc-fcn16s", "voc-fcn8s", "voc-fcn8s-atonce", "voc-fcn-alexnet", "voc-fcn-googlenet",
    "nyud-fcn32s-color", "nyud-fcn32s-hha", "nyud-fcn32s-color-d", "nyud-fcn32s-color-hha",
    "nyud-fcn16s-color-hha",
    "siftflow-fcn32s", "siftflow-fcn16s", "siftflow-fcn8s",
    "pascalcontext-fcn32s", "pascalcontext-fcn16s", "pascalcontext-fcn8s",
)


def names() -> list[str]:
    """Every experiment name (the same list, in the same order, as `nets.names()`)."""
    return list(_NAMES)


def get(name: str) -> Experiment:
    """The `Experiment` called `name`; KeyError listing the known names otherwise."""
    if name not in _NAMES:
        raise KeyError(f"unknown experiment {name!r}; known experiments: {', '.join(_NAMES)}")
    module = importlib.import_module(f"reproduce.experiments.{name.replace('-', '_')}")
    experiment = module.EXPERIMENT
    if experiment.name != name:
        raise RuntimeError(f"{module.__file__}: EXPERIMENT.name is {experiment.name!r}, expected {name!r}")
    return experiment


def all_experiments() -> list[Experiment]:
    """Every experiment, in `names()` order."""
    return [get(n) for n in _NAMES]
