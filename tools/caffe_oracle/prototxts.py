"""Generate Caffe prototxts for every FCN experiment, at reduced trunk width, for the Caffe oracle.

This module is deliberately independent of the project's ``nets`` and ``weight_convert``: it re-types
the reference's layer tables (``docs/reference.md`` §2a-§2g: kernel sizes, strides, pads, crop offsets,
lr_mult / decay_mult, loss normalization) so that Caffe run on these prototxts is an independent check of
our PyTorch nets, including the crop offsets that ``nets`` derives itself.

Plain Python >= 3.9 with no third-party imports: it runs on the host (to write the prototxts) and inside
the Caffe chroot (where ``make_goldens.py`` imports it for the metadata of each net).
The text itself is written by the project's ``nets/prototxt.py`` (plain Python too, loaded from its file):
one prototxt writer and parser for the oracle and for ``nets.to_prototxt``; the layer tables stay separate.

Differences from the reference prototxts, all on purpose:
- ``Input`` layers replace the Python data layers (fixed shapes, batch >= 2).
- Trunk channel counts are scaled by ``width`` (geometry unchanged); score layers keep their class counts.
- Weight fillers are set on every learnable layer so that Caffe itself draws random weights (the reference
  leaves the score layers at Caffe's default constant 0, which would make every output trivially 0).
- ``force_backward: true`` so that Caffe computes the gradient with respect to the inputs.
- Each net comes in two variants: ``dropout=True`` is the reference graph (Dropout 0.5 after fc6 / fc7);
  ``dropout=False`` leaves the Dropout layers out. Forward and backward goldens are computed on the
  first in Caffe's TEST phase, where Dropout is the identity; the SGD goldens use the second, because
  Caffe's solver always runs the TRAIN phase and random dropout masks cannot be reproduced in PyTorch.
  Our nets' ``.eval()`` (Caffe TEST phase) computes the same function as both.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

# Every experiment of nets.names(), in that order.
EXPERIMENTS: Tuple[str, ...] = (
    "voc-fcn32s", "voc-fcn16s", "voc-fcn8s", "voc-fcn8s-atonce", "voc-fcn-alexnet", "voc-fcn-googlenet",
    "nyud-fcn32s-color", "nyud-fcn32s-hha", "nyud-fcn32s-color-d", "nyud-fcn32s-color-hha",
    "nyud-fcn16s-color-hha",
    "siftflow-fcn32s", "siftflow-fcn16s", "siftflow-fcn8s",
    "pascalcontext-fcn32s", "pascalcontext-fcn16s", "pascalcontext-fcn8s",
)

# Trunk width used for the committed goldens: 64 -> 2, 128 -> 2, 256 -> 4, 512 -> 8, 4096 -> 64 channels
# (AlexNet: 96 -> 2, 384 -> 6). Small enough that all fixtures stay a few MB.
GOLDEN_WIDTH = 1.0 / 64
# Nets whose goldens use another width: at 1/64 most of GoogLeNet's inception branches have 2 channels
# and several of them are dead (ReLU all <= 0, zero gradient) on a small input, which would leave their
# weights untested by the gradient and SGD goldens; at 1/16 they have 4 to 24.
NET_WIDTH: Dict[str, float] = {"voc-fcn-googlenet": 1.0 / 16}


def golden_width(name: str) -> float:
    """The trunk width of ``name``'s committed goldens."""
    return NET_WIDTH.get(name, GOLDEN_WIDTH)

BATCH = 2
# Input height x width per experiment: small, odd, not square, different from net to net.
INPUT_HW: Dict[str, Tuple[int, int]] = {
    "voc-fcn32s": (27, 35),
    "voc-fcn16s": (31, 23),
    "voc-fcn8s": (25, 33),
    "voc-fcn8s-atonce": (29, 21),
    "voc-fcn-alexnet": (33, 41),
    "voc-fcn-googlenet": (71, 87),  # inception_5b is 3 x 3 (a stride-32 net needs a larger input)
    "nyud-fcn32s-color": (23, 29),
    "nyud-fcn32s-hha": (21, 31),
    "nyud-fcn32s-color-d": (25, 19),
    "nyud-fcn32s-color-hha": (19, 27),
    "nyud-fcn16s-color-hha": (27, 17),
    "siftflow-fcn32s": (23, 31),
    "siftflow-fcn16s": (29, 25),
    "siftflow-fcn8s": (21, 35),
    "pascalcontext-fcn32s": (17, 25),
    "pascalcontext-fcn16s": (23, 19),
    "pascalcontext-fcn8s": (19, 21),
}

NUM_CLASSES = {"voc": 21, "nyud": 40, "pascalcontext": 60}
SIFTFLOW_HEADS = (("_sem", 33, "sem", "loss"), ("_geo", 3, "geo", "loss_geo"))

# Random-weight fillers (Caffe draws the values). He/MSRA keeps the activation scale through the
# ReLU trunk; Xavier on the score layers keeps the scores at the scale of their inputs, so the softmax
# does not saturate; biases are random so that a permuted or missing bias would show.
TRUNK_WEIGHT_FILLER = {"type": "msra"}
TRUNK_BIAS_FILLER = {"type": "gaussian", "std": 0.5}
SCORE_WEIGHT_FILLER = {"type": "xavier"}
SCORE_BIAS_FILLER = {"type": "gaussian", "std": 0.5}


def trunk_channels(channels: int, width: float) -> int:
    """A trunk channel count scaled by ``width``, rounded to an even number >= 2 (the nets contract)."""
    return max(2, 2 * int(round(channels * width / 2.0)))


def _load_prototxt_text():
    """The project's prototxt text module (nets/prototxt.py: rendering, parsing), loaded from its
    file: it is plain Python, while importing the ``nets`` package would need torch, which the
    chroot does not have."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "nets", "prototxt.py")
    spec = importlib.util.spec_from_file_location("fcn_repro_prototxt_text", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return sys.modules[spec.name]


_text = _load_prototxt_text()
Token = _text.Token  # a prototxt enum value, written without quotes (MAX, SUM)


@dataclass
class Net:
    """A generated net: prototxt text plus the metadata the golden maker and the tests need.

    - ``inputs``: input blob name -> shape (N, C, H, W); labels are (N, 1, H, W).
    - ``data_inputs``: the blobs PyTorch feeds, in ``net.inputs`` order ("data" for color-d: the Concat).
    - ``scores``: score blob names ("score", or "score_sem"/"score_geo").
    - ``losses``: loss layer name -> (score blob, label blob, normalize).
    - ``crops``: Crop layer name -> offset, typed from the reference (docs/reference.md §2g).
    - ``params``: "<layer>.weight"/"<layer>.bias" -> (lr_mult, decay_mult), for every parameter blob.
    - ``deconvs``: Deconvolution layer names (bilinear, lr_mult 0); ``scales``: Scale layer -> constant.
    - ``probes``: intermediate blob -> (how, PyTorch module name) where how is "output" (the module's
      output) or "input" (its first input); lets the tests read the same blob with forward hooks.
    """

    name: str
    width: float
    dropout: bool
    batch: int = BATCH
    layers: List[Tuple[str, str, List[str], List[str], Dict[str, object]]] = field(default_factory=list)
    inputs: Dict[str, Tuple[int, ...]] = field(default_factory=dict)
    data_inputs: Tuple[str, ...] = ()
    scores: Tuple[str, ...] = ()
    losses: Dict[str, Tuple[str, str, bool]] = field(default_factory=dict)
    crops: Dict[str, int] = field(default_factory=dict)
    params: Dict[str, Tuple[float, float]] = field(default_factory=dict)
    deconvs: List[str] = field(default_factory=list)
    scales: Dict[str, float] = field(default_factory=dict)
    probes: Dict[str, Tuple[str, str]] = field(default_factory=dict)

    # -- layer helpers (each appends one Caffe layer) ---------------------------------------------
    def add(self, name: str, type_: str, bottoms: Sequence[str], tops: Sequence[str], **fields: object) -> str:
        self.layers.append((name, type_, list(bottoms), list(tops), fields))
        return tops[0] if tops else name

    def input(self, name: str, shape: Tuple[int, ...]) -> str:
        self.inputs[name] = tuple(shape)
        return self.add(name, "Input", [], [name], input_param={"shape": {"dim": list(shape)}})

    def conv(self, name: str, bottom: str, nout: int, ks: int, *, stride: int = 1, pad: int = 0,
             group: int = 1, mults: Optional[Tuple[Tuple[float, float], Tuple[float, float]]] = ((1, 1), (2, 0)),
             score: bool = False) -> str:
        """Convolution; ``mults`` None means no param spec (Caffe default 1/1 for both blobs)."""
        cp: Dict[str, object] = {"num_output": nout}
        if pad:
            cp["pad"] = pad
        cp["kernel_size"] = ks
        if group != 1:
            cp["group"] = group
        if stride != 1:
            cp["stride"] = stride
        cp["weight_filler"] = dict(SCORE_WEIGHT_FILLER if score else TRUNK_WEIGHT_FILLER)
        cp["bias_filler"] = dict(SCORE_BIAS_FILLER if score else TRUNK_BIAS_FILLER)
        fields: Dict[str, object] = {}
        if mults is not None:
            fields["param"] = [{"lr_mult": m[0], "decay_mult": m[1]} for m in mults]
        fields["convolution_param"] = cp
        eff = mults if mults is not None else ((1, 1), (1, 1))
        self.params[f"{name}.weight"] = (float(eff[0][0]), float(eff[0][1]))
        self.params[f"{name}.bias"] = (float(eff[1][0]), float(eff[1][1]))
        return self.add(name, "Convolution", [bottom], [name], **fields)

    def relu(self, name: str, blob: str) -> str:
        return self.add(name, "ReLU", [blob], [blob])

    def pool(self, name: str, bottom: str, ks: int, stride: int, pad: int = 0) -> str:
        pp: Dict[str, object] = {"pool": Token("MAX"), "kernel_size": ks, "stride": stride}
        if pad:
            pp["pad"] = pad
        return self.add(name, "Pooling", [bottom], [name], pooling_param=pp)

    def lrn(self, name: str, bottom: str) -> str:
        return self.add(name, "LRN", [bottom], [name],
                        lrn_param={"local_size": 5, "alpha": 0.0001, "beta": 0.75})

    def drop(self, name: str, blob: str, ratio: float = 0.5) -> str:
        if self.dropout:
            self.add(name, "Dropout", [blob], [blob], dropout_param={"dropout_ratio": ratio})
        return blob

    def deconv(self, name: str, bottom: str, nout: int, ks: int, stride: int) -> str:
        self.deconvs.append(name)
        self.params[f"{name}.weight"] = (0.0, 1.0)
        return self.add(name, "Deconvolution", [bottom], [name], param=[{"lr_mult": 0}],
                        convolution_param={"num_output": nout, "bias_term": False,
                                           "kernel_size": ks, "stride": stride})

    def crop(self, name: str, bottom: str, reference: str, offset: int) -> str:
        self.crops[name] = offset
        return self.add(name, "Crop", [bottom, reference], [name], crop_param={"axis": 2, "offset": offset})

    def eltwise(self, name: str, bottoms: Sequence[str], coeff: Optional[Sequence[float]] = None) -> str:
        ep: Dict[str, object] = {"operation": Token("SUM")}
        if coeff is not None:
            ep["coeff"] = [float(c) for c in coeff]
        return self.add(name, "Eltwise", bottoms, [name], eltwise_param=ep)

    def scale(self, name: str, bottom: str, value: float) -> str:
        self.scales[name] = value
        self.params[f"{name}.weight"] = (0.0, 1.0)
        return self.add(name, "Scale", [bottom], [name], param=[{"lr_mult": 0}],
                        scale_param={"filler": {"type": "constant", "value": value}})

    def concat(self, name: str, bottoms: Sequence[str]) -> str:
        return self.add(name, "Concat", bottoms, [name], concat_param={"axis": 1})

    def loss(self, name: str, score: str, label: str, normalize: bool) -> str:
        self.losses[name] = (score, label, normalize)
        return self.add(name, "SoftmaxWithLoss", [score, label], [name],
                        loss_param={"ignore_label": 255, "normalize": normalize})

    def probe(self, blob: str, how: str, module: str) -> None:
        self.probes[blob] = (how, module)

    # -- output ---------------------------------------------------------------------------------------
    def prototxt(self) -> str:
        """The net as Caffe prototxt text."""
        variant = "reference graph (Dropout kept)" if self.dropout else "Dropout layers left out (SGD goldens)"
        header = [f"{self.name} at trunk width {self.width:g}, {variant}.",
                  "Generated by tools/caffe_oracle/prototxts.py; do not edit."]
        layers = [_text.Layer(name, type_, bottoms, tops, fields) for name, type_, bottoms, tops, fields in self.layers]
        return _text.render_net(self.name, layers, header=header, extra={"force_backward": True}, inline=True)


# -- graphs (docs/reference.md §2) -------------------------------------------------------------------

def _vgg_trunk(n: Net, bottom: str, s: str = "", first_conv: str = "conv1_1") -> Dict[str, str]:
    """VGG16 trunk (2a): convs k3 pad 1 (conv1_1 pad 100), max pools k2 s2, fc6 k7, fc7 k1, dropout."""
    w = lambda c: trunk_channels(c, n.width)  # noqa: E731
    x = bottom
    blocks = ((1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512))
    out: Dict[str, str] = {}
    for block, nconv, ch in blocks:
        for i in range(1, nconv + 1):
            conv_name = first_conv + s if (block, i) == (1, 1) else f"conv{block}_{i}{s}"
            x = n.conv(conv_name, x, w(ch), 3, pad=100 if (block, i) == (1, 1) else 1)
            x = n.relu(f"relu{block}_{i}{s}", x)
        x = n.pool(f"pool{block}{s}", x, 2, 2)
        out[f"pool{block}"] = x
    x = n.conv(f"fc6{s}", x, w(4096), 7)
    x = n.relu(f"relu6{s}", x)
    x = n.drop(f"drop6{s}", x)
    x = n.conv(f"fc7{s}", x, w(4096), 1)
    x = n.relu(f"relu7{s}", x)
    x = n.drop(f"drop7{s}", x)
    out["fc7"] = x
    # Caffe blob -> the nets module whose output it is (Dropout is the identity in TEST phase, so the
    # "fc7" blob, after the in-place ReLU and Dropout, is drop7's output).
    n.probe(f"pool4{s}", "output", f"pool4{s}")
    n.probe(f"pool5{s}", "output", f"pool5{s}")
    n.probe(f"fc7{s}", "output", f"drop7{s}")
    return out


def _vgg_head(n: Net, t: Dict[str, str], ref: str, ncls: int, stride: int, hs: str = "",
              atonce: bool = False) -> str:
    """FCN-32s/16s/8s heads (2b-2e); ``hs`` is the SIFT Flow head suffix (_sem/_geo). Returns the score."""
    score_fr = n.conv(f"score_fr{hs}", t["fc7"], ncls, 1, score=True)
    n.probe(score_fr, "output", score_fr)
    if stride == 32:
        up = n.deconv(f"upscore{hs}", score_fr, ncls, 64, 32)
        return n.crop(f"score{hs}", up, ref, 19)
    up2 = n.deconv(f"upscore2{hs}", score_fr, ncls, 4, 2)
    n.probe(up2, "output", up2)
    pool4 = t["pool4"]
    if atonce:
        pool4 = n.scale("scale_pool4", pool4, 0.01)
    sp4 = n.conv(f"score_pool4{hs}", pool4, ncls, 1, score=True)
    if atonce:
        n.probe("scale_pool4", "output", "scale_pool4")
    n.probe(sp4, "output", sp4)
    sp4c = n.crop(f"score_pool4{hs}c", sp4, up2, 5)
    n.probe(sp4c, "output", sp4c)
    fuse4 = n.eltwise(f"fuse_pool4{hs}", [up2, sp4c])
    if stride == 16:
        n.probe(fuse4, "input", f"upscore16{hs}")
        up16 = n.deconv(f"upscore16{hs}", fuse4, ncls, 32, 16)
        return n.crop(f"score{hs}", up16, ref, 27)
    n.probe(fuse4, "input", f"upscore_pool4{hs}")
    upp4 = n.deconv(f"upscore_pool4{hs}", fuse4, ncls, 4, 2)
    n.probe(upp4, "output", upp4)
    pool3 = t["pool3"]
    if atonce:
        pool3 = n.scale("scale_pool3", pool3, 0.0001)
    sp3 = n.conv(f"score_pool3{hs}", pool3, ncls, 1, score=True)
    n.probe("pool3", "output", "pool3")
    if atonce:
        n.probe("scale_pool3", "output", "scale_pool3")
    n.probe(sp3, "output", sp3)
    sp3c = n.crop(f"score_pool3{hs}c", sp3, upp4, 9)
    n.probe(sp3c, "output", sp3c)
    fuse3 = n.eltwise(f"fuse_pool3{hs}", [upp4, sp3c])
    n.probe(fuse3, "input", f"upscore8{hs}")
    up8 = n.deconv(f"upscore8{hs}", fuse3, ncls, 16, 8)
    return n.crop(f"score{hs}", up8, ref, 31)


def _alexnet(n: Net, h: int, wd: int) -> None:
    """voc-fcn-alexnet (2f): CaffeNet trunk, no param specs except score_fr, k63 s32 upscore, crop 18."""
    w = lambda c: trunk_channels(c, n.width)  # noqa: E731
    data = n.input("data", (n.batch, 3, h, wd))
    label = n.input("label", (n.batch, 1, h, wd))
    x = n.conv("conv1", data, w(96), 11, stride=4, pad=100, mults=None)
    x = n.relu("relu1", x)
    x = n.pool("pool1", x, 3, 2)
    x = n.lrn("norm1", x)
    x = n.conv("conv2", x, w(256), 5, pad=2, group=2, mults=None)
    x = n.relu("relu2", x)
    x = n.pool("pool2", x, 3, 2)
    x = n.lrn("norm2", x)
    n.probe("norm1", "output", "norm1")
    n.probe("norm2", "output", "norm2")
    x = n.conv("conv3", x, w(384), 3, pad=1, mults=None)
    x = n.relu("relu3", x)
    x = n.conv("conv4", x, w(384), 3, pad=1, group=2, mults=None)
    x = n.relu("relu4", x)
    x = n.conv("conv5", x, w(256), 3, pad=1, group=2, mults=None)
    x = n.relu("relu5", x)
    x = n.pool("pool5", x, 3, 2)
    n.probe("pool5", "output", "pool5")
    x = n.conv("fc6", x, w(4096), 6, mults=None)
    x = n.relu("relu6", x)
    x = n.drop("drop6", x)
    x = n.conv("fc7", x, w(4096), 1, mults=None)
    x = n.relu("relu7", x)
    x = n.drop("drop7", x)
    n.probe("fc7", "output", "drop7")
    x = n.conv("score_fr", x, 21, 1, mults=((1, 1), (2, 0)), score=True)
    n.probe("score_fr", "output", "score_fr")
    x = n.deconv("upscore", x, 21, 63, 32)
    n.scores = (n.crop("score", x, data, 18),)
    n.loss("loss", "score", label, normalize=True)
    n.data_inputs = ("data",)


# BVLC GoogLeNet's inception modules (models/bvlc_googlenet/deploy.prototxt): #1x1, #3x3 reduce, #3x3,
# #5x5 reduce, #5x5, pool proj; a 3x3/2 max pooling (pool3, pool4) after 3b and 4e.
GOOGLENET_INCEPTIONS = (
    ("3a", 64, 96, 128, 16, 32, 32), ("3b", 128, 128, 192, 32, 96, 64),
    ("4a", 192, 96, 208, 16, 48, 64), ("4b", 160, 112, 224, 24, 64, 64), ("4c", 128, 128, 256, 24, 64, 64),
    ("4d", 112, 144, 288, 32, 64, 64), ("4e", 256, 160, 320, 32, 128, 128),
    ("5a", 256, 160, 320, 32, 128, 128), ("5b", 384, 192, 384, 48, 128, 128),
)


def _googlenet(n: Net, h: int, wd: int) -> None:
    """voc-fcn-googlenet: BVLC GoogLeNet's trunk (no auxiliary classifiers, no pool5 average pooling),
    pool5/drop_7x7_s1 (ratio 0.4) kept, score_fr on inception_5b/output, k63 s32 upscore, crop 16.

    This net has no reference prototxt: conv1's pad 18, the 63x63 upscore and the crop offset 16 are the
    project's construction (nets/googlenet_fcn.py derives them; here they are typed as numbers)."""
    w = lambda c: trunk_channels(c, n.width)  # noqa: E731
    data = n.input("data", (n.batch, 3, h, wd))
    label = n.input("label", (n.batch, 1, h, wd))
    x = n.conv("conv1/7x7_s2", data, w(64), 7, stride=2, pad=18)
    x = n.relu("conv1/relu_7x7", x)
    x = n.pool("pool1/3x3_s2", x, 3, 2)
    x = n.lrn("pool1/norm1", x)
    n.probe("pool1/norm1", "output", "pool1/norm1")
    x = n.conv("conv2/3x3_reduce", x, w(64), 1)
    x = n.relu("conv2/relu_3x3_reduce", x)
    x = n.conv("conv2/3x3", x, w(192), 3, pad=1)
    x = n.relu("conv2/relu_3x3", x)
    x = n.lrn("conv2/norm2", x)
    x = n.pool("pool2/3x3_s2", x, 3, 2)
    for tag, c1, c3r, c3, c5r, c5, cp in GOOGLENET_INCEPTIONS:
        m = f"inception_{tag}"
        b1 = n.relu(f"{m}/relu_1x1", n.conv(f"{m}/1x1", x, w(c1), 1))
        b3 = n.relu(f"{m}/relu_3x3_reduce", n.conv(f"{m}/3x3_reduce", x, w(c3r), 1))
        b3 = n.relu(f"{m}/relu_3x3", n.conv(f"{m}/3x3", b3, w(c3), 3, pad=1))
        b5 = n.relu(f"{m}/relu_5x5_reduce", n.conv(f"{m}/5x5_reduce", x, w(c5r), 1))
        b5 = n.relu(f"{m}/relu_5x5", n.conv(f"{m}/5x5", b5, w(c5), 5, pad=2))
        bp = n.pool(f"{m}/pool", x, 3, 1, pad=1)
        bp = n.relu(f"{m}/relu_pool_proj", n.conv(f"{m}/pool_proj", bp, w(cp), 1))
        x = n.concat(f"{m}/output", [b1, b3, b5, bp])
        if tag == "3b":
            x = n.pool("pool3/3x3_s2", x, 3, 2)
        elif tag == "4e":
            x = n.pool("pool4/3x3_s2", x, 3, 2)
    for blob in ("inception_3a/pool", "inception_3a/output", "pool3/3x3_s2", "inception_4e/output",
                 "pool4/3x3_s2"):
        n.probe(blob, "output", blob)
    x = n.drop("pool5/drop_7x7_s1", x, ratio=0.4)
    n.probe("inception_5b/output", "output", "pool5/drop_7x7_s1")  # Dropout: the identity in TEST phase
    x = n.conv("score_fr", x, 21, 1, score=True)
    n.probe("score_fr", "output", "score_fr")
    x = n.deconv("upscore", x, 21, 63, 32)
    n.scores = (n.crop("score", x, data, 16),)
    n.loss("loss", "score", label, normalize=True)
    n.data_inputs = ("data",)


def build_net(name: str, *, width: float = GOLDEN_WIDTH, dropout: bool = True,
              hw: Optional[Tuple[int, int]] = None, batch: int = BATCH) -> Net:
    """The Caffe net of experiment ``name``: inputs batch x C x hw (default hw: INPUT_HW[name])."""
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}")
    h, wd = hw if hw is not None else INPUT_HW[name]
    n = Net(name=name, width=width, dropout=dropout, batch=batch)
    if name == "voc-fcn-alexnet":
        _alexnet(n, h, wd)
        return n
    if name == "voc-fcn-googlenet":
        _googlenet(n, h, wd)
        return n
    dataset, _, variant = name.partition("-")
    stride = 32 if "32s" in variant else 16 if "16s" in variant else 8

    if dataset == "siftflow":
        data = n.input("data", (n.batch, 3, h, wd))
        for _, _, label, _ in SIFTFLOW_HEADS:
            n.input(label, (n.batch, 1, h, wd))
        t = _vgg_trunk(n, data)
        scores = []
        for hs, ncls, label, loss in SIFTFLOW_HEADS:
            scores.append(_vgg_head(n, t, data, ncls, stride, hs=hs))
            n.loss(loss, scores[-1], label, normalize=False)
        n.scores = tuple(scores)
        n.data_inputs = ("data",)
        return n

    ncls = NUM_CLASSES[dataset]
    if variant.endswith("color-hha"):
        color = n.input("color", (n.batch, 3, h, wd))
        hha = n.input("hha", (n.batch, 3, h, wd))
        label = n.input("label", (n.batch, 1, h, wd))
        tc = _vgg_trunk(n, color, "color")
        th = _vgg_trunk(n, hha, "hha")
        frc = n.conv("score_frcolor", tc["fc7"], ncls, 1, score=True)
        frh = n.conv("score_frhha", th["fc7"], ncls, 1, score=True)
        n.probe(frc, "output", frc)
        n.probe(frh, "output", frh)
        fused = n.eltwise("score_fused", [frc, frh], coeff=[0.5, 0.5])
        if stride == 32:
            n.probe(fused, "input", "upscore")
            up = n.deconv("upscore", fused, ncls, 64, 32)
            score = n.crop("score", up, color, 19)
        else:
            # nyud-fcn16s-color-hha has no reference folder. Project definition (issue 4): each stream's
            # score_pool4<s> is cropped (offset 5) to upscore2 and fused with coeff [1, 0.5, 0.5].
            n.probe(fused, "input", "upscore2")
            up2 = n.deconv("upscore2", fused, ncls, 4, 2)
            n.probe(up2, "output", up2)
            spc = n.conv("score_pool4color", tc["pool4"], ncls, 1, score=True)
            sph = n.conv("score_pool4hha", th["pool4"], ncls, 1, score=True)
            n.probe(spc, "output", spc)
            n.probe(sph, "output", sph)
            spcc = n.crop("score_pool4colorc", spc, up2, 5)
            sphc = n.crop("score_pool4hhac", sph, up2, 5)
            n.probe(spcc, "output", spcc)
            n.probe(sphc, "output", sphc)
            fuse4 = n.eltwise("fuse_pool4", [up2, spcc, sphc], coeff=[1.0, 0.5, 0.5])
            n.probe(fuse4, "input", "upscore16")
            up16 = n.deconv("upscore16", fuse4, ncls, 32, 16)
            score = n.crop("score", up16, color, 27)
        n.scores = (score,)
        n.loss("loss", score, label, normalize=False)
        n.data_inputs = ("color", "hha")
        return n

    if variant.endswith("color-d"):
        color = n.input("color", (n.batch, 3, h, wd))
        depth = n.input("depth", (n.batch, 1, h, wd))
        label = n.input("label", (n.batch, 1, h, wd))
        data = n.concat("data", [color, depth])
        t = _vgg_trunk(n, data, first_conv="conv1_1_bgrd")
    else:
        # nyud-fcn32s-hha feeds HHA through the blob named "data" like every single-input net.
        data = n.input("data", (n.batch, 3, h, wd))
        label = n.input("label", (n.batch, 1, h, wd))
        t = _vgg_trunk(n, data)
    score = _vgg_head(n, t, data, ncls, stride, atonce=variant.endswith("atonce"))
    n.scores = (score,)
    n.loss("loss", score, label, normalize=False)
    n.data_inputs = ("data",)
    return n


def _write_atomic(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=".prototxt")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_prototxts(out_dir: str, names: Sequence[str] = EXPERIMENTS, width: Optional[float] = None,
                    hw: Optional[Tuple[int, int]] = None, batch: int = BATCH) -> List[str]:
    """Write <out_dir>/<name>/net.prototxt (reference graph) and net_nodropout.prototxt; return the paths."""
    paths = []
    for name in names:
        for dropout, fname in ((True, "net.prototxt"), (False, "net_nodropout.prototxt")):
            path = os.path.join(out_dir, name, fname)
            net_width = width if width is not None else golden_width(name)
            _write_atomic(path, build_net(name, width=net_width, dropout=dropout, hw=hw, batch=batch).prototxt())
            paths.append(path)
    return paths


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tests/fixtures/oracle", help="output folder (one sub-folder per net)")
    parser.add_argument("--width", type=float, default=None, help="trunk width factor (default: golden_width)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="input size (default: INPUT_HW)")
    parser.add_argument("--batch", type=int, default=BATCH, help="batch size")
    parser.add_argument("names", nargs="*", help="experiments (default: all)")
    args = parser.parse_args(argv)
    names = args.names or list(EXPERIMENTS)
    for path in write_prototxts(args.out, names, args.width, tuple(args.size) if args.size else None, args.batch):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
