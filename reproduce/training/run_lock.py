"""One trainer per run directory: an exclusive `flock` on `<run>/.lock`.

`fcn train` holds the lock for as long as it trains; a second trainer pointed at the same folder
stops at once with `RunLockedError`, whose one-line message names the process holding the lock
(its pid and host, written into the lock file) and the folder. The kernel releases a `flock` when
its process ends however it ends, SIGKILL included, so a killed run never leaves a stale lock: the
`.lock` file may stay behind with a dead pid in it, and the next trainer simply takes it over.

A run directory the trainer created and that failed before anything was written to it (missing
data, an unusable device, a lock refused) is removed again, with the parent folders it created,
so that a failed start leaves nothing behind.
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
from pathlib import Path
from types import TracebackType

LOCK_NAME = ".lock"


class RunLockedError(RuntimeError):
    """Another process holds the run directory's lock."""


class RunLock:
    """Context manager: create `out` (and missing parents) and hold an exclusive lock on it.

    On a failed exit (an exception) the folders this lock created are removed again if nothing but
    the lock file was written into them. The lock file itself is kept on a clean exit (emptied):
    removing it would let a waiting process lock a file that no longer has the name.
    """

    def __init__(self, out: str | os.PathLike) -> None:
        self.out = Path(out)
        self.path = self.out / LOCK_NAME
        self.created: list[Path] = []  # folders this lock made, outermost first
        self.fd: int | None = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release(failed=exc_type is not None)

    def acquire(self) -> None:
        """Take the lock, or raise RunLockedError naming the holder (nothing is left created)."""
        missing = [p for p in [self.out, *self.out.parents] if not p.exists()]
        self.out.mkdir(parents=True, exist_ok=True)
        self.created = list(reversed(missing))
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                holder = self.holder()
                self._remove_created()
                who = f"process {holder}" if holder else "another process"
                raise RunLockedError(f"{self.out}: run directory in use by {who} (it holds {LOCK_NAME}); "
                                     f"wait for it to end, or train into another --out") from None
            # The name may have been removed (a failed start cleaning up) between open and flock.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        os.fsync(fd)
        self.fd = fd

    def release(self, failed: bool = False) -> None:
        """Give the lock up; after a failed start also remove the folders it created if empty."""
        if self.fd is None:
            return
        try:
            if failed and self._only_lock_inside():
                self.path.unlink(missing_ok=True)
                self._remove_created()
            else:
                os.ftruncate(self.fd, 0)
        finally:
            os.close(self.fd)  # releases the flock
            self.fd = None

    def holder(self) -> str | None:
        """'<pid> on <host>' as the holder wrote it into the lock file, or None if unreadable."""
        try:
            text = self.path.read_text(encoding="utf-8").split()
        except OSError:
            return None
        if not text or not text[0].isdigit():
            return None
        return f"{text[0]} on {text[1]}" if len(text) > 1 else text[0]

    def _only_lock_inside(self) -> bool:
        try:
            return set(os.listdir(self.out)) <= {LOCK_NAME}
        except FileNotFoundError:
            return False

    def _remove_created(self) -> None:
        for folder in reversed(self.created):  # innermost first; stops at the first non-empty one
            try:
                folder.rmdir()
            except OSError:
                break
        self.created = []
