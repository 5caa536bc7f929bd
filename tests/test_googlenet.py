"""FCN-GoogLeNet: BVLC GoogLeNet's layers and shapes, the paper's construction, the geometry that
Table 1 reports (receptive field, stride, parameters, depth), and the Caffe semantics it needs.

The facts of BVLC's deploy.prototxt are in tests/fixtures/bvlc_googlenet_layers.json (every
layer's name, type, bottoms, geometry, multipliers and fillers); the expectations below are
computed from that table, not from nets/.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import nets
from nets.caffe import Concat, MaxPool, ReceptiveField, caffe_pool_output_size, lrn, xavier_
from nets.googlenet_fcn import GOOGLENET_TRUNK, INCEPTION_BRANCHES, derive_input_pad, receptive_field

NAME = "voc-fcn-googlenet"
DEPLOY = json.loads((Path(__file__).parent / "fixtures" / "bvlc_googlenet_layers.json").read_text())["layers"]
BY_NAME = {layer["name"]: layer for layer in DEPLOY}
#: BVLC layers FCN-GoogLeNet does not have: the average pooling (discarded), the classifier (replaced
#: by score_fr) and the softmax.
DISCARDED = {"data", "pool5/7x7_s1", "loss3/classifier", "prob"}


def build(width: float = 1.0) -> nn.Module:
    return nets.build(NAME, width=width)


def full_net(**kw) -> nn.Module:
    with torch.device("meta"):
        return build(**kw)


def modules(net: nn.Module) -> dict[str, nn.Module]:
    return dict(net.named_children())


# ---------------------------------------------------------------------------------------------
# BVLC GoogLeNet's layers, shapes, multipliers
# ---------------------------------------------------------------------------------------------
def test_layers_are_bvlc_googlenets_in_order_then_the_fcn_head():
    expected = [layer["name"] for layer in DEPLOY if layer["type"] != "ReLU" and layer["name"] not in DISCARDED]
    ours = [n for n in modules(full_net()) if n not in ("score_fr", "upscore", "score")]
    assert ours == expected
    assert list(modules(full_net()))[-3:] == ["score_fr", "upscore", "score"]


def _channels_from_deploy() -> dict[str, int]:
    """Output channels of every blob, propagated through the prototxt (Concat sums its bottoms)."""
    ch = {"data": 3}
    for layer in DEPLOY:
        if layer["type"] == "Convolution" or layer["type"] == "InnerProduct":
            ch[layer["top"][0]] = layer["num_output"]
        elif layer["type"] == "Concat":
            ch[layer["top"][0]] = sum(ch[b] for b in layer["bottom"])
        elif layer["bottom"]:
            ch[layer["top"][0]] = ch[layer["bottom"][0]]
    return ch


def test_parameter_shapes_and_multipliers_are_bvlc_googlenets():
    net = full_net()
    ch = _channels_from_deploy()
    shapes = {n: tuple(p.shape) for n, p in net.named_parameters()}
    mults = nets.param_multipliers(net)
    convs = [layer for layer in DEPLOY if layer["type"] == "Convolution"]
    for layer in convs:
        k, name = layer["kernel_size"], layer["name"]
        assert shapes[f"{name}.weight"] == (layer["num_output"], ch[layer["bottom"][0]], k, k), name
        assert shapes[f"{name}.bias"] == (layer["num_output"],), name
        assert [list(mults[f"{name}.weight"]), list(mults[f"{name}.bias"])] == layer["param"], name
    assert shapes["score_fr.weight"] == (21, ch["inception_5b/output"], 1, 1) == (21, 1024, 1, 1)
    assert mults["score_fr.weight"] == (1, 1) and mults["score_fr.bias"] == (2, 0)
    assert shapes["upscore.weight"] == (21, 21, 63, 63) and mults["upscore.weight"][0] == 0
    assert set(shapes) == {f"{layer['name']}.{p}" for layer in convs for p in ("weight", "bias")} | {
        "score_fr.weight", "score_fr.bias", "upscore.weight"}


def test_geometry_and_graph_are_bvlc_googlenets():
    """Every convolution, pooling, LRN, Concat and the dropout as the prototxt has them (conv1's pad
    aside: ours is derived), and each layer reads the blob the prototxt gives it."""
    m = modules(full_net())
    for layer in DEPLOY:
        name, t = layer["name"], layer["type"]
        if name in DISCARDED or t == "ReLU":
            assert name not in m or t == "ReLU"
            continue
        mod = m[name]
        if t == "Convolution":
            assert (mod.kernel_size, mod.stride) == ((layer["kernel_size"],) * 2, (layer.get("stride", 1),) * 2)
            if name != "conv1/7x7_s2":
                assert mod.padding == (layer.get("pad", 0),) * 2, name
        elif t == "Pooling":
            assert layer["pool"] == "MAX" and isinstance(mod, MaxPool) and mod.ceil_mode
            assert (mod.kernel_size, mod.stride, mod.padding) == (layer["kernel_size"], layer["stride"],
                                                                  layer.get("pad", 0)), name
        elif t == "LRN":
            assert (mod.size, mod.alpha, mod.beta, mod.k) == (layer["local_size"], layer["alpha"], layer["beta"], 1.0)
        elif t == "Concat":
            assert isinstance(mod, Concat)
        elif t == "Dropout":
            assert isinstance(mod, nn.Dropout) and mod.p == layer["dropout_ratio"]
    # the graph: the bottoms our forward feeds each layer, from the net's own tables
    ours, previous = {}, "data"
    for name, kind, *_ in GOOGLENET_TRUNK:
        if kind != "inception":
            ours[name], previous = [previous], name
            continue
        for branch in INCEPTION_BRANCHES:
            src = previous
            for suffix in branch:
                ours[f"{name}/{suffix}"], src = [src], f"{name}/{suffix}"
        ours[f"{name}/output"] = [f"{name}/{b[-1]}" for b in INCEPTION_BRANCHES]
        previous = f"{name}/output"
    assert ours == {l["name"]: l["bottom"] for l in DEPLOY if l["type"] not in ("ReLU", "Dropout", "Input")
                    and l["name"] not in DISCARDED}
    assert BY_NAME["pool5/7x7_s1"]["bottom"] == [previous]  # the dropout sits where the pooling did


def test_fillers_are_bvlc_googlenets():
    net = build(width=1 / 4)
    for name, module in modules(net).items():
        if not isinstance(module, nn.Conv2d) or name == "score_fr":
            continue
        assert BY_NAME[name]["weight_filler"] == "xavier" and BY_NAME[name]["bias_filler"] == ["constant", 0.2]
        bound = math.sqrt(3.0 / module.weight[0].numel())
        assert module.weight.abs().max() <= bound
        assert module.weight.abs().max() > 0.5 * bound and module.weight.std() > 0.4 * bound
        assert torch.all(module.bias == 0.2)
    assert net.score_fr.weight.abs().max() == 0 and net.score_fr.bias.abs().max() == 0


# ---------------------------------------------------------------------------------------------
# The paper's construction and Table 1's geometry
# ---------------------------------------------------------------------------------------------
def _upscore_size(size: int, pad: int) -> tuple[int, int]:
    """(smallest blob, upscore size) with Caffe's arithmetic, re-typed from the prototxt."""
    s = (size + 2 * pad - 7) // 2 + 1  # conv1/7x7_s2
    low = s
    for _ in range(4):  # pool1..pool4: 3x3 stride 2, ceil; everything between keeps the size
        s = caffe_pool_output_size(s, 3, 2)
        low = min(low, s)
    return low, 32 * (s - 1) + 63  # upscore: kernel 63, stride 32


def _croppable(pad: int, offset: int, sizes=range(1, 2001)) -> bool:
    return all(low >= 1 and up >= offset + size for size in sizes for low, up in [_upscore_size(size, pad)])


def test_input_pad_is_the_smallest_that_makes_every_size_croppable():
    net = build(width=1 / 32)
    assert net.input_pad == 18 and getattr(net, "conv1/7x7_s2").padding == (18, 18)
    # pixel centres: conv1 shifts by 3 - pad, the four 3x3/2 pools by 1, 2, 4, 8 pixels, upscore by -31
    assert net.crop_offsets == {"score": net.input_pad - 2} == {"score": 16}
    assert _croppable(18, 16)
    assert not any(_croppable(p, p - 2) for p in range(2, 18))
    assert not _croppable(3, 1, range(1, 31)) and _croppable(3, 1, range(31, 2001))  # BVLC's pad 3


def test_output_covers_the_input_at_every_size_the_datasets_have():
    net = build(width=1 / 32).eval()
    for h, w in [(1, 1), (2, 5), (17, 31), (32, 33), (63, 64), (224, 224), (375, 500)]:
        with torch.no_grad():
            assert net(torch.randn(1, 3, h, w)).shape == (1, 21, h, w)


def test_receptive_field_and_stride_against_table_1():
    net = full_net()
    field = receptive_field(net)
    assert field.stride == 32  # Table 1: max stride 32
    # Table 1's 907 is BVLC GoogLeNet's classifier, which sees the 7x7 average pooling
    # FCN-GoogLeNet discards: score_fr sees 907 - 6 x 32 = 715.
    assert field.size == 715
    assert field.through(nn.AvgPool2d(7, 1)).size == 907
    with_pool5 = ReceptiveField(field.size, field.stride).through(nn.AvgPool2d(BY_NAME["pool5/7x7_s1"]["kernel_size"], 1))
    assert with_pool5 == ReceptiveField(907, 32)


def test_parameters_and_depth_against_table_1():
    net = full_net()
    learned = sum(p.numel() for p in net.parameters() if p.requires_grad)
    assert round(learned / 1e6) == 6  # Table 1: 6M parameters
    ch = _channels_from_deploy()
    convs = [l for l in DEPLOY if l["type"] == "Convolution"]
    trunk = sum(l["num_output"] * (ch[l["bottom"][0]] * l["kernel_size"] ** 2 + 1) for l in convs)
    assert learned == trunk + 21 * 1024 + 21 == 5_995_077
    assert sum(p.numel() for p in net.parameters()) == learned + 21 * 21 * 63 * 63  # + the fixed upscore
    # Table 1: 22 conv. layers (GoogLeNet's depth): the longest chain of convolutions, score_fr included
    depth, conv_depth = {"data": 0}, 0
    for l in DEPLOY:
        if l["type"] in ("Input", "ReLU", "Dropout") or l["name"] in DISCARDED:
            continue
        d = max(depth[b] for b in l["bottom"]) + (l["type"] == "Convolution")
        depth[l["top"][0]] = d
        conv_depth = max(conv_depth, d)
    assert conv_depth + 1 == 22  # + score_fr


def test_derivation_refuses_a_geometry_without_a_croppable_pad():
    net = build(width=1 / 32)
    net.upscore = nets.caffe.deconv(21, 64, 32)  # an even kernel: half-pixel offsets only
    with pytest.raises(ValueError, match="no conv1/7x7_s2 pad"):
        derive_input_pad(net, limit=40)


# ---------------------------------------------------------------------------------------------
# The Caffe semantics it needs (nets/caffe.py)
# ---------------------------------------------------------------------------------------------
def caffe_max_pool(x: np.ndarray, k: int, s: int, p: int) -> np.ndarray:
    """Caffe's PoolingLayer MAX forward, as its loops compute it (windows clipped to the image)."""
    n, c, h, w = x.shape
    oh, ow = caffe_pool_output_size(h, k, s, p), caffe_pool_output_size(w, k, s, p)
    out = np.empty((n, c, oh, ow), x.dtype)
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * s - p, j * s - p
            h1, w1 = min(h0 + k, h + p), min(w0 + k, w + p)
            h0, w0, h1, w1 = max(h0, 0), max(w0, 0), min(h1, h), min(w1, w)
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].max(axis=(2, 3))
    return out


@pytest.mark.parametrize("k,s,p", [(3, 1, 1), (3, 2, 0), (3, 2, 1), (2, 2, 1), (5, 3, 2)])
def test_max_pooling_with_padding_is_caffes(k, s, p):
    gen = torch.Generator().manual_seed(k * 100 + s * 10 + p)
    pool = MaxPool(k, s, p)
    for h, w in [(1, 1), (2, 3), (5, 8), (13, 10)]:
        if caffe_pool_output_size(min(h, w), k, s, p) < 1:
            continue
        x = torch.randn(2, 3, h, w, generator=gen) - 2  # mostly negative: a zero-padded max would show
        np.testing.assert_array_equal(pool(x).numpy(), caffe_max_pool(x.numpy(), k, s, p))


def test_max_pooling_refuses_what_caffe_and_pytorch_would_size_differently():
    with pytest.raises(ValueError):
        MaxPool(2, 3)
    with pytest.raises(ValueError):
        MaxPool(3, 1, 2)


def test_lrn_across_channels_is_caffes_formula():
    x = torch.randn(2, 7, 4, 5, dtype=torch.float64) * 30
    n, alpha, beta, k = 5, 1e-4, 0.75, 1.0
    xs = x.numpy()
    sq = np.pad(xs ** 2, ((0, 0), (n // 2, n // 2), (0, 0), (0, 0)))
    scale = k + alpha / n * np.stack([sq[:, c:c + n].sum(1) for c in range(xs.shape[1])], 1)
    np.testing.assert_allclose(lrn(n, alpha, beta, k)(x).numpy(), xs * scale ** -beta, rtol=1e-12)
    with pytest.raises(ValueError):
        lrn(4)


def test_concat_is_along_channels_in_bottom_order():
    a, b = torch.randn(2, 3, 4, 5), torch.randn(2, 1, 4, 5)
    out = Concat()(a, b)
    assert out.shape == (2, 4, 4, 5) and torch.equal(out[:, :3], a) and torch.equal(out[:, 3:], b)


def test_xavier_is_caffes_fan_in_uniform():
    w = torch.empty(64, 32, 3, 3)
    xavier_(w, torch.Generator().manual_seed(0))
    bound = math.sqrt(3.0 / (32 * 9))
    assert w.abs().max() <= bound and w.abs().max() > 0.99 * bound
    assert abs(w.var().item() - bound ** 2 / 3) < 0.05 * bound ** 2 / 3  # uniform: variance a^2 / 3
