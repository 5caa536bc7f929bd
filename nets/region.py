"""The region forward: each trunk layer computed only where its output depends on the image.

conv1's pad 100 (VGG16, AlexNet; GoogLeNet's derived pad 18) makes every map much larger than
the image, and a unit whose receptive field lies wholly outside the image has a value that does
not depend on the image: a function of the weights and of its position relative to the map's
edges only. This module computes, per trunk blob and input size:

- the image-dependent rectangle R (a product of one interval per axis, from each layer's kernel,
  stride, pad and Caffe's ceil-mode pooling);
- for every other position, its value with the image replaced by zeros (which is its value for
  any image). Per axis, positions are grouped into classes of equal 1D geometry (the tuple of
  input classes in the window, `OUT` for positions beyond the map), so that a blob's background
  is one value per (row class, column class) pair and channel: the per-channel constant deep in
  the padding, and the frames along the edges where the layers' own padding enters. Those
  values are computed once per set of weights (on the class pairs that occur outside R only;
  products in the weights' dtype, kept in float64) and cached until a weight changes (the key
  of `nets.fast`: version counter, storage and a sample of the values) or for another input size.

The forward then runs each convolution / pooling on R' (its output's dependent rectangle) only.
Its input is R plus the few surrounding rows and columns the windows reach (the ring), from the
background (zero beyond the map for convolutions, -inf for poolings, as the plain layers pad).
Without autograd that input is never assembled: a convolution runs on R alone, zero-padded,
plus its edge term, conv(the ring alone), which depends on the weights only, is non-zero only
on R''s frame, and is cached with the background (`_edge_conv`); a pooling runs on R alone,
-inf-padded, and its frame is recomputed from small strips (`_framed_op`). The large outputs
live in blocks of nets.workspace, kept between forwards, and every blob is dropped after its
last reader. With autograd (training) the input is assembled (`_materialize`). Once a blob's R
is the whole map (deep in the net) the layers run as in the default path. The
blobs the heads read (VGG16's pool3 / pool4 / fc7, AlexNet's fc7, GoogLeNet's inception_5b) are
assembled at full size, and the heads run unchanged. Same function as the plain build (float32
rounding aside, as for `nets.fast`); tests/test_region.py holds it to the same 1e-5.

Training (autograd on): the same forward, so autograd's backward runs over the smaller maps too.
The backgrounds are then computed from the current weights with differentiable ops, on every
call (never cached: the weights change each step); the background positions' upstream gradient
is summed per (row class, column class) pair (`_Select`'s backward) and backpropagated through
the small class-compressed computation (float64 but for the products, in the weights' dtype), so
the weight gradients are the plain build's (tests/test_region.py: 1e-4 of their max, measured
a few 1e-6). Convolutions run as F.conv2d there (the packed oneDNN kernel has no backward). The
pieces of a partial blob are assembled by `_Assemble`, whose backward hands out views of the
gradient. Dropout in training runs on whole blobs only (fc6 / fc7's, whose every position
depends on the image), in the default path's NCHW layout, so it draws the default path's masks
from the same random numbers; were a blob partial there, the default path would run instead.

Used by the nets' forwards when `region_enabled(net)`: the fast kernels on (`nets.build`'s
default), the region switch on (the default; `set_region(net, False)`, `nets.build(...,
region=False)` or FCN_REGION=0 in the environment opt out), in eval or training mode, with
autograd on or off, a float32 / float64 CPU input, no autocast, no torch.compile tracing and no
forward hooks on the trunk's layers (they would see partial blobs). Anything else runs the
default path.
"""
from __future__ import annotations

import math
import os
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from nets import fast as nf
from nets import workspace as ws

__all__ = ["set_region", "region_enabled", "Op", "run_region", "blob_geometry", "region_flops",
           "clear_region_caches"]

OUT = -1  # the class of a position beyond the map (zero for a convolution, -inf for a pooling)


# --------------------------------------------------------------------------------------------
# switching
# --------------------------------------------------------------------------------------------
def set_region(net: nn.Module, enabled: bool) -> nn.Module:
    """Turn the region forward on or off for `net` (on by default); returns `net`."""
    net.region = bool(enabled)
    return net


def region_enabled(net: nn.Module, *inputs: torch.Tensor) -> bool:
    """Whether `net`'s forward on `inputs` takes the region path (see the module docstring)."""
    return (bool(getattr(net, "region", False)) and nf.is_fast(net)
            and os.environ.get("FCN_REGION", "1") != "0"
            and not nf._tracing()
            and all(x.dim() == 4 and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
                    and x.layout == torch.strided for x in inputs)
            and not torch.is_autocast_enabled("cpu"))


# --------------------------------------------------------------------------------------------
# the program: a trunk as a list of ops on named blobs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Op:
    """One trunk step. kind: "conv" (followed by ReLU), "pool" (max), "point" (a position-wise
    module: LRN, eval-mode dropout), "concat" (along channels). `srcs` / `dst` are blob names."""

    kind: str
    srcs: tuple[str, ...]
    dst: str
    module: nn.Module | None = None
    fc: bool = False  # fc6 / fc7: through nets.fast.fc_conv


def _geom(module: nn.Module) -> tuple[int, int, int]:
    from nets.caffe import _geometry
    k, s, p, d = _geometry(module)
    if d != 1:
        raise ValueError(f"region forward: dilation {d} not supported in {module}")
    return k, s, p


# --------------------------------------------------------------------------------------------
# geometry, one axis at a time (independent of the weights)
# --------------------------------------------------------------------------------------------
@dataclass
class Axis:
    """One axis of one blob: map size `n`, image-dependent interval [a, b), each position's class
    (`cls`, a list of n ints), the number of classes, and the classes found outside [a, b)."""

    n: int
    a: int
    b: int
    cls: list[int]
    ncls: int
    outside: list[bool] = field(default_factory=list)  # per class: occurs at a position outside [a, b)
    window: list[tuple[int, ...]] | None = None        # per class: input classes of its window (conv / pool)
    parts: list[tuple[int, ...]] | None = None         # per class: branch classes (concat)

    def __post_init__(self) -> None:
        if not self.outside:
            out = [False] * self.ncls
            for i, c in enumerate(self.cls):
                if not self.a <= i < self.b:
                    out[c] = True
            self.outside = out


def _input_axis(n: int) -> Axis:
    # The image replaced by zeros: every position is OUT-like (zero) to the first convolution.
    return Axis(n, 0, n, [OUT] * n, 0, outside=[])


def _window_axis(ax: Axis, k: int, s: int, p: int, n_out: int) -> Axis:
    ids: dict[tuple[int, ...], int] = {}
    cls, lo, hi = [], None, None
    for o in range(n_out):
        start = o * s - p
        t = tuple(ax.cls[i] if 0 <= i < ax.n else OUT for i in range(start, start + k))
        cls.append(ids.setdefault(t, len(ids)))
        if start < ax.b and start + k > ax.a:
            lo = o if lo is None else lo
            hi = o + 1
    if lo is None:  # cannot happen for the nets' geometries (k >= s), but never guess
        raise ValueError("region forward: a blob that does not depend on the image")
    return Axis(n_out, lo, hi, cls, len(ids), window=list(ids))


def _concat_axis(axes: Sequence[Axis]) -> Axis:
    if len({ax.n for ax in axes}) != 1:
        raise ValueError(f"region forward: concat of blobs of sizes {[ax.n for ax in axes]}")
    ids: dict[tuple[int, ...], int] = {}
    cls = [ids.setdefault(tuple(ax.cls[i] for ax in axes), len(ids)) for i in range(axes[0].n)]
    return Axis(axes[0].n, min(ax.a for ax in axes), max(ax.b for ax in axes), cls, len(ids), parts=list(ids))


def _out_size(op: Op, n: int) -> int:
    k, s, p = _geom(op.module)
    if op.kind == "pool":
        return nn.functional.max_pool2d(torch.empty(1, 1, 1, n, device="meta"), (1, k), (1, s), (0, p),
                                        ceil_mode=op.module.ceil_mode).shape[-1]
    return (n + 2 * p - k) // s + 1


def blob_geometry(program: Sequence[Op], inputs: dict[str, tuple[int, int]]) -> dict[str, tuple[Axis, Axis]]:
    """(row axis, column axis) of every blob of `program` for input blobs of the given (H, W)."""
    geo = {name: (_input_axis(h), _input_axis(w)) for name, (h, w) in inputs.items()}
    for op in program:
        src = [geo[s] for s in op.srcs]
        if op.kind in ("conv", "pool"):
            if op.kind == "pool" and any(ax.ncls == 0 for ax in src[0]):
                raise ValueError("region forward: a pooling straight on the input")
            k, s, p = _geom(op.module)
            geo[op.dst] = tuple(_window_axis(ax, k, s, p, _out_size(op, ax.n)) for ax in src[0])
        elif op.kind == "point":
            if any(ax.ncls == 0 for ax in src[0]):
                raise ValueError("region forward: a position-wise layer straight on the input")
            geo[op.dst] = src[0]
        elif op.kind == "concat":
            geo[op.dst] = tuple(_concat_axis([g[i] for g in src]) for i in range(2))
        else:
            raise ValueError(f"region forward: unknown op kind {op.kind!r}")
    return geo


# --------------------------------------------------------------------------------------------
# background values (per class pair and channel), from the weights
# --------------------------------------------------------------------------------------------
def _pad_out(v: torch.Tensor, fill: float) -> torch.Tensor:
    """v (ny, nx, C) with one more row and column holding `fill`: index -1 (OUT) reads it."""
    ny, nx, c = v.shape
    out = torch.full((ny + 1, nx + 1, c), fill, dtype=v.dtype)
    out[:ny, :nx] = v
    return out


def _conv_pairs(g: torch.Tensor, m: nn.Conv2d) -> torch.Tensor:
    """`m` at P positions whose windows are g (P x k x k x C_in): P x C_out (float64), bias added."""
    p = g.shape[0]
    w = m.weight  # not detached: differentiable where autograd records (see `run_region`)
    groups = m.groups
    o = w.shape[0] // groups
    # the windows in the weight's (C_in, kh, kw) order, so that the weight is read as it is (a view)
    gs = g.permute(0, 3, 1, 2).reshape(p, groups, -1).transpose(0, 1)  # G x P x (C/G k k)
    ws = w.reshape(groups, o, -1)                                       # G x O/G x (C/G k k)
    # in the weight's own dtype (as the layer computes; no float64 copy of fc6's 411 MB weight)
    out = torch.bmm(gs.to(w.dtype), ws.transpose(1, 2)).to(torch.float64)  # G x P x O
    out = out.permute(1, 0, 2).reshape(p, groups * o)
    if m.bias is not None:
        out = out + m.bias.to(torch.float64)
    return out


def _background(program: Sequence[Op], geo: dict, inputs: dict[str, int]) -> dict[str, torch.Tensor]:
    """Per blob: V (ny_cls, nx_cls, C) float64, the value at a position of row class i and column
    class j outside the image-dependent rectangle. Pairs that occur only inside it are NaN (never
    read: a position outside R sees only positions outside R or beyond the map)."""
    vals: dict[str, torch.Tensor] = {name: torch.zeros(0, 0, c, dtype=torch.float64) for name, c in inputs.items()}
    for op in program:
        ay, ax = geo[op.dst]
        need = (torch.tensor(ay.outside, dtype=torch.bool)[:, None]
                | torch.tensor(ax.outside, dtype=torch.bool)[None, :])
        py, px = need.nonzero(as_tuple=True)
        if op.kind == "point":
            v = vals[op.srcs[0]]
            if isinstance(op.module, nn.Dropout) or not v.numel():
                # Dropout: the identity at TEST; at TRAIN it runs on full blobs only (`_stochastic`),
                # whose background is never read. Never drawn here: the RNG is the default path's.
                vals[op.dst] = v
            else:
                vals[op.dst] = op.module(v.permute(2, 0, 1)[None].to(torch.float64))[0].permute(1, 2, 0)
            continue
        if op.kind == "concat":
            parts = []
            for b, s in enumerate(op.srcs):
                v = vals[s]
                iy = torch.tensor([t[b] for t in ay.parts], dtype=torch.long)
                ix = torch.tensor([t[b] for t in ax.parts], dtype=torch.long)
                parts.append(v[iy[:, None], ix[None, :]])
            vals[op.dst] = torch.cat(parts, dim=2)
            continue
        m = op.module
        src = vals[op.srcs[0]]
        ty = torch.tensor(ay.window, dtype=torch.long)[py]  # P x k (input row classes, -1 = OUT)
        tx = torch.tensor(ax.window, dtype=torch.long)[px]
        if op.kind == "conv":
            if len(py) == 0:
                out = torch.zeros(0, m.out_channels, dtype=torch.float64)
            else:
                c_in = m.weight.shape[1] * m.groups
                vp = _pad_out(src if src.numel() else torch.zeros(0, 0, c_in, dtype=torch.float64), 0.0)
                g = vp[ty[:, :, None], tx[:, None, :]]  # P x k x k x C_in
                out = _conv_pairs(g, m)
            out = torch.relu(out)  # the ReLU (NaN stays NaN; gradient 0 at 0, as the layers' ReLU)
        else:
            vp = _pad_out(src, -math.inf)
            out = vp[ty[:, :, None], tx[:, None, :]].amax(dim=(1, 2))
        v = torch.full((ay.ncls, ax.ncls, out.shape[1]), math.nan, dtype=torch.float64)
        v[py, px] = out
        vals[op.dst] = v
    return vals


# --------------------------------------------------------------------------------------------
# caches: geometry per (program, input sizes); background per (weights, input sizes)
# --------------------------------------------------------------------------------------------
_MAX_SIZES = 8  # input sizes kept per net (about 26 MiB each for voc-fcn8s at 500 x 375)
_GEO: "OrderedDict[tuple, dict]" = OrderedDict()
_VALS: "weakref.WeakKeyDictionary[nn.Module, OrderedDict]" = weakref.WeakKeyDictionary()


def clear_region_caches() -> None:
    """Drop every cached geometry and background (rebuilt on the next forward)."""
    _GEO.clear()
    _VALS.clear()


def _program_key(program: Sequence[Op]) -> tuple:
    return tuple((op.kind, op.srcs, op.dst, op.fc,
                  _geom(op.module) + (getattr(op.module, "ceil_mode", None), op.module.groups
                                      if isinstance(op.module, nn.Conv2d) else None)
                  if op.kind in ("conv", "pool") else repr(op.module))
                 for op in program)


def _lru_get(cache: OrderedDict, key, make):
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = make()
    cache[key] = value
    while len(cache) > _MAX_SIZES:
        cache.popitem(last=False)
    return value


def _weights_key(program: Sequence[Op]) -> tuple:
    key = []
    for op in program:
        if op.kind == "conv":
            key.append(nf._weight_key(op.module.weight))
            key.append(None if op.module.bias is None else nf._weight_key(op.module.bias))
        elif op.kind == "point":
            key.append(repr(op.module))
    return tuple(key)


@dataclass
class _Plan:
    geo: dict
    vals: dict[str, torch.Tensor]  # float64 backgrounds
    cast: dict = field(default_factory=dict)  # (blob, dtype, fill) -> padded background in dtype


def _plan(owner: nn.Module, program: Sequence[Op], sizes: dict[str, tuple[int, int]],
          channels: dict[str, int]) -> _Plan:
    pkey = (_program_key(program), tuple(sorted(sizes.items())))
    geo = _lru_get(_GEO, pkey, lambda: blob_geometry(program, sizes))
    per_net = _VALS.setdefault(owner, OrderedDict())
    wkey = _weights_key(program)
    hit = per_net.get(pkey)
    if hit is not None and hit[0] == wkey:
        per_net.move_to_end(pkey)
        return hit[1]
    with torch.inference_mode(False), torch.no_grad():
        plan = _Plan(geo, _background(program, geo, channels))
    per_net[pkey] = (wkey, plan)
    while len(per_net) > _MAX_SIZES:
        per_net.popitem(last=False)
    return plan


# --------------------------------------------------------------------------------------------
# the forward on regions
# --------------------------------------------------------------------------------------------
@dataclass
class _Blob:
    core: torch.Tensor  # N x C x (b_y - a_y) x (b_x - a_x), the image-dependent rectangle
    ay: Axis
    ax: Axis

    @property
    def full(self) -> bool:
        return (self.ay.a, self.ay.b, self.ax.a, self.ax.b) == (0, self.ay.n, 0, self.ax.n)


def _bg_padded(plan: _Plan, name: str, dtype: torch.dtype, fill: float) -> torch.Tensor:
    key = (name, dtype, fill)
    if key not in plan.cast:
        plan.cast[key] = _pad_out(plan.vals[name], fill).to(dtype)
    return plan.cast[key]


def _classes(ax: Axis, lo: int, hi: int) -> torch.Tensor:
    """Row (column) indices into the padded background of positions lo..hi-1 (beyond the map and
    OUT-like input positions: the padding row, index ncls)."""
    cls = [ax.cls[i] if 0 <= i < ax.n else OUT for i in range(lo, hi)]
    return torch.tensor([ax.ncls if c == OUT else c for c in cls], dtype=torch.long)


def _materialize(plan: _Plan, name: str, blob: _Blob, ylo: int, yhi: int, xlo: int, xhi: int,
                 fill: float) -> torch.Tensor:
    """The blob on rows [ylo, yhi) x columns [xlo, xhi) (may reach beyond the map: `fill` there),
    N x C x h x w in channels_last: the core where it is, the background elsewhere."""
    ay, ax, core = blob.ay, blob.ax, blob.core
    if (ylo, yhi, xlo, xhi) == (ay.a, ay.b, ax.a, ax.b):
        return core
    n, c = core.shape[:2]
    out = torch.empty((n, yhi - ylo, xhi - xlo, c), dtype=core.dtype)  # NHWC memory
    cy0, cy1 = max(ay.a, ylo), min(ay.b, yhi)
    cx0, cx1 = max(ax.a, xlo), min(ax.b, xhi)
    if cy1 > cy0 and cx1 > cx0:
        pieces = ((ylo, cy0, xlo, xhi), (cy1, yhi, xlo, xhi), (cy0, cy1, xlo, cx0), (cy0, cy1, cx1, xhi))
    else:
        pieces = ((ylo, yhi, xlo, xhi),)
    strips = _strips(plan, name, blob, (ylo, yhi, xlo, xhi), pieces, core.dtype, fill)
    places = [(y0 - ylo, y1 - ylo, x0 - xlo, x1 - xlo) for (y0, y1, x0, x1), strip in zip(pieces, strips)
              if strip is not None]
    strips = [strip for strip in strips if strip is not None]
    inner = None
    if len(pieces) == 4:
        inner = ((cy0 - ylo, cy1 - ylo, cx0 - xlo, cx1 - xlo), (cy0 - ay.a, cy1 - ay.a, cx0 - ax.a, cx1 - ax.a))
    if torch.is_grad_enabled() and (core.requires_grad or any(t.requires_grad for t in strips)):
        return _Assemble.apply(out, inner, places, core, *strips)
    return _assemble(out, inner, places, core, strips)


def _assemble(out: torch.Tensor, inner, places, core: torch.Tensor, strips) -> torch.Tensor:
    """Write the strips (1 x h x w x C each) at `places` and the core's window into `out` (N x H x
    W x C); return it as N x C x H x W (channels_last)."""
    for (y0, y1, x0, x1), strip in zip(places, strips):
        out[:, y0:y1, x0:x1] = strip
    if inner is not None:
        (y0, y1, x0, x1), (a0, a1, b0, b1) = inner
        out[:, y0:y1, x0:x1] = core[:, :, a0:a1, b0:b1].permute(0, 2, 3, 1)
    return out.permute(0, 3, 1, 2)


class _Assemble(torch.autograd.Function):
    """`_assemble` for autograd: the backward hands each piece its window of the gradient (views;
    slice assignments would clone the whole gradient once per piece)."""

    @staticmethod
    def forward(ctx, out, inner, places, core, *strips):
        ctx.inner, ctx.places, ctx.core_shape = inner, places, core.shape
        ctx.batch = [s.shape[0] for s in strips]
        with torch.no_grad():
            return _assemble(out, inner, places, core, strips)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        g = grad.permute(0, 2, 3, 1)  # N x H x W x C
        gcore = None
        if ctx.needs_input_grad[3]:
            (y0, y1, x0, x1), (a0, a1, b0, b1) = ctx.inner or ((0, 0, 0, 0), (0, 0, 0, 0))
            if (a0, b0, a1, b1) == (0, 0, *ctx.core_shape[2:]):
                gcore = grad[:, :, y0:y1, x0:x1]  # the whole core (as in every window op's input)
            else:
                gcore = torch.zeros(ctx.core_shape, dtype=grad.dtype, memory_format=torch.channels_last)
                gcore[:, :, a0:a1, b0:b1] = grad[:, :, y0:y1, x0:x1]
        gstrips = []
        for k, ((y0, y1, x0, x1), n) in enumerate(zip(ctx.places, ctx.batch)):
            if not ctx.needs_input_grad[4 + k]:
                gstrips.append(None)
                continue
            piece = g[:, y0:y1, x0:x1]
            gstrips.append(piece.sum(0, keepdim=True) if n != piece.shape[0] else piece)
        return (None, None, None, gcore, *gstrips)


def _strips(plan: _Plan, name: str, blob: _Blob, rect: tuple, pieces: tuple, dtype: torch.dtype,
            fill: float) -> list[torch.Tensor | None]:
    """The background on each piece (1 x h x w x C, None if empty), cached with the plan."""
    key = (name, rect, dtype, fill)
    if key not in plan.cast:
        bg = _bg_padded(plan, name, dtype, fill)
        ylo, _, xlo, _ = rect
        out = []
        for y0, y1, x0, x1 in pieces:
            if y1 > y0 and x1 > x0:
                ry, rx = _classes(blob.ay, y0, y1), _classes(blob.ax, x0, x1)
                if torch.is_grad_enabled() and bg.requires_grad:
                    out.append(_Select.apply(bg, ry, rx))
                else:
                    out.append(bg.index_select(0, ry).index_select(1, rx)[None].contiguous())
            else:
                out.append(None)
        plan.cast[key] = out
    return plan.cast[key]


class _Select(torch.autograd.Function):
    """bg[ry][:, rx] as 1 x h x w x C for a background bg (ny x nx x C) and row / column classes
    ry (h), rx (w). The backward sums the gradient per (row class, column class) pair as two
    matrix products with the one-hot class matrices (index_select's index_add over the column
    axis is a slow scatter on the CPU)."""

    @staticmethod
    def forward(ctx, bg, ry, rx):
        ctx.save_for_backward(ry, rx)
        ctx.bg_shape = bg.shape
        return bg.index_select(0, ry).index_select(1, rx)[None].contiguous()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        ry, rx = ctx.saved_tensors
        ny, nx, c = ctx.bg_shape
        g = grad.sum(0) if grad.shape[0] > 1 else grad[0]  # h x w x C
        h, w = g.shape[:2]
        ey = F.one_hot(ry, ny).to(g.dtype).t()  # ny x h
        ex = F.one_hot(rx, nx).to(g.dtype).t()  # nx x w
        t = (ey @ g.reshape(h, w * c)).view(ny, w, c)
        return torch.matmul(ex, t), None, None  # ny x nx x C


#: module -> {padding: (weight ref, weight key, packed weight)} for the region path's convolutions,
#: which run with other paddings than the layer's (same invalidation as nets.fast).
_PACKED: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
#: The in-place oneDNN convolution (relu(conv(x) + out) into out) that `_edge_conv` calls.
_INPLACE_CONV = hasattr(torch.ops.mkldnn, "_convolution_pointwise_")


def _conv_args(layer: nn.Conv2d, pad: tuple[int, int]) -> tuple:
    return (list(pad), list(layer.stride), list(layer.dilation), layer.groups)


def _packed(layer: nn.Conv2d, x: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """`layer`'s weight packed by oneDNN for padding `pad` (cached until the weight changes)."""
    w = layer.weight
    key = nf._weight_key(w)
    per = _PACKED.setdefault(layer, {})
    hit = per.get(pad)
    if hit is None or hit[0]() is not w or hit[1] != key:
        with torch.inference_mode(False), torch.no_grad():
            packed = torch.ops.mkldnn._reorder_convolution_weight(w.detach(), *_conv_args(layer, pad), list(x.shape))
        hit = per[pad] = (weakref.ref(w), key, packed)
    return hit[2]


def _conv_relu_padded(layer: nn.Conv2d, x: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """relu(conv2d(x, layer.weight, layer.bias, layer.stride, padding=pad)), oneDNN-packed when it can."""
    if not nf._needs_grad(x, layer.weight, layer.bias) and nf._onednn_ok(x, layer):
        args = _conv_args(layer, pad)
        return torch.ops.mkldnn._convolution_pointwise(x, _packed(layer, x, pad), layer.bias, *args, "relu", [], "")
    return F.relu(F.conv2d(x, layer.weight, layer.bias, layer.stride, pad, layer.dilation, layer.groups),
                  inplace=True)


def _apply(op: Op, x: torch.Tensor, pad: tuple[int, int], ceil: bool = False) -> torch.Tensor:
    """The op's window computation on `x` with symmetric padding `pad` (zero / -inf); `ceil`:
    ceil-mode pooling (the last window may reach past the padded input, as in Caffe)."""
    k, s, _ = _geom(op.module)
    if op.kind == "pool":
        return F.max_pool2d(x, k, s, pad, ceil_mode=ceil)
    if op.fc and pad == (0, 0):
        # NCHW, as the default path's fc6 / fc7 (dropout draws its mask in memory order)
        m = op.module
        y = nf.fc_conv(m, x) if nf._gemm_ok(m, x) else F.conv2d(x, m.weight, m.bias, m.stride, pad, m.dilation,
                                                              m.groups).contiguous()
        return F.relu(y, inplace=True)
    return _conv_relu_padded(op.module, x, pad)


def _window_op(op: Op, plan: _Plan, blobs: dict[str, _Blob], autograd: bool,
               taken: list[torch.Tensor] | None) -> torch.Tensor:
    """The conv / pool `op` on its dependent rectangle R'. `taken`: where a result written into a
    nets.workspace block is recorded (None: the result outlives the forward, a blob the heads
    read, so it never lives in a workspace block)."""
    src = blobs[op.srcs[0]]
    oy, ox = plan.geo[op.dst]
    m = op.module
    if src.full and (oy.a, oy.b, ox.a, ox.b) == (0, oy.n, 0, ox.n):
        # deep in the net: every output depends on the image, the default path's layer as it is
        if op.kind == "pool":
            return m(src.core)
        return nf.conv_relu(m, src.core, True, fc=op.fc)
    k, s, p = _geom(m)
    fill = -math.inf if op.kind == "pool" else 0.0
    if not autograd:
        y = (_edge_conv(op, plan, src, oy, ox, k, s, p, taken) if op.kind == "conv"
             else _framed_op(op, plan, src, oy, ox, k, s, p, fill))
        if y is not None:
            return y
    # the input of R' (the outputs that depend on the image): R and the rows and columns around
    # it that their windows reach, from the background (beyond the map: the layer's padding)
    x = _strip_input(plan, op.srcs[0], src, oy, ox, (0, oy.b - oy.a, 0, ox.b - ox.a), k, s, p, fill)
    return _apply(op, x, (0, 0))


def _main_call(src: Axis, dst: Axis, kind: str, k: int, s: int, p: int) -> tuple[int, set[bool]]:
    """(pad, ceil modes) for running the op on the core alone along this axis so that its outputs
    are exactly R' = [dst.a, dst.b): the first window starts where R'`s first does (core start -
    pad), and the output count matches for these ceil modes (none: the input is materialized)."""
    pad = src.a - (dst.a * s - p)
    n = src.b - src.a
    ok: set[bool] = set()
    if pad < 0 or (kind == "pool" and pad > k // 2) or n + 2 * pad < k:
        return pad, ok
    for ceil in ((False, True) if kind == "pool" else (False,)):
        span = n + 2 * pad - k
        count = (-(-span // s) if ceil else span // s) + 1
        if ceil and (count - 1) * s >= n + pad:  # the last window starts inside (PyTorch and Caffe)
            count -= 1
        if count == dst.b - dst.a:
            ok.add(ceil)
    return pad, ok


def _dirty(src: Axis, dst: Axis, s: int, p: int, k: int) -> tuple[int, int]:
    """How many of R'`s first and last outputs along this axis have windows that reach a map
    position outside the core (the background: the core's zero / -inf padding is wrong there;
    beyond the map it is what the layer pads with)."""
    def touches(o: int) -> bool:
        lo, hi = o * s - p, o * s - p + k
        return (src.a > 0 and lo < src.a and hi > 0) or (src.b < src.n and hi > src.b and lo < src.n)
    outs = range(dst.a, dst.b)
    first = next((i for i, o in enumerate(outs) if not touches(o)), len(outs))
    last = next((i for i, o in enumerate(reversed(outs)) if not touches(o)), len(outs))
    return first, last


def _core_calls(op: Op, src: _Blob, oy: Axis, ox: Axis, k: int, s: int, p: int) -> tuple[tuple[int, int], set[bool]]:
    """((pad_y, pad_x), ceil modes that both axes allow) for `_main_call` on both axes."""
    (py, cy), (px, cx) = (_main_call(a, d, op.kind, k, s, p) for a, d in ((src.ay, oy), (src.ax, ox)))
    return (py, px), cy & cx


def _frame(src: _Blob, oy: Axis, ox: Axis, k: int, s: int, p: int) -> tuple[list[tuple[int, int, int, int]], bool]:
    """The frame of R' whose windows reach the background, as non-empty strips (r0, r1, c0, c1) in
    R''s own coordinates (top, bottom, then left and right between them), and whether the frame
    covers all of R' along an axis."""
    (t0, t1), (u0, u1) = _dirty(src.ay, oy, s, p, k), _dirty(src.ax, ox, s, p, k)
    h, w = oy.b - oy.a, ox.b - ox.a
    whole = t0 + t1 >= h or u0 + u1 >= w
    t1, u1 = min(t1, h - t0), min(u1, w - u0)  # a frame wider than R' counts its rows once
    strips = ((0, t0, 0, w), (h - t1, h, 0, w), (t0, h - t1, 0, u0), (t0, h - t1, w - u1, w))
    return [r for r in strips if r[1] > r[0] and r[3] > r[2]], whole


def _strip_input(plan: _Plan, name: str, blob: _Blob, oy: Axis, ox: Axis, strip: tuple[int, int, int, int],
                 k: int, s: int, p: int, fill: float) -> torch.Tensor:
    """The input rows and columns that the windows of R''s `strip` read, materialized."""
    r0, r1, c0, c1 = strip
    return _materialize(plan, name, blob, (oy.a + r0) * s - p, (oy.a + r1 - 1) * s - p + k,
                        (ox.a + c0) * s - p, (ox.a + c1 - 1) * s - p + k, fill)


def _edge_conv(op: Op, plan: _Plan, src: _Blob, oy: Axis, ox: Axis, k: int, s: int, p: int,
               taken: list[torch.Tensor] | None) -> torch.Tensor | None:
    """A convolution on R' without materializing its enlarged input. By linearity, conv(core and
    the background ring around it) = conv(core, zero-padded as the layer pads) + conv(the ring
    alone); the second term, the edge term, depends on the weights only, is non-zero only on the
    frame of outputs whose windows reach the background, and is cached with the plan. The
    output is relu(conv(core) + edge term), one oneDNN call that adds a prepared tensor (zero but
    on the frame) before the ReLU, written into a block of nets.workspace for large maps. None
    when that call does not apply (the caller materializes the input)."""
    m = op.module
    core = src.core
    pad, ceil = _core_calls(op, src, oy, ox, k, s, p)
    if (not ceil or op.fc or not _INPLACE_CONV or not nf._onednn_ok(core, m)
            or not core.is_contiguous(memory_format=torch.channels_last)):
        return None
    edges = _edge_terms(op, plan, src, oy, ox, k, s, p, core.dtype)
    shape = (core.shape[0], m.out_channels, oy.b - oy.a, ox.b - ox.a)
    buf = None if taken is None else ws.take(shape, core.dtype)
    if buf is None:
        buf = torch.empty(shape, dtype=core.dtype, memory_format=torch.channels_last)
    else:
        taken.append(buf)
    buf.zero_()
    for (r0, r1, c0, c1), e in edges:
        buf[:, :, r0:r1, c0:c1] = e
    return torch.ops.mkldnn._convolution_pointwise_.binary(
        buf, core, _packed(m, core, pad), m.bias, *_conv_args(m, pad), "add", 1.0, "relu", [], "")


def _edge_terms(op: Op, plan: _Plan, src: _Blob, oy: Axis, ox: Axis, k: int, s: int, p: int,
                dtype: torch.dtype) -> list:
    """[((r0, r1, c0, c1), 1 x C_out x h x w)]: the edge term of `op` on the frame strips of R'
    (rows r0..r1, columns c0..c1 of R'), conv(background ring, core zero) without bias, in
    `dtype` (the layer's own precision). Cached with the plan."""
    key = ("edge", op.dst, dtype)
    if key in plan.cast:
        return plan.cast[key]
    m = op.module
    zero = _Blob(torch.zeros((), dtype=dtype).expand(1, src.core.shape[1], *src.core.shape[2:]), src.ay, src.ax)
    out = []
    with torch.inference_mode(False), torch.no_grad():
        weight = m.weight.detach().to(dtype)
        for strip in _frame(src, oy, ox, k, s, p)[0]:
            ring = _strip_input(plan, op.srcs[0], zero, oy, ox, strip, k, s, p, 0.0)
            e = F.conv2d(ring, weight, None, m.stride, 0, m.dilation, m.groups)
            out.append((strip, e.contiguous(memory_format=torch.channels_last)))
    plan.cast[key] = out
    return out


def _framed_op(op: Op, plan: _Plan, src: _Blob, oy: Axis, ox: Axis, k: int, s: int, p: int,
               fill: float) -> torch.Tensor | None:
    """The op on R' without materializing its enlarged input: run on the core alone, padded as the
    layer pads (zeros / -inf), which is right wherever a window sees only the core or positions
    beyond the map; then recompute the frame of outputs whose windows reach the background from
    small materialized strips, written over. No autograd (the frame is written in place). None
    when the core cannot be run this way (the caller materializes the whole input)."""
    pad, ceil = _core_calls(op, src, oy, ox, k, s, p)
    strips, whole = _frame(src, oy, ox, k, s, p)
    if not ceil or whole:
        return None
    y = _apply(op, src.core, pad, ceil=min(ceil))
    for r0, r1, c0, c1 in strips:
        y[:, :, r0:r1, c0:c1] = _apply(op, _strip_input(plan, op.srcs[0], src, oy, ox, (r0, r1, c0, c1),
                                                        k, s, p, fill), (0, 0))
    return y


def _hooked(program: Sequence[Op]) -> bool:
    """Whether forward hooks watch a trunk layer (they would see partial blobs, or none)."""
    from torch.nn.modules import module as nn_module
    if nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks:
        return True
    return any(op.module is not None and (op.module._forward_hooks or op.module._forward_pre_hooks)
               for op in program)


def _differentiable(program: Sequence[Op], inputs: dict[str, torch.Tensor]) -> bool:
    """Whether autograd records this forward (some trunk parameter or input requires grad)."""
    if not torch.is_grad_enabled():
        return False
    return (any(x.requires_grad for x in inputs.values())
            or any(p.requires_grad for op in program if op.module is not None for p in op.module.parameters()))


def _stochastic_on_partial(program: Sequence[Op], geo: dict) -> bool:
    """Whether a training-mode dropout would see a blob that is not whole (its mask must be drawn on
    the whole blob, in the default path's layout, so that the RNG and the masks are the default
    path's). Never the case for the nets' geometries (dropout follows fc6 / fc7, whose every
    output depends on the image); checked before anything is drawn, the caller then runs its
    default path."""
    for op in program:
        if op.kind == "point" and isinstance(op.module, nn.Dropout) and op.module.training and op.module.p > 0:
            ay, ax = geo[op.srcs[0]]
            if (ay.a, ay.b, ax.a, ax.b) != (0, ay.n, 0, ax.n):
                return True
    return False


def run_region(owner: nn.Module, program: Sequence[Op], inputs: dict[str, torch.Tensor],
               outputs: Sequence[str]) -> dict[str, torch.Tensor] | None:
    """Run `program` on `inputs` (N x C x H x W each) by regions; return the `outputs` blobs at
    full size. `owner` is the net (the background cache lives with it). None when forward hooks
    watch a trunk layer: the caller then runs its default path, whose layers hooks see whole."""
    if _hooked(program):
        return None
    sizes = {k: (int(v.shape[2]), int(v.shape[3])) for k, v in inputs.items()}
    channels = {k: int(v.shape[1]) for k, v in inputs.items()}
    autograd = _differentiable(program, inputs)
    if autograd:
        # Autograd records: the background from the current weights, differentiably, every call
        # (not cached: the weights change each step). Backpropagated, the background positions'
        # upstream gradient is summed per class (index_select's backward) and runs back through
        # the small class-compressed computation: the plain build's gradient, on smaller maps.
        pkey = (_program_key(program), tuple(sorted(sizes.items())))
        geo = _lru_get(_GEO, pkey, lambda: blob_geometry(program, sizes))
        if _stochastic_on_partial(program, geo):
            return None
        plan = _Plan(geo, _background(program, geo, channels))
    else:
        plan = _plan(owner, program, sizes, channels)
        if _stochastic_on_partial(program, plan.geo):
            return None
    blobs = {k: _Blob(nf.entry_layout(v, True), *plan.geo[k]) for k, v in inputs.items()}
    last = {s: i for i, op in enumerate(program) for s in op.srcs}
    taken: list[torch.Tensor] = []  # workspace blocks in use (given back once no blob reads them)
    for i, op in enumerate(program):
        if op.kind in ("conv", "pool"):
            y = _window_op(op, plan, blobs, autograd, None if op.dst in outputs else taken)
        elif op.kind == "point":
            y = op.module(blobs[op.srcs[0]].core)
        else:
            oy, ox = plan.geo[op.dst]
            y = torch.cat([_materialize(plan, s, blobs[s], oy.a, oy.b, ox.a, ox.b, math.nan)
                           for s in op.srcs], dim=1)
        blobs[op.dst] = _Blob(y, *plan.geo[op.dst])
        if not autograd:
            _drop_dead(blobs, taken, [n for n in op.srcs if last[n] == i and n not in outputs])
    out = {}
    for name in outputs:
        b = blobs[name]
        out[name] = _materialize(plan, name, b, 0, b.ay.n, 0, b.ax.n, math.nan)
    return out


def _drop_dead(blobs: dict[str, _Blob], taken: list[torch.Tensor], dead: list[str]) -> None:
    """Forget the blobs no later op reads, and give the workspace blocks in `taken` back once no
    live blob shares their memory (an eval-mode dropout hands its input on as it is)."""
    for name in dead:
        blobs.pop(name, None)
    live = {b.core.untyped_storage().data_ptr() for b in blobs.values()}
    dead_blocks = [t for t in taken if t.untyped_storage().data_ptr() not in live]
    taken[:] = [t for t in taken if t.untyped_storage().data_ptr() in live]
    for t in dead_blocks:
        ws.give(t)


def region_flops(program: Sequence[Op], sizes: dict[str, tuple[int, int]], *,
                 region: bool = True) -> int:
    """Multiply-adds x 2 of the program's convolutions for inputs of `sizes`: over the computed
    (dependent-and-enlarged) rectangles when `region`, over the full maps otherwise."""
    geo = blob_geometry(program, sizes)
    total = 0
    for op in program:
        if op.kind != "conv":
            continue
        oy, ox = geo[op.dst]
        m = op.module
        per = 2 * m.weight[0].numel() * m.out_channels
        total += per * ((oy.b - oy.a) * (ox.b - ox.a) if region else oy.n * ox.n)
    return total
