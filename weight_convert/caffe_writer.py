"""Write `.caffemodel` files (binary NetParameter) without Caffe or protobuf.

Used to generate VGG16-shaped weights for the smoke run and to export nets back to Caffe.
Field numbers are those of `caffe.proto` (see docs/caffe-format.md): V2 files hold
`layer` (100) entries with a string type and `BlobProto.shape`; V1 files hold `layers` (2) entries
with an enum type and the legacy num/channels/height/width.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

#: V1 LayerType enum values of the layer types that carry blobs.
V1_TYPES = {"Convolution": 4, "InnerProduct": 14, "Deconvolution": 39}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _int_field(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def encode_blob(array: np.ndarray, *, legacy_shape: bool) -> bytes:
    """A BlobProto: shape (field 7) or legacy 4-D num/channels/height/width, data packed float32."""
    array = np.ascontiguousarray(array, dtype="<f4")
    if legacy_shape:
        dims = (1,) * (4 - array.ndim) + tuple(array.shape)
        if len(dims) != 4:
            raise ValueError(f"a legacy blob holds at most 4 dimensions, not {array.shape}")
        head = b"".join(_int_field(n, d) for n, d in zip((1, 2, 3, 4), dims))
    else:
        head = _field(7, _field(1, b"".join(_varint(d) for d in array.shape)))
    return head + _field(5, array.tobytes())


def encode_net(name: str, layers: Iterable[tuple[str, str, Sequence[np.ndarray]]], *, version: int = 2) -> bytes:
    """A NetParameter with one entry per (layer name, Caffe type, blobs)."""
    if version not in (1, 2):
        raise ValueError(f"version must be 1 or 2, not {version}")
    out = [_field(1, name.encode())]
    for layer_name, layer_type, blobs in layers:
        if version == 2:
            body = _field(1, layer_name.encode()) + _field(2, layer_type.encode())
            body += b"".join(_field(7, encode_blob(b, legacy_shape=False)) for b in blobs)
            out.append(_field(100, body))
        else:
            if layer_type not in V1_TYPES:
                raise ValueError(f"layer type {layer_type!r} has no V1 enum value")
            body = _field(4, layer_name.encode()) + _int_field(5, V1_TYPES[layer_type])
            body += b"".join(_field(6, encode_blob(b, legacy_shape=True)) for b in blobs)
            out.append(_field(2, body))
    return b"".join(out)


def write_caffemodel(path: str | os.PathLike, name: str, layers: Iterable[tuple[str, str, Sequence[np.ndarray]]],
                     *, version: int = 2) -> Path:
    """Write a `.caffemodel` atomically (temporary file, then rename); return its path."""
    path = Path(path)
    data = encode_net(name, layers, version=version)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

