"""`fcn tables`: the command over reproduce/reporting/tables.py (which does the work)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from reproduce.reporting.tables import DEFAULT_BENCH, DEFAULT_TOLERANCE, render_tables


@click.command("tables")
@click.option("--runs", "runs", multiple=True, type=click.Path(path_type=Path),
              help="Run directory (searched recursively for metrics.json) or metrics file; repeatable. "
                   "Default: runs/ if it exists.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path("results/tables"),
              show_default=True, help="Where the markdown and CSV tables go.")
@click.option("--tolerance", type=float, default=DEFAULT_TOLERANCE, show_default=True,
              help="Within ± this many percentage points of the paper counts as reproduced.")
@click.option("--bench", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help=f"Forward benchmark JSON for Table 1's timing column. Default: {DEFAULT_BENCH} if it exists.")
@click.option("--paper-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory with tables.json and the paper's CSVs. Default: the package's own "
                   "(reproduce/reporting/paper_data, also results/paper in a checkout).")
@click.option("--caveat", default=None,
              help="What kind of run this is when it is not a reproduction (e.g. the smoke run's "
                   "reduced width and sample images); appended to every table's title.")
def tables_command(runs: tuple[Path, ...], out: Path, tolerance: float, bench: Path | None,
                   paper_dir: Path | None, caveat: str | None) -> None:
    """Render the paper's tables with our numbers beside them (markdown + CSV per table)."""
    run_paths: list[Path] = list(runs)
    if not run_paths:
        if Path("runs").is_dir():
            run_paths = [Path("runs")]
        else:
            click.echo("no --runs given and no runs/ directory: every row will read 'not run'", err=True)
    for p in run_paths:
        if not p.exists():
            raise click.BadParameter(f"{p}: no such run directory or metrics file", param_hint="--runs")
    if bench is None and DEFAULT_BENCH.is_file():
        bench = DEFAULT_BENCH
    elif bench is not None and not bench.is_file():
        raise click.BadParameter(f"{bench}: no such benchmark file", param_hint="--bench")
    try:
        written = render_tables(run_paths, out, tolerance=tolerance, bench=bench, paper_dir=paper_dir,
                                caveat=caveat)
    except (ValueError, FileNotFoundError) as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"wrote {len(written)} files to {out} (index: {out / 'index.md'})", file=sys.stdout)
