"""Seeded training order: Python's random.seed(1337); random.randint(0, n-1), as the reference drew it."""
from __future__ import annotations

import json
import random
from itertools import islice
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reproduce.datasets import SBDDataset, VOCSegDataset, reference_order, train_order, val_order

FIX = Path(__file__).parent / "fixtures" / "datasets"
SAMPLES = Path(__file__).parent.parent / "reproduce" / "samples"  # the VOC / SBD samples (package data)
PY27 = json.loads((FIX / "py27_randint_1337.json").read_text())


@pytest.mark.parametrize("n", [int(k) for k in PY27["draws"]])
def test_default_order_is_the_reference_runtime_python27(n: int) -> None:
    """Golden draws made by a real Python 2.7.18 (the reference's interpreter)."""
    expected = PY27["draws"][str(n)]
    assert list(islice(train_order(n), len(expected))) == expected
    assert list(islice(train_order(n, 1337, runtime="python2"), len(expected))) == expected


@pytest.mark.parametrize("n", [8498, 736, 795, 2486, 4998, 7])
def test_python3_runtime_is_this_interpreters_randint(n: int) -> None:
    random.seed(1337)
    expected = [random.randint(0, n - 1) for _ in range(300)]
    assert list(islice(train_order(n, 1337, runtime="python3"), 300)) == expected


def test_the_two_runtimes_really_differ() -> None:
    # why the runtime matters: the same seed picks different images under Python 3
    assert list(islice(train_order(8498, runtime="python2"), 5)) != list(islice(train_order(8498, runtime="python3"), 5))
    assert PY27["draws"]["8498"][:3] == [5249, 4531, 3108]


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 100_000), seed=st.integers(0, 2**40))
def test_draws_stay_in_range(n: int, seed: int) -> None:
    for runtime in ("python2", "python3"):
        assert all(0 <= i < n for i in islice(train_order(n, seed, runtime=runtime), 50))


def test_val_order_walks_in_order_and_wraps() -> None:
    assert list(islice(val_order(3), 8)) == [0, 1, 2, 0, 1, 2, 0, 1]


@pytest.mark.parametrize("split, random_", [("train", True), ("trainval", True), ("seg11valid", False),
                                             ("val", False), ("test", False)])
def test_reference_rule_train_in_name(split: str, random_: bool) -> None:
    got = list(islice(reference_order(split, 736), 5))
    assert got == (PY27["draws"]["736"][:5] if random_ else [0, 1, 2, 3, 4])


def test_dataset_order() -> None:
    assert list(islice(VOCSegDataset(SAMPLES / "voc" / "VOC2012").order(), 3)) == [0, 1, 2]
    assert list(islice(SBDDataset(SAMPLES / "sbd" / "dataset", "train").order(), 4)) == [0, 0, 0, 0]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        next(train_order(0))
    with pytest.raises(ValueError):
        next(train_order(5, runtime="python4"))
    with pytest.raises(ValueError):
        next(val_order(0))
