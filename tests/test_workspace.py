"""nets.workspace: the blocks the region forward keeps between forwards.

A block is handed out as a channels_last N x C x H x W tensor, comes back with `give`, is reused
by the next `take` that fits, is never shared between threads, and is a normal tensor (written in
place in and out of inference mode). The region forward through it is in tests/test_region.py.
"""
from __future__ import annotations

import threading

import torch

import nets.workspace as ws


def test_small_maps_come_from_the_allocator(monkeypatch):
    monkeypatch.setattr(ws, "MIN_BYTES", 1 << 20)
    assert ws.take((1, 8, 16, 16), torch.float32) is None  # 8 KiB
    t = ws.take((1, 64, 64, 64), torch.float32)  # 1 MiB
    assert t is not None and t.shape == (1, 64, 64, 64)
    assert t.is_contiguous(memory_format=torch.channels_last)


def test_a_block_given_back_is_reused_by_the_next_take_that_fits(monkeypatch):
    monkeypatch.setattr(ws, "MIN_BYTES", 0)
    ws.clear()
    a = ws.take((2, 4, 10, 10), torch.float32)
    ptr = a.data_ptr()
    a.fill_(3.0)
    ws.give(a)
    assert ws.held_bytes() == 2 * 4 * 10 * 10 * 4
    ws.give(a)  # twice: still one block
    assert ws.held_bytes() == 2 * 4 * 10 * 10 * 4
    b = ws.take((1, 4, 10, 10), torch.float64)  # the same 3200 bytes fit
    assert b.data_ptr() == ptr and ws.held_bytes() == 0
    c = ws.take((2, 4, 10, 10), torch.float32)  # none free: a new block
    assert c.data_ptr() != ptr
    ws.clear()


def test_at_most_max_free_blocks_are_kept_the_largest(monkeypatch):
    monkeypatch.setattr(ws, "MIN_BYTES", 0)
    ws.clear()
    blocks = [ws.take((1, 1, 1, n), torch.float32) for n in range(1, ws.MAX_FREE + 3)]
    for b in blocks:
        ws.give(b)
    sizes = sorted(b.numel() for b in ws._free())
    assert sizes == [4 * n for n in range(3, ws.MAX_FREE + 3)]
    ws.clear()
    assert ws.held_bytes() == 0


def test_threads_never_share_a_block(monkeypatch):
    monkeypatch.setattr(ws, "MIN_BYTES", 0)
    ws.clear()
    mine = ws.take((1, 2, 3, 4), torch.float32)
    ws.give(mine)
    seen = []
    t = threading.Thread(target=lambda: seen.append(ws.take((1, 2, 3, 4), torch.float32).data_ptr()))
    t.start()
    t.join()
    assert seen and seen[0] != mine.data_ptr()
    assert ws.held_bytes() == 2 * 3 * 4 * 4  # this thread's block is still free, for this thread
    ws.clear()


def test_blocks_taken_in_inference_mode_are_written_outside_it(monkeypatch):
    monkeypatch.setattr(ws, "MIN_BYTES", 0)
    ws.clear()
    with torch.inference_mode():
        t = ws.take((1, 3, 5, 5), torch.float32)
        t.zero_()
        ws.give(t)
    assert not t.is_inference()
    u = ws.take((1, 3, 5, 5), torch.float32)
    u.fill_(1.0)  # would raise for an inference tensor outside inference mode
    assert not u.is_inference() and float(u.sum()) == 75.0
    ws.clear()
