"""Map caffemodel blobs onto a `nets` module by layer name, as Caffe's ``copy_from`` and the
reference's ``surgery.transplant`` do.

Matching rules, per target parameter ``<layer>.weight`` (Caffe blob 0) / ``<layer>.bias``
(blob 1), for a source layer named ``<layer>`` (or ``<layer>`` minus the ``suffix``):
  * same shape: copied;
  * a legacy V1 4-D blob equal to the target shape left-padded with 1s: copied (Caffe's
    Blob::ShapeEquals);
  * otherwise, with ``surgery=True`` and the same element count: flat-copied in memory order
    (the reference's "coercing": fc6 4096x25088 -> 4096x512x7x7, fc7 -> 4096x4096x1x1);
  * otherwise: ``WeightMismatchError`` naming the layer, and nothing is copied.
Source layers with no target layer are dropped (VGG16's fc8). A matched source layer with more
blobs than its target layer has parameters is refused (``WeightMismatchError`` naming the layer
and both counts), as Caffe's copy_from refuses it; so is a source layer name that occurs twice
(``caffemodel.check_layers``, run on every source). With
``surgery=True`` a net with ``conv1_1_bgrd`` and a source with only ``conv1_1`` gets the
nyud-fcn32s-color-d initialization (``surgery.bgrd_conv1``). ``strict=True`` raises when any
net parameter is left unfilled; ``strict=False`` is the reference's staged initialization
(32s -> 16s -> 8s, VGG16 -> FCN): new layers keep the net's own init and the report lists them.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from . import surgery as surg
from .errors import WeightMismatchError
from .sources import BLOB_INDEX, OpenedSource, open_source

COPY_CHUNK = 1 << 22  # elements per copy step (16 MiB of float32); mapped pages are dropped after each


@dataclass(frozen=True)
class Transfer:
    """One target parameter and the source blob that fills it (already in the target shape)."""

    param: str
    source: str          # "<source label>:<layer>/<blob index>"
    array: np.ndarray
    note: str = ""       # "" (same shape), "legacy 4-D shape", "flat copy ...", "color-D ..."
    origin: OpenedSource | None = field(default=None, repr=False, compare=False)


@dataclass
class LoadReport:
    """What a load matched, reshaped, dropped and left unfilled.

    ``matched``: target layers that received at least one blob, in source order.
    ``surgery``: parameter -> what was done to fit it (flat copy, legacy reshape, color-D).
    ``dropped``: source layers (with blobs) that have no layer in the net.
    ``missing``: net parameters left at their init.
    """

    net: str
    source: str
    transfers: dict[str, Transfer] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def matched(self) -> list[str]:
        seen: dict[str, None] = {}
        for name in self.transfers:
            seen.setdefault(name.rpartition(".")[0], None)
        return list(seen)

    @property
    def surgery(self) -> dict[str, str]:
        return {t.param: t.note for t in self.transfers.values() if t.note}

    @property
    def unused(self) -> list[str]:
        """Alias of ``dropped``: source layers the net has no place for."""
        return self.dropped

    @property
    def complete(self) -> bool:
        """True when every net parameter was filled."""
        return not self.missing

    def lines(self) -> list[str]:
        """Human-readable report, one line per matched layer, surgery, drop and missing parameter."""
        out = [f"{self.source} -> {self.net}"]
        for layer in self.matched:
            params = [t for t in self.transfers.values() if t.param.rpartition(".")[0] == layer]
            shapes = "  ".join(f"{t.param.rpartition('.')[2]} {tuple(t.array.shape)}" for t in params)
            out.append(f"  matched  {layer:<22} {shapes}")
        for param, note in self.surgery.items():
            out.append(f"  surgery  {param:<22} {note}")
        for name in self.dropped:
            out.append(f"  dropped  {name:<22} (no such layer in {self.net})")
        for name in self.missing:
            out.append(f"  missing  {name:<22} (left at the net's init)")
        out.append(f"  {len(self.matched)} layers matched, {len(self.surgery)} reshaped by surgery, "
                   f"{len(self.dropped)} dropped, {len(self.missing)} parameters missing")
        return out


def target_layers(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, list[str]]:
    """Group parameter names by layer, each layer's parameters in Caffe blob order."""
    layers: dict[str, list[str]] = {}
    for name in shapes:
        layers.setdefault(name.rpartition(".")[0], []).append(name)
    for params in layers.values():
        params.sort(key=lambda p: BLOB_INDEX.get(p.rpartition(".")[2], len(BLOB_INDEX)))
    return layers


def plan_transfer(shapes: Mapping[str, tuple[int, ...]], sources: Sequence[tuple[OpenedSource, str]],
                  *, net_label: str = "net", surgery: bool = True) -> LoadReport:
    """Decide, without copying anything, which source blob fills which parameter.

    ``shapes``: parameter name -> shape of the target net. ``sources``: (opened source, layer
    name suffix) pairs, applied in order (later sources win, as repeated transplants do).
    Raises ``WeightMismatchError`` on the first shape that cannot be fitted.
    """
    layers = target_layers(shapes)
    report = LoadReport(net=net_label, source=" + ".join(s.label for s, _ in sources))
    for source, suffix in sources:
        names = {layer.name for layer in source.layers}  # unique among layers with blobs (check_layers)
        for layer in source.layers:
            if not layer.blobs:
                continue
            target = layer.name + suffix
            if target not in layers:
                bgrd = surg.BGRD_CONV + suffix
                if (surgery and layer.name == surg.BGRD_SOURCE and bgrd in layers
                        and surg.BGRD_CONV not in names):
                    _check_blob_count(layer, layers[bgrd], source, net_label)
                    _plan_bgrd(report, shapes, layers[bgrd], layer, source)
                else:
                    report.dropped.append(_label(layer.name, suffix))
                continue
            params = layers[target]
            _check_blob_count(layer, params, source, net_label)
            for i, blob in enumerate(layer.blobs):
                legacy = i < len(layer.legacy_shape) and layer.legacy_shape[i]
                array, note = _fit(blob, shapes[params[i]], legacy, surgery, params[i], source,
                                   layer.name, i, net_label)
                report.transfers[params[i]] = Transfer(params[i], f"{source.label}:{layer.name}/{i}",
                                                       array, note, source)
    report.missing = [p for p in shapes if p not in report.transfers]
    return report


def _check_blob_count(layer, params: list[str], source: OpenedSource, net_label: str) -> None:
    """Refuse a source layer with more blobs than its target layer has parameters."""
    if len(layer.blobs) > len(params):
        takes = ", ".join(p.rpartition(".")[2] for p in params)
        raise WeightMismatchError(
            f"layer {layer.name!r}: {source.label} holds {len(layer.blobs)} blobs, {net_label}'s "
            f"{params[0].rpartition('.')[0]} takes {len(params)} ({takes})", layer=layer.name)


def _label(name: str, suffix: str) -> str:
    return f"{name} (as {name + suffix})" if suffix else name


def _fit(blob: np.ndarray, shape: tuple[int, ...], legacy: bool, surgery: bool, param: str,
         source: OpenedSource, layer: str, index: int, net_label: str) -> tuple[np.ndarray, str]:
    shape = tuple(shape)
    if blob.shape == shape:
        return blob, ""
    if legacy and surg.is_legacy_padding(blob.shape, shape):
        return blob.reshape(shape), f"legacy 4-D shape {blob.shape} -> {shape}"
    if surgery and blob.size == math.prod(shape):
        return surg.coerce(blob, shape), f"flat copy {blob.shape} -> {shape} (net surgery)"
    hint = " (same element count: allow net surgery to flat-copy it)" \
        if blob.size == math.prod(shape) else ""
    raise WeightMismatchError(
        f"layer {layer!r} blob {index} ({param}): {source.label} has shape {blob.shape}, "
        f"{net_label} expects {shape}{hint}", layer=layer)


def _plan_bgrd(report: LoadReport, shapes, params: list[str], layer, source: OpenedSource) -> None:
    weight_param = params[0]
    if shapes[weight_param][1] != 4 or layer.blobs[0].ndim != 4 or layer.blobs[0].shape[1] != 3:
        raise WeightMismatchError(
            f"layer {layer.name!r}: cannot build {weight_param} {shapes[weight_param]} from "
            f"{layer.blobs[0].shape}", layer=layer.name)
    weight = surg.bgrd_conv1(layer.blobs[0])
    if weight.shape != tuple(shapes[weight_param]):
        raise WeightMismatchError(f"layer {layer.name!r}: {weight_param} expects "
                                  f"{shapes[weight_param]}, color-D surgery gives {weight.shape}",
                                  layer=layer.name)
    report.transfers[weight_param] = Transfer(
        weight_param, f"{source.label}:{layer.name}/0", weight,
        "color-D: BGR filters copied from conv1_1, depth channel = their mean")
    for i, blob in enumerate(layer.blobs[1:], start=1):
        legacy = i < len(layer.legacy_shape) and layer.legacy_shape[i]
        array, note = _fit(blob, shapes[params[i]], legacy, False, params[i], source, layer.name,
                           i, report.net)
        report.transfers[params[i]] = Transfer(params[i], f"{source.label}:{layer.name}/{i}",
                                               array, note or f"copied from {layer.name}", source)


def net_label(net: nn.Module) -> str:
    return getattr(net, "caffe_name", type(net).__name__)


def load_caffemodel(net: nn.Module, path_or_layers, *, strict: bool = True, surgery: bool = True,
                    suffix: str = "") -> LoadReport:
    """Copy a caffemodel's blobs onto ``net``'s parameters by layer name; return the report.

    ``path_or_layers``: a .caffemodel path, a converted .pt state dict path, a ``CaffeNet``,
    a list of ``CaffeLayer`` or a state dict. ``suffix`` is appended to every source layer name
    (the late-fusion streams). Nothing is copied if any shape does not fit (``WeightMismatchError``)
    or, with ``strict=True``, if any parameter would be left unfilled.
    """
    return _load(net, [(open_source(path_or_layers), suffix)], strict=strict, surgery=surgery)


def load_fusion(net: nn.Module, color, hha, *, strict: bool = False, surgery: bool = True) -> LoadReport:
    """nyud-fcn32s-color-hha from a colour and an HHA FCN-32s: each source transplanted with its
    layer-name suffix (``conv1_1`` -> ``conv1_1color`` / ``conv1_1hha``). ``upscore`` has no
    counterpart (the sources' upscore becomes ``upscorecolor`` / ``upscorehha`` and is dropped)
    and keeps its bilinear init, as in the reference's solve.py; hence ``strict=False``.
    """
    sources = [(open_source(color), surg.FUSION_SUFFIXES[0]), (open_source(hha), surg.FUSION_SUFFIXES[1])]
    return _load(net, sources, strict=strict, surgery=surgery)


def _load(net: nn.Module, sources, *, strict: bool, surgery: bool) -> LoadReport:
    params = dict(net.named_parameters())
    report = plan_transfer({k: tuple(p.shape) for k, p in params.items()}, sources,
                           net_label=net_label(net), surgery=surgery)
    check_complete(report, strict)
    with torch.no_grad():
        for t in report.transfers.values():
            copy_into(params[t.param], t.array, t.origin)
    return report


def check_complete(report: LoadReport, strict: bool) -> None:
    """With ``strict``, raise ``WeightMismatchError`` if the report leaves parameters unfilled."""
    if strict and report.missing:
        shown = ", ".join(report.missing[:8]) + (", ..." if len(report.missing) > 8 else "")
        raise WeightMismatchError(
            f"{report.source} leaves {len(report.missing)} parameter(s) of {report.net} unfilled: "
            f"{shown} (a non-strict load keeps their init: strict=False, or --from in convert-caffe)",
            layer=report.missing[0].rpartition(".")[0])


def copy_into(param: torch.Tensor, array: np.ndarray, origin: OpenedSource | None = None) -> None:
    """Copy ``array`` (already in ``param``'s shape) into ``param``, converting the dtype.

    When ``array`` is a view of a caffemodel file with the parameter's dtype and the parameter
    is a contiguous CPU tensor, the bytes are read from the file straight into the parameter
    (``os.preadv``: one copy, no mapped pages). Otherwise the copy goes chunk by chunk through
    the mapping, dropping each chunk's mapped pages afterwards.
    """
    dst = param.detach().view(-1)
    on_cpu = dst.device.type == "cpu" and dst.is_contiguous()
    if on_cpu and origin is not None and _read_into(dst.numpy(), array, origin):
        return
    src = array.reshape(-1)
    dst_np = dst.numpy() if on_cpu else None
    for start in range(0, src.size, COPY_CHUNK):
        chunk = src[start:start + COPY_CHUNK]
        if dst_np is not None:
            np.copyto(dst_np[start:start + chunk.size], chunk, casting="same_kind")
        else:
            converted = np.array(chunk, dtype=torch.empty(0, dtype=dst.dtype).numpy().dtype)
            dst[start:start + chunk.size].copy_(torch.from_numpy(converted))
        if origin is not None:
            origin.release(chunk)


def _read_into(dst: np.ndarray, array: np.ndarray, origin: OpenedSource) -> bool:
    """Read ``array``'s bytes from its file into ``dst``; False if that is not possible."""
    if array.dtype != dst.dtype or not hasattr(os, "preadv"):
        return False
    span = origin.file_span(array)
    if span is None:
        return False
    fd, offset = span
    view = memoryview(dst).cast("B")
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n <= 0:
            return False  # file shrank under us; fall back to the mapped copy (which will fail loudly)
        done += n
    return True
