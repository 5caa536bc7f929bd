"""Which nets `make bench` measures, and which experiment nets each measured net stands for.

A forward or training step is measured once per architecture: nets that compute the same
trunk and differ only in their class counts (which change the 1x1 score layers and the
deconvolutions) or in a small detail named below share one measurement, so that the whole run fits in 10 minutes on the
2-core development machine. `python -m bench.run --all-nets` measures every net on its own.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Group:
    """One measured net and the experiment nets its figures stand for (with how they differ)."""

    net: str
    stands_for: tuple[tuple[str, str], ...] = ()  # (net, how it differs from `net`)


_CLASSES_40 = "40 classes"
_CLASSES_60 = "60 classes"

FORWARD: tuple[Group, ...] = (
    Group("voc-fcn32s", (("nyud-fcn32s-color", _CLASSES_40), ("nyud-fcn32s-hha", _CLASSES_40))),
    Group("pascalcontext-fcn32s"),
    Group("voc-fcn16s", (("pascalcontext-fcn16s", _CLASSES_60),)),
    Group("voc-fcn8s", (("pascalcontext-fcn8s", _CLASSES_60),)),
    Group("voc-fcn8s-atonce"),
    Group("voc-fcn-alexnet"),
    Group("voc-fcn-googlenet"),
    Group("nyud-fcn32s-color-d"),
    Group("nyud-fcn32s-color-hha"),
    Group("nyud-fcn16s-color-hha"),
    Group("siftflow-fcn32s"),
    Group("siftflow-fcn16s"),
    Group("siftflow-fcn8s"),
)

TRAIN: tuple[Group, ...] = (
    Group("voc-fcn8s", (
        ("pascalcontext-fcn8s", _CLASSES_60),
        ("voc-fcn8s-atonce", "plus two fixed Scale layers"),
        ("siftflow-fcn8s", "two heads, 33 + 3 classes"),
    )),
    Group("voc-fcn32s", (
        ("nyud-fcn32s-color", _CLASSES_40), ("nyud-fcn32s-hha", _CLASSES_40),
        ("pascalcontext-fcn32s", _CLASSES_60),
        ("nyud-fcn32s-color-d", "4 input channels, 40 classes"),
        ("siftflow-fcn32s", "two heads, 33 + 3 classes"),
    )),
    Group("voc-fcn16s", (
        ("pascalcontext-fcn16s", _CLASSES_60),
        ("siftflow-fcn16s", "two heads, 33 + 3 classes"),
    )),
    Group("voc-fcn-alexnet"),
    Group("voc-fcn-googlenet"),
    Group("nyud-fcn32s-color-hha", (
        ("nyud-fcn16s-color-hha", "FCN-16s head"),
    )),
)


def every_net() -> tuple[Group, ...]:
    """One group per experiment net (for `--all-nets`)."""
    import nets
    return tuple(Group(n) for n in nets.names())


def covered(groups: tuple[Group, ...]) -> list[str]:
    """Every experiment net the groups' figures cover."""
    return [g.net for g in groups] + [n for g in groups for n, _ in g.stands_for]
