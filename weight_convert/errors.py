"""Errors raised by the Caffe weight converter."""
from __future__ import annotations


class CaffeFormatError(ValueError):
    """A .caffemodel file is truncated, corrupted or not a Caffe NetParameter.

    Attributes: ``path`` (the file), ``offset`` (absolute byte offset of the problem, or
    None), ``layer`` (name of the layer being decoded, or None) and ``reason``.
    """

    def __init__(self, path: str, reason: str, *, offset: int | None = None,
                 layer: str | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        self.offset = offset
        self.layer = layer
        where = []
        if layer is not None:
            where.append(f"layer {layer!r}")
        if offset is not None:
            where.append(f"byte offset {offset}")
        prefix = f"{self.path}: " + (", ".join(where) + ": " if where else "")
        super().__init__(prefix + reason)


class WeightMismatchError(ValueError):
    """Blobs from a caffemodel do not fit a net (shape mismatch, unfilled parameter, bad source).

    ``layer`` names the offending layer (or None when the problem is not about one layer).
    """

    def __init__(self, message: str, *, layer: str | None = None) -> None:
        self.layer = layer
        super().__init__(message)
