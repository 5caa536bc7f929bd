"""A small protobuf *encoder* for Caffe NetParameter files, used by the tests (bench/ uses the project's writer, weight_convert.caffe_writer).

Written independently of weight_convert (it imports nothing from it), from the field numbers of
BVLC caffe.proto (docs/caffe-format.md):
  NetParameter: name 1, layers 2 (V1LayerParameter), layer 100 (LayerParameter)
  LayerParameter: name 1, type 2 (string), blobs 7
  V1LayerParameter: name 4, type 5 (enum), blobs 6
  BlobProto: num 1, channels 2, height 3, width 4, data 5 (packed float), shape 7, double_data 8
  BlobShape: dim 1 (packed int64)

Payloads are kept as lists of pieces (bytes or numpy arrays) so that a 528 MB file is written
without building it in memory.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

#: V1 LayerType enum values (caffe.proto) of the layer types the tests write.
V1_ENUM = {"Data": 5, "Convolution": 4, "Deconvolution": 39, "InnerProduct": 14, "ReLU": 18,
           "Pooling": 17, "Dropout": 6, "SoftmaxWithLoss": 21, "Softmax": 20, "LRN": 15}


def varint(n: int) -> bytes:
    """Base-128 varint; negative numbers as 10-byte two's complement (protobuf int32/int64)."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def key(field: int, wire_type: int) -> bytes:
    return varint(field << 3 | wire_type)


class Pieces(list):
    """A message under construction: bytes and numpy arrays, in order."""

    def __add__(self, other: list) -> "Pieces":
        return Pieces(list(self) + list(other))

    def size(self) -> int:
        return sum(p.nbytes if isinstance(p, np.ndarray) else len(p) for p in self)


def length_delimited(field: int, payload: Pieces | bytes) -> Pieces:
    payload = Pieces(payload) if isinstance(payload, list) else Pieces([payload])
    return Pieces([key(field, 2) + varint(payload.size())] + list(payload))


def legacy_dims(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Caffe's legacy num/channels/height/width: the shape left-padded with 1s to 4 axes."""
    if len(shape) > 4:
        raise ValueError("legacy blobs have at most 4 axes")
    return (1,) * (4 - len(shape)) + tuple(shape)


def blob(array: np.ndarray, *, legacy: bool = False, packed: bool = True, double: bool = False,
         shape: tuple[int, ...] | None = None) -> Pieces:
    """A BlobProto holding ``array`` (C order).

    legacy: write num/channels/height/width (V1 style) instead of ``shape``.
    packed=False: one key per value (valid protobuf that Caffe itself never writes).
    double: store in ``double_data`` (float64) instead of ``data`` (float32).
    shape: override the recorded shape (to write inconsistent blobs).
    """
    shape = tuple(array.shape) if shape is None else tuple(shape)
    msg = Pieces()
    if legacy:
        for field, dim in zip((1, 2, 3, 4), legacy_dims(shape)):
            msg.append(key(field, 0) + varint(dim))
    else:
        dims = b"".join(varint(d) for d in shape)
        msg.extend(length_delimited(7, length_delimited(1, dims) if shape else b""))
    values = np.ascontiguousarray(array, dtype="<f8" if double else "<f4").reshape(-1)
    field = 8 if double else 5
    if packed:
        msg.extend(length_delimited(field, Pieces([values])))
    else:
        fmt, wt = ("<d", 1) if double else ("<f", 5)
        k = key(field, wt)
        msg.append(b"".join(k + struct.pack(fmt, float(v)) for v in values))
    return msg


def layer_v2(name: str, type_: str, blobs: list[Pieces]) -> Pieces:
    msg = Pieces([key(1, 2) + varint(len(name.encode())) + name.encode(),
                  key(2, 2) + varint(len(type_.encode())) + type_.encode()])
    for b in blobs:
        msg.extend(length_delimited(7, b))
    return msg


def layer_v1(name: str, type_: str | int, blobs: list[Pieces]) -> Pieces:
    if not isinstance(type_, int) and type_ not in V1_ENUM:
        raise ValueError(f"layer type {type_!r} has no V1 enum value")
    enum = type_ if isinstance(type_, int) else V1_ENUM[type_]
    msg = Pieces([key(4, 2) + varint(len(name.encode())) + name.encode(), key(5, 0) + varint(enum)])
    for b in blobs:
        msg.extend(length_delimited(6, b))
    return msg


def net(layers: list[Pieces], *, name: str = "net", v1: bool = False) -> Pieces:
    msg = Pieces([key(1, 2) + varint(len(name.encode())) + name.encode()])
    for layer in layers:
        msg.extend(length_delimited(2 if v1 else 100, layer))
    return msg


def encode(layers: list[tuple[str, str, list[np.ndarray]]], *, version: int = 2, name: str = "net",
           packed: bool = True, double: bool = False) -> Pieces:
    """A whole NetParameter from (layer name, V2 type string, [blobs]) triples.

    version 1 writes V1 ``layers`` with legacy 4-D blob shapes (as 2014-era Caffe did:
    bias 1x1x1xN, InnerProduct weight 1x1xOUTxIN); version 2 writes ``layer`` with ``shape``.
    """
    v1 = version == 1
    make_layer = layer_v1 if v1 else layer_v2
    encoded = [make_layer(n, t, [blob(b, legacy=v1, packed=packed, double=double) for b in blobs])
               for n, t, blobs in layers]
    return net(encoded, name=name, v1=v1)


def to_bytes(pieces: Pieces) -> bytes:
    return b"".join(p.tobytes() if isinstance(p, np.ndarray) else p for p in pieces)


def write(path: str | Path, pieces: Pieces) -> Path:
    """Write a message to ``path`` piece by piece (arrays without an intermediate copy)."""
    path = Path(path)
    with open(path, "wb") as f:
        for p in pieces:
            f.write(memoryview(p).cast("B") if isinstance(p, np.ndarray) else p)
    return path


def write_caffemodel(path: str | Path, layers: list[tuple[str, str, list[np.ndarray]]], *,
                     version: int = 2, name: str = "net", packed: bool = True,
                     double: bool = False) -> Path:
    """Encode ``layers`` (see ``encode``) and write them to ``path``."""
    return write(path, encode(layers, version=version, name=name, packed=packed, double=double))


# ---------------------------------------------------------------------------------------------
# ILSVRC classifier layouts (as the deploy prototxts name them), at any width
# ---------------------------------------------------------------------------------------------
def scaled(channels: int, width: float) -> int:
    """A channel count times ``width``, rounded to an even number >= 2 (the nets' width rule)."""
    return max(2, 2 * round(channels * width / 2))


def _random(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 0.1) -> np.ndarray:
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale))


def vgg16_layers(width: float = 1.0, *, seed: int = 0) -> list[tuple[str, str, list[np.ndarray]]]:
    """VGG16 (VGG_ILSVRC_16_layers) with random weights: conv1_1..conv5_3, fc6 (4096 x 25088 at
    full width), fc7, fc8 (1000 classes), plus the weightless layers, in prototxt order."""
    rng = np.random.default_rng(seed)
    layers: list[tuple[str, str, list[np.ndarray]]] = [("data", "Data", [])]
    channels = 3
    blocks = [(1, 64, 2), (2, 128, 2), (3, 256, 3), (4, 512, 3), (5, 512, 3)]
    for block, out, n in blocks:
        out = scaled(out, width)
        for i in range(1, n + 1):
            name = f"conv{block}_{i}"
            layers.append((name, "Convolution", [_random(rng, (out, channels, 3, 3)), _random(rng, (out,))]))
            layers.append((f"relu{block}_{i}", "ReLU", []))
            channels = out
        layers.append((f"pool{block}", "Pooling", []))
    c7 = scaled(4096, width)
    layers += [("fc6", "InnerProduct", [_random(rng, (c7, channels * 7 * 7), 0.01), _random(rng, (c7,))]),
               ("relu6", "ReLU", []), ("drop6", "Dropout", []),
               ("fc7", "InnerProduct", [_random(rng, (c7, c7), 0.01), _random(rng, (c7,))]),
               ("relu7", "ReLU", []), ("drop7", "Dropout", []),
               ("fc8", "InnerProduct", [_random(rng, (1000, c7), 0.01), _random(rng, (1000,))]),
               ("prob", "Softmax", [])]
    return layers


def alexnet_layers(width: float = 1.0, *, seed: int = 0) -> list[tuple[str, str, list[np.ndarray]]]:
    """CaffeNet / AlexNet with random weights (conv2, conv4, conv5 in 2 groups; fc6 4096 x 9216)."""
    rng = np.random.default_rng(seed)
    spec = [("conv1", 96, 11, 1), ("conv2", 256, 5, 2), ("conv3", 384, 3, 1), ("conv4", 384, 3, 2),
            ("conv5", 256, 3, 2)]
    layers: list[tuple[str, str, list[np.ndarray]]] = [("data", "Data", [])]
    channels = 3
    for name, out, k, group in spec:
        out = scaled(out, width)
        layers.append((name, "Convolution", [_random(rng, (out, channels // group, k, k)), _random(rng, (out,))]))
        layers.append((name.replace("conv", "relu"), "ReLU", []))
        channels = out
    c7 = scaled(4096, width)
    layers += [("fc6", "InnerProduct", [_random(rng, (c7, channels * 6 * 6), 0.01), _random(rng, (c7,))]),
               ("fc7", "InnerProduct", [_random(rng, (c7, c7), 0.01), _random(rng, (c7,))]),
               ("fc8", "InnerProduct", [_random(rng, (1000, c7), 0.01), _random(rng, (1000,))])]
    return layers


def googlenet_layers(width: float = 1.0, *, seed: int = 0, aux: bool = True) -> list[tuple[str, str, list[np.ndarray]]]:
    """BVLC GoogLeNet with random weights, from the deploy.prototxt fact table
    (fixtures/bvlc_googlenet_layers.json); ``aux`` adds the two auxiliary classifiers of its training
    net (loss1/* after inception_4a, loss2/* after inception_4d: 1x1 conv to 128, fc 1024 on 4x4,
    classifier 1000), in the training net's order, as a snapshot of that training holds them."""
    import json

    rng = np.random.default_rng(seed)
    deploy = json.loads((Path(__file__).parent / "fixtures" / "bvlc_googlenet_layers.json").read_text())["layers"]
    channels = {"data": 3}
    layers: list[tuple[str, str, list[np.ndarray]]] = []
    for layer in deploy:
        name, kind, bottoms = layer["name"], layer["type"], layer["bottom"]
        blobs: list[np.ndarray] = []
        if kind == "Convolution":
            out, k, cin = scaled(layer["num_output"], width), layer["kernel_size"], channels[bottoms[0]]
            blobs = [_random(rng, (out, cin, k, k)), _random(rng, (out,))]
            channels[name] = out
        elif kind == "InnerProduct":  # loss3/classifier on the 1024 (scaled) pooled channels
            cin = channels[bottoms[0]]
            blobs = [_random(rng, (1000, cin), 0.01), _random(rng, (1000,))]
            channels[name] = 1000
        elif kind == "Concat":
            channels[name] = sum(channels[b] for b in bottoms)
        elif bottoms and kind != "ReLU":
            channels[layer["top"][0]] = channels[bottoms[0]]
        layers.append((name, kind, blobs))
        if aux and name in ("inception_4a/output", "inception_4d/output"):
            head = "loss1" if "4a" in name else "loss2"
            c = scaled(128, width)
            fc = scaled(1024, width)
            layers += [(f"{head}/ave_pool", "Pooling", []),
                       (f"{head}/conv", "Convolution", [_random(rng, (c, channels[name], 1, 1)), _random(rng, (c,))]),
                       (f"{head}/fc", "InnerProduct", [_random(rng, (fc, c * 4 * 4), 0.01), _random(rng, (fc,))]),
                       (f"{head}/classifier", "InnerProduct", [_random(rng, (1000, fc), 0.01), _random(rng, (1000,))]),
                       (f"{head}/loss", "SoftmaxWithLoss", [])]
    return layers
