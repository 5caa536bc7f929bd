"""nets.to_prototxt against the reference's own prototxts (tests/fixtures/reference_prototxts/).

For every experiment of the reference repository, the val/test net we write (Dropout and loss
layers included) must have the reference's layers in the reference's order: same names, types,
bottoms, tops and parameters (multipliers and crop offsets included), compared after parsing both
texts and removing fields that hold Caffe's defaults. Data layers (the reference's Python layers,
our Input layer) are left out. voc-fcn8s's deploy.prototxt is compared whole, Input layer included.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

import nets
from nets.prototxt import CAFFE_DEFAULTS, Layer, PrototxtError, layers_of, normalized, parse_net, render_layer
from reproduce import experiments
from weight_convert.convert import build_net

REFERENCE = Path(__file__).parent / "fixtures" / "reference_prototxts"
REFERENCE_NETS = sorted(p.name for p in REFERENCE.iterdir() if p.is_dir())
DATA_TYPES = ("Python", "Input")
ORACLE_ONLY = ("weight_filler", "bias_filler")  # convolution_param fields through which the oracle draws weights


def meta_net(name: str):
    """The full-width net on the meta device (module geometry only, no memory)."""
    return build_net(name, 1.0, lambda _: True)[1]


def reference_file(name: str) -> Path:
    files = [p for p in (REFERENCE / name).glob("*.prototxt") if p.name in ("val.prototxt", "test.prototxt")]
    assert len(files) == 1, files
    return files[0]


def described(text: str, source: str, *, skip_types=DATA_TYPES, drop=()) -> list[tuple]:
    """(name, type, bottoms, tops, normalized other fields) per layer of a prototxt text."""
    out = []
    for entry in parse_net(text, source)["layer"]:
        layer = layers_of({"layer": [entry]})[0]
        if layer.type in skip_types:
            continue
        fields = dict(layer.fields)
        if drop and "convolution_param" in fields:
            fields["convolution_param"] = [{k: v for k, v in m.items() if k not in drop}
                                           for m in fields["convolution_param"]]
        fields = normalized(fields)
        out.append((layer.name, layer.type, layer.bottoms, layer.tops, fields))
    return out


def differences(ours: list[tuple], theirs: list[tuple]) -> list[str]:
    out = []
    for i, (a, b) in enumerate(zip(ours, theirs)):
        if a != b:
            out.append(f"layer {i}: ours {a}\n          reference {b}")
    if len(ours) != len(theirs):
        out.append(f"{len(ours)} layers here, {len(theirs)} in the reference")
    return out


def val_net_text(name: str, net=None) -> str:
    exp = experiments.get(name)
    return nets.to_prototxt(net if net is not None else meta_net(name), labels=exp.labels,
                            loss_normalize=exp.loss_normalize)


def test_fixtures_cover_every_reference_experiment():
    assert len(REFERENCE_NETS) == 15
    assert set(REFERENCE_NETS) <= set(nets.names())
    # ours only: FCN-16s RGB-HHA (Table 4) and FCN-GoogLeNet (Table 1), never released
    assert "nyud-fcn16s-color-hha" in nets.names()
    assert set(nets.names()) - set(REFERENCE_NETS) <= {"nyud-fcn16s-color-hha", "voc-fcn-googlenet"}


@pytest.mark.parametrize("name", REFERENCE_NETS)
def test_val_net_is_the_references(name):
    ref = reference_file(name)
    theirs = described(ref.read_text(), str(ref))
    ours = described(val_net_text(name), f"to_prototxt({name})")
    assert not differences(ours, theirs), "\n".join(differences(ours, theirs))
    # what the comparison covers: every crop offset and every multiplier of the reference
    crops = {n: f["crop_param"] for n, t, _, _, f in theirs if t == "Crop"}
    assert crops and all(c[0]["offset"] for c in crops.values())
    assert any("param" in f for *_, f in theirs)


def test_deploy_net_is_the_references_deploy_prototxt():
    ref = REFERENCE / "voc-fcn8s" / "deploy.prototxt"
    theirs = described(ref.read_text(), str(ref), skip_types=())
    ours = described(nets.to_prototxt(meta_net("voc-fcn8s")), "to_prototxt(voc-fcn8s)", skip_types=())
    assert theirs[0][1] == "Input" and theirs[0][4]["input_param"][0]["shape"][0]["dim"] == [1, 3, 500, 500]
    assert not differences(ours, theirs), "\n".join(differences(ours, theirs))


@pytest.mark.parametrize("name", ["voc-fcn8s-atonce", "voc-fcn-alexnet", "nyud-fcn32s-color-d", "siftflow-fcn8s"])
def test_oracle_generator_matches_the_reference_too(name):
    """tools/caffe_oracle/prototxts.py types the layer tables independently of nets/: at full width
    (its fillers and force_backward aside) it must also be the reference's net."""
    spec = importlib.util.spec_from_file_location(
        "oracle_prototxts", Path(__file__).parents[1] / "tools" / "caffe_oracle" / "prototxts.py")
    oracle = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, oracle)  # its dataclasses look their module up there
    spec.loader.exec_module(oracle)
    ref = reference_file(name)
    theirs = described(ref.read_text(), str(ref))
    text = oracle.build_net(name, width=1.0, dropout=True).prototxt()
    ours = described(text, f"oracle {name}", drop=ORACLE_ONLY)
    assert not differences(ours, theirs), "\n".join(differences(ours, theirs))


@pytest.mark.parametrize("change", ["offset", "lr_mult", "bottom", "order", "num_output"])
def test_comparison_sees_a_changed_net(change):
    """The comparison is not blind: one changed crop offset, multiplier, bottom, layer order or
    channel count is reported."""
    name = "voc-fcn16s"
    ref = reference_file(name)
    theirs = described(ref.read_text(), str(ref))
    net = meta_net(name)
    if change == "offset":
        net.score_pool4c.offset = 4
    elif change == "lr_mult":
        net.score_pool4.caffe_mults = ((1.0, 1.0), (1.0, 0.0))
    elif change == "num_output":
        net.score_fr.out_channels = 20
    ours = described(val_net_text(name, net), name)
    if change == "bottom":
        ours[-3] = ours[-3][:2] + (["upscore2", "score_pool4"],) + ours[-3][3:]
    elif change == "order":
        ours[3], ours[4] = ours[4], ours[3]
    assert differences(ours, theirs)


def test_normalized_treats_defaults_as_absent():
    a = parse_net('layer { name: "c" param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 1 } '
                  'convolution_param { num_output: 3 pad: 0 stride: 1 kernel_size: 3 } }')["layer"][0]
    b = parse_net('layer { name: "c" convolution_param { kernel_size: 3 num_output: 3 } }')["layer"][0]
    c = parse_net('layer { name: "c" convolution_param { kernel_size: 3 num_output: 3 stride: 2 } }')["layer"][0]
    assert normalized(a) == normalized(b) != normalized(c)


def test_parser_reads_what_render_writes():
    layer = Layer("x", "Eltwise", ["a", 'b"q'], ["x"], {
        "param": [{"lr_mult": 0}], "eltwise_param": {"operation": nets.prototxt.Token("SUM"), "coeff": [0.5, 1e-4]},
        "scale_param": {"filler": {"type": "constant", "value": 0.01}, "bias_term": False}})
    parsed = parse_net("# comment\n" + "\n".join(render_layer(layer)) + "  # trailing\n")["layer"][0]
    assert parsed["bottom"] == ["a", 'b"q']
    assert parsed["eltwise_param"] == [{"operation": ["SUM"], "coeff": [0.5, 1e-4]}]
    assert parsed["scale_param"] == [{"filler": [{"type": ["constant"], "value": [0.01]}], "bias_term": [False]}]
    assert parsed["param"] == [{"lr_mult": [0]}]
    one_line = parse_net("\n".join(render_layer(layer, inline=True)))["layer"][0]  # the oracle's style
    assert one_line == parsed and any(" { " in line for line in render_layer(layer, inline=True))


@pytest.mark.parametrize("text, where", [('layer { name: "a" ', "missing '}'"), ("layer {\n name \"a\" }", ":2:"),
                                         ("layer { name: }", ":1:"), ("layer { name: \"a\" } }", ":1:")])
def test_parser_errors_name_the_line(text, where):
    with pytest.raises(PrototxtError, match=where):
        parse_net(text, "net.prototxt")


@pytest.mark.parametrize("name", nets.names())
def test_every_net_exports_consistently(name):
    """Every experiment (the reference's and ours): the deploy text parses, each bottom is a blob
    made earlier, the tops include the score blobs, and every parameter has a layer to live in."""
    net = nets.build(name, width=1 / 64)
    layers = layers_of(parse_net(nets.to_prototxt(net), name))
    made: set[str] = set()
    for layer in layers:
        assert set(layer.bottoms) <= made, (layer.name, layer.bottoms)
        made |= set(layer.tops)
    assert set(experiments.get(name).scores) <= made
    blobs = nets.caffe_blobs(net)
    assert sum(len(b) for _, _, b in blobs) == len(list(net.parameters()))


def test_googlenet_trunk_is_bvlc_googlenets():
    """FCN-GoogLeNet's exported trunk is BVLC GoogLeNet's deploy.prototxt (facts in
    tests/fixtures/bvlc_googlenet_layers.json) up to inception_5b/output, conv1's pad aside
    (ours is derived, nets/googlenet_fcn.py); then dropout, score_fr, upscore and the crop."""
    import json

    from nets.googlenet_fcn import GoogLeNetFCN
    facts = json.loads((Path(__file__).parent / "fixtures" / "bvlc_googlenet_layers.json").read_text())["layers"]
    facts = facts[:[f["name"] for f in facts].index("inception_5b/output") + 1]
    net = GoogLeNetFCN(21)
    for deploy in (True, False):
        text = nets.to_prototxt(net) if deploy else nets.to_prototxt(net, labels=("label",))
        layers = layers_of(parse_net(text, "googlenet"))
        assert [(f["name"], f["type"], f["bottom"], f["top"]) for f in facts[1:]] == \
            [(x.name, x.type, x.bottoms, x.tops) for x in layers[1:len(facts)]]
        for fact, layer in zip(facts[1:], layers[1:]):
            key = f"{layer.type.lower()}_param"  # convolution_param, pooling_param, lrn_param
            given = layer.fields.get(key, [{}])[0]
            defaults = CAFFE_DEFAULTS.get(key, {})
            for field in ("num_output", "kernel_size", "stride", "pad", "pool", "local_size", "alpha", "beta"):
                if field == "pad" and layer.name == "conv1/7x7_s2":
                    continue
                ours = given.get(field, [defaults.get(field)])[0]
                assert ours == fact.get(field, defaults.get(field)), (fact["name"], field, ours)
        tail = [(x.name, x.type) for x in layers[len(facts):]]
        assert tail == ([] if deploy else [("pool5/drop_7x7_s1", "Dropout")]) + [
            ("score_fr", "Convolution"), ("upscore", "Deconvolution"), ("score", "Crop")] + (
            [] if deploy else [("loss", "SoftmaxWithLoss")])
    assert sum(len(b) for _, _, b in nets.caffe_blobs(net)) == len(list(net.parameters()))
