"""Convert a caffemodel to a state-dict file without holding the model in memory twice.

``convert(src, dst, net_name=...)`` plans the transfer against the net's parameter *shapes*
(the net is built with every parameter on the meta device, so nothing is allocated), builds the
parameters that the source does not fill with the net's own init (score layers zero, deconvs
bilinear, ...), and streams everything into DST. Blobs whose bytes are already what the
state dict stores (packed little-endian float32, i.e. every blob Caffe writes) are copied from
the caffemodel to a .pt file inside the kernel (``os.copy_file_range``); anything else goes
chunk by chunk through the memory map, dropping mapped pages behind it. Peak memory is therefore
about the unfilled parameters plus one chunk, whatever the model's size.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from nets.googlenet_fcn import BVLC_AUX_LAYERS, bvlc_layers

from . import record as rec
from . import surgery as surg
from .errors import WeightMismatchError
from .load import LoadReport, check_complete, plan_transfer, target_layers
from .sources import OpenedSource, open_source
from .writers import write_arrays

#: Base classifiers the reference transplants from (``--from``), besides the nets themselves.
#: Layer names as in the ILSVRC deploy prototxts.
BASE_NETS: dict[str, tuple[str, ...]] = {
    "vgg16": ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
              "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3", "fc6", "fc7", "fc8"),
    "alexnet": ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"),
    "googlenet": bvlc_layers(),  # conv1/7x7_s2 ... inception_5b/pool_proj, loss3/classifier
}
#: Layers a base net's file may hold besides BASE_NETS[name]: BVLC GoogLeNet's auxiliary classifiers
#: (in a snapshot of its training net, not in its deploy net; which the released file is, UNVERIFIED).
OPTIONAL_BASE_LAYERS: dict[str, tuple[str, ...]] = {"googlenet": BVLC_AUX_LAYERS}


@dataclass
class ConvertResult:
    """What ``convert`` wrote: entry names and shapes, and the load report when --net was given."""

    dst: Path
    entries: dict[str, tuple[int, ...]]
    report: LoadReport | None


def dump_entries(source: OpenedSource) -> dict[str, np.ndarray]:
    """Every blob of every layer as ``<layer>/<index>``, in file order (the no --net dump).

    Layer names are unique among layers with blobs (``caffemodel.check_layers``)."""
    return {f"{layer.name}/{i}": blob for layer in source.layers for i, blob in enumerate(layer.blobs)}


def check_has_blobs(source: OpenedSource) -> None:
    """Refuse a source in which no layer holds a blob: there is nothing to convert."""
    if not any(layer.blobs for layer in source.layers):
        raise WeightMismatchError(f"{source.label}: no layer holds any weights ({len(source.layers)} "
                                  "layers, 0 blobs): nothing to convert")


def convert(src, dst: str | os.PathLike, *, net_name: str | None = None, from_name: str | None = None,
            width: float = 1.0, hha=None,
            on_report: Callable[[LoadReport], None] | None = None) -> ConvertResult:
    """Convert ``src`` (a .caffemodel, or a converted .pt) to ``dst`` (.pt, .h5 or .npz).

    Without ``net_name`` every blob is written as ``<layer>/<index>``, in its stored dtype.
    With ``net_name`` the result is that net's state dict (float32); without ``from_name`` the
    source must fill every parameter (``WeightMismatchError`` otherwise). ``from_name`` names
    what the source holds (a nets name, or "vgg16" / "alexnet" / "googlenet") and makes this the reference's
    initialization: new layers keep the net's init, source layers it lacks are dropped, and the
    color-D / late-fusion surgeries apply. ``hha``: the HHA FCN-32s for a late-fusion net (``src``
    is then the colour stream). ``on_report`` sees the report before anything is written.
    DST records what it is (``weight_convert.record``): the net, width and class counts, SRC's name
    and sha256 (and --from, --hha), and the fcn-repro version and commit.
    """
    dst = Path(dst)
    source = open_source(src)
    check_has_blobs(source)
    if net_name is None:
        if from_name is not None or hha is not None:
            raise WeightMismatchError("--from and --hha need --net")
        entries = dump_entries(source)
        write_arrays(dst, entries, release=source.release, locate=source.file_span,
                     record=rec.make(None, width=None, source=_source_record(src, source)))
        return ConvertResult(dst, {k: tuple(v.shape) for k, v in entries.items()}, None)

    if from_name is not None:
        check_source_is(source, from_name, width)
    sources = [(source, "")]
    if hha is not None:
        hha_source = open_source(hha)
        check_has_blobs(hha_source)
        if from_name is not None:
            check_source_is(hha_source, HHA_STREAM.get(from_name, from_name), width)
        sources = [(source, surg.FUSION_SUFFIXES[0]), (hha_source, surg.FUSION_SUFFIXES[1])]
    elif net_name in FUSION_NETS and from_name is not None and from_name not in FUSION_NETS:
        raise WeightMismatchError(f"{net_name} is built from two FCN-32s: give the HHA one with --hha")
    shapes, _ = build_net(net_name, width, meta=lambda name: True)
    report = plan_transfer(shapes, sources, net_label=net_name)
    if on_report is not None:
        on_report(report)
    check_complete(report, strict=from_name is None and hha is None)

    filled = set(report.transfers)
    _, net = build_net(net_name, width, meta=lambda name: name in filled)
    entries: dict[str, object] = {}
    for name, value in net.state_dict(keep_vars=True).items():
        entries[name] = report.transfers[name].array if name in report.transfers else value.detach()
    dtypes = {name: np.float32 for name in report.transfers}

    def release(array: np.ndarray) -> None:
        for s, _ in sources:
            s.release(array)

    def locate(array: np.ndarray) -> tuple[int, int] | None:
        return next((span for s, _ in sources if (span := s.file_span(array)) is not None), None)

    extra = {"from": from_name}
    if hha is not None:
        hha_record = _source_record(hha, hha_source)
        extra["hha"] = {k: hha_record[k] for k in ("name", "sha256")}
    record = rec.make(net_name, width=width, source=_source_record(src, source, **extra))
    write_arrays(dst, entries, dtypes=dtypes, release=release, locate=locate, record=record)
    return ConvertResult(dst, {k: tuple(v.shape) for k, v in entries.items()}, report)


def _source_record(src, source: OpenedSource, **extra) -> dict:
    """``record.file_source`` of a path; name only (no sha256) for weights given as objects."""
    if isinstance(src, (str, os.PathLike)):
        return rec.file_source(src, **extra)
    return {"kind": "object", "name": source.label, "sha256": None, **extra}


FUSION_NETS = ("nyud-fcn32s-color-hha", "nyud-fcn16s-color-hha")
#: What the --hha file of a late-fusion conversion holds, given what SRC (the colour stream) holds.
HHA_STREAM = {"nyud-fcn32s-color": "nyud-fcn32s-hha"}


def build_net(name: str, width: float, meta: Callable[[str], bool]) -> tuple[dict[str, tuple[int, ...]], nn.Module]:
    """Build net ``name`` with the parameters for which ``meta(param name)`` is true on the meta
    device (no memory, no init). Returns (parameter name -> shape, the net).

    Parameter names are not known while modules are constructed, so a first build puts every
    parameter on meta and records the registration order; the second build (only when some
    parameter must be real) replaces the registrations at the same positions. Both builds run
    the same deterministic code; the shapes are checked to agree.
    """
    import nets

    order, net = _build_recording(nets, name, width, lambda i, shape: True)
    shapes = {n: tuple(p.shape) for n, p in net.named_parameters()}
    if all(meta(n) for n in shapes):
        return shapes, net
    meta_positions = {i for i, (qual, _) in enumerate(order) if qual is not None and meta(qual)}
    order2, net2 = _build_recording(nets, name, width, lambda i, shape: i in meta_positions)
    if [s for _, s in order2] != [s for _, s in order]:
        raise RuntimeError(f"building {name} twice gave different parameter registrations")
    return shapes, net2


def _build_recording(nets_module, name: str, width: float, to_meta: Callable[[int, tuple], bool]):
    """Build the net with a parameter-registration hook; return ([(qualified name or None,
    shape)] in registration order, net)."""
    records: list[tuple[nn.Module, str, tuple[int, ...]]] = []

    def hook(module: nn.Module, pname: str, param):
        if param is None:
            return None
        index = len(records)
        shape = tuple(param.shape)
        records.append((module, pname, shape))
        if to_meta(index, shape) and param.device.type != "meta":
            return nn.Parameter(torch.empty(shape, dtype=param.dtype, device="meta"),
                                requires_grad=param.requires_grad)
        return None

    handle = nn.modules.module.register_module_parameter_registration_hook(hook)
    try:
        net = nets_module.build(name, width=width)
    finally:
        handle.remove()
    qualified = {}
    for prefix, module in net.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            qualified[(id(module), pname)] = f"{prefix}.{pname}" if prefix else pname
    # a registration later overwritten (same module and name) is not the live parameter
    live: dict[tuple[int, str], int] = {}
    for i, (module, pname, _) in enumerate(records):
        live[(id(module), pname)] = i
    order = []
    for i, (module, pname, shape) in enumerate(records):
        key = (id(module), pname)
        order.append((qualified.get(key) if live[key] == i else None, shape))
    return order, net


def check_source_is(source: OpenedSource, from_name: str, width: float) -> None:
    """Check that ``source`` holds ``from_name``'s layers (a nets name, or a BASE_NETS name): its
    layers with blobs must be exactly ``from_name``'s layers with parameters (plus, for a base net,
    any of ``OPTIONAL_BASE_LAYERS``), with matching shapes for nets. The error says which layers the source lacks and which it has that are not in
    ``from_name``."""
    import nets

    if from_name in BASE_NETS:
        expected, shapes = list(BASE_NETS[from_name]), None
    elif from_name in nets.names():
        shapes, _ = build_net(from_name, width, meta=lambda name: True)
        expected = list(target_layers(shapes))
    else:
        raise WeightMismatchError(f"unknown --from {from_name!r}; use one of "
                                  f"{', '.join(list(BASE_NETS) + nets.names())}")
    have = [layer.name for layer in source.layers if layer.blobs]
    lacks = [name for name in expected if name not in set(have)]
    allowed = set(expected) | set(OPTIONAL_BASE_LAYERS.get(from_name, ()))
    strangers = [name for name in have if name not in allowed]
    if lacks or strangers:
        parts = ([f"it lacks {_names(lacks)}"] if lacks else []) + \
                ([f"{'it ' if not lacks else ''}has layers {from_name} does not: {_names(strangers)}"]
                 if strangers else [])
        raise WeightMismatchError(f"{source.label} does not hold {from_name}: " + " and ".join(parts),
                                  layer=(lacks or strangers)[0])
    if shapes is not None:
        try:
            plan_transfer(shapes, [(source, "")], net_label=from_name, surgery=False)
        except WeightMismatchError as e:
            raise WeightMismatchError(f"{source.label} does not hold {from_name}'s weights: {e}",
                                      layer=e.layer) from None


def _names(names: list[str], shown: int = 8) -> str:
    more = f", ... ({len(names)} in all)" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def describe_layers(source: OpenedSource) -> list[str]:
    """The --list table: index, layer name, type and blob shapes (dtype when not float32)."""
    rows = [("#", "layer", "type", "blobs")]
    for i, layer in enumerate(source.layers):
        blobs = ", ".join("x".join(map(str, b.shape)) + ("" if b.dtype == np.float32 else f" {b.dtype}")
                          if b.ndim else "scalar" for b in layer.blobs)
        rows.append((str(i), layer.name, layer.type or "-", blobs or "-"))
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    return [f"{r[0]:>{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip() for r in rows]

