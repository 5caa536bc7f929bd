"""Property test: mutated caffemodels either parse or raise CaffeFormatError, quickly and without
allocating far beyond the file's size.

Mutations of the real LeNet samples (truncation, byte flips, inserted garbage, deleted ranges),
plus the same on a small file with every feature (V1 legacy shapes, unpacked and double data),
where a mutation is much more likely to hit structure than float data. Positions are drawn
uniformly or near a layer's start, where the keys and lengths are.
"""
from __future__ import annotations

import signal
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from weight_convert import CaffeFormatError, parse_net, read_caffemodel

import caffe_encoder as enc  # tests/caffe_encoder.py (tests/conftest.py puts tests/ on sys.path)

FIXTURES = Path(__file__).parent / "fixtures" / "caffemodels"
SECONDS_PER_PARSE = 5  # a hard stop; a normal parse of these files takes milliseconds
ALLOWED_PEAK = 2.0     # tracemalloc peak / file size (numpy views of the input allocate nothing)


def _small_file() -> bytes:
    rng = np.random.default_rng(1)
    layers = [("data", "Data", []),
              ("conv", "Convolution", [rng.standard_normal((3, 2, 3, 3)).astype(np.float32),
                                       rng.standard_normal(3).astype(np.float32)]),
              ("ip", "InnerProduct", [rng.standard_normal((4, 6)).astype(np.float32),
                                      rng.standard_normal(4).astype(np.float32)])]
    v1_unpacked = enc.to_bytes(enc.encode(layers, version=1, packed=False))
    v2_double = enc.to_bytes(enc.encode(layers, version=2, double=True))
    return v1_unpacked, v2_double


SAMPLES = [(FIXTURES / "lenet_v1.caffemodel").read_bytes(), (FIXTURES / "lenet_v2.caffemodel").read_bytes(),
           *_small_file()]
HOT_SPOTS = [[0] + [layer.offset for layer in parse_net(s).layers] for s in SAMPLES]


@contextmanager
def time_limit(seconds: float):
    def on_alarm(signum, frame):
        raise TimeoutError(f"parse took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@st.composite
def positions(draw, sample: int, size: int) -> int:
    if draw(st.booleans()):
        return draw(st.integers(0, max(0, size - 1)))
    base = draw(st.sampled_from(HOT_SPOTS[sample]))
    return min(size - 1, max(0, base + draw(st.integers(-8, 64))))


@st.composite
def mutated(draw) -> bytes:
    sample = draw(st.integers(0, len(SAMPLES) - 1))
    data = bytearray(SAMPLES[sample])
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        kind = draw(st.sampled_from(["truncate", "flip", "set", "insert", "delete"]))
        at = draw(positions(sample, len(data)))
        if kind == "truncate":
            del data[max(1, at):]
        elif kind == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[at] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        else:
            del data[at:at + draw(st.integers(1, 64))]
    return bytes(data)


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_files_parse_or_raise_cleanly(data):
    tracemalloc.start()
    try:
        with time_limit(SECONDS_PER_PARSE):
            try:
                net = parse_net(data, "mutated.caffemodel")
            except CaffeFormatError as e:
                assert str(e).startswith("mutated.caffemodel: ")
                event(f"CaffeFormatError: {e.reason.split(' ')[0]}")
                net = None
            else:
                event("parsed")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= ALLOWED_PEAK * len(data) + (1 << 20), f"peak {peak} B for a {len(data)} B file"
    if net is not None:
        for layer in net.layers:
            for blob in layer.blobs:
                assert blob.nbytes <= len(data)


def test_real_files_parse_unmutated():
    for path in FIXTURES.glob("*.caffemodel"):
        assert len(read_caffemodel(path)) == 9


def _many_data_fields(n: int) -> bytes:
    value = enc.key(5, 2) + enc.varint(4) + b"\x00\x00\x80\x3f"  # one packed float per field
    blob = enc.length_delimited(7, enc.length_delimited(1, enc.varint(n))) + [value * n]
    return enc.to_bytes(enc.net([enc.layer_v2("x", "Scale", [blob])]))


CRAFTED = {
    "100k empty layers": b"\xa2\x06\x00" * 100_000,
    "100k empty blobs": enc.to_bytes(enc.net([enc.Pieces([b"\x3a\x00" * 100_000])])),
    "50k one-float data fields": _many_data_fields(50_000),
    "5k one-float data fields": _many_data_fields(5_000),
}


@pytest.mark.parametrize("name", list(CRAFTED))
def test_crafted_object_heavy_files_stay_within_the_memory_budget(name):
    """Messages that are tiny on disk but costly as Python objects: the reader either parses them
    within its budget or refuses them as implausible, never allocating far beyond the file size."""
    data = CRAFTED[name]
    tracemalloc.start()
    try:
        with time_limit(SECONDS_PER_PARSE):
            try:
                net = parse_net(data)
            except CaffeFormatError as e:
                assert "implausible structure" in str(e)
                net = None
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= ALLOWED_PEAK * len(data) + (1 << 20)
    if name.startswith("5k"):  # small enough to be legal: joined into one array
        assert net is not None and net.layers[0].blobs[0].shape == (5_000,)
        assert (net.layers[0].blobs[0] == 1.0).all()
