"""Read a binary .caffemodel (a serialized caffe.NetParameter) with nothing but Python and numpy.

Format facts: docs/caffe-format.md (field numbers from BVLC caffe.proto).

* V2 files store layers in NetParameter.layer (field 100: name 1, type 2 string, blobs 7);
  V1 files in NetParameter.layers (field 2: name 4, type 5 enum, blobs 6). V1 enum types are
  mapped to the V2 type strings (``layer_types.V1_LAYER_TYPES``).
* BlobProto: shape 7 (BlobShape, dim 1 int64) or legacy num/channels/height/width (1-4);
  values in ``data`` (5, float32) or ``double_data`` (8, float64), packed or not. As in Caffe's
  Blob::FromProto, ``double_data`` wins when both are present, and the legacy 4-D fields win
  over ``shape`` when any of them is set.
* Unknown fields are skipped by wire type, as protobuf does. A *known* field with the wrong
  wire type is treated as corruption (Caffe never writes one), not skipped.

Memory: the file is memory-mapped and packed float data are returned as ``numpy.frombuffer``
views of the mapping (little-endian, read-only, possibly unaligned), so a 528 MB VGG16 file
is never copied by the reader. Only unpacked (non-packed) or split data, which Caffe does not
write, are gathered into a new array, never larger than the bytes that hold them.

Legacy 1-padding rule (V1-era blobs carry a 4-D num x channels x height x width shape that
left-pads the real shape with 1s; Caffe's Blob::ShapeEquals compares them that way):
    - Convolution / Deconvolution weight (blob 0): kept 4-D (out, in/group, kh, kw) — or
      (in, out/group, kh, kw) for Deconvolution — exactly as stored.
    - Convolution / Deconvolution / InnerProduct bias (blob 1) stored 1x1x1xN -> (N,).
    - InnerProduct weight (blob 0) stored 1x1xOUTxIN -> (OUT, IN).
    - Any other layer type, or a blob whose leading dims are not 1: kept 4-D as stored; the
      loader then matches it the way Caffe does (target shape left-padded with 1s to 4-D).
``CaffeLayer.legacy_shape`` records which blobs came from the legacy fields.

Robustness: every length is checked against the bytes left in its enclosing message before
anything is sliced, element counts are checked against the shape product (computed with
Python ints, so no overflow), and every loop advances at least one byte. The Python objects
the reader creates (layers, blobs, copies of unpacked data) are charged against a budget of
twice the input size plus 1 MiB, so that a crafted file of thousands of empty messages is
refused rather than inflated ~70x. Any problem raises ``CaffeFormatError`` naming the file,
the layer and the absolute byte offset.

Layer checks (``check_layers``, run on every decoded file, so they hold for the dump, --list,
--net, --from and ``load_caffemodel`` alike):
    - a layer name that occurs twice is refused when any of its copies holds blobs: which copy's
      weights were meant is ambiguous (Caffe's copy_from would silently take the later one).
      Blob-less layers (ReLU, Pooling, Data, ...) may share a name: a train_val prototxt has two
      data layers of one name (one per phase), and nothing is read from them. Neither real LeNet
      file (tests/fixtures/caffemodels) repeats any name.
    - a layer holding more blobs than its type has is refused (``MAX_BLOBS``: Convolution,
      Deconvolution, InnerProduct, Scale, Embed: weight + bias; Bias, PReLU: 1; BatchNorm: 3).
      Layers of other types are bounded when they are matched onto a net (``load.plan_transfer``).
"""
from __future__ import annotations

import codecs
import math
import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import CaffeFormatError
from .layer_types import v1_type_name
from .wire import (FIXED32, FIXED64, LENGTH_DELIMITED, VARINT, WIRE_TYPE_NAMES, WireError,
                   read_key, read_length, read_varint, skip_field, to_int64)

MAX_BLOB_AXES = 32  # Caffe's kMaxBlobAxes

# NetParameter fields
_NET_NAME, _NET_LAYERS_V1, _NET_LAYER_V2 = 1, 2, 100
# LayerParameter (V2) fields
_V2_NAME, _V2_TYPE, _V2_BLOBS = 1, 2, 7
# V1LayerParameter fields
_V1_V0PAYLOAD, _V1_NAME, _V1_TYPE, _V1_BLOBS = 1, 4, 5, 6
# BlobProto fields
_B_NUM, _B_CHANNELS, _B_HEIGHT, _B_WIDTH = 1, 2, 3, 4
_B_DATA, _B_DIFF, _B_SHAPE, _B_DOUBLE_DATA, _B_DOUBLE_DIFF = 5, 6, 7, 8, 9

_FLOAT32 = np.dtype("<f4")
_FLOAT64 = np.dtype("<f8")


@dataclass(frozen=True)
class CaffeLayer:
    """One layer of a caffemodel.

    ``blobs`` are numpy arrays in the file's blob order ([weight, bias] for Convolution,
    Deconvolution and InnerProduct), float32 (``data``) or float64 (``double_data``), in the
    canonical shapes described in the module docstring. They are read-only views of the
    memory-mapped file where possible. ``offset`` is the byte offset of the layer's message.
    """

    name: str
    type: str
    blobs: list[np.ndarray]
    offset: int = 0
    legacy_shape: tuple[bool, ...] = ()


@dataclass
class CaffeNet:
    """A decoded caffemodel: net name, format ("V1" or "V2"), layers in file order."""

    path: str
    name: str
    format: str
    layers: list[CaffeLayer]
    size: int
    _buffer: object = field(default=None, repr=False)
    _fd: int | None = field(default=None, repr=False)  # kept open for file_span (os.preadv etc.)

    def __del__(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _offset_of(self, array: np.ndarray) -> int | None:
        """Byte offset in the file of ``array``'s first element, if it views the mapped file."""
        if not isinstance(self._buffer, mmap.mmap) or array.size == 0:
            return None
        base = np.frombuffer(self._buffer, np.uint8, count=0).__array_interface__["data"][0]
        start = array.__array_interface__["data"][0] - base
        return start if 0 <= start < self.size else None

    def file_span(self, array: np.ndarray) -> tuple[int, int] | None:
        """(file descriptor, byte offset) when ``array`` is a C-contiguous view of this file, so
        that its bytes can be copied file-to-file or read straight into a destination buffer."""
        start = self._offset_of(array)
        if start is None or self._fd is None or not array.flags.c_contiguous \
                or start + array.nbytes > self.size:
            return None
        return self._fd, start

    def release(self, array: np.ndarray) -> None:
        """Drop the mapped pages behind ``array`` from this process's resident memory.

        Only meaningful for views of a memory-mapped file (the page cache keeps the data; a
        later read simply faults the pages back in). A no-op for anything else.
        """
        start = self._offset_of(array)
        if start is None or not hasattr(mmap, "MADV_DONTNEED"):
            return
        stop = min(start + array.nbytes, self.size)
        first = start // mmap.PAGESIZE * mmap.PAGESIZE
        self._buffer.madvise(mmap.MADV_DONTNEED, first, stop - first)


def read_caffemodel(path: str | os.PathLike) -> list[CaffeLayer]:
    """Read a .caffemodel and return its layers in file order (see ``CaffeLayer``)."""
    return read_net(path).layers


def read_net(path: str | os.PathLike) -> CaffeNet:
    """Memory-map and decode a .caffemodel file; raise ``CaffeFormatError`` if it is not one.

    The file stays open (and mapped) as long as the returned net or any of its arrays lives.
    """
    path = Path(path)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            raise CaffeFormatError(str(path), "empty file, not a Caffe .caffemodel", offset=0)
        net = parse_net(mmap.mmap(fd, 0, access=mmap.ACCESS_READ), str(path))
    except BaseException:
        os.close(fd)
        raise
    net._fd = fd  # owned by the net from now on
    return net


def parse_net(buffer, label: str = "<bytes>") -> CaffeNet:
    """Decode a NetParameter held in ``buffer`` (bytes, bytearray, mmap or memoryview).

    Returned arrays view ``buffer``; ``label`` names it in error messages.
    """
    size = len(buffer)
    if size == 0:
        raise CaffeFormatError(label, "empty input, not a Caffe .caffemodel", offset=0)
    decoder = _Decoder(buffer, label)
    name, fmt, layers = decoder.net()
    return CaffeNet(path=label, name=name, format=fmt, layers=layers, size=size, _buffer=buffer)


_FOREIGN_SIGNATURES = {
    b"PK\x03\x04": "a zip archive (a PyTorch .pt or numpy .npz file?)",
    b"\x89HDF": "an HDF5 file",
    b"\x80\x02": "a Python pickle",
    b"\x93NUMPY": "a numpy .npy file",
}


#: Python memory the reader spends per layer / blob / data segment (objects, not data; measured
#: with tracemalloc, rounded up). Charged against an allocation budget, see ``_Decoder.charge``.
_LAYER_COST, _BLOB_COST, _SEGMENT_COST = 256, 160, 128


class _Decoder:
    def __init__(self, buffer, label: str) -> None:
        self.label = label
        self.mv = memoryview(buffer).cast("B") if not isinstance(buffer, (bytes, bytearray)) \
            else memoryview(buffer)
        self.u8 = np.frombuffer(buffer, np.uint8)
        self.size = len(self.u8)
        # Tiny messages cost far more as Python objects than as bytes (an empty layer is 3 bytes
        # on disk, ~200 bytes in memory), so without a budget a crafted file could make the
        # reader allocate ~70x its size. Real caffemodels use a tiny fraction of this budget.
        self.budget = 2 * self.size + (1 << 20)

    def charge(self, nbytes: int, offset: int, layer: str | None = None) -> None:
        """Account for ``nbytes`` of memory the decoded result will hold; fail past the budget."""
        self.budget -= nbytes
        if self.budget < 0:
            self.fail("implausible structure: decoding it would allocate more than twice the "
                      "file's size (too many layers, blobs or data fields for the bytes they take)",
                      offset, layer)

    # -- errors -----------------------------------------------------------------------
    def fail(self, reason: str, offset: int | None, layer: str | None = None):
        raise CaffeFormatError(self.label, reason, offset=offset, layer=layer)

    def not_caffe_hint(self) -> str:
        head = bytes(self.mv[:8])
        for sig, what in _FOREIGN_SIGNATURES.items():
            if head.startswith(sig):
                return f" (the file looks like {what})"
        return ""

    # -- NetParameter -----------------------------------------------------------------
    def net(self) -> tuple[str, str, list[CaffeLayer]]:
        mv, end = self.mv, self.size
        pos = 0
        net_name = ""
        layers: list[CaffeLayer] = []
        formats = set()
        try:
            while pos < end:
                key_pos = pos
                fno, wt, pos = read_key(mv, pos, end)
                if fno in (_NET_NAME, _NET_LAYERS_V1, _NET_LAYER_V2):
                    if wt != LENGTH_DELIMITED:
                        self.fail(f"NetParameter field {fno} has wire type "
                                  f"{WIRE_TYPE_NAMES.get(wt, wt)}, expected length-delimited: "
                                  f"not a Caffe .caffemodel{self.not_caffe_hint()}", key_pos)
                    try:
                        start, stop = read_length(mv, pos, end)
                    except WireError as e:
                        if fno == _NET_NAME:
                            raise
                        name = self.peek_layer_name(pos, end, fno == _NET_LAYERS_V1)
                        self.fail(f"layer message cut short: {e.reason} (truncated file?)",
                                  e.offset, self.layer_label(name, len(layers)))
                    pos = stop
                    if fno == _NET_NAME:
                        net_name = self.text(start, stop, "net name", None)
                    else:
                        v1 = fno == _NET_LAYERS_V1
                        formats.add("V1" if v1 else "V2")
                        self.charge(_LAYER_COST, key_pos)
                        layers.append(self.layer(start, stop, len(layers), v1))
                else:
                    pos = skip_field(mv, fno, wt, pos, end, key_pos)
        except WireError as e:
            if layers:
                self.fail(f"after layer {layers[-1].name!r}: {e.reason} in the NetParameter",
                          e.offset)
            self.fail(f"{e.reason} in the NetParameter: not a Caffe .caffemodel"
                      f"{self.not_caffe_hint()}", e.offset)
        if not layers:
            self.fail("no `layer` (field 100) or `layers` (field 2) entries: not a Caffe "
                      f".caffemodel{self.not_caffe_hint()}", 0)
        if len(formats) > 1:
            self.fail("the file mixes V1 `layers` (field 2) and V2 `layer` (field 100) entries",
                      0)
        check_layers(layers, self.label)
        return net_name, formats.pop(), layers

    def peek_layer_name(self, pos: int, end: int, v1: bool) -> str | None:
        """Best effort: the name of a layer whose message runs past ``end``, if its name field
        lies within the bytes that are there."""
        try:
            _, pos = read_varint(self.mv, pos, end)
            while pos < end:
                key_pos = pos
                fno, wt, pos = read_key(self.mv, pos, end)
                if fno == (_V1_NAME if v1 else _V2_NAME) and wt == LENGTH_DELIMITED:
                    s, e = read_length(self.mv, pos, end)
                    return _utf8(self.mv[s:e])
                pos = skip_field(self.mv, fno, wt, pos, end, key_pos)
        except (WireError, UnicodeDecodeError):
            return None
        return None

    def text(self, start: int, stop: int, what: str, layer: str | None) -> str:
        self.charge(stop - start, start, layer)
        try:
            return _utf8(self.mv[start:stop])
        except UnicodeDecodeError as e:
            self.fail(f"{what} is not valid UTF-8", start + e.start, layer)

    # -- LayerParameter / V1LayerParameter ---------------------------------------------
    def layer(self, start: int, end: int, index: int, v1: bool) -> CaffeLayer:
        mv = self.mv
        f_name, f_type, f_blobs = (_V1_NAME, _V1_TYPE, _V1_BLOBS) if v1 else \
            (_V2_NAME, _V2_TYPE, _V2_BLOBS)
        name: str | None = None
        ltype = ""
        blob_spans: list[tuple[int, int]] = []
        pos = start
        try:
            while pos < end:
                key_pos = pos
                fno, wt, pos = read_key(mv, pos, end)
                if fno == f_name or fno == f_blobs or (fno == f_type and not v1):
                    if wt != LENGTH_DELIMITED:
                        self.fail(f"layer field {fno} has wire type {WIRE_TYPE_NAMES.get(wt, wt)}"
                                  ", expected length-delimited", key_pos,
                                  self.layer_label(name, index))
                    s, e = read_length(mv, pos, end)
                    pos = e
                    if fno == f_name:
                        name = self.text(s, e, "layer name", self.layer_label(name, index))
                    elif fno == f_type:
                        ltype = self.text(s, e, "layer type", self.layer_label(name, index))
                    else:
                        self.charge(_BLOB_COST, key_pos, self.layer_label(name, index))
                        blob_spans.append((s, e))
                elif v1 and fno == f_type:
                    if wt != VARINT:
                        self.fail(f"V1 layer type has wire type {WIRE_TYPE_NAMES.get(wt, wt)}, "
                                  "expected varint (enum)", key_pos, self.layer_label(name, index))
                    value, pos = read_varint(mv, pos, end)
                    ltype = v1_type_name(to_int64(value))
                elif v1 and fno == _V1_V0PAYLOAD:
                    self.fail("V0 layer parameters (pre-2014 Caffe format) are not supported; "
                              "upgrade the file with Caffe's upgrade_net_proto_binary", key_pos,
                              self.layer_label(name, index))
                else:
                    pos = skip_field(mv, fno, wt, pos, end, key_pos)
        except WireError as e:
            self.fail(e.reason, e.offset, self.layer_label(name, index))
        label = self.layer_label(name, index)
        blobs: list[np.ndarray] = []
        legacy: list[bool] = []
        for i, (s, e) in enumerate(blob_spans):
            try:
                array, is_legacy = self.blob(s, e, i, ltype, label)
            except WireError as err:
                self.fail(f"blob {i}: {err.reason}", err.offset, label)
            except _BlobError as err:
                self.fail(f"blob {i}: {err.reason}", err.offset, label)
            blobs.append(array)
            legacy.append(is_legacy)
        return CaffeLayer(name=name if name is not None else "", type=ltype, blobs=blobs,
                          offset=start, legacy_shape=tuple(legacy))

    @staticmethod
    def layer_label(name: str | None, index: int) -> str:
        return name if name else f"#{index} (unnamed)"

    # -- BlobProto ----------------------------------------------------------------------
    def blob(self, start: int, end: int, index: int, layer_type: str,
             label: str) -> tuple[np.ndarray, bool]:
        mv = self.mv
        legacy = {}
        dims: list[int] = []
        data: list[np.ndarray] = []
        double: list[np.ndarray] = []
        pos = start
        while pos < end:
            key_pos = pos
            fno, wt, pos = read_key(mv, pos, end)
            if fno in (_B_NUM, _B_CHANNELS, _B_HEIGHT, _B_WIDTH):
                self.expect(wt, VARINT, fno, key_pos)
                value, pos = read_varint(mv, pos, end)
                value = to_int64(value)
                if not 0 <= value < 2 ** 31:
                    raise _BlobError(key_pos, f"legacy dimension (field {fno}) is {value}")
                legacy[fno] = value
            elif fno == _B_SHAPE:
                self.expect(wt, LENGTH_DELIMITED, fno, key_pos)
                s, e = read_length(mv, pos, end)
                pos = e
                self.shape_dims(s, e, dims)
            elif fno in (_B_DATA, _B_DOUBLE_DATA):
                dtype, fixed_wt = (_FLOAT32, FIXED32) if fno == _B_DATA else (_FLOAT64, FIXED64)
                out = data if fno == _B_DATA else double
                if wt == LENGTH_DELIMITED:
                    s, e = read_length(mv, pos, end)
                    if (e - s) % dtype.itemsize:
                        raise _BlobError(pos, f"packed field {fno} holds {e - s} bytes, not a "
                                              f"multiple of {dtype.itemsize}")
                    self.charge(_SEGMENT_COST, key_pos, label)
                    out.append(self.u8[s:e].view(dtype))
                    pos = e
                elif wt == fixed_wt:
                    values, pos = self.unpacked_run(key_pos, end, dtype)
                    self.charge(_SEGMENT_COST + values.nbytes, key_pos, label)
                    out.append(values)
                else:
                    raise _BlobError(key_pos, f"field {fno} has wire type "
                                              f"{WIRE_TYPE_NAMES.get(wt, wt)}")
            elif fno in (_B_DIFF, _B_DOUBLE_DIFF) and wt in (FIXED32, FIXED64):
                width = 4 if wt == FIXED32 else 8
                pos = self.skip_unpacked_run(key_pos, end, width)
            else:
                pos = skip_field(mv, fno, wt, pos, end, key_pos)

        if legacy:  # Caffe: any legacy field set -> 4-D (num, channels, height, width)
            shape = tuple(legacy.get(f, 0) for f in (_B_NUM, _B_CHANNELS, _B_HEIGHT, _B_WIDTH))
        else:
            shape = tuple(dims)
        values = double if double else data
        count = sum(v.size for v in values)
        expected = math.prod(shape)
        if not values and expected:
            raise _BlobError(start, f"shape {shape} but no data")
        if count != expected:
            raise _BlobError(start, f"shape {shape} holds {expected} values but the blob stores "
                                    f"{count}")
        if len(values) > 1:
            self.charge(count * values[0].itemsize, start, label)
        array = values[0] if len(values) == 1 else (
            np.concatenate(values) if values else np.zeros(0, _FLOAT32))
        if len(values) != 1:
            array.flags.writeable = False
        if legacy:
            shape = canonical_legacy_shape(layer_type, index, shape)
        return array.reshape(shape), bool(legacy)

    def shape_dims(self, start: int, end: int, dims: list[int]) -> None:
        mv = self.mv
        pos = start
        while pos < end:
            key_pos = pos
            fno, wt, pos = read_key(mv, pos, end)
            if fno == 1 and wt == LENGTH_DELIMITED:
                s, e = read_length(mv, pos, end)
                pos = s
                while pos < e:
                    dim_pos = pos
                    value, pos = read_varint(mv, pos, e)
                    self.add_dim(dims, to_int64(value), dim_pos)
            elif fno == 1 and wt == VARINT:
                value, pos = read_varint(mv, pos, end)
                self.add_dim(dims, to_int64(value), key_pos)
            elif fno == 1:
                raise _BlobError(key_pos, f"BlobShape.dim has wire type {WIRE_TYPE_NAMES.get(wt, wt)}")
            else:
                pos = skip_field(mv, fno, wt, pos, end, key_pos)

    @staticmethod
    def add_dim(dims: list[int], value: int, offset: int) -> None:
        if value < 0:
            raise _BlobError(offset, f"negative blob dimension {value}")
        if len(dims) >= MAX_BLOB_AXES:
            raise _BlobError(offset, f"blob has more than {MAX_BLOB_AXES} axes")
        dims.append(value)

    @staticmethod
    def expect(wt: int, wanted: int, fno: int, offset: int) -> None:
        if wt != wanted:
            raise _BlobError(offset, f"field {fno} has wire type {WIRE_TYPE_NAMES.get(wt, wt)}, "
                                     f"expected {WIRE_TYPE_NAMES[wanted]}")

    def run_length(self, pos: int, end: int, width: int) -> int:
        """Number of consecutive ``width``-byte records from ``pos`` whose first byte equals the
        byte at ``pos`` (unpacked repeated fixed-width values repeat a one-byte key).

        Scans in doubling windows so the cost is proportional to the run, not the message.
        """
        tag = self.u8[pos]
        n_max = (end - pos) // width
        run, window = 0, 64
        while run < n_max:
            n = min(window, n_max - run)
            lo = pos + run * width
            keys = self.u8[lo:lo + n * width:width]
            mismatch = np.flatnonzero(keys != tag)
            if mismatch.size:
                return run + int(mismatch[0])
            run += n
            window *= 2
        return run

    def unpacked_run(self, key_pos: int, end: int, dtype: np.dtype) -> tuple[np.ndarray, int]:
        """Gather a run of unpacked (one key per value) fixed-width values into a new array."""
        width = 1 + dtype.itemsize
        if self.u8[key_pos] & 0x80:  # multi-byte key: decode one value at a time
            _, _, pos = read_key(self.mv, key_pos, end)
            if dtype.itemsize > end - pos:
                raise WireError(pos, "truncated fixed-width value")
            return self.u8[pos:pos + dtype.itemsize].copy().view(dtype), pos + dtype.itemsize
        run = self.run_length(key_pos, end, width)
        if run == 0:
            raise WireError(key_pos + 1, "truncated fixed-width value")
        block = self.u8[key_pos:key_pos + run * width].reshape(run, width)[:, 1:]
        return np.ascontiguousarray(block).view(dtype).reshape(run), key_pos + run * width

    def skip_unpacked_run(self, key_pos: int, end: int, width: int) -> int:
        if self.u8[key_pos] & 0x80:
            fno, wt, pos = read_key(self.mv, key_pos, end)
            return skip_field(self.mv, fno, wt, pos, end, key_pos)
        run = self.run_length(key_pos, end, 1 + width)
        if run == 0:
            raise WireError(key_pos + 1, "truncated fixed-width value")
        return key_pos + run * (1 + width)


class _BlobError(Exception):
    def __init__(self, offset: int, reason: str) -> None:
        self.offset = offset
        self.reason = reason
        super().__init__(reason)


_CONV_TYPES = ("Convolution", "Deconvolution")
_BIASED_TYPES = ("Convolution", "Deconvolution", "InnerProduct")


def canonical_legacy_shape(layer_type: str, index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Strip Caffe's legacy 1-padding from a 4-D num/channels/height/width blob shape.

    See the module docstring for the rule. ``index`` is the blob's position in its layer.
    """
    n, c, h, w = shape
    if layer_type in _CONV_TYPES and index == 0:
        return shape
    if layer_type in _BIASED_TYPES and index == 1 and n == c == h == 1:
        return (w,)
    if layer_type == "InnerProduct" and index == 0 and n == c == 1:
        return (h, w)
    return shape


#: Most blobs a layer of each type holds in Caffe (weight, then bias / the other statistics).
MAX_BLOBS = {"Convolution": 2, "Deconvolution": 2, "InnerProduct": 2, "Scale": 2, "Embed": 2,
             "Bias": 1, "PReLU": 1, "BatchNorm": 3}


def check_layers(layers: list[CaffeLayer], label: str, *, offsets: bool = True) -> None:
    """Refuse a repeated layer name among layers with blobs, and more blobs than a layer's type
    has (see the module docstring); ``CaffeFormatError`` names ``label`` and the layer (and the
    byte offsets, when ``offsets``: the layers were decoded from a file)."""
    first: dict[str, tuple[int, CaffeLayer]] = {}
    for index, layer in enumerate(layers):
        shown = _Decoder.layer_label(layer.name, index)
        at = layer.offset if offsets else None
        most = MAX_BLOBS.get(layer.type)
        if most is not None and len(layer.blobs) > most:
            raise CaffeFormatError(label, f"{layer.type} layer holds {len(layer.blobs)} blobs, a "
                                          f"{layer.type} has at most {most}", offset=at, layer=shown)
        earlier_index, earlier = first.setdefault(layer.name, (index, layer))
        if earlier is not layer and (earlier.blobs or layer.blobs):
            raise CaffeFormatError(label, f"layer name occurs twice (layers #{earlier_index} and "
                                          f"#{index}): which copy's weights are meant is "
                                          "ambiguous", offset=at, layer=shown)


_UTF8_CHUNK = 1 << 16


def _utf8(view: memoryview) -> str:
    """Decode UTF-8. A long field is validated chunk by chunk first, so that a damaged length
    that spans most of the file fails without a full-size copy and decode buffer (UnicodeDecodeError
    ``start`` counts from the field's first byte either way)."""
    if len(view) > _UTF8_CHUNK:
        decoder = codecs.getincrementaldecoder("utf-8")()
        for at in range(0, len(view), _UTF8_CHUNK):
            try:
                decoder.decode(view[at:at + _UTF8_CHUNK], final=at + _UTF8_CHUNK >= len(view))
            except UnicodeDecodeError:
                bytes(view[:at + _UTF8_CHUNK]).decode("utf-8")  # the same first error, its offset exact
                raise
    return bytes(view).decode("utf-8")
