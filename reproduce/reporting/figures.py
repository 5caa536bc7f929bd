"""Figures drawn with Pillow only: a paper-Figure-4-style grid of predictions and learning curves.

* `render_grid`: one row per image, one column per source (image, FCN-32s, FCN-16s, FCN-8s,
  ground truth, as CVPR Figure 4), a title row on top. Label maps are scaled with nearest
  neighbour so class colours stay exact.
* `render_curves`: line plots of one `log.csv` column (loss, mean IU, ...) against iteration for
  one or more runs, with axes, ticks, grid, labels and a legend, in ImageDraw's default font.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

WHITE, BLACK, GRID_GREY, AXIS_GREY = (255, 255, 255), (0, 0, 0), (225, 225, 225), (90, 90, 90)
# Distinct line colours (the common "category 10" set).
LINE_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
                (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


def default_font(size: int = 14) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at `size` pixels (the bitmap default on builds without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


# ---------------------------------------------------------------------------------------------
# grid


def render_grid(rows: Sequence[Sequence[Image.Image | None]], titles: Sequence[str], *,
                label_columns: Sequence[bool] | None = None, cell_height: int = 160, pad: int = 6,
                font_size: int = 16) -> Image.Image:
    """A grid image: `titles` across the top, then one row per entry of `rows`.

    rows: per row, one image per column (None leaves the cell empty), all of one row usually
        the same size. Each cell is scaled to `cell_height` pixels high, keeping its aspect ratio.
    label_columns: per column, True if it holds label-map colours (scaled with nearest neighbour),
        default: every column but the first.
    Returns an RGB image on white.
    """
    ncols = len(titles)
    if not rows:
        raise ValueError("render_grid needs at least one row")
    for r, row in enumerate(rows):
        if len(row) != ncols:
            raise ValueError(f"row {r} has {len(row)} cells for {ncols} titles")
    nearest = list(label_columns) if label_columns is not None else [False] + [True] * (ncols - 1)
    scaled: list[list[Image.Image | None]] = []
    for row in rows:
        cells = []
        for c, im in enumerate(row):
            if im is None:
                cells.append(None)
                continue
            w = max(1, round(im.width * cell_height / im.height))
            resample = Image.Resampling.NEAREST if nearest[c] else Image.Resampling.BILINEAR
            cells.append(im.convert("RGB").resize((w, cell_height), resample))
        scaled.append(cells)
    col_w = [max((r[c].width for r in scaled if r[c] is not None), default=cell_height) for c in range(ncols)]
    font = default_font(font_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    title_h = max(_text_size(probe, t, font)[1] for t in titles) + 2 * pad
    width = sum(col_w) + pad * (ncols + 1)
    height = title_h + len(rows) * (cell_height + pad) + pad
    canvas = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(canvas)
    x = pad
    for c, title in enumerate(titles):
        tw, _ = _text_size(draw, title, font)
        draw.text((x + (col_w[c] - tw) // 2, pad), title, fill=BLACK, font=font)
        x += col_w[c] + pad
    y = title_h
    for cells in scaled:
        x = pad
        for c, im in enumerate(cells):
            if im is not None:
                canvas.paste(im, (x + (col_w[c] - im.width) // 2, y))
            x += col_w[c] + pad
        y += cell_height + pad
    return canvas


# ---------------------------------------------------------------------------------------------
# learning curves


@dataclass(frozen=True)
class Series:
    """One line: `label` in the legend, x and y values of equal length."""

    label: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]


def read_log_series(path: str | os.PathLike, y: str, *, x: str = "iteration", label: str | None = None,
                    smooth: int = 1) -> Series:
    """Column `y` against column `x` of a log.csv (header row; rows whose y is blank or not a finite
    number are skipped, e.g. training rows in a test column). `smooth` > 1 replaces each value by
    the mean of it and the previous smooth-1 values (Caffe's `average_loss` display).
    Label default: the run folder's name for .../<run>/log.csv, else the file stem."""
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            for col in (x, y):
                if col not in fields:
                    raise ValueError(f"{path}: no column {col!r} (columns: {', '.join(fields)})")
            xs, ys = [], []
            for row in reader:
                xv, yv = _number(row.get(x)), _number(row.get(y))
                if xv is not None and yv is not None:
                    xs.append(xv)
                    ys.append(yv)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc})") from None
    if not xs:
        raise ValueError(f"{path}: column {y!r} has no numeric values")
    if smooth > 1:
        ys = [sum(ys[max(0, i - smooth + 1):i + 1]) / (i + 1 - max(0, i - smooth + 1)) for i in range(len(ys))]
    if label is None:
        label = path.parent.name if path.name == "log.csv" and path.parent.name else path.stem
    return Series(label, tuple(xs), tuple(ys))


def _number(text: str | None) -> float | None:
    try:
        v = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return v if v is not None and math.isfinite(v) else None


def nice_ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """Round tick values (1, 2 or 5 times a power of ten apart) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"tick range must be finite, got {lo}..{hi}")
    if hi <= lo:
        lo, hi = lo - 0.5 * (abs(lo) or 1.0), hi + 0.5 * (abs(hi) or 1.0)
    raw = (hi - lo) / max(1, target - 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def format_tick(v: float) -> str:
    """A short tick label: 120000 -> "120k", 2.5e6 -> "2.5M", 0.25 -> "0.25"."""
    av = abs(v)
    if av >= 1e6:
        return f"{v / 1e6:g}M"
    if av >= 1e4:
        return f"{v / 1e3:g}k"
    return f"{v:.4g}"


def render_curves(series: Sequence[Series], *, x_label: str = "iteration", y_label: str = "loss",
                  title: str = "", size: tuple[int, int] = (900, 560), font_size: int = 14) -> Image.Image:
    """Line plot of every series on shared axes (ranges from all values, y padded 5%), with tick
    labels, light grid lines, axis labels, an optional title and a legend in the top-right corner.
    A series with one point is drawn as a dot. Returns an RGB image of `size` (width, height)."""
    if not series:
        raise ValueError("render_curves needs at least one series")
    width, height = size
    font = default_font(font_size)
    img = Image.new("RGB", size, WHITE)
    draw = ImageDraw.Draw(img)
    all_x = [v for s in series for v in s.xs]
    all_y = [v for s in series for v in s.ys]
    xt = nice_ticks(min(all_x), max(all_x))
    ylo, yhi = min(all_y), max(all_y)
    ypad = 0.05 * (yhi - ylo)
    # Pad the y range, but not below zero for non-negative data (losses, scores).
    yt = nice_ticks(max(ylo - ypad, 0.0) if ylo >= 0 else ylo - ypad, yhi + ypad)
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]
    _, th = _text_size(draw, "0", font)
    ytick_w = max(_text_size(draw, format_tick(v), font)[0] for v in yt)
    left = 16 + th + 10 + ytick_w + 8
    top = 16 + (th + 14 if title else 0)
    right = width - 20
    bottom = height - (16 + th + 10 + th + 8)
    if right - left < 50 or bottom - top < 50:
        raise ValueError(f"figure size {size} is too small for its labels")

    def px(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (right - left)

    def py(y: float) -> float:
        return bottom - (y - y0) / (y1 - y0) * (bottom - top)

    for v in xt:
        draw.line([(px(v), top), (px(v), bottom)], fill=GRID_GREY)
        tw, _ = _text_size(draw, format_tick(v), font)
        draw.text((px(v) - tw / 2, bottom + 6), format_tick(v), fill=BLACK, font=font)
    for v in yt:
        draw.line([(left, py(v)), (right, py(v))], fill=GRID_GREY)
        tw, _ = _text_size(draw, format_tick(v), font)
        draw.text((left - 8 - tw, py(v) - th / 2 - 1), format_tick(v), fill=BLACK, font=font)
    draw.rectangle([left, top, right, bottom], outline=AXIS_GREY)
    for i, s in enumerate(series):
        colour = LINE_COLOURS[i % len(LINE_COLOURS)]
        points = [(px(x), py(y)) for x, y in zip(s.xs, s.ys)]
        if len(points) == 1:
            (cx, cy), r = points[0], 3
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
        else:
            draw.line(points, fill=colour, width=2, joint="curve")
    # axis labels and title
    xw, _ = _text_size(draw, x_label, font)
    draw.text(((left + right - xw) / 2, height - 16 - th), x_label, fill=BLACK, font=font)
    yw, yh = _text_size(draw, y_label, font)
    label_img = Image.new("RGB", (yw + 4, yh + 6), WHITE)
    ImageDraw.Draw(label_img).text((2, 0), y_label, fill=BLACK, font=font)
    rotated = label_img.rotate(90, expand=True)
    img.paste(rotated, (14, int((top + bottom - rotated.height) / 2)))
    if title:
        tw, _ = _text_size(draw, title, font)
        draw.text(((width - tw) / 2, 12), title, fill=BLACK, font=font)
    _legend(draw, series, font, right, top)
    return img


def _legend(draw: ImageDraw.ImageDraw, series: Sequence[Series], font, right: float, top: float) -> None:
    _, th = _text_size(draw, "Ag", font)
    row_h, swatch = th + 8, 24
    text_w = max(_text_size(draw, s.label, font)[0] for s in series)
    box_w, box_h = swatch + 8 + text_w + 16, row_h * len(series) + 8
    bx, by = right - box_w - 8, top + 8
    draw.rectangle([bx, by, bx + box_w, by + box_h], fill=WHITE, outline=AXIS_GREY)
    for i, s in enumerate(series):
        cy = by + 4 + row_h * i + row_h / 2
        draw.line([(bx + 8, cy), (bx + 8 + swatch, cy)], fill=LINE_COLOURS[i % len(LINE_COLOURS)], width=3)
        draw.text((bx + 8 + swatch + 8, cy - th / 2 - 2), s.label, fill=BLACK, font=font)
