"""Which fcn-repro wrote a file: the package version and, in a git checkout, the commit.

    >>> provenance.version()          # the installed distribution's version
    '0.1.0'
    >>> provenance.describe()         # what `fcn --version` / `convert-caffe --version` print
    'fcn-repro 0.1.0 (commit 1f34b93c0a1d, dirty)'

The version comes from the package metadata (`importlib.metadata`), so it is the one pyproject.toml
declares; the commit only when the code runs from a git checkout of this project (an installed
wheel has none, and a checkout that merely contains the virtual environment is not taken for one).
"""
from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

DISTRIBUTION = "fcn-repro"
#: The folder holding nets/, weight_convert/ and reproduce/ (a checkout's root, or site-packages).
ROOT = Path(__file__).resolve().parents[1]


def version() -> str:
    """The installed fcn-repro version, or "unknown" when the package metadata is absent (code run
    from a checkout that was never `pip install`ed)."""
    from importlib import metadata
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


@lru_cache(maxsize=1)
def git_state() -> dict[str, str | bool | None]:
    """{"commit": full hex sha or None, "dirty": tracked files modified (bool) or None} of the git
    checkout the code runs from; both None outside a checkout of this project."""
    if not (ROOT / "pyproject.toml").is_file():
        return {"commit": None, "dirty": None}

    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=20)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != ROOT:
        return {"commit": None, "dirty": None}
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)}


def record() -> dict[str, str | bool | None]:
    """{"name", "version", "commit", "dirty"}: what weight files record about their writer."""
    return {"name": DISTRIBUTION, "version": version(), **git_state()}


def describe(program: str = DISTRIBUTION) -> str:
    """One line: "<program> <version>" plus " (commit <12 hex>[, dirty])" in a checkout."""
    state = git_state()
    text = f"{program} {version()}"
    if state["commit"]:
        text += f" (commit {state['commit'][:12]}{', dirty' if state['dirty'] else ''})"
    return text
