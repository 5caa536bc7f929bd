"""The FCN nets of every experiment of the reference, with Caffe layer names.

    >>> import nets
    >>> net = nets.build("voc-fcn8s")          # 21 classes, full width
    >>> net.crop_offsets
    {'score_pool4c': 5, 'score_pool3c': 9, 'score': 31}

`build(name)` returns a `torch.nn.Module` whose parameter names are the Caffe layer names
(`conv1_1.weight`, `score_fr.bias`, ...), initialized as Caffe leaves it: score layers zero,
upsampling layers bilinear (diagonal only). Trunk layers are meant to be loaded from a converted
caffemodel (see `weight_convert`); until then they hold PyTorch's default random init (Caffe's
would be all zeros, since the reference prototxts set no filler on them), except FCN-GoogLeNet's,
which get the fillers of BVLC's GoogLeNet prototxt (xavier weights, 0.2 biases).

Layer names with a '/' (GoogLeNet's `inception_4c/5x5`) are module names as they are
(`getattr(net, "inception_4c/5x5")`, state dict key `inception_4c/5x5.weight`).

`load(path)` returns the net a weights file is for, with its weights (`nets.loading`: every file the
project writes records its net, width and class counts).

`to_prototxt(net)` writes a built net back as Caffe prototxt text and `caffe_blobs(net)` gives
its weights as Caffe blobs (`nets.caffe_graph`; `fcn export caffe` writes both).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from nets.alexnet_fcn import AlexNetFCN
from nets.caffe import param_multipliers
from nets.caffe_graph import caffe_blobs, caffe_layers, to_prototxt
from nets.fast import set_fast
from nets.googlenet_fcn import GoogLeNetFCN
from nets.loading import WeightsError, load, open_weights
from nets.region import set_region
from nets.vgg_fcn import LateFusionFCN, VGG16FCN

__all__ = ["build", "names", "info", "load", "open_weights", "WeightsError", "param_multipliers", "set_fast",
           "set_region", "NetInfo", "to_prototxt", "caffe_layers", "caffe_blobs"]


@dataclass(frozen=True)
class NetInfo:
    """What an experiment's net is: its default class count(s), inputs, and how to build it."""

    name: str
    num_classes: int | tuple[int, ...]
    inputs: tuple[str, ...]
    make: Callable[..., nn.Module]


def _vgg(stride: int, **kw) -> Callable[..., nn.Module]:
    def make(num_classes: int, width: float) -> nn.Module:
        return VGG16FCN((num_classes,), ("",), stride=stride, width=width, **kw)
    return make


def _siftflow(stride: int) -> Callable[..., nn.Module]:
    def make(num_classes: tuple[int, int], width: float) -> nn.Module:
        return VGG16FCN(tuple(num_classes), ("_sem", "_geo"), stride=stride, width=width)
    return make


def _fusion(stride: int) -> Callable[..., nn.Module]:
    def make(num_classes: int, width: float) -> nn.Module:
        return LateFusionFCN(num_classes, stride=stride, width=width)
    return make


def _alexnet(num_classes: int, width: float) -> nn.Module:
    return AlexNetFCN(num_classes, width=width)


def _googlenet(num_classes: int, width: float) -> nn.Module:
    return GoogLeNetFCN(num_classes, width=width)


_DATA, _FUSION = ("data",), ("color", "hha")
_REGISTRY: dict[str, NetInfo] = {i.name: i for i in [
    NetInfo("voc-fcn32s", 21, _DATA, _vgg(32)),
    NetInfo("voc-fcn16s", 21, _DATA, _vgg(16)),
    NetInfo("voc-fcn8s", 21, _DATA, _vgg(8)),
    NetInfo("voc-fcn8s-atonce", 21, _DATA, _vgg(8, at_once=True)),
    NetInfo("voc-fcn-alexnet", 21, _DATA, _alexnet),
    NetInfo("voc-fcn-googlenet", 21, _DATA, _googlenet),  # the paper's Table 1; not in the reference
    NetInfo("nyud-fcn32s-color", 40, _DATA, _vgg(32)),
    NetInfo("nyud-fcn32s-hha", 40, _DATA, _vgg(32)),
    NetInfo("nyud-fcn32s-color-d", 40, _DATA, _vgg(32, in_channels=4, first_conv="conv1_1_bgrd")),
    NetInfo("nyud-fcn32s-color-hha", 40, _FUSION, _fusion(32)),
    NetInfo("nyud-fcn16s-color-hha", 40, _FUSION, _fusion(16)),
    NetInfo("siftflow-fcn32s", (33, 3), _DATA, _siftflow(32)),
    NetInfo("siftflow-fcn16s", (33, 3), _DATA, _siftflow(16)),
    NetInfo("siftflow-fcn8s", (33, 3), _DATA, _siftflow(8)),
    NetInfo("pascalcontext-fcn32s", 60, _DATA, _vgg(32)),
    NetInfo("pascalcontext-fcn16s", 60, _DATA, _vgg(16)),
    NetInfo("pascalcontext-fcn8s", 60, _DATA, _vgg(8)),
]}


def names() -> list[str]:
    """Every experiment's net name, as the reference repository's folders are named."""
    return list(_REGISTRY)


def info(name: str) -> NetInfo:
    """The `NetInfo` of experiment `name`; a clear KeyError listing the valid names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown net {name!r}; known nets: {', '.join(_REGISTRY)}") from None


def build(name: str, *, num_classes: int | tuple[int, ...] | None = None, width: float = 1.0,
          fast: bool = True, region: bool = True) -> nn.Module:
    """Build experiment `name`'s net.

    Args:
        name: one of `names()`.
        num_classes: override the class count (a pair for SIFT Flow: semantic, geometric).
        width: multiplier for every trunk channel count (64*w ... 4096*w); geometry is unchanged.
        fast: use the fast kernels of `nets.fast` (default). False gives the plain build (NCHW,
            no prepacking, no fusion), the baseline they are measured and tested against; both
            compute the same function (float32 rounding aside) with the same parameters.
        region: with `fast`, the region forward of `nets.region` (`fcn eval`, `fcn infer`, and
            training: its forwards with autograd on and dropout, and its test passes): each trunk
            layer computed only where it depends on the image, the rest filled from the weights
            (in training differentiably, so the backward runs on the smaller maps too). Same
            function, same gradients; False (or `set_region(net, False)`, or FCN_REGION=0 in the
            environment) opts out.
    """
    i = info(name)
    if width <= 0:
        raise ValueError(f"width must be positive, not {width}")
    net = i.make(i.num_classes if num_classes is None else num_classes, width)
    net.caffe_name = name
    set_region(net, region)
    return set_fast(net, fast)
