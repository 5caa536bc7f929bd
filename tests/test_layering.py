"""Who may import what: the layers of the code, checked from the source (ast, nothing imported)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imports(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it (top level or inside a function), as dotted names;
    a relative import is resolved against the file's package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(p for p in parts + [base] if p)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_imports_sees_nested_and_relative_imports():
    names = imports(ROOT / "reproduce" / "datasets" / "cli.py")
    assert "click" in names and "reproduce.datasets.fetch" in names


def test_bench_uses_the_projects_caffemodel_writer_not_the_tests_encoder():
    # tests/caffe_encoder.py is independent of weight_convert on purpose (the reader is checked
    # against it); bench/ writes its inputs with the project's own writer.
    offenders = [str(p.relative_to(ROOT)) for p in python_files("bench")
                 if any("caffe_encoder" in name or name.split(".")[0] == "tests" for name in imports(p))]
    assert not offenders, f"bench modules importing the tests' encoder: {offenders}"
    assert "weight_convert.caffe_writer" in imports(ROOT / "bench" / "bench_convert.py")


ATOMIC_WRITERS = ("atomic_file", "write_json_atomic", "write_text_atomic", "save_png_atomic")


def test_atomic_writers_have_one_home():
    # reproduce/atomic.py is where every atomic writer lives and is imported from (metrics.py keeps
    # the two JSON/text names only so that older callers still run; nothing here uses them).
    offenders = []
    for folder in ("reproduce", "nets", "weight_convert", "bench", "tools", "tests"):
        for path in python_files(folder):
            for name in imports(path):
                module, _, last = name.rpartition(".")
                if last in ATOMIC_WRITERS and module != "reproduce.atomic":
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert not offenders, offenders
    import reproduce.atomic as atomic
    assert all(callable(getattr(atomic, name)) for name in ATOMIC_WRITERS)


def test_evaluate_takes_nothing_from_infer():
    # evaluation and inference are siblings: what both need (the PNG writer) lives in a neutral module
    assert not any(name.startswith("reproduce.infer") for name in imports(ROOT / "reproduce" / "evaluate.py"))
