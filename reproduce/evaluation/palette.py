"""The PASCAL VOC colour palette (the devkit's VOClabelcolormap) and label-map images.

Class i's colour spreads the bits of i over the three channels, most significant bit first:
bit 3k of i goes to red bit 7-k, bit 3k+1 to green, bit 3k+2 to blue. Index 0 (background) is
black and 255 (void / ignore) is (224, 224, 192). VOC ground-truth PNGs and the evaluation server's
result PNGs are palette ("P" mode) images with this palette; it is used here for every dataset.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image


@lru_cache(maxsize=None)
def voc_colormap() -> np.ndarray:
    """(256, 3) uint8 array: the RGB colour of each label index."""
    cmap = np.zeros((256, 3), dtype=np.uint8)
    for i in range(256):
        c, rgb = i, [0, 0, 0]
        for k in range(8):
            for ch in range(3):
                rgb[ch] |= ((c >> ch) & 1) << (7 - k)
            c >>= 3
        cmap[i] = rgb
    cmap.setflags(write=False)
    return cmap


def voc_palette() -> list[int]:
    """The palette as Pillow's flat [r0, g0, b0, r1, ...] list of 768 ints."""
    return voc_colormap().ravel().tolist()


def label_image(label: np.ndarray) -> Image.Image:
    """An H x W label map (values 0..255) as a "P" mode image with the VOC palette."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"label map must be H x W, got shape {label.shape}")
    if label.size and (label.min() < 0 or label.max() > 255):
        raise ValueError(f"label values must be in 0..255, got {label.min()}..{label.max()}")
    img = Image.fromarray(label.astype(np.uint8), mode="P")
    img.putpalette(voc_palette())
    return img


def colorize(label: np.ndarray) -> Image.Image:
    """An H x W label map as an RGB image in VOC colours."""
    label = np.asarray(label)
    if label.ndim != 2:
        raise ValueError(f"label map must be H x W, got shape {label.shape}")
    return Image.fromarray(voc_colormap()[label.astype(np.uint8)], mode="RGB")


def read_label_png(path) -> np.ndarray:
    """A label PNG as an H x W uint8 array of indices ("P" or "L" mode; palette indices are kept,
    never converted to colours). Raises ValueError naming the file for RGB images."""
    with Image.open(path) as img:
        if img.mode not in ("P", "L"):
            raise ValueError(f"{path}: label PNG must be palette (P) or greyscale (L) mode, not {img.mode}")
        return np.array(img, dtype=np.uint8)
