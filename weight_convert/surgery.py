"""Net surgery as the reference's surgery.py / solve.py scripts do it, on numpy arrays.

* ``coerce``: the reference's ``transplant`` flat-copies a blob into a target of a different
  shape with the same element count, in memory (C) order. That turns VGG16's fc6 4096x25088
  into a 4096x512x7x7 convolution, fc7 4096x4096 into 4096x4096x1x1, and AlexNet's fc6
  4096x9216 into 4096x256x6x6. (The reference also "coerces" blobs of *different* sizes by
  numpy's cycling flat assignment; we refuse those as shape mismatches instead.)
* ``bgrd_conv1``: nyud-fcn32s-color-d's 4-channel ``conv1_1_bgrd`` from VGG16's ``conv1_1``:
  the three colour channels copied, the depth channel set to the mean of the three.
* ``FUSION_SUFFIXES``: nyud-fcn32s-color-hha takes a colour and an HHA FCN-32s, renaming each
  source layer ``<name>color`` / ``<name>hha`` (``transplant(..., suffix=...)``).
"""
from __future__ import annotations

import numpy as np

#: Layer-name suffixes of the NYUD late-fusion nets' two streams, in input order.
FUSION_SUFFIXES = ("color", "hha")
#: nyud-fcn32s-color-d's first convolution and the VGG16 layer it is made from.
BGRD_CONV, BGRD_SOURCE = "conv1_1_bgrd", "conv1_1"


def coerce(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``array`` flat-copied into ``shape`` in memory order (a view when ``array`` is contiguous).

    Raises ValueError when the element counts differ.
    """
    shape = tuple(shape)
    if array.size != int(np.prod(shape, dtype=np.int64)):
        raise ValueError(f"cannot coerce {array.shape} into {shape}: element counts differ")
    return array.reshape(shape)


def bgrd_conv1(weight: np.ndarray) -> np.ndarray:
    """Extend a 3-channel first-conv weight (out, 3, kh, kw) to (out, 4, kh, kw).

    Channels 0..2 are the colour filters as they are; channel 3 (depth) is their mean over the
    three input channels, as nyud-fcn32s-color-d/solve.py initializes it. Computed in float64,
    returned float32.
    """
    if weight.ndim != 4 or weight.shape[1] != 3:
        raise ValueError(f"conv1_1 weight must be (out, 3, kh, kw), got {weight.shape}")
    w = np.asarray(weight, dtype=np.float64)
    out = np.empty((w.shape[0], 4) + w.shape[2:], dtype=np.float32)
    out[:, :3] = w
    out[:, 3] = w.mean(axis=1)
    return out


def is_legacy_padding(source_shape: tuple[int, ...], target_shape: tuple[int, ...]) -> bool:
    """True when a legacy 4-D blob shape is ``target_shape`` left-padded with 1s (Caffe's
    Blob::ShapeEquals for num/channels/height/width blobs)."""
    if len(source_shape) != 4 or len(target_shape) > 4:
        return False
    padded = (1,) * (4 - len(target_shape)) + tuple(target_shape)
    return padded == tuple(source_shape)
