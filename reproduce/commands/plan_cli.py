"""`fcn plan`: the click command over reproduce.pipeline.plan (which holds the logic and no click)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from reproduce.pipeline import plan as planning
from reproduce.commands.cli_options import data_root_option


@click.command("plan")
@click.argument("group", type=click.Choice(planning.GROUP_NAMES), default="all", required=False)
@click.option("--gpus", type=click.IntRange(min=1), default=1, show_default=True,
              help="GPUs running independent stages at the same time (the order they would take).")
@click.option("--bench-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("results/bench"),
              show_default=True, help="Where the measured step times are (gpu.json from make bench-gpu, nets.json).")
@data_root_option(must_exist=False)  # what is there now is reported on disk
@click.option("--keep-snapshots", type=click.IntRange(min=1), default=2, show_default=True,
              help="Snapshots kept per stage (fcn train --keep-snapshots), for the disk figures.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan_command(group: str, gpus: int, bench_dir: Path, data_root: Path, keep_snapshots: int,
                 as_json: bool) -> None:
    """Stages of GROUP (voc, nyud, siftflow, context, alexnet, googlenet or all) with their dependencies,
    iterations, estimated GPU-hours (saying which measurement they use), disk, and the order in which
    --gpus N GPUs would run them. What --data-root already holds is reported with its size on disk."""
    result = planning.make_plan(group, gpus=gpus, bench_dir=bench_dir, data_root=data_root,
                                keep_snapshots=keep_snapshots)
    click.echo(json.dumps(result.to_dict(), indent=1) if as_json else planning.render(result), nl=as_json)
