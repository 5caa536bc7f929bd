"""The nets: names, geometry, derived crop offsets, initialization, multipliers, parameter counts."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import nets
from nets.caffe import MaxPool, bilinear_kernel, caffe_pool_output_size

NAMES = [
    "voc-fcn32s", "voc-fcn16s", "voc-fcn8s", "voc-fcn8s-atonce", "voc-fcn-alexnet", "voc-fcn-googlenet",
    "nyud-fcn32s-color", "nyud-fcn32s-hha", "nyud-fcn32s-color-d", "nyud-fcn32s-color-hha",
    "nyud-fcn16s-color-hha", "siftflow-fcn32s", "siftflow-fcn16s", "siftflow-fcn8s",
    "pascalcontext-fcn32s", "pascalcontext-fcn16s", "pascalcontext-fcn8s",
]

# The offsets in the reference's generated prototxts (docs/reference.md §2g).
REFERENCE_OFFSETS = {
    32: {"score": 19},
    16: {"score_pool4c": 5, "score": 27},
    8: {"score_pool4c": 5, "score_pool3c": 9, "score": 31},
}


def reference_offsets(name: str) -> dict[str, int]:
    """The reference's crop offsets for `name`, with its layer-name suffixes."""
    if name == "voc-fcn-alexnet":
        return {"score": 18}
    if name == "voc-fcn-googlenet":  # no reference net: our derivation, checked in tests/test_googlenet.py
        return {"score": 16}
    ref = REFERENCE_OFFSETS[32 if "32s" in name else 16 if "16s" in name else 8]
    if name.startswith("siftflow"):
        return {(k[:-1] + h + "c" if k.endswith("c") else k + h): v for h in ("_sem", "_geo") for k, v in ref.items()}
    if name == "nyud-fcn16s-color-hha":
        return {"score_pool4colorc": 5, "score_pool4hhac": 5, "score": 27}
    return dict(ref)


def test_names_are_the_reference_folders():
    assert nets.names() == NAMES


def test_unknown_name_is_a_clear_error():
    with pytest.raises(KeyError, match="voc-fcn32s"):
        nets.build("voc-fcn4s")


@pytest.mark.parametrize("name", NAMES)
def test_derived_offsets_equal_the_reference(name):
    net = nets.build(name, width=1 / 32)
    assert net.crop_offsets == reference_offsets(name)


@pytest.mark.parametrize("name", NAMES)
def test_width_leaves_geometry_untouched(name):
    a, b = nets.build(name, width=1 / 32), nets.build(name, width=1 / 8)
    assert a.crop_offsets == b.crop_offsets


def inputs_for(net, h: int, w: int) -> list[torch.Tensor]:
    channels = 4 if net.caffe_name == "nyud-fcn32s-color-d" else 3
    return [torch.randn(2, channels, h, w) for _ in net.inputs]


SIZES = [(1, 1), (1, 7), (2, 3), (31, 17), (32, 32), (33, 65), (101, 255), (500, 500), (600, 500)]


@pytest.mark.parametrize("name", NAMES)
def test_output_size_equals_input_size(name):
    net = nets.build(name, width=1 / 32).eval()
    heads = net.heads if hasattr(net, "heads") else (("", 0),)
    for h, w in SIZES:
        with torch.no_grad():
            out = net(*inputs_for(net, h, w))
        outs = out if isinstance(out, dict) else {"score": out}
        assert len(outs) == len(heads)
        for score in outs.values():
            assert score.shape[0] == 2 and score.shape[-2:] == (h, w), (name, h, w, score.shape)


def _vgg_upscore_size(size: int, stride: int) -> int:
    """Blob sizes with Caffe's arithmetic, independent of the nets: the last deconvolution's output."""
    s = size + 2 * 100 - 2  # conv1_1 (pad 100), conv1_2 keeps the size
    pools = []
    for _ in range(5):
        s = caffe_pool_output_size(s, 2, 2)
        pools.append(s)
    fc = pools[4] - 6
    if stride == 32:
        return (fc - 1) * 32 + 64
    up2 = (fc - 1) * 2 + 4
    if stride == 16:
        return (up2 - 1) * 16 + 32
    return ((up2 - 1) * 2 + 4 - 1) * 8 + 16


@pytest.mark.parametrize("stride,offset", [(32, 19), (16, 27), (8, 31)])
def test_pad_100_lets_every_size_up_to_600_be_cropped(stride, offset):
    for size in range(1, 601):
        assert _vgg_upscore_size(size, stride) >= offset + size


def test_pooling_output_size_is_caffes_ceil_rule():
    for kernel, stride in ((2, 2), (3, 2)):
        pool = MaxPool(kernel, stride)
        for size in range(kernel, 400):
            out = pool(torch.zeros(1, 1, size, 1 if kernel == 2 else kernel)).shape[2]
            assert out == caffe_pool_output_size(size, kernel, stride)
            assert out == math.ceil((size - kernel) / stride) + 1
    assert caffe_pool_output_size(500 + 198, 2, 2) == 349  # pool1 of a 500x500 input (docs/reference.md §2a)


def reference_upsample_filt(size: int) -> np.ndarray:
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    k = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            k[i, j] = (1 - abs(i - center) / factor) * (1 - abs(j - center) / factor)
    return k


@pytest.mark.parametrize("size", [4, 16, 32, 63, 64])
def test_bilinear_kernel_is_the_reference_formula(size):
    np.testing.assert_allclose(bilinear_kernel(size).numpy(), reference_upsample_filt(size), rtol=0, atol=1e-15)


@pytest.mark.parametrize("name", ["voc-fcn8s", "voc-fcn-alexnet", "siftflow-fcn16s", "nyud-fcn16s-color-hha"])
def test_upsampling_is_diagonal_bilinear_and_fixed(name):
    net = nets.build(name, width=1 / 32)
    mults = nets.param_multipliers(net)
    deconvs = [(n, m) for n, m in net.named_modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert deconvs
    for n, m in deconvs:
        w = m.weight.detach().double()
        c, k = w.shape[0], w.shape[-1]
        assert m.bias is None
        for i in range(c):
            np.testing.assert_allclose(w[i, i].numpy(), reference_upsample_filt(k), atol=1e-7)
        off_diag = w.clone()
        off_diag[range(c), range(c)] = 0
        assert off_diag.abs().max() == 0
        assert mults[f"{n}.weight"][0] == 0 and not m.weight.requires_grad


@pytest.mark.parametrize("name", NAMES)
def test_score_layers_start_at_zero(name):
    net = nets.build(name, width=1 / 32)
    score = {n: p for n, p in net.named_parameters() if n.startswith("score")}
    assert score and all(p.abs().max() == 0 for p in score.values())


def test_multipliers_vgg():
    mults = nets.param_multipliers(nets.build("voc-fcn8s-atonce", width=1 / 32))
    for layer in ("conv1_1", "conv5_3", "fc6", "fc7", "score_fr", "score_pool4", "score_pool3"):
        assert mults[f"{layer}.weight"] == (1, 1) and mults[f"{layer}.bias"] == (2, 0)
    for layer in ("upscore2", "upscore_pool4", "upscore8", "scale_pool4", "scale_pool3"):
        assert mults[f"{layer}.weight"][0] == 0


def test_multipliers_alexnet_trunk_has_no_param_specs():
    mults = nets.param_multipliers(nets.build("voc-fcn-alexnet", width=1 / 32))
    for layer in ("conv1", "conv2", "conv5", "fc6", "fc7"):
        assert mults[f"{layer}.weight"] == (1, 1) and mults[f"{layer}.bias"] == (1, 1)
    assert mults["score_fr.weight"] == (1, 1) and mults["score_fr.bias"] == (2, 0)
    assert mults["upscore.weight"][0] == 0


def test_at_once_scales():
    net = nets.build("voc-fcn8s-atonce")
    assert net.scale_pool4.weight.shape == (512,) and torch.all(net.scale_pool4.weight == 0.01)
    assert net.scale_pool3.weight.shape == (256,) and torch.all(net.scale_pool3.weight == 1e-4)


def test_alexnet_groups_and_lrn():
    net = nets.build("voc-fcn-alexnet")
    assert [net.conv2.groups, net.conv4.groups, net.conv5.groups] == [2, 2, 2]
    assert tuple(net.fc6.weight.shape) == (4096, 256, 6, 6)
    assert (net.norm1.size, net.norm1.alpha, net.norm1.beta, net.norm1.k) == (5, 1e-4, 0.75, 1.0)


def test_dropout_only_in_train_phase():
    net = nets.build("voc-fcn32s", width=1 / 32)
    torch.nn.init.normal_(net.score_fr.weight)
    x = torch.randn(1, 3, 40, 40)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
    net.train()
    with torch.no_grad():
        assert not torch.equal(net(x), net(x))


# ---- parameter counts, from the reference's layer table (independent of nets/) ----
VGG_CONVS = [(3, 64, 3), (64, 64, 3), (64, 128, 3), (128, 128, 3), (128, 256, 3), (256, 256, 3), (256, 256, 3),
             (256, 512, 3), (512, 512, 3), (512, 512, 3), (512, 512, 3), (512, 512, 3), (512, 512, 3),
             (512, 4096, 7), (4096, 4096, 1)]


def conv_count(cin: int, cout: int, k: int, group: int = 1) -> int:
    return cout * cin // group * k * k + cout


def vgg_fcn_count(n: int, stride: int, in_ch: int = 3, at_once: bool = False) -> int:
    trunk = sum(conv_count(in_ch if i == 0 else a, b, k) for i, (a, b, k) in enumerate(VGG_CONVS))
    head = conv_count(4096, n, 1)
    if stride == 32:
        return trunk + head + n * n * 64 * 64
    head += n * n * 4 * 4 + conv_count(512, n, 1)
    if stride == 16:
        return trunk + head + n * n * 32 * 32
    head += n * n * 4 * 4 + conv_count(256, n, 1) + n * n * 16 * 16
    return trunk + head + (512 + 256 if at_once else 0)


def alexnet_count(n: int) -> int:
    trunk = (conv_count(3, 96, 11) + conv_count(96, 256, 5, 2) + conv_count(256, 384, 3)
             + conv_count(384, 384, 3, 2) + conv_count(384, 256, 3, 2) + conv_count(256, 4096, 6)
             + conv_count(4096, 4096, 1))
    return trunk + conv_count(4096, n, 1) + n * n * 63 * 63


def expected_count(name: str) -> int:
    stride = 32 if "32s" in name else 16 if "16s" in name else 8
    if name == "voc-fcn-alexnet":
        return alexnet_count(21)
    if name == "voc-fcn-googlenet":  # trunk counted from BVLC's prototxt in tests/test_googlenet.py
        return 5_995_077 + 21 * 21 * 63 * 63
    if name.startswith("siftflow"):
        return vgg_fcn_count(33, stride) + vgg_fcn_count(3, stride) - vgg_fcn_count(0, 32)
    if name.endswith("color-hha"):
        trunk = vgg_fcn_count(0, 32)  # a trunk alone (0 classes)
        per_stream = conv_count(4096, 40, 1) + (conv_count(512, 40, 1) if stride == 16 else 0)
        ups = 40 * 40 * (64 * 64 if stride == 32 else 4 * 4 + 32 * 32)
        return 2 * (trunk + per_stream) + ups
    n = {"voc": 21, "nyud": 40, "pascalcontext": 60}[name.split("-")[0]]
    return vgg_fcn_count(n, stride, in_ch=4 if name.endswith("color-d") else 3, at_once="atonce" in name)


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_matches_the_reference_table(name):
    with torch.device("meta"):
        net = nets.build(name)
    assert sum(p.numel() for p in net.parameters()) == expected_count(name)


def test_voc_fcn8s_is_134_5_million():
    assert round(expected_count("voc-fcn8s") / 1e6, 1) == 134.5
