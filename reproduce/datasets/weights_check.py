"""Is a weight file the one its consumers need? Checked before `fcn data fetch` installs it (and
by `fcn data check`), so that a truncated download or the wrong caffemodel is refused up front.

A base classifier (vgg16, caffenet, alexnet, googlenet) must hold exactly the layers
`convert-caffe --from BASE` transplants, with the shapes that fit the FCN it initialises (vgg16:
conv1_1 ... fc7 into voc-fcn32s, fc6/fc7 reshaped by the reference's surgery; fc8 is dropped). A
released FCN model must load strictly into its experiment's net, as `fcn eval --weights` loads
it. Both read the file with weight_convert's reader (memory-mapped: no weights are copied).
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["BASE_CONSUMERS", "weights_problem"]

#: fetch NAME of a base classifier -> (its `convert-caffe --from` name, an FCN it initialises)
BASE_CONSUMERS: dict[str, tuple[str, str]] = {
    "vgg16": ("vgg16", "voc-fcn32s"),
    "caffenet": ("alexnet", "voc-fcn-alexnet"),
    "alexnet": ("alexnet", "voc-fcn-alexnet"),
    "googlenet": ("googlenet", "voc-fcn-googlenet"),
}


def weights_problem(name: str, path: str | os.PathLike[str], *, width: float = 1.0) -> str | None:
    """Why the caffemodel at `path` cannot serve as source `name`, or None when it can (or when
    nothing is known about `name`'s consumers). `width` is the nets' width (1.0: the real files;
    tests use smaller ones)."""
    import nets
    from weight_convert.caffemodel import read_net
    from weight_convert.convert import build_net, check_source_is
    from weight_convert.errors import CaffeFormatError, WeightMismatchError
    from weight_convert.load import check_complete, plan_transfer
    from weight_convert.sources import OpenedSource

    if name not in BASE_CONSUMERS and name not in nets.names():
        return None
    try:
        net = read_net(Path(path))
        source = OpenedSource(net.layers, str(path), net)
        if name in BASE_CONSUMERS:
            base, consumer = BASE_CONSUMERS[name]
            check_source_is(source, base, width)
            shapes, _ = build_net(consumer, width, meta=lambda _: True)
            plan_transfer(shapes, [(source, "")], net_label=consumer)  # raises on a shape that does not fit
        else:
            shapes, _ = build_net(name, width, meta=lambda _: True)
            check_complete(plan_transfer(shapes, [(source, "")], net_label=name), strict=True)
    except (CaffeFormatError, WeightMismatchError) as exc:
        return str(exc)
    return None
