"""The terminal progress bar of inference and evaluation (shared by both, so neither imports the other).

infer and evaluate import click only through it (lazily); without `show` the items pass through.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Iterable, Iterator


@contextlib.contextmanager
def progress_bar(items: Iterable, label: str, *, show: bool = True, length: int | None = None) -> Iterator[Iterable]:
    """`click.progressbar` on stderr when `show`, else the items as they are."""
    import click
    if not show:
        yield items
        return
    with click.progressbar(items, label=label, length=length, file=sys.stderr) as bar:
        yield bar
