"""`fcn smoke data` and `fcn smoke vgg16`: the commands over reproduce/pipeline/smoke.py (which does the work)."""
from __future__ import annotations

from pathlib import Path

import click

from reproduce.pipeline.smoke import prepare_data, vgg16_layers
from weight_convert.caffe_writer import write_caffemodel


@click.group("smoke")
def smoke_group() -> None:
    """Inputs for `make reproduce-smoke` (not the paper's data or weights)."""


@smoke_group.command("data")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
def data_command(out: Path) -> None:
    """Lay the shipped VOC/SBD samples out as a data root in OUT."""
    try:
        prepare_data(out)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"smoke data root: {out}")


@smoke_group.command("vgg16")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
# Not the shared --width (reproduce/commands/cli_options.py): this one is the width of a file to write, and
# the smoke run's nets are 1/16 wide, so that is its default (a full-width file is 528 MB).
@click.option("--width", type=click.FloatRange(min=0, min_open=True), default=1 / 16, show_default=True,
              help="Trunk width multiplier of the file written.")
@click.option("--seed", type=int, default=0, show_default=True)
def vgg16_command(out: Path, width: float, seed: int) -> None:
    """Write a V1 VGG16-shaped .caffemodel (random weights, reduced width) to OUT."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_caffemodel(out, "VGG_ILSVRC_16_layers", vgg16_layers(width, seed), version=1)
    click.echo(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, width {width})")
