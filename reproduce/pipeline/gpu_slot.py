"""Run a command pinned to a free GPU: the slot allocator of `make -j N reproduce-all GPUS=0,1,...`.

    python -m reproduce.pipeline.gpu_slot --gpus 0,1,2,3 --lock-dir runs/.gpu-slots -- fcn train voc-fcn32s ...

Each GPU is a lock file (`<lock-dir>/gpu-<id>.lock`) held with an exclusive flock(2) for as long as
the command runs. The allocator takes the first GPU whose lock is free (waiting, polling once a
second, while all are taken), sets CUDA_VISIBLE_DEVICES to it and replaces itself with the command
(exec), which inherits the locked file: make's signals reach the command directly, and when it ends,
however it ends (killed included), the kernel drops the lock and the GPU is free again. So
concurrent make jobs always hold distinct GPUs, and no stale lock survives a crash.
"""
from __future__ import annotations

import argparse
import fcntl
import os
import sys
import time
from pathlib import Path
from typing import Sequence

EXIT_NO_SLOT = 75  # EX_TEMPFAIL: no GPU became free within --timeout


class NoFreeSlot(RuntimeError):
    """Every GPU's lock stayed held for the whole wait."""


def parse_gpus(text: str) -> list[str]:
    """"0,1,3" -> ["0", "1", "3"]; ValueError for an empty list, a repeat or a non-integer id."""
    ids = [t.strip() for t in str(text).split(",") if t.strip()]
    if not ids:
        raise ValueError(f"GPUS={text!r}: no GPU ids (expected e.g. 0,1,2,3)")
    bad = [i for i in ids if not i.isdigit()]
    if bad:
        raise ValueError(f"GPUS={text!r}: {', '.join(bad)} not a GPU index (expected e.g. 0,1,2,3)")
    if len(set(ids)) != len(ids):
        raise ValueError(f"GPUS={text!r}: a GPU is listed twice")
    return ids


def lock_path(lock_dir: str | os.PathLike, gpu: str) -> Path:
    return Path(lock_dir) / f"gpu-{gpu}.lock"


def try_acquire(gpus: Sequence[str], lock_dir: str | os.PathLike) -> tuple[str, int] | None:
    """(gpu, fd holding its lock) for the first free GPU of `gpus`, or None if all are held."""
    Path(lock_dir).mkdir(parents=True, exist_ok=True)
    for gpu in gpus:
        fd = os.open(lock_path(lock_dir, gpu), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return gpu, fd
    return None


def acquire(gpus: Sequence[str], lock_dir: str | os.PathLike, *, timeout_s: float | None = None,
            poll_s: float = 1.0, say=None) -> tuple[str, int]:
    """Wait for a free GPU of `gpus` (at most `timeout_s` seconds; None: for ever) and lock it.
    Returns (gpu, fd); the lock lasts while fd (or a copy inherited by a child) stays open.
    Raises NoFreeSlot after `timeout_s`. `say(text)` is told once when the wait begins."""
    start = time.monotonic()
    told = False
    while True:
        got = try_acquire(gpus, lock_dir)
        if got is not None:
            return got
        if timeout_s is not None and time.monotonic() - start >= timeout_s:
            raise NoFreeSlot(f"no free GPU among {','.join(gpus)} after {timeout_s:g} s "
                             f"(locks in {lock_dir}: each held by a running job)")
        if not told and say is not None:
            say(f"gpu_slot: GPUs {','.join(gpus)} all busy; waiting for one to free")
            told = True
        time.sleep(poll_s)


def note_holder(fd: int, gpu: str, command: Sequence[str]) -> None:
    """Write who holds the slot into the lock file (for people; the lock itself is the flock)."""
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"gpu {gpu} pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                 f"{' '.join(command)}\n".encode())


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reproduce.pipeline.gpu_slot", description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", required=True, help="GPU ids to choose from, e.g. 0,1,2,3 (make's GPUS)")
    ap.add_argument("--lock-dir", required=True, type=Path, help="where the per-GPU lock files live")
    ap.add_argument("--timeout", type=float, default=None, help="give up after this many seconds (default: wait)")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("no command given (… -- COMMAND ARGS)")
    try:
        gpus = parse_gpus(args.gpus)
        gpu, fd = acquire(gpus, args.lock_dir, timeout_s=args.timeout, say=lambda s: print(s, file=sys.stderr))
    except ValueError as e:
        print(f"gpu_slot: {e}", file=sys.stderr)
        return 2
    except NoFreeSlot as e:
        print(f"gpu_slot: {e}", file=sys.stderr)
        return EXIT_NO_SLOT
    note_holder(fd, gpu, command)
    os.set_inheritable(fd, True)  # the command holds the lock from here on
    print(f"gpu_slot: GPU {gpu} (CUDA_VISIBLE_DEVICES={gpu}) for: {' '.join(command)}", file=sys.stderr, flush=True)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": gpu, "FCN_GPU_SLOT": gpu}
    try:
        os.execvpe(command[0], command, env)
    except OSError as e:
        print(f"gpu_slot: cannot run {command[0]!r}: {e}", file=sys.stderr)
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
