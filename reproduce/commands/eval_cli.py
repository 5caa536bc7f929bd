"""The `fcn eval`, `fcn infer` and `fcn figure` commands (registered in reproduce/commands/cli.py)."""
from __future__ import annotations

import math
from pathlib import Path

import click
import torch
from PIL import Image

from reproduce import experiments
from reproduce.evaluation import metrics
from reproduce.atomic import save_png_atomic, write_json_atomic
from reproduce.commands.cli_options import DATA_ROOT, DEVICE, WIDTH, WORKERS
from reproduce.evaluation.palette import colorize, read_label_png

EXPERIMENT_ARG = click.argument("experiment", type=click.Choice(experiments.names()), metavar="EXPERIMENT")
WEIGHTS = click.option("--weights", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
                       help="A .pt state dict / checkpoint (fcn train's final.pt) or a .caffemodel.")


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


def _load(experiment, weights: Path, width: float | None, device):
    from reproduce.evaluation.infer import load_net
    try:
        return load_net(experiment, weights, width=width, device=device)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        raise _fail(exc) from None


def _renamed_fast(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    # "fast" means the exact default kernels (nets/fast.py) now; the bf16 mode is --bf16. Refused,
    # not aliased, so that a script asking for it learns it is not Caffe-exact.
    if value:
        raise click.UsageError("--fast was renamed --bf16 (bfloat16 autocast, not Caffe-exact); the default "
                               "path is already the fast exact one", ctx=ctx)


def _summary(record: dict) -> str:
    def fmt(v):
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"
    s = record["scores"]
    parts = [f"{k} {fmt(s[k])}" for k in metrics.SCORE_KEYS]
    if "scores_geo" in record:
        parts.append(f"geo pixel_acc {fmt(record['scores_geo']['pixel_acc'])}")
    loss = record.get("loss")
    parts.append(f"loss {loss:.6g}" if loss is not None else "loss n/a")
    return f"{record['experiment']} {record['split']} ({record['num_images']} images): " + ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# fcn eval


@click.command("eval")
@EXPERIMENT_ARG
@WEIGHTS
@DATA_ROOT
@click.option("--split", default=None, help="Split to score (default: the experiment's val split; "
                                            "with --export-voc-test: test).")
@DEVICE
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("metrics.json"),
              show_default=True, help="Where metrics.json is written (atomically).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Score only the first N images.")
@WIDTH
@WORKERS
@click.option("--iteration", type=int, default=None,
              help="Training iteration to record (default: from the checkpoint or an iter_<N>.pt name).")
@click.option("--export-voc-test", "export_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Instead of scoring: write VOC test predictions in the evaluation server's layout "
                   "under this folder and pack them as a .tar.gz for upload (--data-root: the VOC test "
                   "devkit, e.g. VOCdevkit/VOC2012 of VOC2012test.tar).")
@click.option("--voc-year", type=click.Choice(["2012", "2011"]), default="2012", show_default=True,
              help="With --export-voc-test: which VOC test set.")
@click.option("--comp", default="comp6", show_default=True,
              help="With --export-voc-test: VOC competition id (comp6: trained on data beyond VOC, "
                   "as FCN is on SBD; comp5: VOC data only).")
@click.option("--bf16", is_flag=True,
              help="Opt-in bf16 mode: bfloat16 autocast (reproduce/evaluation/bf16.py). NOT Caffe-exact; recorded in "
                   "metrics.json (bf16_mode). Off by default.")
@click.option("--fast", is_flag=True, hidden=True, expose_value=False, callback=_renamed_fast)
@click.option("--progress/--no-progress", default=True, show_default=True,
              help="Show progress on stderr: a bar on a terminal, else a line every $FCN_PROGRESS_SECONDS "
                   "(default 30) seconds with images done, images/s and ETA.")
def eval_command(experiment: str, weights: Path, data_root: Path, split: str | None, device: torch.device, out: Path,
                 limit: int | None, width: float | None, workers: int, iteration: int | None,
                 export_dir: Path | None, voc_year: str, comp: str, bf16: bool, progress: bool) -> None:
    """Score EXPERIMENT's net with --weights on its val split (or --split) and write metrics.json:
    the reference's pixel accuracy, mean accuracy, mean IU, f.w. IU (percent) and its test loss.
    --data-root may also be the dataset's own folder."""
    from reproduce.evaluation.evaluate import VOCTestImages, evaluate, export_voc_test, find_voc_dir
    exp = experiments.get(experiment)
    net, weights_iteration = _load(exp, weights, width, device)
    if bf16:
        from reproduce.evaluation.bf16 import bf16_mode
        # no torch.compile: every new image size would compile again (see results/bench/summary.md)
        net = bf16_mode(net.eval(), compile=False, freeze=True)
    try:
        if export_dir is not None:
            test_split = split or "test"
            images = VOCTestImages(find_voc_dir(data_root, int(voc_year), test_split), test_split)
            archive = export_voc_test(net, exp, images, export_dir, year=int(voc_year), comp=comp, device=device,
                                      limit=limit, num_workers=workers, progress=progress)
            click.echo(f"wrote {min(limit or len(images), len(images))} predictions and {archive}")
            return
        dataset = exp.open_split(data_root, "val", split=split)
        record = evaluate(net, exp, dataset, device=device, limit=limit, num_workers=workers, weights=weights,
                          progress=progress,
                          iteration=iteration if iteration is not None else weights_iteration)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        raise _fail(exc) from None
    from reproduce.evaluation.bf16 import settings_record
    record.update(settings_record(net))
    write_json_atomic(out, record)
    click.echo(_summary(record))
    click.echo(f"wrote {out}")


# ---------------------------------------------------------------------------------------------
# fcn infer


@click.command("infer")
@EXPERIMENT_ARG
@WEIGHTS
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("predictions"),
              show_default=True, help="Output folder.")
@click.option("--hha", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="NYUD HHA image, one per IMAGE in order (experiments with an hha input).")
@click.option("--depth", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="NYUD filled-in depth PNG, one per IMAGE in order (nyud-fcn32s-color-d).")
@DEVICE
@WIDTH
@click.option("--force", is_flag=True, help="Replace existing outputs (an input file is never overwritten).")
def infer_command(experiment: str, weights: Path, images: tuple[Path, ...], out_dir: Path, hha: tuple[Path, ...],
                  depth: tuple[Path, ...], device: torch.device, width: float | None, force: bool) -> None:
    """Segment IMAGE files with EXPERIMENT's net: writes <stem>.png (VOC-palette class indices;
    SIFT Flow: <stem>_sem.png and <stem>_geo.png) and <stem>_side.png (input | prediction).
    Existing outputs are kept unless --force."""
    from reproduce.evaluation.infer import infer_files
    exp = experiments.get(experiment)
    extra = {"hha": hha, "depth": depth}
    unused = [k for k, v in extra.items() if v and k not in exp.inputs[1:]]
    if unused:
        raise click.UsageError(f"{experiment} takes no --{unused[0]} input (its inputs: {', '.join(exp.inputs)})")
    net, _ = _load(exp, weights, width, device)
    try:
        written = infer_files(net, exp, images, out_dir, extra=extra, device=device, force=force)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        raise _fail(exc) from None
    click.echo(f"wrote {len(written)} files to {out_dir}")


# ---------------------------------------------------------------------------------------------
# fcn figure


@click.group("figure")
def figure_command() -> None:
    """Figures as PNG: a paper-Figure-4-style prediction grid, learning curves."""


def _parse_column(spec: str) -> tuple[str, str]:
    if "=" not in spec:
        raise click.BadParameter(f"{spec!r}: expected TITLE=SOURCE", param_hint="--column")
    title, source = spec.split("=", 1)
    return title, source


@figure_command.command("grid")
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--column", "columns", multiple=True, required=True, metavar="TITLE=SOURCE",
              help="A prediction column, in order. SOURCE is a folder of <image stem>.png label PNGs, or "
                   "EXPERIMENT:WEIGHTS to run that net, e.g. 'FCN-8s=voc-fcn8s:runs/voc-fcn8s/final.pt'.")
@click.option("--gt", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Folder of ground-truth <image stem>.png label PNGs (adds the 'Ground truth' column).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("figure4.png"),
              show_default=True)
@click.option("--cell-height", type=click.IntRange(min=16), default=160, show_default=True)
@DEVICE
@WIDTH
def grid_command(images: tuple[Path, ...], columns: tuple[str, ...], gt: Path | None, out: Path,
                 cell_height: int, device: torch.device, width: float | None) -> None:
    """A grid like CVPR Figure 4: one row per IMAGE; columns Image, each --column, Ground truth."""
    from reproduce.reporting.figures import render_grid
    from reproduce.evaluation.infer import infer_label_maps
    titles = ["Image"] + [_parse_column(c)[0] for c in columns] + (["Ground truth"] if gt else [])
    cols: list[list[Image.Image]] = []
    for spec in columns:
        title, source = _parse_column(spec)
        name, sep, weights = source.partition(":")
        try:
            if sep and name in experiments.names():
                exp = experiments.get(name)
                net, _ = _load(exp, Path(weights), width, device)
                preds = infer_label_maps(net, exp, images, device=device)
                cols.append([colorize(p) for p in preds])
            elif Path(source).is_dir():
                cols.append([colorize(read_label_png(_png_for(Path(source), im))) for im in images])
            else:
                raise click.BadParameter(f"{spec!r}: SOURCE is neither a folder nor EXPERIMENT:WEIGHTS "
                                         f"(experiments: {', '.join(experiments.names())})", param_hint="--column")
        except (ValueError, FileNotFoundError) as exc:
            raise _fail(exc) from None
    if gt is not None:
        try:
            cols.append([colorize(read_label_png(_png_for(gt, im))) for im in images])
        except (ValueError, FileNotFoundError) as exc:
            raise _fail(exc) from None
    rows = []
    for i, im in enumerate(images):
        with Image.open(im) as src:
            rows.append([src.convert("RGB")] + [col[i] for col in cols])
    save_png_atomic(render_grid(rows, titles, cell_height=cell_height), out)
    click.echo(f"wrote {out}")


def _png_for(folder: Path, image: Path) -> Path:
    path = folder / f"{image.stem}.png"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no label PNG for image {image.name}")
    return path


@figure_command.command("curves")
@click.argument("logs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--y", "y_column", default="loss", show_default=True, help="log.csv column to plot.")
@click.option("--x", "x_column", default="iteration", show_default=True)
@click.option("--label", "labels", multiple=True, help="Legend label per LOG, in order (default: run folder name).")
@click.option("--smooth", type=click.IntRange(min=1), default=1, show_default=True,
              help="Trailing mean over this many rows (Caffe displays average_loss 20).")
@click.option("--title", default="")
@click.option("--size", type=(int, int), default=(900, 560), show_default=True, help="Width and height in pixels.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("curves.png"), show_default=True)
def curves_command(logs: tuple[Path, ...], y_column: str, x_column: str, labels: tuple[str, ...], smooth: int,
                   title: str, size: tuple[int, int], out: Path) -> None:
    """Learning curves: column --y of each LOG (a run's log.csv) against --x, as one PNG."""
    from reproduce.reporting.figures import read_log_series, render_curves
    if labels and len(labels) != len(logs):
        raise click.UsageError(f"{len(labels)} --label values for {len(logs)} logs")
    try:
        series = [read_log_series(p, y_column, x=x_column, smooth=smooth, label=labels[i] if labels else None)
                  for i, p in enumerate(logs)]
        image = render_curves(series, x_label=x_column, y_label=y_column, title=title, size=size)
    except ValueError as exc:
        raise _fail(exc) from None
    save_png_atomic(image, out)
    click.echo(f"wrote {out}")
