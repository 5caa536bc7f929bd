"""Resumable HTTP(S) download of one file into a `.part` file, with progress in bytes on stderr.

A transfer that breaks off is resumed with an HTTP Range request from the bytes already on disk,
both within one call (up to `retries` times) and across calls (the `.part` file stays). A resume
answered with another start than the one asked for, or a `.part` longer than the file, is
discarded and the download restarts from byte 0 (never the same bad range again). When the
expected size is known, a server announcing another size is refused before anything is written.
"""
from __future__ import annotations

import http.client
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from reproduce.progress import Progress

__all__ = ["FetchError", "TransferFailed", "download"]

USER_AGENT = "fcn-repro-fetch/1"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


class FetchError(RuntimeError):
    """A download, checksum or extraction failed; the message says what and what to do."""


class TransferFailed(FetchError):
    """The file could not be (completely) downloaded: `url` tried `attempts` times, `reason` the
    last failure, `kept` bytes left in `part` (0: nothing kept, the `.part` file does not exist)."""

    def __init__(self, url: str, attempts: int, reason: str, part: Path, kept: int) -> None:
        self.url, self.attempts, self.reason, self.part, self.kept = url, attempts, reason, part, kept
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        held = (f"; {kept} bytes kept in {part}: run the same command again to resume" if kept
                else "; nothing was downloaded")
        super().__init__(f"{url}: download failed after {tries} ({reason}){held}")


class _Interrupted(Exception):
    """The connection ended before the announced number of bytes arrived."""


class _BadResume(Exception):
    """The server answered a resume request with another range than asked: restart from 0."""


def _content_range(value: str | None) -> tuple[int, int, int | None] | None:
    match = _CONTENT_RANGE.match(value or "")
    if not match:
        return None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), int(match.group(2)), total


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _discard(part_path: Path, label: str, why: str, say: Callable[[str], None]) -> None:
    say(f"{label}: {why}; discarding {part_path} and starting again from byte 0")
    part_path.unlink(missing_ok=True)


def download(url: str, part_path: Path, *, retries: int = 3, timeout: float = 60.0,
             chunk_size: int = 1 << 20, retry_wait: float = 2.0, label: str | None = None,
             expected_size: int | None = None, say: Callable[[str], None] = print) -> int:
    """Download `url` into `part_path`, resuming from its current size; returns the final size in bytes.

    `say` is told of each retry, resume and restart (one line each; progress goes to stderr).
    `expected_size` (bytes, when known): a server that announces another total is refused, and a
    `.part` file already longer is discarded. Raises FetchError when the server refuses, and
    TransferFailed when the transfer keeps failing after `retries` retries (a non-empty `.part`
    file is kept so that the next call resumes it).
    """
    part_path = Path(part_path)
    part_path.parent.mkdir(parents=True, exist_ok=True)
    label = label or part_path.name.removesuffix(".part")
    if expected_size is not None and _size(part_path) > expected_size:
        _discard(part_path, label, f"{part_path.name} holds {_size(part_path)} bytes, more than the "
                                   f"{expected_size} expected", say)
    failures = 0
    while True:
        offset = _size(part_path)
        try:
            return _transfer(url, part_path, offset, timeout, chunk_size, label, expected_size, say)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                match = _UNSATISFIED_RANGE.match(exc.headers.get("Content-Range", ""))
                if match and int(match.group(1)) == offset:
                    return offset  # the .part file already holds the whole file
                _discard(part_path, label, f"server refused to resume at byte {offset} (HTTP 416)", say)
                failures += 1
            elif exc.code >= 500 and failures < retries:
                failures += 1
            else:
                raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            reason = f"HTTP {exc.code} {exc.reason}"
        except _BadResume as exc:
            _discard(part_path, label, str(exc), say)
            failures += 1
            reason = str(exc)
        except (_Interrupted, http.client.HTTPException, urllib.error.URLError, socket.timeout,
                ConnectionError, OSError) as exc:
            failures += 1
            reason = str(getattr(exc, "reason", None) or exc) or type(exc).__name__
            if failures <= retries:
                say(f"{label}: transfer broke off at byte {_size(part_path)} ({reason}); "
                    f"{'resuming' if _size(part_path) else 'trying again'} (retry {failures} of {retries})")
        if failures > retries:
            if part_path.exists() and _size(part_path) == 0:
                part_path.unlink()
            raise TransferFailed(url, failures, reason, part_path, _size(part_path))
        if retry_wait:
            time.sleep(retry_wait)


def _transfer(url: str, part_path: Path, offset: int, timeout: float, chunk_size: int, label: str,
              expected_size: int | None, say: Callable[[str], None]) -> int:
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        length = int(length) if length is not None else None
        if response.status == 206:
            span = _content_range(response.headers.get("Content-Range"))
            if span is None or span[0] != offset:
                got = response.headers.get("Content-Range")
                raise _BadResume(f"server answered the request to resume at byte {offset} with "
                                 f"Content-Range {got!r}")
            total = span[2]
            mode = "ab"
        else:
            if offset:
                say(f"{label}: server does not resume (HTTP {response.status}); starting again")
            offset, total, mode = 0, length, "wb"
        if expected_size is not None and total is not None and total != expected_size:
            raise FetchError(f"{url}: the server announces {total} bytes, the registry expects "
                             f"{expected_size}: not the expected file (nothing was written)")
        received = 0
        with open(part_path, mode) as out, \
                Progress(f"downloading {label}", total, unit="byte", start=offset) as bar:
            while True:
                chunk = response.read(chunk_size)
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                bar.advance(len(chunk))
        if length is not None and received < length:
            raise _Interrupted(f"got {received} of {length} bytes")
        if expected_size is not None and offset + received < expected_size:  # no length announced
            raise _Interrupted(f"the connection ended at byte {offset + received} of {expected_size}")
        return offset + received
