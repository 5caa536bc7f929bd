"""FCN-VGG16 nets: FCN-32s, FCN-16s, FCN-8s (staged and at-once), one- and two-headed, late fusion.

The trunk is the reference's `net.py` as a table; the heads follow `voc-fcn{32,16,8}s/net.py`.
Layer (module) names are the Caffe layer names, so a converted caffemodel maps name to name.
A `suffix` is appended to every layer name of a trunk (`conv1_1color`) or head (`score_fr_sem`),
as the reference's NYUD late-fusion and SIFT Flow nets do.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from nets.caffe import CoordMap, Crop, MaxPool, Scale, conv, crop_offset, deconv, dropout, score_conv, walk
from nets.fast import conv_relu, entry_layout, exact_cuda_math, is_fast
from nets.region import Op, region_enabled, run_region

#: VGG16 trunk as the reference builds it: (layer, kind, output channels, kernel, pad).
#: Convolutions are followed by an in-place ReLU; pooling is 2x2 stride 2, ceil mode.
VGG16_TRUNK: tuple[tuple[str, str, int, int, int], ...] = (
    ("conv1_1", "conv", 64, 3, 100),  # pad 100: the output can be cropped to any input size
    ("conv1_2", "conv", 64, 3, 1),
    ("pool1", "pool", 0, 2, 0),
    ("conv2_1", "conv", 128, 3, 1),
    ("conv2_2", "conv", 128, 3, 1),
    ("pool2", "pool", 0, 2, 0),
    ("conv3_1", "conv", 256, 3, 1),
    ("conv3_2", "conv", 256, 3, 1),
    ("conv3_3", "conv", 256, 3, 1),
    ("pool3", "pool", 0, 2, 0),
    ("conv4_1", "conv", 512, 3, 1),
    ("conv4_2", "conv", 512, 3, 1),
    ("conv4_3", "conv", 512, 3, 1),
    ("pool4", "pool", 0, 2, 0),
    ("conv5_1", "conv", 512, 3, 1),
    ("conv5_2", "conv", 512, 3, 1),
    ("conv5_3", "conv", 512, 3, 1),
    ("pool5", "pool", 0, 2, 0),
    ("fc6", "conv", 4096, 7, 0),  # convolutionalized fc6
    ("drop6", "dropout", 0, 0, 0),
    ("fc7", "conv", 4096, 1, 0),  # convolutionalized fc7
    ("drop7", "dropout", 0, 0, 0),
)


def scaled(channels: int, width: float) -> int:
    """A trunk channel count scaled by `width`, rounded to an even number >= 2."""
    return max(2, 2 * round(channels * width / 2))


class VGG16FCN(nn.Module):
    """FCN-VGG16 at output stride 32, 16 or 8.

    Args:
        num_classes: classes per head, e.g. (21,) or (33, 3) for SIFT Flow's two heads.
        head_suffixes: layer-name suffix per head, e.g. ("",) or ("_sem", "_geo").
        stride: 32, 16 or 8 (FCN-32s / 16s / 8s).
        at_once: add the fixed `scale_pool4` (0.01) and `scale_pool3` (1e-4) layers of
            voc-fcn8s-atonce before the skip score layers.
        in_channels: input channels (4 for NYUD color-D early fusion).
        first_conv: name of the first convolution (`conv1_1_bgrd` for color-D).
        width: trunk channel multiplier (geometry unchanged), for fast tests.

    Input: N x in_channels x H x W, Caffe-preprocessed. Output: the `score` blob N x C x H x W,
    or a dict {"score<suffix>": ...} when the net has more than one head.
    """

    inputs: tuple[str, ...] = ("data",)
    fast: bool = True  # the fast kernels of nets.fast (nets.build(..., fast=False): the plain build)
    region: bool = True  # the region forward of nets.region, inference and training (set_region)

    def __init__(self, num_classes: Sequence[int] = (21,), head_suffixes: Sequence[str] = ("",), *,
                 stride: int = 32, at_once: bool = False, in_channels: int = 3,
                 first_conv: str = "conv1_1", width: float = 1.0) -> None:
        super().__init__()
        if stride not in (32, 16, 8):
            raise ValueError(f"stride must be 32, 16 or 8, not {stride}")
        if len(num_classes) != len(head_suffixes):
            raise ValueError("one class count per head suffix")
        self.stride, self.at_once = stride, at_once
        self.heads = tuple(zip(head_suffixes, num_classes))
        self.trunk_names = add_vgg16_trunk(self, in_channels, width, first_conv=first_conv)
        c3, c4, c7 = (scaled(c, width) for c in (256, 512, 4096))
        if at_once:
            self.scale_pool4 = Scale(c4, 0.01)
            self.scale_pool3 = Scale(c3, 0.0001)
        for suffix, n in self.heads:
            add_skip_head(self, suffix, n, stride, (c3, c4, c7))
        self.crop_offsets = derive_head_offsets(self, self.trunk_names, self.heads, stride)

    def forward(self, data: torch.Tensor):
        taps = vgg16_trunk_forward(self, data, self.trunk_names)
        if self.at_once:
            taps["pool4"] = self.scale_pool4(taps["pool4"])
            taps["pool3"] = self.scale_pool3(taps["pool3"])
        scores = {f"score{s}": skip_head_forward(self, s, taps, data) for s, _ in self.heads}
        return scores if len(scores) > 1 else next(iter(scores.values()))


def add_vgg16_trunk(net: nn.Module, in_channels: int, width: float, *, suffix: str = "",
                    first_conv: str = "conv1_1") -> list[str]:
    """Register the VGG16 trunk's layers on `net` as `<layer><suffix>`; return their names."""
    names, channels = [], in_channels
    for layer, kind, out, kernel, pad in VGG16_TRUNK:
        name = (first_conv if layer == "conv1_1" else layer) + suffix
        if kind == "conv":
            out = scaled(out, width)
            setattr(net, name, conv(channels, out, kernel, pad=pad))
            channels = out
        elif kind == "pool":
            setattr(net, name, MaxPool(2, 2))
        else:
            setattr(net, name, dropout())
        names.append(name)
    return names


def vgg16_trunk_forward(net: nn.Module, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Run the trunk; return the blobs the heads read: pool3, pool4 and drop7 (fc7 after dropout).

    Each convolution is followed by an in-place ReLU; with `net.fast` the pair runs through the
    fast kernels of `nets.fast` (same results to float32 rounding).
    """
    if region_enabled(net, x):
        blobs = run_region(net, vgg16_region_program(net, names), {"data": x},
                           [n for n, row in zip(names, VGG16_TRUNK) if row[0] in TAPS])
        if blobs is not None:
            return {row[0]: blobs[n] for n, row in zip(names, VGG16_TRUNK) if row[0] in TAPS}
    fast = is_fast(net)
    exact_cuda_math(x)
    x = entry_layout(x, fast)
    taps = {}
    for name, (layer, kind, *_rest) in zip(names, VGG16_TRUNK):
        if kind == "conv":
            x = conv_relu(getattr(net, name), x, fast, fc=layer.startswith("fc"))
        else:
            x = getattr(net, name)(x)
        if layer in TAPS:
            taps[layer] = x
    return taps


#: The trunk blobs the heads read.
TAPS = ("pool3", "pool4", "drop7")


def vgg16_region_program(net: nn.Module, names: Sequence[str]) -> list[Op]:
    """The trunk as `nets.region` ops; blobs are named by the (suffixed) layer names."""
    ops, prev = [], "data"
    for name, (layer, kind, *_rest) in zip(names, VGG16_TRUNK):
        module = getattr(net, name)
        kind = {"conv": "conv", "pool": "pool"}.get(kind, "point")
        ops.append(Op(kind, (prev,), name, module, fc=layer.startswith("fc")))
        prev = name
    return ops


def add_skip_head(net: nn.Module, h: str, n: int, stride: int, channels: tuple[int, int, int]) -> None:
    """Register one head's layers (`score_fr<h>`, `upscore...<h>`, skip scores) for `stride`."""
    c3, c4, c7 = channels
    setattr(net, f"score_fr{h}", score_conv(c7, n))
    if stride == 32:
        setattr(net, f"upscore{h}", deconv(n, 64, 32))
        return
    setattr(net, f"upscore2{h}", deconv(n, 4, 2))
    setattr(net, f"score_pool4{h}", score_conv(c4, n))
    if stride == 16:
        setattr(net, f"upscore16{h}", deconv(n, 32, 16))
        return
    setattr(net, f"upscore_pool4{h}", deconv(n, 4, 2))
    setattr(net, f"score_pool3{h}", score_conv(c3, n))
    setattr(net, f"upscore8{h}", deconv(n, 16, 8))


def trunk_maps(net: nn.Module, trunk: Sequence[str]) -> dict[str, CoordMap]:
    """Coordinate map of every trunk blob, keyed by the reference layer name (no suffix)."""
    m, maps = CoordMap(), {}
    for name, row in zip(trunk, VGG16_TRUNK):
        m = m.through(getattr(net, name))
        maps[row[0]] = m
    return maps


def derive_head_offsets(net: nn.Module, trunk: Sequence[str], heads, stride: int) -> dict[str, int]:
    """Derive every crop offset from the layer geometry and register the `Crop` layers."""
    data, t = CoordMap(), trunk_maps(net, trunk)
    offsets = {}
    for h, _ in heads:
        score_fr = walk(t["drop7"], net, [f"score_fr{h}"])
        if stride == 32:
            final = walk(score_fr, net, [f"upscore{h}"])
        else:
            up2 = walk(score_fr, net, [f"upscore2{h}"])
            offsets[f"score_pool4{h}c"] = crop_offset(walk(t["pool4"], net, [f"score_pool4{h}"]), up2)
            if stride == 16:
                final = walk(up2, net, [f"upscore16{h}"])
            else:
                up4 = walk(up2, net, [f"upscore_pool4{h}"])
                offsets[f"score_pool3{h}c"] = crop_offset(walk(t["pool3"], net, [f"score_pool3{h}"]), up4)
                final = walk(up4, net, [f"upscore8{h}"])
        offsets[f"score{h}"] = crop_offset(final, data)
    for name, offset in offsets.items():
        setattr(net, name, Crop(offset))
    return offsets


def skip_head_forward(net: nn.Module, h: str, taps: dict[str, torch.Tensor], data: torch.Tensor,
                      score_fr: torch.Tensor | None = None) -> torch.Tensor:
    """One head: score_fr -> upsample, fusing the pool4 / pool3 skips for FCN-16s / 8s."""
    g = lambda name: getattr(net, name + h)  # noqa: E731 - layer lookup with the head's suffix
    if score_fr is None:
        score_fr = g("score_fr")(taps["drop7"])
    if net.stride == 32:
        return g("score")(g("upscore")(score_fr), data)
    upscore2 = g("upscore2")(score_fr)
    fuse_pool4 = upscore2 + getattr(net, f"score_pool4{h}c")(g("score_pool4")(taps["pool4"]), upscore2)
    if net.stride == 16:
        return g("score")(g("upscore16")(fuse_pool4), data)
    upscore_pool4 = g("upscore_pool4")(fuse_pool4)
    fuse_pool3 = upscore_pool4 + getattr(net, f"score_pool3{h}c")(g("score_pool3")(taps["pool3"]), upscore_pool4)
    return g("score")(g("upscore8")(fuse_pool3), data)


class LateFusionFCN(nn.Module):
    """NYUD RGB-HHA late fusion: two full VGG16 FCN streams whose scores are averaged.

    stride 32 is the reference's nyud-fcn32s-color-hha: `score_fused = 0.5 score_frcolor +
    0.5 score_frhha` (Eltwise SUM, coeff [0.5, 0.5]), then `upscore` and `score`.

    stride 16 is the paper's Table 4 "FCN-16s RGB-HHA", which has no reference folder. Our
    construction (UNVERIFIED against the authors' unreleased net): each stream also has
    `score_pool4<stream>`; both are cropped to `upscore2` and averaged in, i.e.
    fuse_pool4 = upscore2 + 0.5 score_pool4colorc + 0.5 score_pool4hhac, then `upscore16`.

    Inputs: color (N x 3 x H x W, BGR minus the NYUD mean) and hha (N x 3 x H x W, HHA minus its mean).
    """

    inputs: tuple[str, ...] = ("color", "hha")
    streams = ("color", "hha")
    fast: bool = True  # the fast kernels of nets.fast (nets.build(..., fast=False): the plain build)
    region: bool = True  # the region forward of nets.region, inference and training (set_region)

    def __init__(self, num_classes: int = 40, *, stride: int = 32, width: float = 1.0) -> None:
        super().__init__()
        if stride not in (32, 16):
            raise ValueError(f"late fusion is defined for stride 32 and 16, not {stride}")
        self.stride = stride
        c4, c7 = scaled(512, width), scaled(4096, width)
        self.trunk_names = {s: add_vgg16_trunk(self, 3, width, suffix=s) for s in self.streams}
        for s in self.streams:
            setattr(self, f"score_fr{s}", score_conv(c7, num_classes))
            if stride == 16:
                setattr(self, f"score_pool4{s}", score_conv(c4, num_classes))
        if stride == 32:
            self.upscore = deconv(num_classes, 64, 32)
        else:
            self.upscore2 = deconv(num_classes, 4, 2)
            self.upscore16 = deconv(num_classes, 32, 16)
        self.crop_offsets = self._derive_offsets()

    def _derive_offsets(self) -> dict[str, int]:
        offsets = {}
        for s in self.streams:
            t = trunk_maps(self, self.trunk_names[s])
            score_fr = walk(t["drop7"], self, [f"score_fr{s}"])
            if self.stride == 32:
                offsets["score"] = crop_offset(walk(score_fr, self, ["upscore"]), CoordMap())
            else:
                up2 = walk(score_fr, self, ["upscore2"])
                offsets[f"score_pool4{s}c"] = crop_offset(walk(t["pool4"], self, [f"score_pool4{s}"]), up2)
                offsets["score"] = crop_offset(walk(up2, self, ["upscore16"]), CoordMap())
        for name, offset in offsets.items():
            setattr(self, name, Crop(offset))
        return offsets

    def forward(self, color: torch.Tensor, hha: torch.Tensor) -> torch.Tensor:
        taps = {s: vgg16_trunk_forward(self, x, self.trunk_names[s]) for s, x in zip(self.streams, (color, hha))}
        score_fused = sum(0.5 * getattr(self, f"score_fr{s}")(taps[s]["drop7"]) for s in self.streams)
        if self.stride == 32:
            return self.score(self.upscore(score_fused), color)
        upscore2 = self.upscore2(score_fused)
        fuse_pool4 = upscore2
        for s in self.streams:
            skip = getattr(self, f"score_pool4{s}")(taps[s]["pool4"])
            fuse_pool4 = fuse_pool4 + 0.5 * getattr(self, f"score_pool4{s}c")(skip, upscore2)
        return self.score(self.upscore16(fuse_pool4), color)
