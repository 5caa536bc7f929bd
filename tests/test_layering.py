"""Who may import what: the layers of the code, checked from the source (ast, nothing imported)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imports(path: Path, root: Path = ROOT) -> set[str]:
    """Every module `path` imports, anywhere in it (top level or inside a function), as dotted names;
    a relative import is resolved against the file's package (its folders under `root`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
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
    assert not any(name.startswith("reproduce.evaluation.infer") for name in imports(ROOT / "reproduce" / "evaluation" / "evaluate.py"))


# The command layer: the only modules that may import click. Everything else is library code that
# reports through return values, exceptions, a passed-in callback or reproduce.progress.
CLICK_ALLOWED = {
    "reproduce/commands/cli.py", "reproduce/commands/cli_options.py", "reproduce/datasets/cli.py", "weight_convert/cli.py",
}


def is_cli_module(relative: str) -> bool:
    """A module of the command layer: named *_cli.py, or one of `CLICK_ALLOWED`."""
    return relative.endswith("_cli.py") or relative in CLICK_ALLOWED


def click_offenders(root: Path = ROOT) -> list[str]:
    """The modules under root/{reproduce,nets,weight_convert} that import click but are not CLI modules."""
    offenders = []
    for folder in ("reproduce", "nets", "weight_convert"):
        for path in sorted((root / folder).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if not is_cli_module(relative) and any(n == "click" or n.startswith("click.") for n in imports(path, root)):
                offenders.append(relative)
    return offenders


def test_only_cli_modules_import_click():
    offenders = click_offenders()
    assert not offenders, f"library modules importing click (move the commands into a *_cli.py module): {offenders}"
    assert {p for p in CLICK_ALLOWED if (ROOT / p).is_file()} == CLICK_ALLOWED  # the list names real files


def test_the_click_check_names_a_library_module_importing_click_even_inside_a_function(tmp_path):
    (tmp_path / "reproduce" / "datasets").mkdir(parents=True)
    (tmp_path / "reproduce" / "lib.py").write_text("def f():\n    from click import echo\n    echo('x')\n")
    (tmp_path / "reproduce" / "datasets" / "thing_cli.py").write_text("import click\n")
    (tmp_path / "reproduce" / "datasets" / "cli.py").write_text("import click\n")  # allowed by name
    (tmp_path / "reproduce" / "datasets" / "helper.py").write_text("import click.testing\n")
    assert click_offenders(tmp_path) == ["reproduce/datasets/helper.py", "reproduce/lib.py"]


def test_library_modules_import_no_cli_module():
    # the layers point one way: commands call the library, never the other way round
    offenders = []
    for folder in ("reproduce", "nets", "weight_convert"):
        for path in python_files(folder):
            relative = path.relative_to(ROOT).as_posix()
            if is_cli_module(relative):
                continue
            for name in imports(path):
                target = name.replace(".", "/")
                if any(target == m.removesuffix(".py") for m in CLICK_ALLOWED) or target.endswith("_cli") \
                        or "_cli/" in target:
                    offenders.append(f"{relative}: {name}")
    assert not offenders, offenders
