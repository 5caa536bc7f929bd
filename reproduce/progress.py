"""Progress of training and evaluation on stderr, with or without a terminal.

On a terminal: click's progress bar, as before. Without one (nohup, CI, a cluster's log file),
where click's bar prints nothing but its label, `Progress` prints one line at the start, then one
every `interval` seconds (FCN_PROGRESS_SECONDS, default 30), and one at the end:

    voc-fcn32s: iteration 1200/100000 (1.2%), loss 2.317, lr 1e-10, 0.91 iterations/s, ETA 1d 06:09:27
    eval voc-fcn32s: image 300/736 (40.8%), 2.13 images/s, ETA 3m 25s

Lines are printed when `update` is called (after an iteration or an image), so an interval
shorter than one step gives one line per step. The rate is that of this session (a resumed run
counts from where it resumed).
"""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Iterable, Iterator, TextIO, TypeVar

T = TypeVar("T")

ENV_INTERVAL = "FCN_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0


def interval_seconds() -> float:
    """Seconds between progress lines without a terminal: $FCN_PROGRESS_SECONDS, else 30.
    ValueError naming the variable for a value that is not a number >= 0."""
    text = os.environ.get(ENV_INTERVAL, "").strip()
    if not text:
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or not math.isfinite(value):
        raise ValueError(f"{ENV_INTERVAL}={text!r}: expected seconds between progress lines (a number >= 0)")
    return value


def duration(seconds: float) -> str:
    """A duration for people: '12s', '3m 25s', '2h 03m', '1d 06:09:27'."""
    if not math.isfinite(seconds):
        return "unknown"
    s = int(round(max(seconds, 0.0)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 86400}d {s % 86400 // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


class Progress:
    """Progress of `total` steps (`unit`: "iteration", "image"), `start` of them done already.

    show=False prints nothing. tty (default: whether `stream` is a terminal) picks the bar or the
    lines; interval: seconds between lines (default `interval_seconds()`). Use as a context
    manager; call `update(done, **fields)` with the absolute count done and the fields to show
    (e.g. loss=2.3, lr=1e-10: floats shown with 4 significant digits).
    """

    def __init__(self, label: str, total: int, *, unit: str = "iteration", start: int = 0, show: bool = True,
                 stream: TextIO | None = None, tty: bool | None = None, interval: float | None = None) -> None:
        self.label, self.total, self.unit, self.start = label, int(total), unit, int(start)
        self.show = show
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(tty if tty is not None else _isatty(self.stream)) if show else False
        self.interval = interval_seconds() if interval is None and show and not self.tty else (interval or 0.0)
        self.done = self.start
        self.fields: dict[str, Any] = {}
        self._bar = None
        self._t0 = self._last_line = 0.0

    # -- context manager --------------------------------------------------------------------------
    def __enter__(self) -> "Progress":
        self._t0 = self._last_line = time.monotonic()
        if not self.show:
            return self
        if self.tty:
            import click
            self._bar = click.progressbar(length=max(self.total, 1), label=self.label, file=self.stream,
                                          show_pos=True, item_show_func=lambda item: item)
            self._bar.__enter__()
            self._bar.pos = min(self.start, self.total)  # a resumed run starts part way
        else:
            self._line("starting" if self.start == 0 else "resuming")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.show:
            return
        if self._bar is not None:
            self._bar.__exit__(exc_type, exc, tb)
            return
        elapsed = duration(time.monotonic() - self._t0)
        self._line(f"done in {elapsed}" if self.done >= self.total and exc_type is None else f"stopped after {elapsed}")

    # -- updates ------------------------------------------------------------------------------------
    def update(self, done: int, **fields: Any) -> None:
        """`done` steps of `total` finished; `fields` (name=value) shown with them."""
        step, self.done = int(done) - self.done, int(done)
        self.fields = fields
        if not self.show:
            return
        if self._bar is not None:
            self._bar.update(step, ", ".join(_field(k, v) for k, v in fields.items()) or None)
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval and self.done < self.total:
            self._line()

    def rate(self) -> float:
        """Steps per second in this session (0 before the first step)."""
        seconds = time.monotonic() - self._t0
        return (self.done - self.start) / seconds if seconds > 0 else 0.0

    def line(self, note: str | None = None) -> str:
        """The progress line as it would be printed now (without the newline)."""
        pct = 100.0 * self.done / self.total if self.total else 100.0
        parts = [f"{self.label}: {self.unit} {self.done}/{self.total} ({pct:.3g}%)"]
        parts += [_field(k, v) for k, v in self.fields.items()]
        rate = self.rate()
        if self.done > self.start:
            parts.append(f"{rate:.3g} {self.unit}s/s")
            if self.done < self.total:
                parts.append(f"ETA {duration((self.total - self.done) / rate) if rate > 0 else 'unknown'}")
        if note:
            parts.append(note)
        return ", ".join(parts)

    def _line(self, note: str | None = None) -> None:
        self._last_line = time.monotonic()
        try:
            self.stream.write(self.line(note) + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream must not stop a run
            pass


def track(items: Iterable[T], bar: Progress) -> Iterator[T]:
    """`items`, calling `bar.update` with the count done after each item's work (when the next is asked for)."""
    done = bar.done
    for item in items:
        yield item
        done += 1
        bar.update(done, **bar.fields)


def _field(name: str, value: Any) -> str:
    if isinstance(value, float):
        return f"{name} {value:.4g}"
    return f"{name} {value}"


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
