"""Bounds-checked protobuf wire-format primitives (varints, field headers, skipping).

Every function takes a buffer (anything indexable by int returning a byte value: bytes,
memoryview) and an exclusive ``end`` of the enclosing message, and raises ``WireError``
with the absolute byte offset when a read would cross ``end``. No function allocates more
than a few Python ints, so malformed input cannot make them allocate or loop unboundedly:
every loop advances the position by at least one byte.
"""
from __future__ import annotations

VARINT, FIXED64, LENGTH_DELIMITED, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5
WIRE_TYPE_NAMES = {VARINT: "varint", FIXED64: "fixed64", LENGTH_DELIMITED: "length-delimited",
                   START_GROUP: "start-group", END_GROUP: "end-group", FIXED32: "fixed32"}
MAX_GROUP_DEPTH = 64  # protobuf's own default recursion limit is 100; Caffe never uses groups


class WireError(Exception):
    """Malformed wire data at absolute byte ``offset``."""

    def __init__(self, offset: int, reason: str) -> None:
        self.offset = offset
        self.reason = reason
        super().__init__(f"byte offset {offset}: {reason}")


def read_varint(buf, pos: int, end: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return (unsigned value, next position)."""
    result = 0
    shift = 0
    start = pos
    while True:
        if pos >= end:
            raise WireError(start, "truncated varint (message ends inside it)")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError(start, "varint longer than 10 bytes")


def to_int64(value: int) -> int:
    """Reinterpret an unsigned 64-bit varint as two's-complement int64 (int32 negatives use 10 bytes)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def read_key(buf, pos: int, end: int) -> tuple[int, int, int]:
    """Decode a field key at ``pos``; return (field number, wire type, next position)."""
    key, nxt = read_varint(buf, pos, end)
    field, wire_type = key >> 3, key & 7
    if field == 0:
        raise WireError(pos, "field number 0 is invalid")
    if wire_type in (6, 7):
        raise WireError(pos, f"invalid wire type {wire_type} (field {field})")
    return field, wire_type, nxt


def read_length(buf, pos: int, end: int) -> tuple[int, int]:
    """Decode the length prefix of a length-delimited field; check it fits before ``end``.

    Returns (payload start, payload end).
    """
    length, start = read_varint(buf, pos, end)
    if length > end - start:
        raise WireError(pos, f"length {length} runs past the end of the enclosing message "
                             f"({end - start} bytes left)")
    return start, start + length


def skip_field(buf, field: int, wire_type: int, pos: int, end: int, key_pos: int) -> int:
    """Skip the value of a field whose key was read at ``key_pos``; return the next position.

    Groups (deprecated, unused by Caffe) are skipped by matching start/end-group keys
    iteratively, with a depth limit.
    """
    if wire_type == VARINT:
        return read_varint(buf, pos, end)[1]
    if wire_type == FIXED64:
        return _advance(pos, 8, end, field)
    if wire_type == FIXED32:
        return _advance(pos, 4, end, field)
    if wire_type == LENGTH_DELIMITED:
        return read_length(buf, pos, end)[1]
    if wire_type == END_GROUP:
        raise WireError(key_pos, f"unmatched end-group (field {field})")
    # START_GROUP: walk until the matching END_GROUP.
    stack = [field]
    while stack:
        if len(stack) > MAX_GROUP_DEPTH:
            raise WireError(key_pos, "groups nested too deeply")
        inner_pos = pos
        f, wt, pos = read_key(buf, pos, end)
        if wt == END_GROUP:
            if f != stack[-1]:
                raise WireError(inner_pos, f"end-group for field {f} inside group {stack[-1]}")
            stack.pop()
        elif wt == START_GROUP:
            stack.append(f)
        else:
            pos = skip_field(buf, f, wt, pos, end, inner_pos)
    return pos


def _advance(pos: int, n: int, end: int, field: int) -> int:
    if n > end - pos:
        raise WireError(pos, f"truncated fixed-width value (field {field})")
    return pos + n
