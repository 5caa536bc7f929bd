"""Resumable HTTP(S) download of one file into a `.part` file, with a click progress bar.

A transfer that breaks off is resumed with an HTTP Range request from the bytes already on disk,
both within one call (up to `retries` times) and across calls (the `.part` file stays).
"""
from __future__ import annotations

import http.client
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import click

__all__ = ["FetchError", "download"]

USER_AGENT = "fcn-repro-fetch/1"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


class FetchError(RuntimeError):
    """A download, checksum or extraction failed; the message says what and what to do."""


class _Interrupted(Exception):
    """The connection ended before the announced number of bytes arrived."""


def _content_range(value: str | None) -> tuple[int, int, int | None] | None:
    match = _CONTENT_RANGE.match(value or "")
    if not match:
        return None
    total = None if match.group(3) == "*" else int(match.group(3))
    return int(match.group(1)), int(match.group(2)), total


def download(url: str, part_path: Path, *, retries: int = 3, timeout: float = 60.0,
             chunk_size: int = 1 << 20, retry_wait: float = 2.0, label: str | None = None) -> int:
    """Download `url` into `part_path`, resuming from its current size; returns the final size.

    Raises FetchError when the server refuses, or when the transfer keeps breaking off after
    `retries` resumptions (the `.part` file is kept so the next call resumes it).
    """
    part_path = Path(part_path)
    part_path.parent.mkdir(parents=True, exist_ok=True)
    label = label or part_path.name.removesuffix(".part")
    failures = 0
    while True:
        offset = part_path.stat().st_size if part_path.exists() else 0
        try:
            return _transfer(url, part_path, offset, timeout, chunk_size, label)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                match = _UNSATISFIED_RANGE.match(exc.headers.get("Content-Range", ""))
                if match and int(match.group(1)) == offset:
                    return offset  # the .part file already holds the whole file
                click.echo(f"{label}: server refused to resume at byte {offset}; starting again")
                part_path.unlink()
                failures += 1
            elif exc.code >= 500 and failures < retries:
                failures += 1
            else:
                raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (_Interrupted, http.client.HTTPException, urllib.error.URLError, socket.timeout,
                ConnectionError, OSError) as exc:
            failures += 1
            size = part_path.stat().st_size if part_path.exists() else 0
            if failures > retries:
                raise FetchError(f"{url}: transfer failed ({exc}); {size} bytes kept in {part_path}; "
                                 "run the same command again to resume") from None
            click.echo(f"{label}: transfer broke off at byte {size} ({exc}); resuming "
                       f"(retry {failures} of {retries})")
        if retry_wait:
            time.sleep(retry_wait)


def _transfer(url: str, part_path: Path, offset: int, timeout: float, chunk_size: int, label: str) -> int:
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
        length = response.headers.get("Content-Length")
        length = int(length) if length is not None else None
        if response.status == 206:
            span = _content_range(response.headers.get("Content-Range"))
            if span is None or span[0] != offset:
                raise _Interrupted(f"server answered the resume request with range {span}; restarting")
            total = span[2]
            mode = "ab"
        else:
            if offset:
                click.echo(f"{label}: server does not resume (HTTP {response.status}); starting again")
            offset, total, mode = 0, length, "wb"
        received = 0
        with open(part_path, mode) as out, click.progressbar(
                length=total or 0, label=f"downloading {label}", show_pos=False, show_eta=True) as bar:
            if total:
                bar.update(offset)
            while True:
                chunk = response.read(chunk_size)
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                if total:
                    bar.update(len(chunk))
        if length is not None and received < length:
            raise _Interrupted(f"got {received} of {length} bytes")
        return offset + received
