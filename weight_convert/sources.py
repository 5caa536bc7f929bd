"""Turn whatever holds the weights (a .caffemodel, a converted .pt state dict, decoded layers)
into one list of ``CaffeLayer`` in source order."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .caffemodel import CaffeLayer, CaffeNet, check_layers, read_net
from .errors import WeightMismatchError
from .ptfile import load_pt

#: Blob index of a PyTorch parameter attribute, in Caffe's blob order.
BLOB_INDEX = {"weight": 0, "bias": 1}
STATE_DICT_SUFFIXES = (".pt", ".pth")


@dataclass
class OpenedSource:
    """Layers of a weight source; ``net`` is the decoded caffemodel when there is one (its
    ``release`` drops mapped pages after a blob has been copied)."""

    layers: list[CaffeLayer]
    label: str
    net: CaffeNet | None = None

    def release(self, array: np.ndarray) -> None:
        if self.net is not None:
            self.net.release(array)

    def file_span(self, array: np.ndarray) -> tuple[int, int] | None:
        return self.net.file_span(array) if self.net is not None else None


def open_source(source: str | os.PathLike | CaffeNet | Sequence[CaffeLayer] | Mapping) -> OpenedSource:
    """Layers from a path (.caffemodel, or .pt/.pth state dict), a ``CaffeNet``, a list of
    ``CaffeLayer``, a state dict (``{"conv1_1.weight": ...}`` or ``{"conv1_1/0": ...}``) or an
    ``OpenedSource`` (returned as it is)."""
    if isinstance(source, OpenedSource):
        return source
    if isinstance(source, CaffeNet):
        return OpenedSource(source.layers, source.path, source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.suffix.lower() in STATE_DICT_SUFFIXES:
            return OpenedSource(layers_from_state_dict(load_state_dict(path), str(path)), str(path))
        net = read_net(path)
        return OpenedSource(net.layers, str(path), net)
    if isinstance(source, Mapping):
        return OpenedSource(layers_from_state_dict(source, "<state dict>"), "<state dict>")
    if isinstance(source, Sequence) and all(isinstance(x, CaffeLayer) for x in source):
        check_layers(list(source), "<layers>", offsets=False)  # decoded files are checked on reading
        return OpenedSource(list(source), "<layers>")
    raise TypeError(f"cannot read weights from a {type(source).__name__}")


def load_state_dict(path: Path, obj: object = None) -> Mapping[str, torch.Tensor]:
    """Load a converted .pt state dict (memory-mapped, weights only, its checksum checked by
    ``ptfile.load_pt``); ``obj``: what ``load_pt(path)`` already returned, to be checked only."""
    if obj is None:
        try:
            obj = load_pt(path, mmap=True)
        except (ValueError, OSError) as e:
            raise WeightMismatchError(f"not a PyTorch state dict: {e}") from None
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightMismatchError(f"{path}: expected a mapping of parameter names to tensors")
    return obj


def layers_from_state_dict(state: Mapping, label: str) -> list[CaffeLayer]:
    """Group a state dict's entries into layers.

    Keys ``<layer>.weight`` / ``<layer>.bias`` (a nets state dict) become blobs 0 / 1; keys
    ``<layer>/<index>`` (convert-caffe's dump without --net) keep their index.
    """
    grouped: dict[str, dict[int, np.ndarray]] = {}
    for key, value in state.items():
        layer, index = _split_key(str(key), label)
        array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        grouped.setdefault(layer, {})
        if index in grouped[layer]:
            raise WeightMismatchError(f"{label}: two entries for blob {index} of layer {layer!r}",
                                      layer=layer)
        grouped[layer][index] = array
    layers = []
    for name, blobs in grouped.items():
        if sorted(blobs) != list(range(len(blobs))):
            raise WeightMismatchError(f"{label}: layer {name!r} has blobs {sorted(blobs)}, "
                                      "not 0..n-1", layer=name)
        layers.append(CaffeLayer(name=name, type="", blobs=[blobs[i] for i in range(len(blobs))]))
    return layers


def _split_key(key: str, label: str) -> tuple[str, int]:
    if "/" in key:
        layer, _, index = key.rpartition("/")
        if index.isdigit():
            return layer, int(index)
    layer, _, attr = key.rpartition(".")
    if layer and attr in BLOB_INDEX:
        return layer, BLOB_INDEX[attr]
    raise WeightMismatchError(f"{label}: cannot tell layer and blob from key {key!r} "
                              "(expected '<layer>.weight', '<layer>.bias' or '<layer>/<index>')")
