"""Caffe layer semantics, in one place.

Everything in which Caffe differs from PyTorch's defaults lives here: ceil-mode max pooling with
Caffe's output-size rule, `Crop` with an offset and a reference blob (not centred), the bilinear
upsampling kernel with its diagonal-only fill, fixed (lr_mult 0) deconvolutions, the at-once
`Scale` layers, LRN across channels, `Concat`, max pooling with padding, the `xavier` filler,
the per-blob `lr_mult` / `decay_mult` multipliers, the coordinate maps (Caffe's `coord_map`)
from which every crop offset is derived, and Caffe's blob-size arithmetic and receptive fields.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Sequence

import torch
from torch import nn

from nets.fast import deconv_forward

# --------------------------------------------------------------------------------------------
# Per-blob learning-rate and weight-decay multipliers (Caffe's ParamSpec lr_mult / decay_mult)
# --------------------------------------------------------------------------------------------
#: The reference's `conv_relu` helper: weights lr 1 / decay 1, biases lr 2 / decay 0.
VGG_MULTS = ((1.0, 1.0), (2.0, 0.0))
#: A Caffe layer with no `param` spec: every blob 1 / 1 (AlexNet's trunk, biases included).
DEFAULT_MULTS = ((1.0, 1.0), (1.0, 1.0))
#: `param=[dict(lr_mult=0)]`: fixed weights (decay_mult stays at Caffe's default of 1).
FIXED_MULTS = ((0.0, 1.0),)


def set_multipliers(module: nn.Module, mults: Sequence[tuple[float, float]]) -> nn.Module:
    """Attach Caffe's (lr_mult, decay_mult) pairs to `module`, in Caffe blob order (weight, bias).

    A blob whose lr_mult is 0 never changes in Caffe; here it gets `requires_grad=False` so that
    no gradient is computed for it at all.
    """
    module.caffe_mults = tuple((float(lr), float(decay)) for lr, decay in mults)
    for (lr_mult, _), param in zip(module.caffe_mults, _caffe_blobs(module)):
        if lr_mult == 0:
            param.requires_grad_(False)
    return module


def _caffe_blobs(module: nn.Module) -> list[nn.Parameter]:
    """The module's own parameters in Caffe blob order: weight, then bias (if any)."""
    return [p for p in (getattr(module, "weight", None), getattr(module, "bias", None)) if p is not None]


def param_multipliers(net: nn.Module) -> dict[str, tuple[float, float]]:
    """Map each parameter name of `net` to its Caffe (lr_mult, decay_mult).

    Parameters of modules that carry no explicit multipliers get Caffe's default (1, 1).
    """
    out: dict[str, tuple[float, float]] = {}
    for prefix, module in net.named_modules():
        mults = getattr(module, "caffe_mults", DEFAULT_MULTS)
        for i, param in enumerate(_caffe_blobs(module)):
            name = f"{prefix}.{'weight' if param is getattr(module, 'weight', None) else 'bias'}"
            out[name.lstrip(".")] = mults[i] if i < len(mults) else (1.0, 1.0)
    return out


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------
def conv(in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, pad: int = 0, group: int = 1,
         mults: Sequence[tuple[float, float]] = VGG_MULTS) -> nn.Conv2d:
    """A Caffe `Convolution` layer (weight out x in/group x k x k, with bias)."""
    layer = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=pad, groups=group, bias=True)
    return set_multipliers(layer, mults)


def score_conv(in_ch: int, num_classes: int) -> nn.Conv2d:
    """A 1x1 class-scoring convolution. The reference sets no filler, so Caffe fills it with 0."""
    layer = conv(in_ch, num_classes, 1)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def caffe_pool_output_size(size: int, kernel: int, stride: int, pad: int = 0) -> int:
    """Caffe's PoolingLayer output size (round_mode CEIL, the default).

    ceil((size + 2 pad - kernel) / stride) + 1, then one less if padding would make the last
    window start inside the padding.
    """
    out = int(math.ceil((size + 2 * pad - kernel) / stride)) + 1
    if pad > 0 and (out - 1) * stride >= size + pad:
        out -= 1
    return out


class MaxPool(nn.MaxPool2d):
    """Caffe max pooling: output size rounded up (`ceil_mode=True`), optional zero-size padding.

    Caffe's rule (`caffe_pool_output_size`) and PyTorch's ceil-mode rule are the same formula
    (both drop a last window that would start in the padding) whenever kernel >= stride; the
    constructor refuses configurations where they could differ. Padded cells never win the max
    in either (Caffe clips the window to the image, PyTorch pads with -inf), so values and the
    argmax that receives the gradient (the first maximum in scan order) agree too. GoogLeNet's
    inception pools are 3x3, stride 1, pad 1: same-size.
    """

    def __init__(self, kernel: int, stride: int, pad: int = 0) -> None:
        if kernel < stride:
            raise ValueError("Caffe and PyTorch ceil-mode pooling sizes may differ when kernel < stride")
        if not 0 <= 2 * pad <= kernel:  # Caffe: pad < kernel; PyTorch: pad <= kernel / 2
            raise ValueError(f"pooling pad {pad} must be between 0 and half the kernel ({kernel})")
        super().__init__(kernel, stride, padding=pad, ceil_mode=True)


def bilinear_kernel(size: int) -> torch.Tensor:
    """The reference's `upsample_filt(size)`: a size x size bilinear kernel (float64).

    factor f = floor((size + 1) / 2); centre c = f - 1 for odd sizes, f - 0.5 for even ones;
    k[i, j] = (1 - |i - c| / f) * (1 - |j - c| / f).
    """
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = torch.arange(size, dtype=torch.float64)
    filt = 1 - (og - center).abs() / factor
    return filt[:, None] * filt[None, :]


def fill_bilinear_(weight: torch.Tensor) -> torch.Tensor:
    """The reference's `surgery.interp`: bilinear kernels on the diagonal [i, i] only, 0 elsewhere.

    `weight` is a Deconvolution blob (m, k, h, w) with m == k (or k == 1) and h == w.
    """
    m, k, h, w = weight.shape
    if (m != k and k != 1) or h != w:
        raise ValueError(f"bilinear fill needs m == k (or k == 1) and a square kernel, got {tuple(weight.shape)}")
    with torch.no_grad():
        weight.zero_()
        kernel = bilinear_kernel(h).to(weight.dtype)
        for i in range(m):
            weight[i, 0 if k == 1 else i] = kernel
    return weight


class Deconvolution(nn.ConvTranspose2d):
    """Caffe `Deconvolution`: a transposed convolution, weight (C_in, C_out, k, k) as Caffe stores it.

    With `fast` on (the default), a weight that is exactly diagonal (as the reference's bilinear
    fill leaves it) and not being learned runs as a depthwise transposed convolution, which
    computes the same sums without the C^2 - C all-zero kernels (see `nets.fast`). Anything
    else, e.g. a learned or non-diagonal weight, runs the dense `nn.ConvTranspose2d`.
    """

    fast: bool = True

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if self.fast:
            y = deconv_forward(self, input, output_size)
            if y is not None:
                return y
        return super().forward(input, output_size)


def deconv(channels: int, kernel: int, stride: int) -> Deconvolution:
    """A fixed bilinear upsampling `Deconvolution` (no bias, lr_mult 0), as in every reference net.

    Stored densely (C x C x k x k) as Caffe stores it, the off-diagonal entries zero.
    """
    layer = Deconvolution(channels, channels, kernel, stride=stride, bias=False)
    fill_bilinear_(layer.weight)
    return set_multipliers(layer, FIXED_MULTS)


class Crop(nn.Module):
    """Caffe `Crop` with axis 2: take a window of the reference blob's H x W starting at `offset`.

    Not a centred crop (fcn PR #5). The result is a view of the input, no copy.
    """

    def __init__(self, offset: int) -> None:
        super().__init__()
        self.offset = int(offset)

    def forward(self, x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        o = self.offset
        h, w = reference.shape[-2:]
        if x.shape[-2] < o + h or x.shape[-1] < o + w:
            raise ValueError(f"crop offset {o} + reference {h}x{w} exceeds input {tuple(x.shape[-2:])}")
        return x[:, :, o:o + h, o:o + w]

    def extra_repr(self) -> str:
        return f"offset={self.offset}"


class Scale(nn.Module):
    """Caffe `Scale` with one bottom: one learned value per channel (here fixed, lr_mult 0).

    `value` is the constant filler the reference's prototxt gives it (kept for export).
    """

    def __init__(self, channels: int, value: float) -> None:
        super().__init__()
        self.value = float(value)
        self.weight = nn.Parameter(torch.full((channels,), float(value)))
        set_multipliers(self, FIXED_MULTS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight.view(1, -1, 1, 1)


def lrn(local_size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> nn.LocalResponseNorm:
    """Caffe `LRN` with norm_region ACROSS_CHANNELS (the default; AlexNet's and GoogLeNet's values).

    Caffe divides by (k + alpha/n * sum of squares)^beta over a zero-padded window of n =
    local_size channels centred on the channel, which is exactly PyTorch's LocalResponseNorm
    for odd n (Caffe requires odd n).
    """
    if local_size % 2 != 1:
        raise ValueError(f"Caffe's LRN needs an odd local_size, not {local_size}")
    return nn.LocalResponseNorm(local_size, alpha=alpha, beta=beta, k=k)


def dropout(ratio: float = 0.5) -> nn.Dropout:
    """Caffe `Dropout` (`dropout_ratio`, 0.5 by default): scaled by 1/(1-p) at TRAIN, identity at TEST.

    Caffe runs it in place; here it is out of place (same values, same masks, same random
    numbers drawn), because the preceding in-place ReLU saves its output for the backward and
    an in-place dropout would overwrite it (autograd then refuses to backpropagate). The blob
    is fc6 / fc7's output, a few MB.
    """
    return nn.Dropout(ratio, inplace=False)


class Concat(nn.Module):
    """Caffe `Concat` with axis 1 (the default): the bottoms stacked along channels, in bottom order."""

    def forward(self, *bottoms: torch.Tensor) -> torch.Tensor:
        return torch.cat(bottoms, dim=1)


# --------------------------------------------------------------------------------------------
# Fillers (Caffe's weight_filler / bias_filler)
# --------------------------------------------------------------------------------------------
def xavier_(weight: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Caffe's `xavier` filler (variance_norm FAN_IN, the default): uniform in [-a, a],
    a = sqrt(3 / fan_in), fan_in = weight.numel() / weight.shape[0] (C_in/group x kh x kw).

    Caffe's XavierFiller ignores `std`, which GoogLeNet's prototxt nevertheless sets on most layers.
    """
    fan_in = weight[0].numel()
    scale = math.sqrt(3.0 / fan_in)
    with torch.no_grad():
        return weight.uniform_(-scale, scale, generator=generator)


def caffe_filled(layer: nn.Conv2d, *, bias: float) -> nn.Conv2d:
    """`layer` with Caffe's fillers `weight_filler { type: "xavier" }` and
    `bias_filler { type: "constant" value: bias }` applied (as GoogLeNet's prototxt sets them)."""
    xavier_(layer.weight)
    if layer.bias is not None:
        nn.init.constant_(layer.bias, bias)
    return layer


#: Layers that leave every blob's geometry (size, coordinates) unchanged.
POINTWISE = (nn.ReLU, nn.Dropout, nn.LocalResponseNorm, Scale, nn.Identity)


# --------------------------------------------------------------------------------------------
# Coordinate maps (Caffe's python/caffe/coord_map.py, written from its definition)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CoordMap:
    """Where a blob's pixel y sits in input (data) coordinates: x = scale * y + shift.

    Exact rational arithmetic, so that offsets are checked to be integers rather than rounded.
    """

    scale: Fraction = Fraction(1)
    shift: Fraction = Fraction(0)

    def through(self, *modules: nn.Module) -> "CoordMap":
        """The map of the blob produced by passing this blob through `modules` in turn."""
        m = self
        for module in modules:
            m = m._through_one(module)
        return m

    def _through_one(self, module: nn.Module) -> "CoordMap":
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d)):
            k, s, p, d = _geometry(module)
            # output pixel y covers input pixels s*y - p ... s*y - p + (k-1)d: its centre.
            extent = Fraction((k - 1) * d, 2)
            return CoordMap(self.scale * s, self.shift + self.scale * (extent - p))
        if isinstance(module, nn.ConvTranspose2d):
            k, s, p, d = _geometry(module)
            extent = Fraction((k - 1) * d, 2)
            return CoordMap(self.scale / s, self.shift + self.scale * (p - extent) / s)
        if isinstance(module, POINTWISE):
            return self
        raise TypeError(f"no coordinate map for {type(module).__name__}")


def _geometry(module: nn.Module) -> tuple[int, int, int, int]:
    def one(v) -> int:
        v = v if isinstance(v, (tuple, list)) else (v, v)
        if v[0] != v[1]:
            raise ValueError(f"non-square geometry {v} in {module}")
        return int(v[0])

    return (one(module.kernel_size), one(module.stride), one(module.padding),
            one(getattr(module, "dilation", 1)))


def crop_offset(source: CoordMap, reference: CoordMap) -> int:
    """Offset for `Crop(source, reference)` that aligns the two blobs, as Caffe's `coord_map.crop`."""
    if source.scale != reference.scale:
        raise ValueError(f"cannot crop: scales differ ({source.scale} vs {reference.scale})")
    offset = (reference.shift - source.shift) / source.scale
    if offset.denominator != 1 or offset < 0:
        raise ValueError(f"crop offset {offset} is not a non-negative integer")
    return int(offset)


def walk(start: CoordMap, net: nn.Module, names: Iterable[str]) -> CoordMap:
    """`start` carried through the named submodules of `net`, in order."""
    return start.through(*(getattr(net, n) for n in names))


# --------------------------------------------------------------------------------------------
# Blob sizes (Caffe's Reshape arithmetic) and receptive fields
# --------------------------------------------------------------------------------------------
def caffe_output_size(module: nn.Module, size: int) -> int:
    """The spatial size (one axis) of `module`'s top for a bottom of `size`, as Caffe computes it.

    Convolution: (size + 2p - d(k-1) - 1) / s + 1, rounded down; Pooling: Caffe's ceil rule
    (`caffe_pool_output_size`); Deconvolution: s (size - 1) + d(k-1) + 1 - 2p; pointwise layers
    keep the size. A result below 1 is returned as is (Caffe would refuse the net).
    """
    if isinstance(module, nn.MaxPool2d):
        k, s, p, d = _geometry(module)
        if d != 1:
            raise ValueError(f"Caffe pooling has no dilation: {module}")
        return caffe_pool_output_size(size, k, s, p)
    if isinstance(module, nn.Conv2d):
        k, s, p, d = _geometry(module)
        return (size + 2 * p - d * (k - 1) - 1) // s + 1
    if isinstance(module, nn.ConvTranspose2d):
        k, s, p, d = _geometry(module)
        return s * (size - 1) + d * (k - 1) + 1 - 2 * p
    if isinstance(module, POINTWISE):
        return size
    raise TypeError(f"no output size rule for {type(module).__name__}")


@dataclass(frozen=True)
class ReceptiveField:
    """How many input pixels (per axis) one unit of a blob sees, and the input distance between
    neighbouring units (the blob's stride), for the path of convolutions and poolings so far."""

    size: int = 1
    stride: int = 1

    def through(self, *modules: nn.Module) -> "ReceptiveField":
        """The field of the blob produced by passing this blob through `modules` in turn."""
        f = self
        for module in modules:
            if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
                k, s, _, d = _geometry(module)
                f = ReceptiveField(f.size + (k - 1) * d * f.stride, f.stride * s)
            elif not isinstance(module, POINTWISE):
                raise TypeError(f"no receptive field through {type(module).__name__}")
        return f

    @staticmethod
    def union(*fields: "ReceptiveField") -> "ReceptiveField":
        """The field of a `Concat` of blobs with these fields (the widest; strides must agree)."""
        if len({f.stride for f in fields}) != 1:
            raise ValueError(f"cannot concatenate blobs of different strides: {fields}")
        return ReceptiveField(max(f.size for f in fields), fields[0].stride)
