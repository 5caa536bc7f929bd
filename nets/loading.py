"""A net and its weights from one file: `nets.load(path)`.

    >>> net = nets.load("runs/smoke/voc-fcn8s/final.pt")         # voc-fcn8s at width 1/16, eval mode
    >>> net = nets.load("fcn8s.caffemodel", net="voc-fcn8s")    # a file without a record: say what it is

Every weights file the project writes records what it is (`weight_convert.record`): the net, its
width and class counts. `load` builds that net and loads the weights strictly (every parameter
and buffer by name and shape). A file without a record (a .caffemodel, a state dict from
elsewhere, a file written before records existed) loads when `net` (and `width` when it is not 1)
are given; a `net`, `width` or `num_classes` that contradicts the record is a
`RecordMismatchError` naming both values.

Files: a .pt / .pth state dict, an fcn-repro training checkpoint (its "net"), a dict holding the
state dict under "state_dict", "model" or "weights", a .caffemodel (`weight_convert.load_caffemodel`),
or convert-caffe's .h5 / .npz state dicts.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

_STATE_KEYS = ("net", "state_dict", "model", "weights")
_ITER_KEYS = ("iteration", "iter")


class WeightsError(ValueError):
    """A weights file that cannot be loaded onto the net (the message names the file)."""


@dataclass(frozen=True)
class Loaded:
    """What `open_weights` found besides the net: the training iteration the weights are from (a
    checkpoint's "iteration", the record's, or an `iter_<N>.pt` name; None if nothing tells) and
    the file's record (None when it has none)."""

    iteration: int | None
    record: dict[str, Any] | None


def load(path: str | os.PathLike, device: str | torch.device = "cpu", *, net: str | None = None,
         width: float | None = None, num_classes: int | Sequence[int] | None = None,
         fast: bool = True) -> nn.Module:
    """The net that `path`'s weights belong to, with them loaded, on `device`, in eval mode
    (dropout off; `.train()` to train it).

    net, width, num_classes: needed only for a file without a record (width defaults to 1); given
        for a file with one, they must agree with it (RecordMismatchError naming both otherwise).
    fast: `nets.build`'s fast kernels (default) or the plain build.
    Raises WeightsError (missing, damaged or ill-fitting file) or RecordMismatchError, both
    ValueErrors naming the file.
    """
    module, _ = open_weights(path, net=net, width=width, num_classes=num_classes, fast=fast)
    return module.to(device).eval()


def open_weights(path: str | os.PathLike, *, net: str | None = None, width: float | None = None,
                 num_classes: int | Sequence[int] | None = None, fast: bool = True) -> tuple[nn.Module, Loaded]:
    """`load` on the CPU, in train mode as built, plus what else the file tells (`Loaded`)."""
    import nets
    from weight_convert import record as rec

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    try:
        record = rec.read(path)
    except (ValueError, OSError) as exc:
        raise WeightsError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from None
    args = rec.resolve(record, path, net=net, width=width, num_classes=num_classes)
    if args.net is None:
        what = "its record is of a blob dump (convert-caffe without --net)" if record else "it has no fcn-repro record"
        raise WeightsError(f"{path}: cannot tell which net these weights are for ({what}); "
                           f"name the net (one of {', '.join(nets.names())})")
    module = nets.build(args.net, num_classes=args.num_classes, width=args.width, fast=fast)
    iteration = load_weights(module, path)
    if iteration is None and record is not None:
        iteration = record.get("source", {}).get("iteration")
    return module, Loaded(iteration, record)


def load_weights(net: nn.Module, path: str | os.PathLike) -> int | None:
    """Load a weights file onto `net` (strictly: every parameter and buffer must match by name and
    shape). Returns the training iteration the weights are from when the file tells (a checkpoint's
    "iteration" entry or an `iter_<N>.pt` name), else None. Raises WeightsError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    suffix = path.suffix.lower()
    if suffix == ".caffemodel":
        from weight_convert import load_caffemodel  # the converter's entry point
        load_caffemodel(net, path, strict=True)
        return None
    iteration = None
    if suffix in (".h5", ".npz"):
        state = _arrays(path)
    else:
        from weight_convert.ptfile import load_pt  # checks the file's content checksum
        try:
            obj = load_pt(path)
        except ValueError as exc:
            raise WeightsError(str(exc)) from None
        state, iteration = _state_dict_of(obj, path)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError:
        raise WeightsError(misfit(net, state, path)) from None
    if iteration is None:
        m = re.fullmatch(r"iter_(\d+)\.pth?", path.name)
        iteration = int(m.group(1)) if m else None
    return iteration


def misfit(net: nn.Module, state: Mapping[str, torch.Tensor], path: str | os.PathLike) -> str:
    """A short account of why `state` does not fit `net`: how many entries differ in shape (the
    first few, file vs net), are missing or are extra, and the likely cause."""
    own = net.state_dict()
    shapes = [f"{k} {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the net"
              for k, v in own.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    parts = []
    if shapes:
        parts.append(f"{len(shapes)} entries differ in shape ({'; '.join(shapes[:3])}{'; ...' if len(shapes) > 3 else ''})")
    for what, keys in (("missing from the file", missing), ("not in the net", extra)):
        if keys:
            parts.append(f"{len(keys)} {what} ({', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''})")
    hint = ("built at another width or class count? A file without an fcn-repro record needs them given "
            "(--width)" if shapes else "weights of another net?")
    name = getattr(net, "caffe_name", type(net).__name__)
    return f"{path}: does not fit net {name}: {', '.join(parts)}; {hint}"


def _state_dict_of(obj: Any, path: Path) -> tuple[Mapping[str, torch.Tensor], int | None]:
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: expected a state dict or checkpoint dict, got {type(obj).__name__}")
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, None
    for key in _STATE_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            iteration = next((int(obj[k]) for k in _ITER_KEYS if isinstance(obj.get(k), int)), None)
            return inner, iteration
    raise WeightsError(f"{path}: no state dict found (top-level keys: {sorted(map(str, obj))[:10]})")


def _arrays(path: Path) -> dict[str, torch.Tensor]:
    """convert-caffe's .h5 / .npz state dict as tensors (the record entry left out)."""
    import numpy as np
    from weight_convert.record import NPZ_KEY
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                return {k: torch.from_numpy(np.array(npz[k])) for k in npz.files if k != NPZ_KEY}
        import h5py
        out: dict[str, torch.Tensor] = {}
        with h5py.File(path, "r") as h5:
            h5.visititems(lambda name, obj: out.__setitem__(name, torch.from_numpy(np.array(obj)))
                          if isinstance(obj, h5py.Dataset) else None)
        return out
    except (OSError, ValueError, KeyError) as exc:
        raise WeightsError(f"{path}: unreadable ({exc})") from None
