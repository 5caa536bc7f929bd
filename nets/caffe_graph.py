"""Every net of `nets` as the Caffe net it reproduces: layers, prototxt text and weight blobs.

    >>> import nets
    >>> text = nets.to_prototxt(nets.build("voc-fcn8s"))     # deploy.prototxt: Input, no loss
    >>> blobs = nets.caffe_blobs(nets.build("voc-fcn8s"))    # [(layer, type, [weight, bias]), ...]

The layers are read off the built modules (channel counts, kernel sizes, strides, pads, groups,
crop offsets as `nets` derived them, lr_mult / decay_mult as `nets.caffe` attached them), in
the order and with the names, bottoms and tops of the reference's prototxts: in-place ReLUs
named relu<block> (relu1_1, relu6, ...), in-place Dropouts, Crop layers named after their top.
`tests/test_caffe_export.py` parses the text and compares it with the reference's own val/test
prototxts, layer by layer.

A deploy net (the default) is the reference's `voc-fcn8s/deploy.prototxt` form: one `Input` layer
named "input" with one top per input blob, no Dropout (the identity at test time) and no loss.
With `labels` the text is the val/test net instead: the Dropout layers, one `Input` top per label
blob and a `SoftmaxWithLoss` per head (named "loss", then "loss<head suffix>": loss_geo), each
right after its score layer, as the reference orders them.

A net class can describe itself by defining `caffe_layers(deploy: bool) -> list[Layer]`; the
four classes of this package are described here.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from nets.alexnet_fcn import ALEXNET_TRUNK, AlexNetFCN
from nets import googlenet_fcn as gn
from nets.caffe import DEFAULT_MULTS, Crop, Scale, _geometry
from nets.prototxt import Layer, Token, render_net
from nets.vgg_fcn import VGG16_TRUNK, LateFusionFCN, VGG16FCN

#: Input size written into a deploy net's Input layer when none is given: the reference's
#: deploy.prototxt uses 1 x C x 500 x 500 ("purely for sake of example"; Caffe reshapes).
DEPLOY_INPUT = (1, 500, 500)
#: NYUD color-D early fusion (reference nyud-fcn32s-color-d): the 4-channel `data` blob is the
#: Concat of these inputs (name, channels), made by a Concat layer named "data".
COLOR_D_INPUTS = (("color", 3), ("depth", 1))
#: Layer types whose blobs are learned parameters (what a .caffemodel carries).
BLOB_TYPES = ("Convolution", "Deconvolution", "Scale", "InnerProduct")


# ---------------------------------------------------------------------------------------------
# Layers from modules
# ---------------------------------------------------------------------------------------------
def _num(x: float) -> int | float:
    """A multiplier as the reference writes it: 1, 2, 0 rather than 1.0."""
    return int(x) if float(x).is_integer() else float(x)


def _param_specs(module: nn.Module) -> dict:
    """The `param { lr_mult decay_mult }` entries of a layer, omitted where all are Caffe's 1 / 1."""
    mults = getattr(module, "caffe_mults", DEFAULT_MULTS)
    if all(m == (1.0, 1.0) for m in mults):
        return {}
    specs = []
    for lr, decay in mults:
        spec = {"lr_mult": _num(lr)}
        if not (lr == 0 and decay == 1):  # a fixed blob: the reference writes only lr_mult 0
            spec["decay_mult"] = _num(decay)
        specs.append(spec)
    return {"param": specs}


def _convolution_param(module: nn.Conv2d | nn.ConvTranspose2d) -> dict:
    """`convolution_param` of a (de)convolution module: fields at Caffe's default are left out."""
    k, s, p, d = _geometry(module)
    cp: dict = {"num_output": module.out_channels}
    if module.bias is None:
        cp["bias_term"] = False
    if p:
        cp["pad"] = p
    cp["kernel_size"] = k
    for key, value, default in (("stride", s, 1), ("group", module.groups, 1), ("dilation", d, 1)):
        if value != default:
            cp[key] = value
    return cp


def conv_layer(name: str, bottom: str, module: nn.Conv2d) -> Layer:
    """A Convolution layer from an `nn.Conv2d` (square kernel, stride, pad; group if not 1)."""
    return Layer(name, "Convolution", [bottom], [name],
                 {**_param_specs(module), "convolution_param": _convolution_param(module)})


def deconv_layer(name: str, bottom: str, module: nn.ConvTranspose2d) -> Layer:
    """A Deconvolution layer from an `nn.ConvTranspose2d` (Caffe's blob: in x out/group x k x k)."""
    return Layer(name, "Deconvolution", [bottom], [name],
                 {**_param_specs(module), "convolution_param": _convolution_param(module)})


def pool_layer(name: str, bottom: str, module: nn.MaxPool2d) -> Layer:
    """A MAX Pooling layer (Caffe rounds the output size up, as `nets.caffe.MaxPool` does)."""
    k, s, p, _ = _geometry(module)
    pp: dict = {"pool": Token("MAX"), "kernel_size": k, "stride": s}
    if p:
        pp["pad"] = p
    return Layer(name, "Pooling", [bottom], [name], {"pooling_param": pp})


def lrn_layer(name: str, bottom: str, module: nn.LocalResponseNorm) -> Layer:
    """An LRN layer (ACROSS_CHANNELS, Caffe's default region)."""
    lp: dict = {"local_size": module.size, "alpha": float(module.alpha), "beta": float(module.beta)}
    if module.k != 1:
        lp["k"] = float(module.k)
    return Layer(name, "LRN", [bottom], [name], {"lrn_param": lp})


def relu_layer(name: str, blob: str) -> Layer:
    return Layer(name, "ReLU", [blob], [blob])


def dropout_layer(name: str, blob: str, module: nn.Dropout) -> Layer:
    return Layer(name, "Dropout", [blob], [blob], {"dropout_param": {"dropout_ratio": float(module.p)}})


def crop_layer(name: str, bottom: str, reference: str, module: Crop) -> Layer:
    return Layer(name, "Crop", [bottom, reference], [name], {"crop_param": {"axis": 2, "offset": module.offset}})


def scale_layer(name: str, bottom: str, module: Scale) -> Layer:
    return Layer(name, "Scale", [bottom], [name], {
        **_param_specs(module), "scale_param": {"filler": {"type": "constant", "value": module.value}}})


def sum_layer(name: str, bottoms: Sequence[str], coeff: Sequence[float] | None = None) -> Layer:
    ep: dict = {"operation": Token("SUM")}
    if coeff is not None:
        ep["coeff"] = [float(c) for c in coeff]
    return Layer(name, "Eltwise", list(bottoms), [name], {"eltwise_param": ep})


def _relu_name(layer: str) -> str:
    """The reference's ReLU name for a trunk layer: conv3_2 -> relu3_2, fc6 -> relu6, conv1 -> relu1."""
    for prefix in ("conv", "fc"):
        if layer.startswith(prefix):
            return "relu" + layer[len(prefix):]
    raise ValueError(f"no ReLU name for layer {layer!r}")


# ---------------------------------------------------------------------------------------------
# The nets
# ---------------------------------------------------------------------------------------------
def _trunk(net: nn.Module, rows: Sequence[tuple], names: Sequence[str], bottom: str, suffix: str,
           deploy: bool) -> tuple[list[Layer], dict[str, str]]:
    """A ReLU trunk (VGG16 or CaffeNet rows); returns its layers and the blobs of pool3 / pool4 / fc7."""
    layers, blobs, x = [], {}, bottom
    for name, row in zip(names, rows):
        ref, kind = row[0], row[1]
        module = getattr(net, name)
        if kind == "conv":
            layers += [conv_layer(name, x, module), relu_layer(_relu_name(ref) + suffix, name)]
            x = name
        elif kind == "pool":
            layers.append(pool_layer(name, x, module))
            x = name
        elif kind == "lrn":
            layers.append(lrn_layer(name, x, module))
            x = name
        elif kind == "dropout":
            if not deploy:
                layers.append(dropout_layer(name, x, module))
        else:
            raise ValueError(f"unknown trunk layer kind {kind!r}")
        blobs[ref] = x
    return layers, blobs


def _vgg_inputs(net: VGG16FCN) -> tuple[list[tuple[str, int]], list[Layer]]:
    """The input blobs (name, channels) of a single-trunk net and the layers that make `data`."""
    first = getattr(net, net.trunk_names[0])
    if first.in_channels == sum(c for _, c in COLOR_D_INPUTS):
        return list(COLOR_D_INPUTS), [Layer("data", "Concat", [n for n, _ in COLOR_D_INPUTS], ["data"])]
    return [("data", first.in_channels)], []


def _skip_head(net: VGG16FCN, h: str, blobs: dict[str, str], data: str) -> list[Layer]:
    """One VGG head as `nets.vgg_fcn.skip_head_forward` computes it; the last layer is score<h>."""
    g = lambda name: getattr(net, name)  # noqa: E731
    layers = [conv_layer(f"score_fr{h}", blobs["fc7"], g(f"score_fr{h}"))]
    if net.stride == 32:
        layers.append(deconv_layer(f"upscore{h}", f"score_fr{h}", g(f"upscore{h}")))
        return layers + [crop_layer(f"score{h}", f"upscore{h}", data, g(f"score{h}"))]
    layers.append(deconv_layer(f"upscore2{h}", f"score_fr{h}", g(f"upscore2{h}")))
    pool4, pool3 = blobs["pool4"], blobs["pool3"]
    if net.at_once:
        layers.append(scale_layer("scale_pool4", pool4, net.scale_pool4))
        pool4 = "scale_pool4"
    layers += [conv_layer(f"score_pool4{h}", pool4, g(f"score_pool4{h}")),
               crop_layer(f"score_pool4{h}c", f"score_pool4{h}", f"upscore2{h}", g(f"score_pool4{h}c")),
               sum_layer(f"fuse_pool4{h}", [f"upscore2{h}", f"score_pool4{h}c"])]
    if net.stride == 16:
        layers.append(deconv_layer(f"upscore16{h}", f"fuse_pool4{h}", g(f"upscore16{h}")))
        return layers + [crop_layer(f"score{h}", f"upscore16{h}", data, g(f"score{h}"))]
    layers.append(deconv_layer(f"upscore_pool4{h}", f"fuse_pool4{h}", g(f"upscore_pool4{h}")))
    if net.at_once:
        layers.append(scale_layer("scale_pool3", pool3, net.scale_pool3))
        pool3 = "scale_pool3"
    layers += [conv_layer(f"score_pool3{h}", pool3, g(f"score_pool3{h}")),
               crop_layer(f"score_pool3{h}c", f"score_pool3{h}", f"upscore_pool4{h}", g(f"score_pool3{h}c")),
               sum_layer(f"fuse_pool3{h}", [f"upscore_pool4{h}", f"score_pool3{h}c"]),
               deconv_layer(f"upscore8{h}", f"fuse_pool3{h}", g(f"upscore8{h}")),
               crop_layer(f"score{h}", f"upscore8{h}", data, g(f"score{h}"))]
    return layers


def _vgg_layers(net: VGG16FCN, deploy: bool) -> tuple[list[tuple[str, int]], list[list[Layer]]]:
    inputs, layers = _vgg_inputs(net)
    trunk, blobs = _trunk(net, VGG16_TRUNK, net.trunk_names, "data", "", deploy)
    heads = [_skip_head(net, h, blobs, "data") for h, _ in net.heads]
    heads[0] = layers + trunk + heads[0]
    return inputs, heads


def _fusion_layers(net: LateFusionFCN, deploy: bool) -> tuple[list[tuple[str, int]], list[list[Layer]]]:
    """Two streams, as `LateFusionFCN.forward`: score_fused = 0.5 score_frcolor + 0.5 score_frhha."""
    layers, blobs = [], {}
    for s in net.streams:
        trunk, blobs[s] = _trunk(net, VGG16_TRUNK, net.trunk_names[s], s, s, deploy)
        layers += trunk + [conv_layer(f"score_fr{s}", blobs[s]["fc7"], getattr(net, f"score_fr{s}"))]
    layers.append(sum_layer("score_fused", [f"score_fr{s}" for s in net.streams], [0.5] * len(net.streams)))
    ref = net.streams[0]
    if net.stride == 32:
        layers += [deconv_layer("upscore", "score_fused", net.upscore),
                   crop_layer("score", "upscore", ref, net.score)]
    else:  # our construction of FCN-16s RGB-HHA (nets.vgg_fcn.LateFusionFCN, UNVERIFIED)
        layers.append(deconv_layer("upscore2", "score_fused", net.upscore2))
        for s in net.streams:
            layers += [conv_layer(f"score_pool4{s}", blobs[s]["pool4"], getattr(net, f"score_pool4{s}")),
                       crop_layer(f"score_pool4{s}c", f"score_pool4{s}", "upscore2", getattr(net, f"score_pool4{s}c"))]
        layers += [sum_layer("fuse_pool4", ["upscore2"] + [f"score_pool4{s}c" for s in net.streams],
                             [1.0] + [0.5] * len(net.streams)),
                   deconv_layer("upscore16", "fuse_pool4", net.upscore16),
                   crop_layer("score", "upscore16", ref, net.score)]
    channels = getattr(net, net.trunk_names[ref][0]).in_channels
    return [(s, channels) for s in net.streams], [layers]


def _alexnet_layers(net: AlexNetFCN, deploy: bool) -> tuple[list[tuple[str, int]], list[list[Layer]]]:
    trunk, blobs = _trunk(net, ALEXNET_TRUNK, net.trunk_names, "data", "", deploy)
    layers = trunk + [conv_layer("score_fr", blobs["fc7"], net.score_fr),
                      deconv_layer("upscore", "score_fr", net.upscore),
                      crop_layer("score", "upscore", "data", net.score)]
    return [("data", net.conv1.in_channels)], [layers]


def _googlenet_relu(conv: str) -> str:
    """BVLC GoogLeNet's ReLU names: conv1/7x7_s2 -> conv1/relu_7x7, inception_3a/3x3 -> inception_3a/relu_3x3."""
    block, _, layer = conv.partition("/")
    return f"{block}/relu_{layer.removesuffix('_s2')}"


def _googlenet_layers(net: gn.GoogLeNetFCN, deploy: bool) -> tuple[list[tuple[str, int]], list[list[Layer]]]:
    """BVLC GoogLeNet's deploy.prototxt up to inception_5b/output, then our head (nets.googlenet_fcn)."""
    layers, x = [], "data"

    def conv(name: str, bottom: str) -> str:
        layers.extend([conv_layer(name, bottom, net.layer(name)), relu_layer(_googlenet_relu(name), name)])
        return name

    for name, kind, *_ in gn.GOOGLENET_TRUNK:
        if kind == "conv":
            x = conv(name, x)
        elif kind == "pool":
            layers.append(pool_layer(name, x, net.layer(name)))
            x = name
        elif kind == "lrn":
            layers.append(lrn_layer(name, x, net.layer(name)))
            x = name
        else:
            tops = []
            for branch in gn.INCEPTION_BRANCHES:
                y = x
                for suffix in branch:
                    layer = f"{name}/{suffix}"
                    if suffix == "pool":
                        layers.append(pool_layer(layer, y, net.layer(layer)))
                        y = layer
                    else:
                        y = conv(layer, y)
                tops.append(y)
            x = f"{name}/output"
            layers.append(Layer(x, "Concat", tops, [x]))
    if not deploy:
        layers.append(dropout_layer(gn.DROP, x, net.layer(gn.DROP)))
    layers += [conv_layer(gn.SCORE_FR, x, net.layer(gn.SCORE_FR)),
               deconv_layer(gn.UPSCORE, gn.SCORE_FR, net.layer(gn.UPSCORE)),
               crop_layer("score", gn.UPSCORE, "data", net.score)]
    return [("data", net.layer(gn.GOOGLENET_TRUNK[0][0]).in_channels)], [layers]


_DESCRIBERS = ((VGG16FCN, _vgg_layers), (LateFusionFCN, _fusion_layers), (AlexNetFCN, _alexnet_layers),
               (gn.GoogLeNetFCN, _googlenet_layers))


def caffe_layers(net: nn.Module, *, input_size: tuple[int, int, int] = DEPLOY_INPUT,
                 labels: Sequence[str] | None = None, loss_normalize: bool = False) -> list[Layer]:
    """`net` as a list of Caffe layers (see the module docstring for deploy vs val/test nets).

    Args:
        input_size: (N, H, W) written into the Input layer (channels come from the net).
        labels: the label blob of each head, e.g. ("label",) or ("sem", "geo"); None: deploy net.
        loss_normalize: SoftmaxWithLoss `normalize` (the reference: false, true for FCN-AlexNet).
    """
    deploy = labels is None
    own = getattr(net, "caffe_layers", None)
    if callable(own):
        return own(deploy)
    for cls, describe in _DESCRIBERS:
        if isinstance(net, cls):
            inputs, heads = describe(net, deploy)
            break
    else:
        raise TypeError(f"no Caffe description for {type(net).__name__}")
    n, h, w = input_size
    tops = [name for name, _ in inputs] + list(labels or ())
    shapes = [{"dim": [n, c, h, w]} for _, c in inputs] + [{"dim": [n, 1, h, w]} for _ in labels or ()]
    layers = [Layer("input", "Input", [], tops, {"input_param": {"shape": shapes}})]
    if labels is not None and len(labels) != len(heads):
        raise ValueError(f"{len(labels)} label blobs for a net with {len(heads)} heads")
    for i, head in enumerate(heads):
        layers += head
        if labels is not None:
            suffix = "" if i == 0 else net.heads[i][0]
            layers.append(Layer(f"loss{suffix}", "SoftmaxWithLoss", [head[-1].tops[0], labels[i]], [f"loss{suffix}"],
                                {"loss_param": {"ignore_label": 255, "normalize": bool(loss_normalize)}}))
    return layers


def to_prototxt(net: nn.Module, *, input_size: tuple[int, int, int] = DEPLOY_INPUT,
                labels: Sequence[str] | None = None, loss_normalize: bool = False) -> str:
    """`net` as Caffe prototxt text: a deploy net by default (see `caffe_layers` for the arguments)."""
    name = getattr(net, "caffe_name", type(net).__name__)
    kind = "deploy net" if labels is None else "val/test net"
    header = [f"{name}: {kind}, written by fcn-repro (nets.to_prototxt) from the built net."]
    return render_net(name, caffe_layers(net, input_size=input_size, labels=labels,
                                         loss_normalize=loss_normalize), header=header)


def caffe_blobs(net: nn.Module, layers: Sequence[Layer] | None = None) -> list[tuple[str, str, list[np.ndarray]]]:
    """The learned blobs of `net` per Caffe layer, in prototxt order: (name, type, [weight, bias]).

    Blob shapes are Caffe's (Convolution out x in/group x k x k, Deconvolution in x out/group x
    k x k, biases and Scale (C,)); values are the parameters' float32 values, unchanged. Raises
    ValueError if a parameter of `net` belongs to no layer (nothing is silently left out).
    """
    layers = caffe_layers(net) if layers is None else layers
    params = dict(net.named_parameters())
    out, used = [], set()
    for layer in layers:
        if layer.type not in BLOB_TYPES:
            continue
        blobs = []
        for blob in ("weight", "bias"):
            key = f"{layer.name}.{blob}"
            if key in params:
                blobs.append(params[key].detach().to("cpu", torch.float32).numpy())
                used.add(key)
        out.append((layer.name, layer.type, blobs))
    left = sorted(set(params) - used)
    if left:
        raise ValueError(f"parameters of {getattr(net, 'caffe_name', type(net).__name__)} that no Caffe "
                         f"layer carries: {', '.join(left)}")
    return out
