"""The published numbers as data: loads reproduce/reporting/paper_data/tables.json and the per-table CSVs.

They are package data (an installed `fcn tables` needs them); `results/paper` is a link to the same
folder, where the repository's documents point. reproduce/reporting/paper_data/tables.json indexes the tables (source, caption, verified flag, notes, and how each
column maps onto our metrics.json); each table's rows are a CSV beside it. The format is described
in tables.json itself ("format", "column_fields") and in results/README.md.
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FIXED_COLUMNS = ("method", "experiment", "split", "unverified", "note")
COMPARE_MODES = ("tolerance", "show", "none")
VERIFIED_VALUES = ("yes", "partial", "no")


def default_paper_dir() -> Path:
    """reproduce/reporting/paper_data/: the paper's tables, shipped with the package (results/paper/ in a checkout)."""
    return Path(__file__).resolve().parent / "paper_data"


@dataclass(frozen=True)
class PaperColumn:
    """One numeric column of a paper table and how it maps onto our results."""

    name: str
    header: str
    metric: str | None  # dotted path into metrics.json ("{col}" filled from label columns), or None
    compare: str  # "tolerance" | "show" | "none"
    split: str | None = None  # overrides the row's split for this column


@dataclass(frozen=True)
class PaperRow:
    """One row as printed: values in percent (or the column's unit); None where the paper has '-'."""

    method: str
    experiment: str | None
    split: str | None
    labels: dict[str, str]
    values: dict[str, float | None]
    printed: dict[str, str]
    unverified: frozenset[str]
    note: str

    def is_unverified(self, column: str) -> bool:
        return column in self.unverified


@dataclass(frozen=True)
class PaperTable:
    id: str
    file: str
    source: str
    source_text: str
    where: str
    title: str
    caption: str
    verified: str
    third_party: bool
    label_columns: tuple[str, ...]
    columns: tuple[PaperColumn, ...]
    rows: tuple[PaperRow, ...]
    notes: tuple[str, ...] = ()
    readings: tuple[tuple[str, str], ...] = field(default=(("scores", ""),))

    def row(self, method: str, **labels: str) -> PaperRow:
        """The unique row with this method label (and label-column values); KeyError if none."""
        hits = [r for r in self.rows if r.method == method and all(r.labels.get(k) == v for k, v in labels.items())]
        if len(hits) != 1:
            raise KeyError(f"{self.file}: {len(hits)} rows match method={method!r} {labels}")
        return hits[0]


def load_paper_tables(paper_dir: str | os.PathLike | None = None) -> list[PaperTable]:
    """Load every table listed in <paper_dir>/tables.json (default: the repo's results/paper/).

    Raises ValueError naming the file (and line) on any malformed entry.
    """
    root = Path(paper_dir) if paper_dir is not None else default_paper_dir()
    index_path = root / "tables.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path}: paper tables index not found (pass the results/paper directory)")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{index_path}: not valid JSON ({e})") from e
    sources = index.get("sources", {})
    tables = []
    seen: set[str] = set()
    for i, entry in enumerate(index.get("tables", [])):
        where = f"{index_path}: tables[{i}]"
        for key in ("id", "file", "source", "title", "caption", "verified", "columns"):
            if key not in entry:
                raise ValueError(f"{where}: missing {key!r}")
        if entry["id"] in seen:
            raise ValueError(f"{where}: duplicate table id {entry['id']!r}")
        seen.add(entry["id"])
        if entry["source"] not in sources:
            raise ValueError(f"{where}: source {entry['source']!r} not in 'sources'")
        if entry["verified"] not in VERIFIED_VALUES:
            raise ValueError(f"{where}: verified must be one of {VERIFIED_VALUES}, got {entry['verified']!r}")
        columns = tuple(_parse_column(c, f"{where}.columns[{j}]") for j, c in enumerate(entry["columns"]))
        label_columns = tuple(entry.get("label_columns", []))
        rows = _load_rows(root / entry["file"], columns, label_columns)
        readings = tuple((r["key"], r.get("label", "")) for r in entry.get("readings", [{"key": "scores"}]))
        tables.append(
            PaperTable(
                id=entry["id"], file=entry["file"], source=entry["source"], source_text=sources[entry["source"]],
                where=entry.get("where", ""), title=entry["title"], caption=entry["caption"],
                verified=entry["verified"], third_party=bool(entry.get("third_party", False)),
                label_columns=label_columns, columns=columns, rows=rows,
                notes=tuple(entry.get("notes", [])), readings=readings,
            )
        )
    if not tables:
        raise ValueError(f"{index_path}: no tables listed")
    return tables


def load_paper_table(table_id: str, paper_dir: str | os.PathLike | None = None) -> PaperTable:
    """One table by id (e.g. "table4_nyud")."""
    for t in load_paper_tables(paper_dir):
        if t.id == table_id:
            return t
    raise KeyError(f"no paper table with id {table_id!r}")


def _parse_column(c: dict[str, Any], where: str) -> PaperColumn:
    for key in ("name", "header", "compare"):
        if key not in c:
            raise ValueError(f"{where}: missing {key!r}")
    if c["compare"] not in COMPARE_MODES:
        raise ValueError(f"{where}: compare must be one of {COMPARE_MODES}, got {c['compare']!r}")
    if c["compare"] != "none" and not c.get("metric"):
        raise ValueError(f"{where}: compare {c['compare']!r} needs a 'metric' path")
    return PaperColumn(name=c["name"], header=c["header"], metric=c.get("metric"), compare=c["compare"],
                       split=c.get("split"))


def _load_rows(path: Path, columns: tuple[PaperColumn, ...], label_columns: tuple[str, ...]) -> tuple[PaperRow, ...]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: paper table CSV not found")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        expected = set(FIXED_COLUMNS) | set(label_columns) | {c.name for c in columns}
        missing = expected - set(header)
        extra = set(header) - expected
        if missing or extra:
            raise ValueError(f"{path}: header {header} lacks {sorted(missing)} / has unknown {sorted(extra)}")
        rows = []
        for line_no, raw in enumerate(reader, start=2):
            if None in raw or any(v is None for v in raw.values()):
                raise ValueError(f"{path}:{line_no}: wrong number of fields")
            values: dict[str, float | None] = {}
            printed: dict[str, str] = {}
            for c in columns:
                text = raw[c.name].strip()
                printed[c.name] = text
                if text == "":
                    values[c.name] = None
                    continue
                try:
                    values[c.name] = float(text)
                except ValueError:
                    raise ValueError(f"{path}:{line_no}: column {c.name!r} is not a number: {text!r}") from None
            unv = raw["unverified"].strip()
            if unv == "all":
                unverified = frozenset(c.name for c in columns)
            elif unv:
                unverified = frozenset(s.strip() for s in unv.split(";"))
                unknown = unverified - {c.name for c in columns}
                if unknown:
                    raise ValueError(f"{path}:{line_no}: 'unverified' names unknown columns {sorted(unknown)}")
            else:
                unverified = frozenset()
            rows.append(
                PaperRow(
                    method=raw["method"].strip(),
                    experiment=raw["experiment"].strip() or None,
                    split=raw["split"].strip() or None,
                    labels={k: raw[k].strip() for k in label_columns},
                    values=values, printed=printed, unverified=unverified, note=raw["note"].strip(),
                )
            )
    if not rows:
        raise ValueError(f"{path}: no rows")
    return tuple(rows)
