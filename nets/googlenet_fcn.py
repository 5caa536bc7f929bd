"""FCN-GoogLeNet (voc-fcn-googlenet): the BVLC GoogLeNet trunk, one stride-32 head.

The paper's Table 1 net (CVPR 2015 §4.1), which the reference repository never released. The
trunk is BVLC Caffe's `models/bvlc_googlenet/deploy.prototxt` as a table, with its layer names
(`conv1/7x7_s2`, `inception_4c/5x5_reduce`, ...) and parameter shapes, so that
`bvlc_googlenet.caffemodel` loads by name. What the paper says, and what we do:

- "we use only the final loss layer": the two auxiliary classifiers (`loss1/*`, `loss2/*`,
  which hang off inception_4a and inception_4d in train_val.prototxt) are not built.
- "improve performance by discarding the final average pooling layer": `pool5/7x7_s1` is gone;
  the classifier `loss3/classifier` is replaced by `score_fr`, a zero-initialized 1x1
  convolution (21 classes) on `inception_5b/output`, then `upscore` (fixed bilinear, stride
  32) and the `score` crop to the input, as FCN-32s.
- Dropout "where used in the original classifier nets": kept, as `pool5/drop_7x7_s1` (ratio
  0.4) on `inception_5b/output`, where the original applies it to the pooled features.

Choices the paper leaves open are OUR CONSTRUCTION (UNVERIFIED against the authors' unreleased
net, which also used their own GoogLeNet, 68.5% top-1, not BVLC's 68.7%):

- `upscore` is 63x63, stride 32 (as FCN-AlexNet's), not FCN-32s' 64x64: GoogLeNet's 7x7 stride-2
  convolution and 3x3 stride-2 poolings put every blob's pixel centres on whole input pixels,
  and an even kernel would shift the upsampled scores by half a pixel (no integer crop exists).
- `conv1/7x7_s2`'s padding is derived (`derive_input_pad`), as pad 100 makes every VGG16 input
  size croppable: the smallest pad for which every input size gives scores that cover the
  input at a whole, non-negative crop offset. It comes out at 18 (BVLC's is 3, which leaves
  inputs of 30 pixels or fewer without a croppable output), and the crop offset at 16.
- The trunk's parameters keep BVLC's multipliers (lr_mult 1 / 2, decay_mult 1 / 0) and fillers
  (xavier weights, constant 0.2 biases) for a net that is not loaded; `score_fr` 1/1, 2/0.
- The paper's receptive field of 907 pixels is that of BVLC GoogLeNet's classifier, which sees
  the 7x7 average pooling; with the pooling discarded `score_fr` sees 715 (both by
  `receptive_field`, tests/test_nets.py).
"""
from __future__ import annotations

import torch
from torch import nn

from nets.caffe import (VGG_MULTS, Concat, CoordMap, Crop, MaxPool, ReceptiveField, caffe_filled,
                        caffe_output_size, conv, crop_offset, deconv, dropout, lrn, score_conv)
from nets.fast import conv_relu, entry_layout, exact_cuda_math
from nets.region import Op, region_enabled, run_region
from nets.vgg_fcn import scaled

#: Inception modules: (name, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj), as in
#: deploy.prototxt (and the GoogLeNet paper's Table 1).
INCEPTIONS: dict[str, tuple[int, int, int, int, int, int]] = {
    "inception_3a": (64, 96, 128, 16, 32, 32),
    "inception_3b": (128, 128, 192, 32, 96, 64),
    "inception_4a": (192, 96, 208, 16, 48, 64),
    "inception_4b": (160, 112, 224, 24, 64, 64),
    "inception_4c": (128, 128, 256, 24, 64, 64),
    "inception_4d": (112, 144, 288, 32, 64, 64),
    "inception_4e": (256, 160, 320, 32, 128, 128),
    "inception_5a": (256, 160, 320, 32, 128, 128),
    "inception_5b": (384, 192, 384, 48, 128, 128),
}

#: The trunk in deploy.prototxt order: (layer, kind, output channels, kernel, stride, pad).
#: Convolutions are followed by an in-place ReLU; "inception" rows expand to the module's seven
#: layers (`INCEPTION_LAYERS`) and its Concat `<name>/output`. conv1's pad is derived (None here).
GOOGLENET_TRUNK: tuple[tuple[str, str, int, int, int, int | None], ...] = (
    ("conv1/7x7_s2", "conv", 64, 7, 2, None),
    ("pool1/3x3_s2", "pool", 0, 3, 2, 0),
    ("pool1/norm1", "lrn", 0, 0, 0, 0),
    ("conv2/3x3_reduce", "conv", 64, 1, 1, 0),
    ("conv2/3x3", "conv", 192, 3, 1, 1),
    ("conv2/norm2", "lrn", 0, 0, 0, 0),
    ("pool2/3x3_s2", "pool", 0, 3, 2, 0),
    ("inception_3a", "inception", 0, 0, 0, 0),
    ("inception_3b", "inception", 0, 0, 0, 0),
    ("pool3/3x3_s2", "pool", 0, 3, 2, 0),
    ("inception_4a", "inception", 0, 0, 0, 0),
    ("inception_4b", "inception", 0, 0, 0, 0),
    ("inception_4c", "inception", 0, 0, 0, 0),
    ("inception_4d", "inception", 0, 0, 0, 0),
    ("inception_4e", "inception", 0, 0, 0, 0),
    ("pool4/3x3_s2", "pool", 0, 3, 2, 0),
    ("inception_5a", "inception", 0, 0, 0, 0),
    ("inception_5b", "inception", 0, 0, 0, 0),
)

#: An inception module's layers in deploy.prototxt order: (suffix, kernel, pad); the branches
#: are 1x1 | 3x3_reduce -> 3x3 | 5x5_reduce -> 5x5 | pool (3x3 s1 pad 1 max) -> pool_proj.
INCEPTION_LAYERS = (("1x1", 1, 0), ("3x3_reduce", 1, 0), ("3x3", 3, 1), ("5x5_reduce", 1, 0),
                    ("5x5", 5, 2), ("pool", 3, 1), ("pool_proj", 1, 0))
INCEPTION_BRANCHES = (("1x1",), ("3x3_reduce", "3x3"), ("5x5_reduce", "5x5"), ("pool", "pool_proj"))

#: deploy.prototxt's bias filler (constant) on every trunk convolution.
TRUNK_BIAS = 0.2
#: Dropout ratio of `pool5/drop_7x7_s1`.
DROPOUT_RATIO = 0.4
#: The final `Deconvolution` (our construction: an odd kernel, see the module docstring).
UPSCORE_KERNEL, UPSCORE_STRIDE = 63, 32
#: Input sizes checked by `derive_input_pad`: every size up to this (and, since all blob sizes
#: grow by exactly one unit per 32 input pixels, every larger size with them).
PAD_CHECK_SIZES = 1024
#: The dropout layer kept from BVLC GoogLeNet, and the head's layers.
DROP, SCORE_FR, UPSCORE = "pool5/drop_7x7_s1", "score_fr", "upscore"
#: The trunk's top blob (the Concat of inception_5b), which the head reads.
TRUNK_TOP = "inception_5b/output"
#: BVLC GoogLeNet's classifier, replaced by score_fr.
BVLC_CLASSIFIER = "loss3/classifier"
#: Layers with blobs that BVLC's training net (train_val.prototxt) adds to the deploy net: the two
#: auxiliary classifiers, which FCN-GoogLeNet drops. A snapshot of that training holds them.
BVLC_AUX_LAYERS = ("loss1/conv", "loss1/fc", "loss1/classifier", "loss2/conv", "loss2/fc", "loss2/classifier")


def bvlc_layers() -> tuple[str, ...]:
    """The layers with blobs of BVLC GoogLeNet's deploy net, in its order: every trunk convolution,
    then loss3/classifier."""
    names = []
    for name, kind, *_ in GOOGLENET_TRUNK:
        if kind == "conv":
            names.append(name)
        elif kind == "inception":
            names += [f"{name}/{suffix}" for suffix, *_ in INCEPTION_LAYERS if suffix != "pool"]
    return tuple(names) + (BVLC_CLASSIFIER,)


def _inception(net: nn.Module, name: str, channels: int, width: float) -> int:
    """Register inception module `name`'s layers on `net`; return its output channel count."""
    n1, n3r, n3, n5r, n5, npp = (scaled(c, width) for c in INCEPTIONS[name])
    ins = {"1x1": channels, "3x3_reduce": channels, "3x3": n3r, "5x5_reduce": channels, "5x5": n5r,
           "pool_proj": channels}
    outs = {"1x1": n1, "3x3_reduce": n3r, "3x3": n3, "5x5_reduce": n5r, "5x5": n5, "pool_proj": npp}
    for suffix, kernel, pad in INCEPTION_LAYERS:
        layer = f"{name}/{suffix}"
        if suffix == "pool":
            net.add_module(layer, MaxPool(kernel, 1, pad))
        else:
            net.add_module(layer, caffe_filled(conv(ins[suffix], outs[suffix], kernel, pad=pad, mults=VGG_MULTS),
                                               bias=TRUNK_BIAS))
    net.add_module(f"{name}/output", Concat())
    return n1 + n3 + n5 + npp


class GoogLeNetFCN(nn.Module):
    """FCN-GoogLeNet: input N x 3 x H x W (Caffe-preprocessed BGR), output `score` N x C x H x W."""

    inputs: tuple[str, ...] = ("data",)
    fast: bool = True  # the fast kernels of nets.fast (nets.build(..., fast=False): the plain build)
    region: bool = True  # the region forward of nets.region, inference and training (set_region)

    def __init__(self, num_classes: int = 21, *, width: float = 1.0) -> None:
        super().__init__()
        channels = 3
        for name, kind, out, kernel, stride, pad in GOOGLENET_TRUNK:
            if kind == "conv":
                out = scaled(out, width)
                self.add_module(name, caffe_filled(conv(channels, out, kernel, stride=stride, pad=pad or 0,
                                                        mults=VGG_MULTS), bias=TRUNK_BIAS))
                channels = out
            elif kind == "pool":
                self.add_module(name, MaxPool(kernel, stride, pad))
            elif kind == "lrn":
                self.add_module(name, lrn(5, 1e-4, 0.75))
            else:
                channels = _inception(self, name, channels, width)
        self.add_module(DROP, dropout(DROPOUT_RATIO))
        self.add_module(SCORE_FR, score_conv(channels, num_classes))
        self.add_module(UPSCORE, deconv(num_classes, UPSCORE_KERNEL, UPSCORE_STRIDE))
        self.input_pad = derive_input_pad(self)
        self.crop_offsets = {"score": crop_offset(score_map(self), CoordMap())}
        self.score = Crop(self.crop_offsets["score"])

    def layer(self, name: str) -> nn.Module:
        """The layer called `name` (Caffe layer names contain '/', so no attribute access)."""
        return self._modules[name]

    def region_program(self) -> list[Op]:
        """The trunk up to inception_5b/output as `nets.region` ops, blobs named by layer."""
        ops, prev = [], "data"
        for name, kind, *_ in GOOGLENET_TRUNK:
            if kind == "inception":
                tops = []
                for branch in INCEPTION_BRANCHES:
                    src = prev
                    for suffix in branch:
                        layer = f"{name}/{suffix}"
                        ops.append(Op("pool" if suffix == "pool" else "conv", (src,), layer, self.layer(layer)))
                        src = layer
                    tops.append(src)
                ops.append(Op("concat", tuple(tops), f"{name}/output"))
                prev = f"{name}/output"
            else:
                ops.append(Op({"conv": "conv", "pool": "pool"}.get(kind, "point"), (prev,), name, self.layer(name)))
                prev = name
        return ops

    def forward(self, data: torch.Tensor) -> torch.Tensor:
        blobs = run_region(self, self.region_program(), {"data": data}, [TRUNK_TOP]) \
            if region_enabled(self, data) else None
        x = self._trunk_forward(data) if blobs is None else blobs[TRUNK_TOP]
        # NCHW before dropout, so the fast build draws the plain build's masks (memory order).
        x = self.layer(DROP)(x.contiguous())
        return self.score(self.layer(UPSCORE)(self.layer(SCORE_FR)(x)), data)

    def _trunk_forward(self, data: torch.Tensor) -> torch.Tensor:
        exact_cuda_math(data)
        x = entry_layout(data, self.fast)
        for name, kind, *_ in GOOGLENET_TRUNK:
            if kind == "conv":
                x = conv_relu(self.layer(name), x, self.fast)
            elif kind == "inception":
                x = self._inception_forward(name, x)
            else:
                x = self.layer(name)(x)
        return x

    def _inception_forward(self, name: str, x: torch.Tensor) -> torch.Tensor:
        tops = []
        for branch in INCEPTION_BRANCHES:
            y = x
            for suffix in branch:
                layer = self.layer(f"{name}/{suffix}")
                y = layer(y) if suffix == "pool" else conv_relu(layer, y, self.fast)
            tops.append(y)
        return self.layer(f"{name}/output")(*tops)


# --------------------------------------------------------------------------------------------
# Geometry: coordinate maps, blob sizes, receptive field, all from the layers themselves
# --------------------------------------------------------------------------------------------
def _trunk_walk(net: GoogLeNetFCN, start, step, join):
    """Carry `start` through the trunk: `step(value, module)` per layer, `join(values)` at each
    Concat over the inception branches."""
    value = start
    for name, kind, *_ in GOOGLENET_TRUNK:
        if kind == "inception":
            tops = []
            for branch in INCEPTION_BRANCHES:
                v = value
                for suffix in branch:
                    v = step(v, net.layer(f"{name}/{suffix}"))
                tops.append(v)
            value = join(name, tops)
        else:
            value = step(value, net.layer(name))
    return value


def _same(name: str, values: list):
    if len(set(values)) != 1:
        raise ValueError(f"{name}/output: Concat of blobs that do not line up: {values}")
    return values[0]


def trunk_map(net: GoogLeNetFCN) -> CoordMap:
    """Coordinate map of `inception_5b/output` (every Concat's branches checked to agree)."""
    return _trunk_walk(net, CoordMap(), lambda m, module: m.through(module), _same)


def score_map(net: GoogLeNetFCN) -> CoordMap:
    """Coordinate map of `upscore`, the blob cropped to the input."""
    return trunk_map(net).through(net.layer(DROP), net.layer(SCORE_FR), net.layer(UPSCORE))


def blob_sizes(net: GoogLeNetFCN, size: int) -> tuple[int, int]:
    """(smallest blob size on the way, `upscore`'s size) for an input of `size` (one axis), in
    Caffe's arithmetic (branches checked to agree at every Concat)."""
    def step(v, module):
        low, s = v
        s = caffe_output_size(module, s)
        return min(low, s), s

    def join(name, tops):
        return min(t[0] for t in tops), _same(name, [t[1] for t in tops])

    low, s = _trunk_walk(net, (size, size), step, join)
    for layer in (DROP, SCORE_FR, UPSCORE):
        s = caffe_output_size(net.layer(layer), s)
        low = min(low, s)
    return low, s


def receptive_field(net: GoogLeNetFCN) -> ReceptiveField:
    """Receptive field and stride of `score_fr` (= of `inception_5b/output`: score_fr is 1x1)."""
    trunk = _trunk_walk(net, ReceptiveField(), lambda f, module: f.through(module),
                        lambda name, tops: ReceptiveField.union(*tops))
    return trunk.through(net.layer(DROP), net.layer(SCORE_FR))


def croppable(net: GoogLeNetFCN, size: int, offset: int) -> bool:
    """Whether an input of `size` gives non-empty blobs and an `upscore` that holds the crop
    [offset, offset + size)."""
    low, up = blob_sizes(net, size)
    return low >= 1 and up >= offset + size


def derive_input_pad(net: GoogLeNetFCN, *, sizes: int = PAD_CHECK_SIZES, limit: int = 200) -> int:
    """Set `conv1/7x7_s2`'s padding to the smallest for which every input size 1..`sizes` is
    croppable at a whole, non-negative offset (our construction, see the module docstring);
    return it. Blob sizes grow by one unit per 32 input pixels once non-empty, so the sizes
    checked stand for every size. The search runs once per geometry (cached)."""
    conv1 = net.layer("conv1/7x7_s2")
    key = (_geometry_key(net), sizes, limit)
    if key not in _PAD_CACHE:
        _PAD_CACHE[key] = _search_pad(net, conv1, sizes, limit)
    conv1.padding = (_PAD_CACHE[key],) * 2
    return _PAD_CACHE[key]


_PAD_CACHE: dict[tuple, int] = {}


def _geometry_key(net: GoogLeNetFCN) -> tuple:
    """Every layer's type and geometry (conv1's padding aside): what the pad search depends on."""
    return tuple((name, type(m).__name__, m.kernel_size, m.stride, m.dilation,
                  None if name == "conv1/7x7_s2" else m.padding)
                 for name, m in net.named_children() if hasattr(m, "kernel_size"))


def _search_pad(net: GoogLeNetFCN, conv1: nn.Conv2d, sizes: int, limit: int) -> int:
    for pad in range(limit):
        conv1.padding = (pad, pad)
        try:
            offset = crop_offset(score_map(net), CoordMap())
        except ValueError:
            continue
        if all(croppable(net, size, offset) for size in range(1, sizes + 1)):
            return pad
    raise ValueError(f"no conv1/7x7_s2 pad below {limit} makes every input size up to {sizes} croppable")
