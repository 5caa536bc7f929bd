"""The order in which the reference data layers visit a split.

Reference rule (voc_layers.py, nyud_layers.py, siftflow_layers.py, pascalcontext_layers.py):
a split whose name contains "train" is sampled with replacement: `setup` calls
`random.seed(seed)` and draws the first index with `random.randint(0, n - 1)`, and every
`forward` draws the next one the same way. Any other split is walked in list order, wrapping
to the start after the last id.

The reference ran under Python 2.7, whose `randint(a, b)` is `a + int(random() * (b - a + 1))`
(Lib/random.py randrange, for widths below 2**53). Python 3 replaced that with rejection
sampling on `getrandbits`, so `random.randint` under Python 3 yields a *different* sequence
from the same seed. Both interpreters seed an int the same way (init_by_array on its 32-bit
words) and produce the same `random()` stream, so the Python 2 draws are reproduced exactly
here from Python 3's `random.Random(seed).random()`. Checked against a real Python 2.7.18:
tests/fixtures/datasets/py27_randint_1337.json.

`runtime="python2"` (default) gives the images the reference actually saw; `runtime="python3"`
gives what the reference code would draw if run under Python 3 today.
"""
from __future__ import annotations

import random
from collections.abc import Iterator

from .conventions import REFERENCE_SEED

RUNTIMES = ("python2", "python3")


def train_order(n: int, seed: int = REFERENCE_SEED, *, runtime: str = "python2") -> Iterator[int]:
    """Endless indices in 0..n-1 drawn with replacement, as the reference's training layers draw them.

    The first value is the index of the first image the net sees (drawn in the layer's setup).
    """
    if n < 1:
        raise ValueError(f"train_order needs at least one item, got n={n}")
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    rng = random.Random(seed)
    if runtime == "python3":
        while True:
            yield rng.randint(0, n - 1)
    else:
        while True:
            # Python 2.7: randint(0, n-1) -> randrange(0, n) -> int(0 + int(random() * n))
            yield int(rng.random() * n)


def val_order(n: int) -> Iterator[int]:
    """Endless indices 0, 1, ..., n-1, 0, 1, ... (the reference's deterministic walk)."""
    if n < 1:
        raise ValueError(f"val_order needs at least one item, got n={n}")
    while True:
        yield from range(n)


def is_random_split(split: str) -> bool:
    """True where the reference samples at random: the split name contains "train"."""
    return "train" in split


def reference_order(split: str, n: int, seed: int = REFERENCE_SEED, *,
                    runtime: str = "python2") -> Iterator[int]:
    """train_order for splits containing "train", val_order otherwise."""
    if is_random_split(split):
        return train_order(n, seed, runtime=runtime)
    return val_order(n)
