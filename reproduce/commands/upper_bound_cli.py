"""`fcn upper-bound`: the command over reproduce/evaluation/upper_bound.py (which does the work)."""
from __future__ import annotations

from pathlib import Path

import click

from reproduce.evaluation.upper_bound import (PAPER_FACTORS, VOC_NUM_CLASSES, VOID_POLICIES, labelled_split,
                                   write_upper_bound)


def _parse_factors(text: str) -> list[int]:
    try:
        factors = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None
    if not factors or any(f < 1 for f in factors):
        raise click.BadParameter(f"factors must be integers >= 1, got {text!r}")
    return factors


@click.command("upper-bound")
@click.option("--voc-dir", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="VOC root holding SegmentationClass/ (e.g. .../VOC2011 or .../VOC2012).")
@click.option("--split", default="seg11valid", show_default=True, help="Split name (list of ids).")
@click.option("--split-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Explicit id list (default: <voc-dir>/ImageSets/Segmentation/<split>.txt).")
@click.option("--factors", default=",".join(map(str, PAPER_FACTORS)), show_default=True,
              help="Comma-separated downsampling factors.")
@click.option("--num-classes", default=VOC_NUM_CLASSES, show_default=True, type=int)
@click.option("--void", "void", type=click.Choice(VOID_POLICIES), default="wrong", show_default=True,
              help="Pixels of a block whose sampled label is void: count as wrong, or leave out.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("results/upper_bound"),
              show_default=True, help="Writes upper_bound.json and upper_bound.md here.")
def upper_bound_command(voc_dir: Path, split: str, split_file: Path | None, factors: str, num_classes: int,
                        void: str, out: Path) -> None:
    """Appendix A: mean IU of the ground truth downsampled by each factor and upsampled back."""
    factor_list = _parse_factors(factors)
    try:
        ids, label_dir = labelled_split(voc_dir, split, split_file)
    except (FileNotFoundError, ValueError) as e:
        raise click.ClickException(str(e)) from e
    json_path, md_path = write_upper_bound(ids, label_dir, split, factor_list, num_classes, void, out)
    click.echo(f"wrote {json_path} and {md_path}")
