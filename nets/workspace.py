"""Activation buffers kept between forwards, for the region forward's large partial maps.

A fresh tensor of tens of MB pays its page faults when it is first written: glibc hands blocks
above its mmap threshold (at most 32 MiB) back to the system when they are freed, so every
forward faults its big maps in again. Measured on the 2-core development VM: 24 ms to allocate
and zero 65 MB (conv1_2's output at 500x500), 1.5 ms to zero the same block again once held.
Caffe allocates its blobs once per input shape; the region forward (nets/region.py) likewise
takes its large convolution outputs from blocks this module keeps, one pool per thread (so that
two threads never share a block), and gives each back when the blob is dead.

Only for inference (no autograd): a block given back is written over by the next forward, so a
tensor taken from here must never escape the forward that took it.
"""
from __future__ import annotations

import threading

import torch

__all__ = ["MIN_BYTES", "take", "give", "held_bytes", "clear"]

#: Maps smaller than this come from the allocator as usual (glibc reuses small blocks anyway).
MIN_BYTES = 8 << 20
#: Free blocks kept per thread between forwards (two suffice for VGG16's conv1_1 -> conv1_2).
MAX_FREE = 4

_local = threading.local()


def _free() -> list[torch.Tensor]:
    if not hasattr(_local, "free"):
        _local.free = []
    return _local.free


def take(shape: tuple[int, int, int, int], dtype: torch.dtype) -> torch.Tensor | None:
    """An uninitialised N x C x H x W tensor in channels_last memory from a kept block, or None
    when it is smaller than MIN_BYTES (the caller allocates as usual)."""
    n, c, h, w = shape
    nbytes = n * c * h * w * dtype.itemsize
    if nbytes < MIN_BYTES:
        return None
    free = _free()
    fits = [i for i, b in enumerate(free) if b.numel() >= nbytes]
    with torch.inference_mode(False):  # a normal tensor: written in place in and out of inference mode
        if fits:
            block = free.pop(min(fits, key=lambda i: free[i].numel()))
        else:
            block = torch.empty(nbytes, dtype=torch.uint8)
        return block[:nbytes].view(dtype).view(n, h, w, c).permute(0, 3, 1, 2)


def give(t: torch.Tensor) -> None:
    """Give back the block under `t` (a tensor from `take` that nothing reads any more)."""
    with torch.inference_mode(False):
        storage = t.untyped_storage()
        block = torch.empty(0, dtype=torch.uint8).set_(storage, 0, (storage.nbytes(),))
    free = _free()
    if any(b.data_ptr() == block.data_ptr() for b in free):
        return
    free.append(block)
    free.sort(key=torch.Tensor.numel, reverse=True)
    del free[MAX_FREE:]  # keep the largest


def held_bytes() -> int:
    """Bytes of the free blocks this thread keeps."""
    return sum(b.numel() for b in _free())


def clear() -> None:
    """Drop this thread's free blocks."""
    _free().clear()
