"""`fcn data hha`: write HHA PNGs from the official NYUDv2 .mat or from a folder of depth PNGs."""
from __future__ import annotations

import os
from pathlib import Path

import click

from reproduce.datasets.hha import (NYUD_COLOR_CX, NYUD_COLOR_CY, NYUD_COLOR_FX, NYUD_COLOR_FY,
                                    camera_matrix)
from reproduce.datasets.hha_batch import NYUD_FIRST_ID, convert_all, mat_frames, png_frames

__all__ = ["hha_command"]


@click.command("hha")
@click.option("--mat", "mat_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Official nyu_depth_v2_labeled.mat (datasets 'depths' and 'rawDepths', metres).")
@click.option("--depth-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of filled depth PNGs (integer, --depth-scale per metre).")
@click.option("--raw-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder of raw depth PNGs with the same file names (0 = missing). "
                   "Without it each depth PNG is its own raw depth.")
@click.option("--depth-scale", type=float, default=1000.0, show_default=True,
              help="PNG value per metre: 1000 for millimetres (NYUD2), 10000 for the Depth2HHA demo.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder, e.g. data/nyud/data/hha; one <name>.png per frame.")
@click.option("--jobs", type=click.IntRange(min=1), default=min(2, os.cpu_count() or 1),
              show_default=True, help="Worker processes.")
@click.option("--first-id", type=int, default=NYUD_FIRST_ID, show_default=True,
              help="With --mat: frame i is written as img_<first-id + i>.png.")
@click.option("--round-mm/--no-round-mm", default=True, show_default=True,
              help="With --mat: round the metres to whole millimetres first, as the uint16 "
                   "millimetre PNGs that saveHHA.m reads hold them (UNVERIFIED that Gupta et al. "
                   "made theirs exactly so).")
@click.option("--camera", nargs=4, type=float,
              default=(NYUD_COLOR_FX, NYUD_COLOR_FY, NYUD_COLOR_CX, NYUD_COLOR_CY),
              show_default=True, metavar="FX FY CX CY",
              help="Colour camera intrinsics in pixels (1-based centre); default NYUDv2's.")
def hha_command(mat_path: Path | None, depth_dir: Path | None, raw_dir: Path | None,
                depth_scale: float, out_dir: Path, jobs: int, first_id: int, round_mm: bool,
                camera: tuple[float, float, float, float]) -> None:
    """Encode depth as HHA (Gupta et al. 2014, saveHHA.m): disparity, height, gravity angle.

    Frames whose PNG already exists in --out are skipped, so an interrupted run can simply be
    started again.
    """
    if (mat_path is None) == (depth_dir is None):
        raise click.UsageError("give exactly one of --mat or --depth-dir")
    if raw_dir is not None and depth_dir is None:
        raise click.UsageError("--raw-dir goes with --depth-dir (the .mat holds its raw depth)")
    try:
        frames = (mat_frames(mat_path, first_id, round_mm) if mat_path is not None
                  else png_frames(depth_dir, raw_dir, depth_scale))
    except ValueError as e:
        raise click.ClickException(str(e)) from None
    result = convert_all(frames, out_dir, camera=camera_matrix(*camera), jobs=jobs)
    click.echo(f"HHA: {len(result.written)} written, {len(result.skipped)} already done, "
               f"{len(result.failed)} failed, of {result.total} frames -> {out_dir}")
    if result.failed:
        for name, reason in result.failed:
            click.echo(f"  {name}: {reason}", err=True)
        raise click.ClickException(f"{len(result.failed)} frame(s) failed; fix them and run again "
                                   "(finished frames are kept and skipped)")
