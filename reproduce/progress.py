"""Progress of long steps (training, evaluation, inference, downloads, extraction) on stderr.

The one progress module of the project; it needs nothing but the standard library. On a terminal
`Progress` draws a one-line bar redrawn in place (at most every `REDRAW_SECONDS`). Without one
(nohup, CI, a cluster's log file) it prints one line at the start, then one every `interval`
seconds (FCN_PROGRESS_SECONDS, default 30), and one at the end:

    voc-fcn32s: iteration 1200/100000 (1.2%), loss 2.317, lr 1e-10, 0.91 iterations/s, ETA 1d 06:09:27
    eval voc-fcn32s: image 300/736 (40.8%), 2.13 images/s, ETA 3m 25s
    downloading VOCtrainval_25-May-2011.tar: 512.0/1658.9 MiB (30.9%), 9.8 MiB/s, ETA 1m 57s

unit="byte" counts bytes and shows them in MiB (2**20 bytes); total=None is a total not known in
advance (no percentage, no ETA). Lines are printed when `update` / `advance` is called (after an
iteration, an image, a chunk), so an interval shorter than one step gives one line per step. The
rate is that of this session (a resumed run or download counts from where it resumed).
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
REDRAW_SECONDS = 0.1  # the terminal bar is redrawn at most this often (and at the end)
BAR_WIDTH = 30  # characters between the brackets


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
    """Progress of `total` steps (`unit`: "iteration", "image", "byte"; None: total unknown),
    `start` of them done already.

    show=False prints nothing. tty (default: whether `stream` is a terminal) picks the bar or the
    lines; interval: seconds between lines (default `interval_seconds()`). Use as a context
    manager; call `update(done, **fields)` with the absolute count done, or `advance(steps, **fields)`
    with the count just finished, and the fields to show (e.g. loss=2.3, lr=1e-10: floats shown
    with 4 significant digits).
    """

    def __init__(self, label: str, total: int | None, *, unit: str = "iteration", start: int = 0,
                 show: bool = True, stream: TextIO | None = None, tty: bool | None = None,
                 interval: float | None = None) -> None:
        self.label, self.unit, self.start = label, unit, int(start)
        self.total = int(total) if total is not None else None
        self.show = show
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(tty if tty is not None else _isatty(self.stream)) if show else False
        self.interval = interval_seconds() if interval is None and show and not self.tty else (interval or 0.0)
        self.done = self.start
        self.fields: dict[str, Any] = {}
        self._t0 = self._last_line = 0.0
        self._drawn = 0  # characters of the bar now on the terminal line

    # -- context manager --------------------------------------------------------------------------
    def __enter__(self) -> "Progress":
        self._t0 = self._last_line = time.monotonic()
        if not self.show:
            return self
        if self.tty:
            self._draw()
        else:
            self._line("starting" if self.start == 0 else "resuming")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.show:
            return
        if self.tty:
            self._draw()
            self._write("\n")
            return
        elapsed = duration(time.monotonic() - self._t0)
        finished = exc_type is None and (self.total is None or self.done >= self.total)
        self._line(f"done in {elapsed}" if finished else f"stopped after {elapsed}")

    # -- updates ------------------------------------------------------------------------------------
    def update(self, done: int, **fields: Any) -> None:
        """`done` steps of `total` finished; `fields` (name=value) shown with them."""
        self.done = int(done)
        self.fields = fields
        if not self.show:
            return
        now = time.monotonic()
        if self.tty:
            if now - self._last_line >= REDRAW_SECONDS:
                self._draw()
        elif now - self._last_line >= self.interval and (self.total is None or self.done < self.total):
            self._line()

    def advance(self, steps: int = 1, **fields: Any) -> None:
        """`steps` more steps finished (e.g. the bytes of one chunk); `fields` as in `update`
        (none given: the last ones stay)."""
        self.update(self.done + int(steps), **(fields or self.fields))

    def rate(self) -> float:
        """Steps per second in this session (0 before the first step)."""
        seconds = time.monotonic() - self._t0
        return (self.done - self.start) / seconds if seconds > 0 else 0.0

    def line(self, note: str | None = None) -> str:
        """The progress line as it would be printed now (without the newline)."""
        parts = [f"{self.label}: {self._count()}"]
        parts += [_field(k, v) for k, v in self.fields.items()]
        parts += self._speed()
        if note:
            parts.append(note)
        return ", ".join(parts)

    # -- output -------------------------------------------------------------------------------------
    def _count(self) -> str:
        if self.unit == "byte":
            done = _mib(self.done)
            if self.total is None:
                return f"{done} MiB"
            return f"{done}/{_mib(self.total)} MiB ({self._percent():.3g}%)"
        if self.total is None:
            return f"{self.unit} {self.done}"
        return f"{self.unit} {self.done}/{self.total} ({self._percent():.3g}%)"

    def _percent(self) -> float:
        return 100.0 * self.done / self.total if self.total else 100.0

    def _speed(self) -> list[str]:
        """[rate, ETA] once a step is done in this session (ETA only while steps of a known total remain)."""
        if self.done <= self.start:
            return []
        rate = self.rate()
        parts = [f"{rate / 2**20:.3g} MiB/s" if self.unit == "byte" else f"{rate:.3g} {self.unit}s/s"]
        if self.total is not None and self.done < self.total:
            parts.append(f"ETA {duration((self.total - self.done) / rate) if rate > 0 else 'unknown'}")
        return parts

    def _draw(self) -> None:
        self._last_line = time.monotonic()
        if self.total:
            filled = min(BAR_WIDTH, BAR_WIDTH * self.done // self.total)
            bar = f"[{'#' * filled}{'-' * (BAR_WIDTH - filled)}]"
            count = self._count().split(" (")[0]
            text = f"{self.label}  {bar}  {self._percent():3.0f}%  {count.removeprefix(self.unit + ' ')}"
        else:
            text = f"{self.label}  {self._count()}"
        extra = [_field(k, v) for k, v in self.fields.items()] + self._speed()
        if extra:
            text += "  " + ", ".join(extra)
        self._write("\r" + text + " " * max(self._drawn - len(text), 0))
        self._drawn = len(text)

    def _line(self, note: str | None = None) -> None:
        self._last_line = time.monotonic()
        self._write(self.line(note) + "\n")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
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


def _mib(count: float) -> str:
    """`count` bytes in MiB (2**20 bytes), one decimal."""
    return f"{count / 2**20:.1f}"


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
