"""FCN-AlexNet (voc-fcn-alexnet): CaffeNet trunk, one stride-32 head.

As the reference's `voc-fcn-alexnet/net.py`: the trunk's convolutions set no `param` spec, so
every blob (biases included) has lr_mult 1 / decay_mult 1; only `score_fr` has 1/1 and 2/0.
"""
from __future__ import annotations

import torch
from torch import nn

from nets.caffe import DEFAULT_MULTS, CoordMap, Crop, MaxPool, conv, crop_offset, deconv, dropout, lrn, score_conv, walk
from nets.fast import conv_relu, entry_layout, exact_cuda_math
from nets.region import Op, region_enabled, run_region
from nets.vgg_fcn import scaled

#: (layer, kind, output channels, kernel, stride, pad, group); pooling is 3x3 stride 2.
ALEXNET_TRUNK: tuple[tuple[str, str, int, int, int, int, int], ...] = (
    ("conv1", "conv", 96, 11, 4, 100, 1),
    ("pool1", "pool", 0, 3, 2, 0, 1),
    ("norm1", "lrn", 0, 0, 0, 0, 1),
    ("conv2", "conv", 256, 5, 1, 2, 2),
    ("pool2", "pool", 0, 3, 2, 0, 1),
    ("norm2", "lrn", 0, 0, 0, 0, 1),
    ("conv3", "conv", 384, 3, 1, 1, 1),
    ("conv4", "conv", 384, 3, 1, 1, 2),
    ("conv5", "conv", 256, 3, 1, 1, 2),
    ("pool5", "pool", 0, 3, 2, 0, 1),
    ("fc6", "conv", 4096, 6, 1, 0, 1),
    ("drop6", "dropout", 0, 0, 0, 0, 1),
    ("fc7", "conv", 4096, 1, 1, 0, 1),
    ("drop7", "dropout", 0, 0, 0, 0, 1),
)


class AlexNetFCN(nn.Module):
    """FCN-AlexNet: input N x 3 x H x W (Caffe-preprocessed), output `score` N x C x H x W."""

    inputs: tuple[str, ...] = ("data",)
    fast: bool = True  # the fast kernels of nets.fast (nets.build(..., fast=False): the plain build)
    region: bool = True  # the region forward of nets.region, inference and training (set_region)

    def __init__(self, num_classes: int = 21, *, width: float = 1.0) -> None:
        super().__init__()
        channels = 3
        self.trunk_names = [row[0] for row in ALEXNET_TRUNK]
        for name, kind, out, kernel, stride, pad, group in ALEXNET_TRUNK:
            if kind == "conv":
                out = scaled(out, width)
                setattr(self, name, conv(channels, out, kernel, stride=stride, pad=pad, group=group,
                                         mults=DEFAULT_MULTS))
                channels = out
            elif kind == "pool":
                setattr(self, name, MaxPool(kernel, stride))
            elif kind == "lrn":
                setattr(self, name, lrn())
            else:
                setattr(self, name, dropout())
        self.score_fr = score_conv(channels, num_classes)
        self.upscore = deconv(num_classes, 63, 32)
        final = walk(CoordMap(), self, self.trunk_names + ["score_fr", "upscore"])
        self.crop_offsets = {"score": crop_offset(final, CoordMap())}
        self.score = Crop(self.crop_offsets["score"])

    def region_program(self) -> list[Op]:
        """The trunk as `nets.region` ops, blobs named by layer."""
        ops, prev = [], "data"
        for name, (_, kind, *_rest) in zip(self.trunk_names, ALEXNET_TRUNK):
            kind = {"conv": "conv", "pool": "pool"}.get(kind, "point")
            ops.append(Op(kind, (prev,), name, getattr(self, name), fc=name.startswith("fc")))
            prev = name
        return ops

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        if region_enabled(self, data):
            blobs = run_region(self, self.region_program(), {"data": data}, ["drop7"])
            if blobs is not None:
                return self.score(self.upscore(self.score_fr(blobs["drop7"])), data)
        exact_cuda_math(data)
        x = entry_layout(data, self.fast)
        for name, (_, kind, *_rest) in zip(self.trunk_names, ALEXNET_TRUNK):
            if kind == "conv":
                x = conv_relu(getattr(self, name), x, self.fast, fc=name.startswith("fc"))
            else:
                x = getattr(self, name)(x)
        return self.score(self.upscore(self.score_fr(x)), data)
