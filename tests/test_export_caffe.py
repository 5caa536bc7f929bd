"""`fcn export caffe`: every experiment exports; the round trip caffemodel -> convert-caffe ->
fcn export caffe -> caffemodel keeps every blob bit for bit; outputs are refused without --force.

The round-trip sources are real Caffe-written files (the oracle's weights, saved by Caffe's
net.save, V2) and a V1 file made from one with the project's writer (legacy 4-D blob shapes).
"""
from __future__ import annotations

import lzma
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import nets
from nets.prototxt import layers_of, parse_net
from reproduce import experiments
from reproduce.commands.cli import main as fcn
from weight_convert import read_net
from weight_convert.caffe_writer import write_caffemodel
from weight_convert.cli import main as convert_caffe

ORACLE = Path(__file__).parent / "fixtures" / "oracle"
WIDTH = 1 / 64  # the oracle goldens' trunk width
W = repr(WIDTH)


def run(command, *args):
    return CliRunner().invoke(command, [str(a) for a in args], catch_exceptions=False)


def blobs_of(path: Path) -> dict[str, list[tuple[tuple[int, ...], bytes]]]:
    """Layer name -> [(shape, float32 bytes)] for every layer with blobs."""
    net = read_net(path)
    return {layer.name: [(tuple(b.shape), np.ascontiguousarray(b, dtype="<f4").tobytes()) for b in layer.blobs]
            for layer in net.layers if layer.blobs}


def oracle_caffemodel(name: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{name}-caffe.caffemodel"
    path.write_bytes(lzma.decompress((ORACLE / name / "weights.caffemodel.xz").read_bytes()))
    return path


def random_weights(name: str, tmp_path: Path) -> Path:
    """A .pt of the experiment's net at WIDTH with every parameter random (no zeros to hide in)."""
    net = nets.build(name, width=WIDTH)
    g = torch.Generator().manual_seed(7)
    state = {k: torch.randn(v.shape, generator=g) for k, v in net.state_dict().items()}
    path = tmp_path / f"{name}.pt"
    torch.save(state, path)
    return path


@pytest.mark.parametrize("name", ["voc-fcn8s", "voc-fcn8s-atonce", "voc-fcn-alexnet", "nyud-fcn32s-color-d",
                                  "nyud-fcn32s-color-hha", "siftflow-fcn16s"])
def test_round_trip_from_caffe_written_file_is_bit_exact(name, tmp_path):
    src = oracle_caffemodel(name, tmp_path)
    pt = tmp_path / "converted.pt"
    result = run(convert_caffe, src, pt, "--net", name, "--width", W)
    assert result.exit_code == 0, result.output
    result = run(fcn, "export", "caffe", name, "--weights", pt, "--out", tmp_path / "out", "--width", W)
    assert result.exit_code == 0, result.output
    out = tmp_path / "out" / f"{name}.caffemodel"
    assert read_net(out).format == "V2"
    theirs, ours = blobs_of(src), blobs_of(out)
    assert ours == theirs  # the same layers, blob shapes and bytes (the order is the prototxt's)


def test_round_trip_from_v1_file_is_bit_exact(tmp_path):
    """A V1 file (legacy num/channels/height/width shapes: biases 1x1x1xC) comes back as V2 with
    the same values, bit for bit, and the shapes Caffe would load them into."""
    name = "voc-fcn16s"
    v2 = read_net(oracle_caffemodel(name, tmp_path))
    v1 = tmp_path / "v1.caffemodel"
    write_caffemodel(v1, name, [(lay.name, lay.type, lay.blobs) for lay in v2.layers if lay.blobs], version=1)
    assert read_net(v1).format == "V1"
    pt = tmp_path / "converted.pt"
    assert run(convert_caffe, v1, pt, "--net", name, "--width", W).exit_code == 0
    result = run(fcn, "export", "caffe", name, "--weights", pt, "--out", tmp_path / "out", "--width", W)
    assert result.exit_code == 0, result.output
    assert blobs_of(tmp_path / "out" / f"{name}.caffemodel") == blobs_of(v1)


@pytest.mark.parametrize("name", experiments.names())
def test_every_experiment_exports(name, tmp_path):
    """All experiments: the prototxt parses with one Input layer; the caffemodel holds exactly the
    net's parameters (names, Caffe shapes, values) in prototxt order."""
    weights = random_weights(name, tmp_path)
    result = run(fcn, "export", "caffe", name, "--weights", weights, "--out", tmp_path / "out", "--width", W,
                 "--input-size", 1, 64, 80)
    assert result.exit_code == 0, result.output
    layers = layers_of(parse_net((tmp_path / "out" / "deploy.prototxt").read_text()))
    assert [lay.type for lay in layers].count("Input") == 1
    assert all(s["dim"][0] == 1 and s["dim"][2:] == [64, 80] for s in layers[0].fields["input_param"][0]["shape"])
    state = torch.load(weights)
    blobs = blobs_of(tmp_path / "out" / f"{name}.caffemodel")
    order = [lay.name for lay in layers if lay.name in blobs]
    assert list(blobs) == order
    got = {f"{layer}.{kind}": b for layer, bs in blobs.items() for kind, b in zip(("weight", "bias"), bs)}
    assert set(got) == set(state)
    for key, (shape, data) in got.items():
        assert shape == tuple(state[key].shape) and data == state[key].numpy().astype("<f4").tobytes(), key


def test_refuses_to_overwrite_without_force(tmp_path):
    name = "voc-fcn32s"
    weights = random_weights(name, tmp_path)
    out = tmp_path / "out"
    args = ("export", "caffe", name, "--weights", weights, "--out", out, "--width", W)
    assert run(fcn, *args).exit_code == 0
    model = out / f"{name}.caffemodel"
    before = model.read_bytes()
    (out / "deploy.prototxt").write_text("kept\n")
    result = run(fcn, *args)
    assert result.exit_code != 0 and "deploy.prototxt already exists" in result.output and "--force" in result.output
    assert (out / "deploy.prototxt").read_text() == "kept\n" and model.read_bytes() == before
    assert run(fcn, *args, "--force").exit_code == 0
    assert (out / "deploy.prototxt").read_text().startswith("# voc-fcn32s: deploy net")
    assert sorted(p.name for p in out.iterdir()) == ["deploy.prototxt", f"{name}.caffemodel"]  # no temporaries


def test_weights_that_do_not_fit_are_refused_before_writing(tmp_path):
    weights = random_weights("voc-fcn32s", tmp_path)
    result = run(fcn, "export", "caffe", "voc-fcn16s", "--weights", weights, "--out", tmp_path / "out", "--width", W)
    assert result.exit_code != 0 and "does not fit" in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
