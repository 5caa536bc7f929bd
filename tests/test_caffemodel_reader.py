"""The .caffemodel reader on real V1 / V2 files and on files written by tests/caffe_encoder.py."""
from __future__ import annotations

import mmap
import struct
from pathlib import Path

import numpy as np
import pytest

from weight_convert import CaffeFormatError, parse_net, read_caffemodel, read_net
from weight_convert.caffemodel import canonical_legacy_shape

import caffe_encoder as enc  # tests/caffe_encoder.py (tests/conftest.py puts tests/ on sys.path)

FIXTURES = Path(__file__).parent / "fixtures" / "caffemodels"
V1_LENET = FIXTURES / "lenet_v1.caffemodel"
V2_LENET = FIXTURES / "lenet_v2.caffemodel"

LENET_LAYERS = [("mnist", "Data"), ("conv1", "Convolution"), ("pool1", "Pooling"),
                ("conv2", "Convolution"), ("pool2", "Pooling"), ("ip1", "InnerProduct"),
                ("relu1", "ReLU"), ("ip2", "InnerProduct"), ("loss", "SoftmaxWithLoss")]
LENET_SHAPES = {"conv1": [(20, 1, 5, 5), (20,)], "conv2": [(50, 20, 5, 5), (50,)],
                "ip1": [(500, 800), (500,)], "ip2": [(10, 500), (10,)]}


def floats_after(data: bytes, marker: bytes, n: int = 3) -> tuple[float, ...]:
    """The n float32 values that follow a hand-written byte pattern (decoded without the reader)."""
    assert data.count(marker) == 1
    start = data.index(marker) + len(marker)
    return struct.unpack(f"<{n}f", data[start:start + 4 * n])


@pytest.mark.parametrize("path, fmt", [(V1_LENET, "V1"), (V2_LENET, "V2")])
def test_lenet_layers_types_and_shapes(path, fmt):
    net = read_net(path)
    assert net.name == "LeNet"
    assert net.format == fmt
    assert [(layer.name, layer.type) for layer in net.layers] == LENET_LAYERS
    for layer in net.layers:
        assert [b.shape for b in layer.blobs] == LENET_SHAPES.get(layer.name, [])
        assert all(b.dtype == np.float32 for b in layer.blobs)
    assert all(all(layer.legacy_shape) == (fmt == "V1") for layer in net.layers if layer.blobs)


def test_v1_known_values_legacy_shapes():
    data = V1_LENET.read_bytes()
    layers = {layer.name: layer for layer in read_caffemodel(V1_LENET)}
    # conv1 weight: num 20, channels 1, height 5, width 5, then 2000 packed bytes
    expected = floats_after(data, bytes.fromhex("08141001180520052ad00f"))
    np.testing.assert_array_equal(layers["conv1"].blobs[0].ravel()[:3], expected)
    # ip2 weight stored as legacy 1 x 1 x 10 x 500: read as (10, 500)
    expected = floats_after(data, bytes.fromhex("08011001180a20f4032aa09c01"))
    np.testing.assert_array_equal(layers["ip2"].blobs[0][0, :3], expected)
    assert layers["conv1"].blobs[0][0, 0, 0, 0] == pytest.approx(0.2347153127)


def test_v2_known_values():
    data = V2_LENET.read_bytes()
    layers = {layer.name: layer for layer in read_caffemodel(V2_LENET)}
    # conv1's first blob: key 0x3a length 2011, then data (field 5) with 2000 bytes
    expected = floats_after(data, bytes.fromhex("3adb0f2ad00f"))
    np.testing.assert_array_equal(layers["conv1"].blobs[0].ravel()[:3], expected)
    assert layers["conv1"].blobs[0][0, 0, 0, 0] == pytest.approx(0.0483467)


def test_v1_and_v2_lenet_are_different_trainings():
    """The two sample files are two separate LeNet runs (same architecture, different values).

    So 'same arrays' cannot hold for them; what must hold is the same structure, and that the
    V1 and V2 encodings of *one* model read back identically (next test).
    """
    v1, v2 = read_caffemodel(V1_LENET), read_caffemodel(V2_LENET)
    assert [(a.name, a.type, [b.shape for b in a.blobs]) for a in v1] == \
        [(b.name, b.type, [x.shape for x in b.blobs]) for b in v2]
    assert not np.array_equal(v1[1].blobs[0], v2[1].blobs[0])


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("double", [False, True])
def test_v1_and_v2_encodings_of_one_model_read_the_same(packed, double):
    model = [(layer.name, layer.type, [np.array(b) for b in layer.blobs])
             for layer in read_caffemodel(V2_LENET)]
    as_v1 = parse_net(enc.to_bytes(enc.encode(model, version=1, packed=packed, double=double)))
    as_v2 = parse_net(enc.to_bytes(enc.encode(model, version=2, packed=packed, double=double)))
    assert as_v1.format == "V1" and as_v2.format == "V2"
    for (name, type_, blobs), a, b in zip(model, as_v1.layers, as_v2.layers):
        assert a.name == b.name == name and a.type == b.type == type_
        for original, x, y in zip(blobs, a.blobs, b.blobs):
            assert x.shape == y.shape == original.shape
            assert x.dtype == y.dtype == (np.float64 if double else np.float32)
            np.testing.assert_array_equal(x, original)
            np.testing.assert_array_equal(y, original)


def test_blobs_are_views_of_the_mapped_file():
    net = read_net(V1_LENET)
    weight = net.layers[5].blobs[0]  # ip1, 400000 floats
    assert not weight.flags.owndata and not weight.flags.writeable
    root = weight
    while isinstance(root, np.ndarray):
        root = root.base
    assert isinstance(root, (mmap.mmap, memoryview))


def test_legacy_shape_rule():
    assert canonical_legacy_shape("Convolution", 0, (64, 3, 3, 3)) == (64, 3, 3, 3)
    assert canonical_legacy_shape("Convolution", 1, (1, 1, 1, 64)) == (64,)
    assert canonical_legacy_shape("Deconvolution", 0, (21, 21, 4, 4)) == (21, 21, 4, 4)
    assert canonical_legacy_shape("InnerProduct", 0, (1, 1, 4096, 25088)) == (4096, 25088)
    assert canonical_legacy_shape("InnerProduct", 1, (1, 1, 1, 4096)) == (4096,)
    assert canonical_legacy_shape("Scale", 0, (1, 1, 1, 512)) == (1, 1, 1, 512)  # kept, loader pads
    assert canonical_legacy_shape("InnerProduct", 1, (2, 1, 1, 4096)) == (2, 1, 1, 4096)


def small_model():
    rng = np.random.default_rng(0)
    return [("data", "Data", []),
            ("conv", "Convolution", [rng.standard_normal((4, 3, 3, 3), dtype=np.float32),
                                     rng.standard_normal(4, dtype=np.float32)]),
            ("ip", "InnerProduct", [rng.standard_normal((5, 8), dtype=np.float32),
                                    rng.standard_normal(5, dtype=np.float32)])]


def unknown_fields() -> bytes:
    """One unknown field of every wire type, including a (deprecated) group with nested fields."""
    return (enc.key(900, 0) + enc.varint(2 ** 63) + enc.key(901, 1) + b"\x00" * 8 +
            enc.key(902, 2) + enc.varint(3) + b"abc" + enc.key(903, 5) + b"\x00" * 4 +
            enc.key(904, 3) + enc.key(1, 0) + b"\x01" + enc.key(905, 3) + enc.key(905, 4) +
            enc.key(904, 4))


def test_unknown_fields_are_skipped_everywhere():
    model = small_model()
    weight, bias = model[1][2]
    blob_w = enc.blob(weight) + [unknown_fields()]
    layer = enc.layer_v2("conv", "Convolution", [blob_w, enc.blob(bias)]) + [unknown_fields()]
    net = enc.net([layer], name="n") + [unknown_fields()]
    parsed = parse_net(enc.to_bytes(enc.Pieces([unknown_fields()]) + net))
    assert parsed.layers[0].name == "conv"
    np.testing.assert_array_equal(parsed.layers[0].blobs[0], weight)
    np.testing.assert_array_equal(parsed.layers[0].blobs[1], bias)


def test_double_data_wins_over_data_like_caffe():
    values = np.arange(6, dtype=np.float64).reshape(2, 3)
    b = enc.blob(values, double=True) + enc.length_delimited(5, enc.Pieces([np.zeros(6, "<f4")]))
    parsed = parse_net(enc.to_bytes(enc.net([enc.layer_v2("x", "Scale", [b])])))
    np.testing.assert_array_equal(parsed.layers[0].blobs[0], values)


def test_data_split_over_several_fields_is_joined():
    values = np.arange(10, dtype=np.float32)
    b = enc.Pieces(enc.length_delimited(7, enc.length_delimited(1, enc.varint(10))))
    b += enc.length_delimited(5, enc.Pieces([values[:4]]))
    b.append(b"".join(enc.key(5, 5) + struct.pack("<f", v) for v in values[4:7]))
    b += enc.length_delimited(5, enc.Pieces([values[7:]]))
    parsed = parse_net(enc.to_bytes(enc.net([enc.layer_v2("x", "Scale", [b])])))
    np.testing.assert_array_equal(parsed.layers[0].blobs[0], values)


# ---------------------------------------------------------------------------------------------
# Errors: one CaffeFormatError naming the file, the layer and the byte offset
# ---------------------------------------------------------------------------------------------
def test_truncated_file_names_the_layer_and_offset(tmp_path):
    data = V1_LENET.read_bytes()
    ip1 = next(layer for layer in read_caffemodel(V1_LENET) if layer.name == "ip1")
    cut = tmp_path / "cut.caffemodel"
    cut.write_bytes(data[:ip1.offset + 5000])
    with pytest.raises(CaffeFormatError) as info:
        read_net(cut)
    e = info.value
    assert e.layer == "ip1" and e.path == str(cut) and 0 < e.offset < ip1.offset
    assert "'ip1'" in str(e) and f"byte offset {e.offset}" in str(e) and str(cut) in str(e)


@pytest.mark.parametrize("cut", [1, 10, 100, 1000, 50_000, 1_000_000, 1_724_000])
def test_every_truncation_raises(cut):
    with pytest.raises(CaffeFormatError):
        parse_net(V1_LENET.read_bytes()[:cut])


def test_count_mismatch_names_layer_and_blob():
    b = enc.blob(np.zeros(6, np.float32), shape=(2, 4))
    data = enc.to_bytes(enc.net([enc.layer_v2("fc", "InnerProduct", [enc.blob(np.zeros(3, np.float32)), b])]))
    with pytest.raises(CaffeFormatError, match=r"layer 'fc', byte offset \d+: blob 1: shape \(2, 4\) "
                                               r"holds 8 values but the blob stores 6"):
        parse_net(data, "x.caffemodel")


def test_huge_shape_is_rejected_without_allocating():
    b = enc.blob(np.zeros(4, np.float32), shape=(2 ** 40, 2 ** 40))
    with pytest.raises(CaffeFormatError, match="holds"):
        parse_net(enc.to_bytes(enc.net([enc.layer_v2("x", "Scale", [b])])))


def test_negative_dimension():
    b = enc.blob(np.zeros(4, np.float32), shape=(-4,))
    with pytest.raises(CaffeFormatError, match="negative blob dimension"):
        parse_net(enc.to_bytes(enc.net([enc.layer_v2("x", "Scale", [b])])))


def test_wrong_wire_type_for_a_known_field():
    layer = enc.Pieces([enc.key(1, 2) + b"\x01x", enc.key(7, 0) + b"\x05"])  # blobs as a varint
    with pytest.raises(CaffeFormatError, match="layer 'x', byte offset 8: layer field 7 has wire type varint"):
        parse_net(enc.to_bytes(enc.net([layer], name="")))


@pytest.mark.parametrize("content, message", [
    (b"", "empty"),
    (b"\x0a\x03abc", "no `layer`"),                         # a NetParameter with only a name
    (b"PK\x03\x04" + b"\x00" * 40, "zip archive"),
    (b"\x89HDF\r\n\x1a\n" + b"\x00" * 40, "HDF5"),
    (b"name: 'LeNet'\nlayer {\n", "not a Caffe .caffemodel"),
    (b"\xff" * 20, "varint longer than 10 bytes"),
])
def test_not_a_caffemodel(tmp_path, content, message):
    path = tmp_path / "x.caffemodel"
    path.write_bytes(content)
    with pytest.raises(CaffeFormatError, match=message) as info:
        read_net(path)
    assert str(path) in str(info.value)


def test_mixed_v1_and_v2_is_rejected():
    v1 = enc.net([enc.layer_v1("a", "ReLU", [])], v1=True)
    v2 = enc.net([enc.layer_v2("b", "ReLU", [])])
    with pytest.raises(CaffeFormatError, match="mixes V1"):
        parse_net(enc.to_bytes(v1 + v2[1:]))


def test_v0_layers_are_rejected_clearly():
    layer = enc.Pieces([enc.key(1, 2) + b"\x00", enc.key(4, 2) + b"\x01a"])
    with pytest.raises(CaffeFormatError, match="V0 layer parameters"):
        parse_net(enc.to_bytes(enc.net([layer], v1=True)))


def test_unknown_v1_enum_is_kept():
    parsed = parse_net(enc.to_bytes(enc.net([enc.layer_v1("odd", 77, [])], v1=True)))
    assert parsed.layers[0].type == "V1Type77"


def test_error_is_a_value_error():
    assert issubclass(CaffeFormatError, ValueError)


@pytest.mark.parametrize("path, v1", [(V1_LENET, True), (V2_LENET, False)])
def test_a_real_file_with_a_layer_appended_twice_is_refused(path, v1):
    """The real LeNet files repeat no layer name; appending a second `ip2` (a protobuf repeated
    field concatenates) or a second blob-less `relu1` shows which repeats are refused."""
    data = path.read_bytes()
    make = enc.layer_v1 if v1 else enc.layer_v2
    ip2 = make("ip2", "InnerProduct", [enc.blob(np.zeros((10, 500), np.float32), legacy=v1)])
    twice = data + enc.to_bytes(enc.net([ip2], v1=v1)[1:])  # the layer entry alone, no net name
    with pytest.raises(CaffeFormatError, match=r"layer 'ip2', byte offset \d+: layer name occurs twice "
                                               r"\(layers #7 and #9\)"):
        parse_net(twice, "twice.caffemodel")
    relu = make("relu1", "ReLU", [])
    assert len(parse_net(data + enc.to_bytes(enc.net([relu], v1=v1)[1:])).layers) == 10


@pytest.mark.parametrize("kind, most", [("Convolution", 2), ("InnerProduct", 2), ("Deconvolution", 2),
                                        ("Scale", 2), ("PReLU", 1)])
def test_more_blobs_than_the_layer_type_has_is_refused(kind, most):
    blobs = [np.ones(3, np.float32)] * (most + 1)
    with pytest.raises(CaffeFormatError, match=rf"layer 'x'.*holds {most + 1} blobs, a {kind} has at most {most}"):
        parse_net(enc.to_bytes(enc.encode([("x", kind, blobs)])))
    assert len(parse_net(enc.to_bytes(enc.encode([("x", kind, blobs[:most])]))).layers[0].blobs) == most
