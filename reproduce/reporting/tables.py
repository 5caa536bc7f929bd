"""The paper's tables regenerated side by side with our runs (`fcn tables`).

For every table in results/paper/ this writes <out>/<table id>.md (each cell "paper / ours (ours -
paper)", each row marked within or outside the tolerance) and <out>/<table id>.csv (one line per
row and column, for machines), plus <out>/index.md. Our numbers come from metrics.json files (and
Appendix A's upper_bound.json) found under the run directories; Table 1's timing column comes from
the forward benchmark JSON.

Forward benchmark JSON (results/bench/forward.json), either shape:
    {"device": "NVIDIA H100 80GB HBM3", "forward_ms": {"voc-fcn32s": 12.3, ...}, ...}
    {"device": "...", "nets": {"voc-fcn32s": {"forward_ms": 12.3, ...}, ...}, ...}
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from reproduce.atomic import write_text_atomic
from reproduce.evaluation.metrics import read_metrics_json
from reproduce.reporting.paper import PaperColumn, PaperRow, PaperTable, load_paper_tables

DEFAULT_TOLERANCE = 1.0
RUN_FILE_NAMES = ("metrics.json", "upper_bound.json")
CSV_FIELDS = ("table", "method", "labels", "reading", "experiment", "split", "column", "paper", "ours",
              "diff", "status", "unverified", "run")

# Cell statuses (CSV "status" column).
WITHIN, OUTSIDE, SHOWN = "within", "outside", "shown"
PAPER_ONLY, NO_EXPERIMENT, NOT_RUN = "paper only", "no experiment", "not run"
NOT_MEASURED, NOT_IN_RUN, NO_PAPER_NUMBER, NO_VALUE = "not measured", "not in run", "no paper number", "no value"


# ---------------------------------------------------------------------------------------------
# our results


@dataclass(frozen=True)
class Run:
    path: Path
    record: dict[str, Any]


@dataclass(frozen=True)
class Bench:
    path: Path
    device: str
    forward_ms: dict[str, float]


def find_run_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """metrics.json / upper_bound.json files: a file path is taken as is, a directory is searched
    recursively. Sorted, without duplicates."""
    found: set[Path] = set()
    for p in paths:
        p = Path(p)
        if p.is_file():
            found.add(p)
        elif p.is_dir():
            for name in RUN_FILE_NAMES:
                found.update(p.rglob(name))
        else:
            raise FileNotFoundError(f"{p}: no such run directory or metrics file")
    return sorted(found)


def load_runs(paths: Iterable[str | os.PathLike]) -> dict[tuple[str, str], list[Run]]:
    """Runs keyed by (experiment, split)."""
    runs: dict[tuple[str, str], list[Run]] = {}
    for f in find_run_files(paths):
        if f.name == "upper_bound.json":
            rec = json.loads(f.read_text(encoding="utf-8"))
            for key in ("experiment", "split", "scores_by_factor"):
                if key not in rec:
                    raise ValueError(f"{f}: missing key {key!r}")
        else:
            rec = read_metrics_json(f)
        runs.setdefault((rec["experiment"], rec["split"]), []).append(Run(f, rec))
    return runs


def pick_run(candidates: Sequence[Run]) -> Run:
    """Of several runs of one experiment and split, the one at the highest iteration (released
    weights, iteration null, count lowest); ties go to the last path in sort order."""
    def key(r: Run) -> tuple[int, str]:
        it = r.record.get("iteration")
        return (-1 if it is None else int(it), str(r.path))
    return max(candidates, key=key)


def load_bench(path: str | os.PathLike) -> Bench:
    """Read the forward benchmark JSON (see the module docstring for its shape)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict) or "device" not in data:
        raise ValueError(f"{path}: expected an object with 'device' and 'forward_ms' (or 'nets')")
    ms: dict[str, float] = {}
    if isinstance(data.get("forward_ms"), dict):
        ms = {k: float(v) for k, v in data["forward_ms"].items()}
    elif isinstance(data.get("nets"), dict):
        for name, entry in data["nets"].items():
            if isinstance(entry, dict) and "forward_ms" in entry:
                ms[name] = float(entry["forward_ms"])
    else:
        raise ValueError(f"{path}: needs 'forward_ms' {{net: ms}} or 'nets' {{net: {{'forward_ms': ms}}}}")
    return Bench(path=path, device=str(data["device"]), forward_ms=ms)


def resolve_metric(record: dict[str, Any], path: str) -> Any:
    """Follow a dotted path ("scores.mean_iu", "scores_by_factor.32.mean_iu") into a record.
    Raises KeyError if a step is missing."""
    node: Any = record
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(path)
        node = node[part]
    return node


# ---------------------------------------------------------------------------------------------
# comparison


@dataclass(frozen=True)
class Cell:
    column: PaperColumn
    paper: float | None
    paper_printed: str
    ours: float | None
    status: str
    unverified: bool
    run: Path | None

    @property
    def diff(self) -> float | None:
        if self.paper is None or self.ours is None:
            return None
        return self.ours - self.paper


@dataclass(frozen=True)
class ComparedRow:
    row: PaperRow
    reading_key: str
    reading_label: str
    cells: tuple[Cell, ...]
    status: str


def _reading_metric(metric: str, reading_key: str, labels: dict[str, str]) -> str:
    metric = metric.format(**labels)
    if reading_key != "scores" and metric.startswith("scores."):
        metric = reading_key + metric[len("scores"):]
    return metric


def compare_table(
    table: PaperTable,
    runs: dict[tuple[str, str], list[Run]],
    tolerance: float,
    bench: Bench | None,
) -> tuple[list[ComparedRow], dict[tuple[str, str], Run], list[str]]:
    """Compare one paper table with our runs. Returns the compared rows, the runs used and notes
    about choices made (several runs for one experiment)."""
    used: dict[tuple[str, str], Run] = {}
    notes: list[str] = []
    out: list[ComparedRow] = []
    for row in table.rows:
        readings = table.readings if row.experiment else (("scores", ""),)
        for reading_key, reading_label in readings:
            cells = []
            for col in table.columns:
                cells.append(_compare_cell(table, row, col, reading_key, runs, tolerance, bench, used, notes))
            out.append(ComparedRow(row, reading_key, reading_label, tuple(cells), _row_status(row, cells)))
    return out, used, notes


def _compare_cell(table, row, col, reading_key, runs, tolerance, bench, used, notes) -> Cell:
    paper = row.values[col.name]
    printed = row.printed[col.name]
    unverified = row.is_unverified(col.name)

    def cell(ours: float | None, status: str, run: Path | None = None) -> Cell:
        return Cell(col, paper, printed, ours, status, unverified, run)

    if col.compare == "none":
        return cell(None, PAPER_ONLY)
    if row.experiment is None:
        return cell(None, NO_EXPERIMENT)
    if col.metric == "bench.forward_ms":
        if bench is None or row.experiment not in bench.forward_ms:
            return cell(None, NOT_MEASURED)
        return cell(bench.forward_ms[row.experiment], SHOWN, bench.path)
    split = col.split or row.split or ""
    key = (row.experiment, split)
    if key not in runs:
        return cell(None, NOT_RUN)
    run = used.get(key)
    if run is None:
        run = pick_run(runs[key])
        used[key] = run
        if len(runs[key]) > 1:
            notes.append(f"{len(runs[key])} runs of {row.experiment} on {split}; used {run.path} "
                         f"(highest iteration).")
    try:
        value = resolve_metric(run.record, _reading_metric(col.metric, reading_key, row.labels))
    except KeyError:
        return cell(None, NOT_IN_RUN, run.path)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return cell(None, NO_VALUE, run.path)
    ours = float(value)
    if col.compare == "show":
        return cell(ours, SHOWN, run.path)
    if paper is None:
        return cell(ours, NO_PAPER_NUMBER, run.path)
    # A tiny slack so that a difference of exactly the tolerance (e.g. 1.0) is not lost to rounding.
    within = abs(ours - paper) <= tolerance + 1e-9
    return cell(ours, WITHIN if within else OUTSIDE, run.path)


def _row_status(row: PaperRow, cells: Sequence[Cell]) -> str:
    statuses = [c.status for c in cells]
    if OUTSIDE in statuses:
        return OUTSIDE
    if WITHIN in statuses:
        return WITHIN
    if row.experiment is None:
        return NO_EXPERIMENT
    if NOT_RUN in statuses:
        return NOT_RUN
    if SHOWN in statuses:
        return SHOWN
    if NOT_MEASURED in statuses:
        return NOT_MEASURED
    return NO_VALUE if any(s in (NOT_IN_RUN, NO_VALUE, NO_PAPER_NUMBER) for s in statuses) else PAPER_ONLY


# ---------------------------------------------------------------------------------------------
# rendering


def _decimals(printed: str) -> int:
    return len(printed.split(".", 1)[1]) if "." in printed else 1


def _fmt(value: float, decimals: int, sign: bool = False) -> str:
    return f"{value:+.{decimals}f}" if sign else f"{value:.{decimals}f}"


def _display_path(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def _method_label(r: ComparedRow) -> str:
    return f"{r.row.method} [{r.reading_label}]" if r.reading_label else r.row.method


def _md_cell(c: Cell) -> str:
    paper = (c.paper_printed or "–") + (" †" if c.unverified else "")
    if c.status in (PAPER_ONLY, NO_EXPERIMENT):
        return paper
    if c.ours is None:
        return f"{paper} / {c.status}"
    d = _decimals(c.paper_printed) if c.paper_printed else 1
    ours = _fmt(c.ours, d)
    if c.diff is None:
        return f"{paper} / {ours}"
    return f"{paper} / {ours} ({_fmt(c.diff, d, sign=True)})"


def _status_text(status: str, tolerance: float) -> str:
    if status == WITHIN:
        return f"within ±{tolerance:g}"
    if status == OUTSIDE:
        return f"**outside ±{tolerance:g}**"
    return status


def _titled(title: str, caveat: str | None) -> str:
    """A page title, with the caveat (what kind of run this is) in the title itself when given."""
    return f"{title} — {caveat}" if caveat else title


def render_markdown(table: PaperTable, rows: Sequence[ComparedRow], used: dict[tuple[str, str], Run],
                    notes: Sequence[str], tolerance: float, bench: Bench | None, caveat: str | None = None) -> str:
    """The markdown page of one table; `caveat` (e.g. "smoke run ...") is appended to its title."""
    lines = [f"# {_titled(table.title, caveat)}", ""]
    verified = {"yes": "verified against the source", "partial": "partly UNVERIFIED (marked †)",
                "no": "UNVERIFIED (recalled, not read from the source)"}[table.verified]
    lines.append(f"Source: {table.source} {table.where} — {table.source_text}")
    lines.append(f"Numbers: {verified}." + (" Third-party measurement, not a paper table." if table.third_party else ""))
    lines.append("")
    lines.append(table.caption)
    lines.append("")
    lines.append(f"Each cell: paper / ours (ours − paper), in percentage points. A row is *within* when every "
                 f"compared number is within ±{tolerance:g} points of the paper's, *outside* otherwise. "
                 f"\"not run\": no metrics.json for that experiment and split.")
    lines.append("")
    header = ["Method", *table.label_columns, "Experiment", *(c.header for c in table.columns), "Status"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for r in rows:
        exp = f"`{r.row.experiment}`" if r.row.experiment else "—"
        cells = [_method_label(r), *(r.row.labels[k] for k in table.label_columns), exp,
                 *(_md_cell(c) for c in r.cells), _status_text(r.status, tolerance)]
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    lines.append("")
    if any(c.unverified for r in rows for c in r.cells):
        lines.append("† UNVERIFIED number (see results/paper/ and docs/reference.md §5).")
        lines.append("")
    if any(c.metric == "bench.forward_ms" for c in table.columns):
        if bench is None:
            lines.append("Our forward times: not measured (no results/bench/forward.json; run `make bench`).")
        else:
            lines.append(f"Our forward times: {bench.device}, from {_display_path(bench.path)}; shown, not compared "
                         f"(the paper's are on a Tesla K40c).")
        lines.append("")
    row_notes = [(r.row.method, r.row.note) for r in rows if r.row.note]
    all_notes = list(table.notes) + [f"{m}: {n}" for m, n in dict.fromkeys(row_notes)] + list(notes)
    if all_notes:
        lines.append("Notes:")
        lines.extend(f"- {n}" for n in all_notes)
        lines.append("")
    if used:
        lines.append("Runs used:")
        for (exp, split), run in sorted(used.items()):
            it = run.record.get("iteration")
            weights = run.record.get("weights")
            extra = ", ".join(x for x in (f"iteration {it}" if it is not None else "",
                                          f"weights {weights}" if weights else "") if x)
            lines.append(f"- `{exp}` on {split}: {_display_path(run.path)}" + (f" ({extra})" if extra else ""))
        lines.append("")
    return "\n".join(lines)


def render_csv(table: PaperTable, rows: Sequence[ComparedRow]) -> str:
    """One line per (row, reading, column): paper, ours, diff and status."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        for c in r.cells:
            w.writerow({
                "table": table.id,
                "method": r.row.method,
                "labels": ";".join(f"{k}={v}" for k, v in r.row.labels.items()),
                "reading": r.reading_key if r.row.experiment else "",
                "experiment": r.row.experiment or "",
                "split": (c.column.split or r.row.split or "") if r.row.experiment else "",
                "column": c.column.name,
                "paper": c.paper_printed,
                "ours": "" if c.ours is None else repr(round(c.ours, 6)),
                "diff": "" if c.diff is None else repr(round(c.diff, 6)),
                "status": c.status,
                "unverified": "yes" if c.unverified else "",
                "run": _display_path(c.run) if c.run else "",
            })
    return buf.getvalue()


def render_tables(
    run_dirs_or_metrics: Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    tolerance: float = DEFAULT_TOLERANCE,
    bench: str | os.PathLike | None = None,
    paper_dir: str | os.PathLike | None = None,
    caveat: str | None = None,
) -> list[Path]:
    """Write <out_dir>/<table>.md and .csv for every paper table, and <out_dir>/index.md.

    run_dirs_or_metrics: directories (searched recursively for metrics.json / upper_bound.json)
        or such files.
    tolerance: percentage points; a compared number within ±tolerance of the paper's is "within".
    bench: forward benchmark JSON for Table 1's timing column, or None ("not measured").
    caveat: what kind of run produced the metrics when it is not a reproduction (the smoke run:
        "1/16-width nets, ... a check of the pipeline"); written into every title.
    Returns the paths written.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    runs = load_runs(run_dirs_or_metrics)
    bench_data = load_bench(bench) if bench is not None else None
    out = Path(out_dir)
    written: list[Path] = []
    summary = []
    for table in load_paper_tables(paper_dir):
        rows, used, notes = compare_table(table, runs, tolerance, bench_data)
        md_path, csv_path = out / f"{table.id}.md", out / f"{table.id}.csv"
        write_text_atomic(md_path, render_markdown(table, rows, used, notes, tolerance, bench_data, caveat))
        write_text_atomic(csv_path, render_csv(table, rows))
        written += [md_path, csv_path]
        counts = {s: sum(r.status == s for r in rows) for s in (WITHIN, OUTSIDE, NOT_RUN)}
        summary.append((table, counts))
    index = [
        "# " + _titled("The paper's tables, regenerated", caveat),
        "",
        f"Tolerance ±{tolerance:g} percentage points. Rows counted per table "
        "(rows without an experiment of ours are not counted).",
        "",
        "| Table | Source | within | outside | not run |",
        "|---|---|---|---|---|",
    ]
    for table, c in summary:
        index.append(f"| [{table.title}]({table.id}.md) | {table.source} {table.where} | {c[WITHIN]} | "
                     f"{c[OUTSIDE]} | {c[NOT_RUN]} |")
    index.append("")
    write_text_atomic(out / "index.md", "\n".join(index))
    written.append(out / "index.md")
    return written


DEFAULT_BENCH = Path("results/bench/forward.json")
