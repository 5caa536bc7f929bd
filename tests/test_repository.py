"""The repository stands on its own: no tracked file points outside it, and every citation of a
docs/ section names a section that exists."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Paths of the workspace this project was written in, which users never see.
OUTSIDE = re.compile(r"\.\./shared|shared/(reference|data)\b|fcn-facts|/work/")
CITATION = re.compile(r"(docs/[\w-]+\.md)`{0,2} §(\d[a-g]?)")


def tracked_text_files() -> list[Path]:
    """Every file git tracks under ROOT that decodes as UTF-8 text."""
    try:
        listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files are unknown")
    files = []
    for name in listing.stdout.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file():
            continue
        try:
            path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        files.append(path)
    return files


def test_no_tracked_file_refers_to_a_path_outside_the_repository():
    this = Path(__file__).resolve()
    offenders = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
                 for path in tracked_text_files() if path != this
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if OUTSIDE.search(line)]
    assert not offenders, "\n".join(offenders)


def test_every_cited_docs_section_exists():
    cited = {(m.group(1), m.group(2)) for path in tracked_text_files()
             for m in CITATION.finditer(path.read_text(encoding="utf-8"))}
    assert ("docs/reference.md", "1c") in cited  # the check sees the citations at all
    missing = []
    for doc, section in sorted(cited):
        headings = (ROOT / doc).read_text(encoding="utf-8")
        if not re.search(rf"^#+ {section}\. ", headings, re.M):
            missing.append(f"{doc} §{section}")
    assert not missing, missing


MODULE_PATH = re.compile(r"(?<![\w./-])((?:reproduce|nets|weight_convert|bench|tools)/[\w/]+\.py)\b")
# a module named in code: `python -m X`, `import X`, `from X import`, or a mock / monkeypatch target
DOTTED = re.compile(r"(?:-m |import |from |setattr\(\"|patch\(\")((?:reproduce|nets|weight_convert|bench)(?:\.\w+)+)")


def _module_exists(dotted: str) -> bool:
    """Whether `dotted` starts with an existing module or package, or a name its package's
    __init__ defines (the rest may be attributes)."""
    parts = dotted.split(".")
    pkg = ROOT / parts[0]
    nxt = pkg / parts[1]
    if nxt.with_suffix(".py").is_file() or nxt.is_dir():
        return True
    init = pkg / "__init__.py"
    return init.is_file() and re.search(rf"\b{parts[1]}\b", init.read_text()) is not None


def test_every_cited_module_exists():
    """Docs, comments, commands and tests name modules that exist (a module moved leaves no stale
    path). Recorded runs (results/**/*.json: the commands as they ran) are history, not checked."""
    this = Path(__file__).resolve()
    stale = []
    for path in tracked_text_files():
        rel = path.relative_to(ROOT).as_posix()
        if path == this or rel.endswith(".json") or rel.startswith("tests/fixtures/"):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for cited in MODULE_PATH.findall(line):
                if not (ROOT / cited).is_file() and "*" not in cited and "tmp_path" not in line:
                    stale.append(f"{rel}:{n}: {cited}")
            for cited in DOTTED.findall(line):
                if not _module_exists(cited):
                    stale.append(f"{rel}:{n}: {cited}")
    assert not stale, "cited modules that do not exist:\n" + "\n".join(stale[:40])
