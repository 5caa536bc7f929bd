"""`fcn export caffe`: the command over reproduce/reporting/export.py (which does the work)."""
from __future__ import annotations

from pathlib import Path

import click

import nets
from reproduce import experiments
from reproduce.commands.cli_options import WIDTH
from reproduce.reporting.export import export_caffe


@click.group("export")
def export_group() -> None:
    """Export a net of this project to other frameworks."""


@export_group.command("caffe")
@click.argument("experiment", type=click.Choice(experiments.names()), metavar="EXPERIMENT")
@click.option("--weights", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A .pt state dict / checkpoint (fcn train's final.pt, convert-caffe's output) or a .caffemodel.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for deploy.prototxt and EXPERIMENT.caffemodel (created if missing).")
@WIDTH
@click.option("--input-size", nargs=3, type=click.IntRange(min=1), default=nets.caffe_graph.DEPLOY_INPUT,
              show_default=True, metavar="N H W", help="Shape of the Input layer (Caffe reshapes to any size).")
@click.option("--force", is_flag=True, help="Replace deploy.prototxt / the caffemodel if they exist.")
def export_caffe_command(experiment: str, weights: Path, out_dir: Path, width: float | None,
                         input_size: tuple[int, int, int], force: bool) -> None:
    """Write EXPERIMENT's deploy.prototxt and its weights as a V2 .caffemodel into --out."""
    try:
        done = export_caffe(experiment, weights, out_dir, width=width, input_size=tuple(input_size), force=force)
    except (FileExistsError, ValueError, KeyError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"{exc.filename or out_dir}: {exc.strerror or exc}") from None
    click.echo(f"wrote {done.prototxt} ({done.layers} layers) and {done.caffemodel} ({done.blobs} blobs)")
