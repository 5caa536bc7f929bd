"""Mapping caffemodel blobs onto `nets`: strict loads, net surgery, staged and fused inits.

Caffemodels are written by tests/caffe_encoder.py at 1/16 width (VGG16 V1, FCN-8s V2, ...).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import nets
from weight_convert import (CaffeFormatError, CaffeLayer, WeightMismatchError, convert, load_caffemodel, load_fusion,
                            parse_net, read_caffemodel)

import caffe_encoder as enc  # tests/caffe_encoder.py (tests/conftest.py puts tests/ on sys.path)

W = 1 / 16


def fcn_layers(net_name: str, *, seed: int = 0, num_classes=None, skip=()) -> list:
    """A caffemodel layout with a blob for every parameter of ``net_name`` (random values), in
    the net's order, with Caffe types: Deconvolution for upscore*, Scale for scale_*."""
    rng = np.random.default_rng(seed)
    net = nets.build(net_name, width=W, num_classes=num_classes)
    layers: dict[str, list[np.ndarray]] = {}
    for name, p in net.named_parameters():
        if name.rpartition(".")[0] in skip:
            continue
        layers.setdefault(name.rpartition(".")[0], []).append(
            (rng.standard_normal(tuple(p.shape)) * 0.1).astype(np.float32))
    out = [("data", "Data", [])]
    for name, blobs in layers.items():
        kind = "Deconvolution" if name.startswith("upscore") else "Scale" if name.startswith("scale_") \
            else "Convolution"
        out.append((name, kind, blobs))
    out.append(("score", "Crop", []))
    return out


def blobs_of(layers) -> dict[str, list[np.ndarray]]:
    return {name: blobs for name, _, blobs in layers if blobs}


def state(net) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("caffemodels")
    vgg = enc.vgg16_layers(W)
    fcn8s = fcn_layers("voc-fcn8s")
    return {
        "vgg16": (enc.write_caffemodel(d / "vgg16_v1.caffemodel", vgg, version=1, name="VGG_ILSVRC_16_layers"), vgg),
        "fcn8s": (enc.write_caffemodel(d / "fcn8s_v2.caffemodel", fcn8s, version=2), fcn8s),
        "dir": d,
    }


def test_vgg16_v1_strict_load_names_what_is_left_unfilled(files):
    path, _ = files["vgg16"]
    net = nets.build("voc-fcn32s", width=W)
    before = state(net)
    with pytest.raises(WeightMismatchError, match=r"leaves 3 parameter\(s\) of voc-fcn32s unfilled: "
                                                  r"score_fr.weight, score_fr.bias, upscore.weight"):
        load_caffemodel(net, path, strict=True)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # nothing copied


def test_vgg16_v1_transplant_into_fcn32s(files):
    path, layers = files["vgg16"]
    blobs = blobs_of(layers)
    net = nets.build("voc-fcn32s", width=W)
    fresh = state(net)
    report = load_caffemodel(net, path, strict=False)
    assert report.missing == ["score_fr.weight", "score_fr.bias", "upscore.weight"]
    assert report.dropped == ["fc8"]
    assert set(report.surgery) == {"fc6.weight", "fc7.weight"}
    assert report.matched == [n for n in blobs if n != "fc8"]
    sd = net.state_dict()
    for name in report.matched:
        np.testing.assert_array_equal(sd[f"{name}.weight"].numpy().ravel(), blobs[name][0].ravel())
        np.testing.assert_array_equal(sd[f"{name}.bias"].numpy(), blobs[name][1])
    assert sd["fc6.weight"].shape == (256, 32, 7, 7) and sd["fc7.weight"].shape == (256, 256, 1, 1)
    for k in report.missing:  # new layers keep their init: zero scores, bilinear upsampling
        assert torch.equal(sd[k], fresh[k])
    assert not sd["score_fr.weight"].any()


def test_fc6_fc7_surgery_computes_what_the_fully_connected_layers_did(files):
    path, layers = files["vgg16"]
    blobs = blobs_of(layers)
    net = nets.build("voc-fcn32s", width=W)
    load_caffemodel(net, path, strict=False)
    pool5 = torch.randn(2, 32, 7, 7, dtype=torch.float64)
    fc6_w, fc6_b = (torch.from_numpy(b).double() for b in blobs["fc6"])
    fc7_w, fc7_b = (torch.from_numpy(b).double() for b in blobs["fc7"])
    fc6 = F.linear(pool5.flatten(1), fc6_w, fc6_b)       # Caffe InnerProduct on the flattened blob
    fc7 = F.linear(torch.relu(fc6), fc7_w, fc7_b)
    net.double()
    conv6 = net.fc6(pool5)                               # the converted 7x7 convolution
    conv7 = net.fc7(torch.relu(conv6))
    assert conv6.shape == (2, 256, 1, 1)
    torch.testing.assert_close(conv6.flatten(1), fc6, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(conv7.flatten(1), fc7, rtol=1e-12, atol=1e-12)
    # on a bigger map, every 7x7 window is the fully-connected layer applied there
    big = torch.randn(1, 32, 9, 8, dtype=torch.float64)
    out = net.fc6(big)
    window = big[:, :, 2:9, 1:8]
    torch.testing.assert_close(out[:, :, 2, 1], F.linear(window.flatten(1), fc6_w, fc6_b))


def test_alexnet_fc6_surgery(tmp_path):
    layers = enc.alexnet_layers(W)
    path = enc.write_caffemodel(tmp_path / "alexnet.caffemodel", layers, version=1)
    net = nets.build("voc-fcn-alexnet", width=W)
    report = load_caffemodel(net, path, strict=False)
    assert report.missing == ["score_fr.weight", "score_fr.bias", "upscore.weight"]
    assert report.dropped == ["fc8"]
    assert set(report.surgery) == {"fc6.weight", "fc7.weight"}
    fc6_w, fc6_b = (torch.from_numpy(b) for b in blobs_of(layers)["fc6"])
    assert net.fc6.weight.shape == (256, 16, 6, 6)
    pool5 = torch.randn(1, 16, 6, 6)
    torch.testing.assert_close(net.fc6(pool5).flatten(1), F.linear(pool5.flatten(1), fc6_w, fc6_b),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(net.conv2.weight.detach().numpy(), blobs_of(layers)["conv2"][0])


def test_fcn8s_v2_strict_load_and_converted_file_agree(files, tmp_path):
    path, layers = files["fcn8s"]
    blobs = blobs_of(layers)
    net = nets.build("voc-fcn8s", width=W)
    report = load_caffemodel(net, path, strict=True)
    assert report.missing == [] and report.dropped == [] and report.surgery == {}
    for name, p in net.named_parameters():
        layer, _, attr = name.rpartition(".")
        np.testing.assert_array_equal(p.detach().numpy(), blobs[layer][0 if attr == "weight" else 1])

    out = tmp_path / "fcn8s.pt"
    convert(path, out, net_name="voc-fcn8s", width=W)
    other = nets.build("voc-fcn8s", width=W)
    other.load_state_dict(torch.load(out, weights_only=True), strict=True)
    x = torch.randn(1, 3, 32, 36)
    net.eval(), other.eval()
    with torch.no_grad():
        score = net(x)
        assert score.shape == (1, 21, 32, 36) and torch.equal(score, other(x))


def test_v1_fcn_with_legacy_shapes_loads_strictly(tmp_path):
    layers = [layer for layer in fcn_layers("voc-fcn32s", seed=3) if layer[1] != "Crop"]  # no Crop in V1
    path = enc.write_caffemodel(tmp_path / "fcn32s_v1.caffemodel", layers, version=1)
    assert all(all(layer.legacy_shape) for layer in read_caffemodel(path) if layer.blobs)
    net = nets.build("voc-fcn32s", width=W)
    report = load_caffemodel(net, path, strict=True)
    assert report.complete and report.surgery == {}
    np.testing.assert_array_equal(net.upscore.weight.detach().numpy(), blobs_of(layers)["upscore"][0])


def test_legacy_padded_blob_of_another_layer_type_is_matched_like_caffe():
    value = np.full(32, 0.5, np.float32)
    layer = enc.layer_v1("scale_pool4", 26, [enc.blob(value, legacy=True)])  # V1 POWER, 1x1x1x32
    from weight_convert import parse_net
    parsed = parse_net(enc.to_bytes(enc.net([layer], v1=True)))
    assert parsed.layers[0].blobs[0].shape == (1, 1, 1, 32)
    net = nets.build("voc-fcn8s-atonce", width=W)
    report = load_caffemodel(net, parsed, strict=False, surgery=False)
    assert "legacy 4-D shape" in report.surgery["scale_pool4.weight"]
    np.testing.assert_array_equal(net.scale_pool4.weight.detach().numpy(), value)


def test_staged_init_32s_16s_8s(files, tmp_path):
    fcn32s = nets.build("voc-fcn32s", width=W)
    load_caffemodel(fcn32s, fcn_layers_as_layers("voc-fcn32s", seed=5), strict=True)
    fcn16s = nets.build("voc-fcn16s", width=W)
    fresh16 = state(fcn16s)
    report = load_caffemodel(fcn16s, fcn32s.state_dict(), strict=False)
    assert report.dropped == ["upscore"]
    assert report.missing == ["upscore2.weight", "score_pool4.weight", "score_pool4.bias", "upscore16.weight"]
    for k, v in fcn16s.state_dict().items():
        expected = fresh16[k] if k in report.missing else fcn32s.state_dict()[k]
        assert torch.equal(v, expected), k

    torch.save(fcn16s.state_dict(), tmp_path / "fcn16s.pt")       # a converted .pt as the source
    fcn8s = nets.build("voc-fcn8s", width=W)
    fresh8 = state(fcn8s)
    report = load_caffemodel(fcn8s, tmp_path / "fcn16s.pt", strict=False)
    assert report.dropped == ["upscore16"]
    assert report.missing == ["upscore_pool4.weight", "score_pool3.weight", "score_pool3.bias", "upscore8.weight"]
    assert torch.equal(fcn8s.score_pool4.weight, fcn16s.score_pool4.weight)
    assert torch.equal(fcn8s.upscore8.weight, fresh8["upscore8.weight"])


def fcn_layers_as_layers(net_name: str, seed: int):
    from weight_convert import parse_net
    return parse_net(enc.to_bytes(enc.encode(fcn_layers(net_name, seed=seed)))).layers


def test_color_d_conv1_from_vgg16(files):
    path, layers = files["vgg16"]
    conv1_w, conv1_b = blobs_of(layers)["conv1_1"]
    net = nets.build("nyud-fcn32s-color-d", width=W)
    report = load_caffemodel(net, path, strict=False)
    assert "conv1_1_bgrd" in report.matched and "conv1_1" not in report.dropped
    assert report.missing == ["score_fr.weight", "score_fr.bias", "upscore.weight"]
    w = net.conv1_1_bgrd.weight.detach().numpy()
    assert w.shape == (4, 4, 3, 3)
    np.testing.assert_array_equal(w[:, :3], conv1_w)
    np.testing.assert_allclose(w[:, 3], conv1_w.astype(np.float64).mean(axis=1), rtol=1e-6)
    np.testing.assert_array_equal(net.conv1_1_bgrd.bias.detach().numpy(), conv1_b)
    assert "depth channel" in report.surgery["conv1_1_bgrd.weight"]


def test_color_hha_late_fusion_from_two_fcn32s():
    color = nets.build("nyud-fcn32s-color", width=W)
    hha = nets.build("nyud-fcn32s-hha", width=W)
    with torch.no_grad():
        for p in hha.parameters():
            p.add_(1.0)  # make the two streams distinguishable
        color.score_fr.weight.normal_()
        hha.score_fr.weight.normal_()
    fused = nets.build("nyud-fcn32s-color-hha", width=W)
    upscore = fused.upscore.weight.detach().clone()
    report = load_fusion(fused, color.state_dict(), hha.state_dict())
    assert report.missing == ["upscore.weight"]
    assert report.dropped == ["upscore (as upscorecolor)", "upscore (as upscorehha)"]
    assert torch.equal(fused.conv1_1color.weight, color.conv1_1.weight)
    assert torch.equal(fused.conv1_1hha.weight, hha.conv1_1.weight)
    assert torch.equal(fused.fc6hha.bias, hha.fc6.bias)
    assert torch.equal(fused.score_frcolor.weight, color.score_fr.weight)
    assert torch.equal(fused.score_frhha.weight, hha.score_fr.weight)
    assert torch.equal(fused.upscore.weight, upscore)
    with pytest.raises(WeightMismatchError, match="upscore.weight"):
        load_fusion(nets.build("nyud-fcn32s-color-hha", width=W), color.state_dict(), hha.state_dict(),
                    strict=True)


def test_shape_mismatch_names_the_layer_and_copies_nothing(tmp_path):
    layers = fcn_layers("voc-fcn32s", num_classes=60, skip=("upscore",))
    path = enc.write_caffemodel(tmp_path / "context.caffemodel", layers)
    net = nets.build("voc-fcn32s", width=W)
    before = state(net)
    with pytest.raises(WeightMismatchError) as info:
        load_caffemodel(net, path)
    assert info.value.layer == "score_fr"
    assert "(60, 256, 1, 1)" in str(info.value) and "(21, 256, 1, 1)" in str(info.value)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_surgery_off_refuses_to_reshape(files):
    path, _ = files["vgg16"]
    with pytest.raises(WeightMismatchError, match=r"layer 'fc6' .*same element count"):
        load_caffemodel(nets.build("voc-fcn32s", width=W), path, strict=False, surgery=False)


def test_double_data_loads_as_float32(tmp_path):
    layers = fcn_layers("voc-fcn32s", seed=7)
    path = enc.write_caffemodel(tmp_path / "double.caffemodel", layers, double=True)
    net = nets.build("voc-fcn32s", width=W)
    load_caffemodel(net, path)
    assert net.conv1_1.weight.dtype == torch.float32
    np.testing.assert_array_equal(net.conv1_1.weight.detach().numpy(), blobs_of(layers)["conv1_1"][0])


def test_duplicate_layer_name_is_refused_naming_the_layer(tmp_path):
    """Before: the later score_fr silently won (Caffe's copy_from). Now the load refuses."""
    layers = fcn_layers("voc-fcn32s", seed=8)
    again = [("score_fr", "Convolution", [b + 1 for b in blobs_of(layers)["score_fr"]])]
    path = enc.write_caffemodel(tmp_path / "twice.caffemodel", layers + again)
    net = nets.build("voc-fcn32s", width=W)
    before = state(net)
    with pytest.raises(CaffeFormatError, match=r"layer 'score_fr'.*occurs twice"):
        load_caffemodel(net, path, strict=False)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    decoded = [CaffeLayer(name, kind, blobs) for name, kind, blobs in layers + again]
    with pytest.raises(CaffeFormatError, match=r"<layers>: layer 'score_fr': layer name occurs twice"):
        load_caffemodel(net, decoded, strict=False)


def test_blobless_layers_may_share_a_name():
    """A train_val net has two data layers of one name (one per phase); nothing is read from them."""
    layers = fcn_layers("voc-fcn32s", seed=8)
    parsed = parse_net(enc.to_bytes(enc.encode([("data", "Data", [])] + layers)))
    assert [layer.name for layer in parsed.layers].count("data") == 2
    assert load_caffemodel(nets.build("voc-fcn32s", width=W), parsed).complete


def test_extra_blob_in_a_matched_layer_is_refused_with_the_counts(tmp_path):
    """Before: a third blob of score_fr was dropped (listed, not refused). Now: refused."""
    layers = fcn_layers("voc-fcn32s", seed=9)
    blobs = blobs_of(layers)["score_fr"]
    # a Convolution holds at most weight + bias: refused as soon as the file is read
    conv3 = [(n, k, b + [b[1]] if n == "score_fr" else b) for n, k, b in layers]
    path = enc.write_caffemodel(tmp_path / "conv3.caffemodel", conv3)
    with pytest.raises(CaffeFormatError, match=r"layer 'score_fr'.*holds 3 blobs, a Convolution has at most 2"):
        load_caffemodel(nets.build("voc-fcn32s", width=W), path)
    # a type without a known bound (here a dump read back): refused against the net's layer
    dump = {f"{n}/{i}": torch.from_numpy(b) for n, _, bl in layers for i, b in enumerate(bl)}
    dump["score_fr/2"] = torch.from_numpy(blobs[1])
    net = nets.build("voc-fcn32s", width=W)
    before = state(net)
    with pytest.raises(WeightMismatchError, match=r"layer 'score_fr': <state dict> holds 3 blobs, "
                                                  r"voc-fcn32s's score_fr takes 2 \(weight, bias\)"):
        load_caffemodel(net, dump, strict=False)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    # an upscore (weight only) with a bias blob: refused too, not dropped
    dump2 = {f"{n}/{i}": torch.from_numpy(b) for n, _, bl in layers for i, b in enumerate(bl)}
    dump2["upscore/1"] = torch.zeros(dump2["upscore/0"].shape[1])
    with pytest.raises(WeightMismatchError, match=r"layer 'upscore'.*holds 2 blobs.*takes 1 \(weight\)"):
        load_caffemodel(nets.build("voc-fcn32s", width=W), dump2)


def test_dump_without_net_reads_back_as_a_source(files, tmp_path):
    path, _ = files["fcn8s"]
    dump = tmp_path / "dump.pt"
    result = convert(path, dump)
    assert list(result.entries)[:2] == ["conv1_1/0", "conv1_1/1"]
    a, b = nets.build("voc-fcn8s", width=W), nets.build("voc-fcn8s", width=W)
    load_caffemodel(a, path)
    load_caffemodel(b, dump)
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(v, w), k


def test_without_kernel_copies_the_results_are_the_same(files, tmp_path, monkeypatch):
    """The fast paths (os.preadv into parameters, os.copy_file_range into .pt files) and the
    portable chunked copies through the memory map give identical results."""
    import os

    path, _ = files["fcn8s"]
    fast_net = nets.build("voc-fcn8s", width=W)
    load_caffemodel(fast_net, path)
    convert(path, tmp_path / "fast.pt", net_name="voc-fcn8s", width=W)
    monkeypatch.delattr(os, "preadv")
    monkeypatch.delattr(os, "copy_file_range")
    slow_net = nets.build("voc-fcn8s", width=W)
    load_caffemodel(slow_net, path)
    convert(path, tmp_path / "slow.pt", net_name="voc-fcn8s", width=W)
    fast, slow = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("fast", "slow"))
    for k, v in fast_net.state_dict().items():
        assert torch.equal(v, slow_net.state_dict()[k]) and torch.equal(v, fast[k]) and torch.equal(v, slow[k]), k


@pytest.mark.parametrize("name", nets.names())
def test_shape_only_builds_match_real_builds(name):
    """convert's two-pass build (parameters on the meta device, then only the unfilled ones real)
    gives every net's real shapes, and the real parameters keep the net's own init."""
    from weight_convert.convert import build_net

    real = nets.build(name, width=W)
    shapes, meta_net = build_net(name, W, meta=lambda n: True)
    assert shapes == {k: tuple(v.shape) for k, v in real.named_parameters()}
    assert all(p.device.type == "meta" for p in meta_net.parameters())
    keep = {k for k in shapes if k.startswith(("score", "upscore", "scale"))}  # heads: deterministic init
    _, mixed = build_net(name, W, meta=lambda n: n not in keep)
    for k, p in mixed.named_parameters():
        assert (p.device.type == "meta") == (k not in keep), k
        if k in keep:
            assert torch.equal(p, real.state_dict()[k]), k
            assert p.requires_grad == dict(real.named_parameters())[k].requires_grad
