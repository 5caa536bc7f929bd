"""Stopping a training run cleanly on SIGINT (Ctrl-C) and SIGTERM (a cluster preempting the job).

`StopSignals` is a context manager that, while active in the main thread, replaces the handlers
of SIGINT and SIGTERM: the first signal only records itself (the trainer finishes the iteration in
progress, writes a snapshot and raises `TrainingInterrupted`); later ones print that the run is
still stopping and change nothing, so a snapshot being written is never abandoned half way (and
were the process killed outright, the snapshot's atomic write leaves no partial file).
The previous handlers come back on exit. Outside the main thread (where Python cannot set
handlers) it does nothing.

Exit statuses follow the shell's convention, 128 + the signal number: 130 for SIGINT, 143 for
SIGTERM (`exit_status`).
"""
from __future__ import annotations

import os
import shlex
import signal
import threading
from pathlib import Path
from typing import Sequence

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after a finished iteration, its state saved.

    signum: the signal; iteration: the solver updates done; snapshot: the checkpoint to resume
    from (None if the run had none, e.g. stopped before its first iteration)."""

    def __init__(self, signum: int, iteration: int, snapshot: Path | None) -> None:
        self.signum, self.iteration, self.snapshot = int(signum), int(iteration), snapshot
        where = f"snapshot {snapshot}" if snapshot else "no snapshot yet"
        super().__init__(f"stopped by {signal_name(signum)} after iteration {iteration} ({where})")


def signal_name(signum: int) -> str:
    """'SIGINT', 'SIGTERM', ... for a signal number."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def exit_status(signum: int) -> int:
    """The shell's exit status of a process ended by `signum`: 128 + signum (SIGINT 130, SIGTERM 143)."""
    return 128 + int(signum)


class StopSignals:
    """Record SIGINT / SIGTERM instead of dying, while the `with` block runs (main thread only).

    `requested` is the first signal's number, or None. `what` is shown when a further signal
    arrives (e.g. "finishing iteration 12 and writing its snapshot").
    """

    def __init__(self, label: str = "fcn train") -> None:
        self.label = label
        self.requested: int | None = None
        self.what = "finishing the iteration in progress and writing a snapshot"
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        # os.write, not print: a handler may run while the main thread is inside a print to stderr.
        if self.requested is None:
            self.requested = signum
            _say(f"{self.label}: {signal_name(signum)} received: {self.what}, then stopping\n")
        else:
            _say(f"{self.label}: {signal_name(signum)} received again: still stopping ({self.what}); "
                 f"the snapshot is written atomically, so killing the process leaves no partial file\n")


def _say(text: str) -> None:
    try:
        os.write(2, text.encode("utf-8", "replace"))
    except OSError:
        pass


def resume_hint(command: Sequence[str] | None, environ: dict[str, str] | None = None) -> str:
    """How to resume, for the line printed on stopping: rerun the same command (resume is automatic).

    Under make (MAKELEVEL set) the make target is named first; under torchrun (WORLD_SIZE > 1) the
    torchrun command line; otherwise the command itself, quoted for a POSIX shell."""
    env = os.environ if environ is None else environ
    cmd = shlex.join(command) if command else "the same fcn train command"
    if int(env.get("WORLD_SIZE", "1") or 1) > 1:
        return f"rerun the same torchrun command (resume is automatic): torchrun ... {cmd}"
    if env.get("MAKELEVEL"):
        return f"rerun the same make target (resume is automatic), or: {cmd}"
    return f"rerun the same command (resume is automatic): {cmd}"
