"""reproduce.reporting.figures and `fcn figure`: the Figure-4 grid and learning curves, as PNG."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import nets
from reproduce.commands.eval_cli import figure_command
from reproduce.reporting.figures import (LINE_COLOURS, Series, format_tick, nice_ticks, read_log_series, render_curves,
                               render_grid)
from reproduce.evaluation.palette import label_image, voc_colormap

WIDTH = 1 / 32


def write_log(path, rows, header=("iteration", "loss", "mean_iu")):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(",".join(header) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def colour_count(img: Image.Image, colour) -> int:
    return int(np.all(np.array(img.convert("RGB")) == colour, axis=-1).sum())


# ---------------------------------------------------------------------------------------------
# curves


def test_read_log_series_skips_blank_rows_and_smooths(tmp_path):
    log = write_log(tmp_path / "voc-fcn32s" / "log.csv",
                    [(0, 10, ""), (20, 20, ""), (40, 30, 12.5), (60, "nan", ""), (80, 60, 20.0)])
    loss = read_log_series(log, "loss")
    assert loss.label == "voc-fcn32s"
    assert loss.xs == (0, 20, 40, 80) and loss.ys == (10, 20, 30, 60)
    assert read_log_series(log, "mean_iu").xs == (40, 80)
    assert read_log_series(log, "loss", smooth=2).ys == (10, 15, 25, 45)
    with pytest.raises(ValueError, match=r"log.csv: no column 'accuracy'"):
        read_log_series(log, "accuracy")


def test_nice_ticks_cover_the_range_with_round_steps():
    assert nice_ticks(0, 63) == [0, 20, 40, 60, 80]
    assert nice_ticks(1000, 100000) == [0, 20000, 40000, 60000, 80000, 100000]
    ticks = nice_ticks(-3.2, 7.9)
    assert ticks[0] <= -3.2 and ticks[-1] >= 7.9
    assert format_tick(120000) == "120k" and format_tick(2.5e6) == "2.5M" and format_tick(0.25) == "0.25"


def test_render_curves_draws_each_series_in_its_colour():
    a = Series("fcn32s", tuple(range(0, 1000, 10)), tuple(1000.0 - i for i in range(0, 1000, 10)))
    b = Series("fcn16s", (0.0, 500.0, 990.0), (800.0, 300.0, 100.0))
    img = render_curves([a, b], title="loss", size=(640, 400))
    assert img.size == (640, 400) and img.mode == "RGB"
    assert colour_count(img, LINE_COLOURS[0]) > 300
    assert colour_count(img, LINE_COLOURS[1]) > 300
    assert colour_count(img, (0, 0, 0)) > 100  # text
    with pytest.raises(ValueError, match="too small"):
        render_curves([a], size=(60, 40))


def test_fcn_figure_curves_from_two_logs(tmp_path):
    logs = [write_log(tmp_path / n / "log.csv", [(i, 1000 / (i + 1), "") for i in range(0, 200, 20)])
            for n in ("voc-fcn32s", "voc-fcn16s")]
    out = tmp_path / "curves.png"
    result = CliRunner().invoke(figure_command, ["curves", *map(str, logs), "--smooth", "3", "--size", "500", "300",
                                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as img:
        assert img.size == (500, 300)
        assert colour_count(img, LINE_COLOURS[1]) > 100
    bad = CliRunner().invoke(figure_command, ["curves", str(logs[0]), "--y", "fw_iu", "--out", str(out)])
    assert bad.exit_code != 0 and "fw_iu" in bad.output


# ---------------------------------------------------------------------------------------------
# grid


def test_render_grid_layout_and_nearest_scaling():
    image = Image.new("RGB", (40, 20), (10, 200, 30))
    label = np.zeros((20, 40), np.uint8)
    label[:, 20:] = 15
    pred = label_image(label)
    grid = render_grid([[image, pred, None], [image, pred, pred]], ["Image", "FCN-8s", "Ground truth"],
                       cell_height=40, pad=5)
    # each 40x20 cell is scaled to 80x40; three columns, a title row, two rows of cells
    assert grid.width == 3 * 80 + 4 * 5
    assert grid.height > 2 * (40 + 5)
    person = tuple(voc_colormap()[15])
    # nearest scaling keeps label colours exact: 3 prediction cells, each half person (40 x 40 pixels)
    assert colour_count(grid, person) == 3 * 40 * 40
    with pytest.raises(ValueError, match="row 0 has 2 cells"):
        render_grid([[image, pred]], ["Image", "FCN-8s", "Ground truth"])


def test_fcn_figure_grid_from_prediction_folders_and_a_net(tmp_path):
    ids = ["2007_000001", "2007_000002"]
    for i, ident in enumerate(ids):
        Image.fromarray(np.full((15, 20, 3), 60 * i, np.uint8)).save(tmp_path / f"{ident}.jpg")
        for folder, cls in (("fcn32s", 1), ("gt", 15)):
            (tmp_path / folder).mkdir(exist_ok=True)
            label_image(np.full((15, 20), cls, np.uint8)).save(tmp_path / folder / f"{ident}.png")
    torch.manual_seed(0)
    net = nets.build("voc-fcn8s", width=WIDTH)
    with torch.no_grad():
        net.score_fr.bias[2] = 1.0
    torch.save(net.state_dict(), tmp_path / "fcn8s.pt")
    out = tmp_path / "fig4.png"
    result = CliRunner().invoke(figure_command, [
        "grid", *(str(tmp_path / f"{i}.jpg") for i in ids),
        "--column", f"FCN-32s={tmp_path / 'fcn32s'}", "--column", f"FCN-8s=voc-fcn8s:{tmp_path / 'fcn8s.pt'}",
        "--gt", str(tmp_path / "gt"), "--cell-height", "30", "--width", str(WIDTH), "--device", "cpu",
        "--out", str(out)])
    assert result.exit_code == 0, result.output
    cmap = voc_colormap()
    with Image.open(out) as img:
        cell = 30 * 40  # 20x15 scaled to 40x30
        assert colour_count(img, tuple(cmap[1])) == 2 * cell    # FCN-32s column
        assert colour_count(img, tuple(cmap[2])) == 2 * cell    # FCN-8s net's predictions
        assert colour_count(img, tuple(cmap[15])) == 2 * cell   # ground truth
    missing = CliRunner().invoke(figure_command, ["grid", str(tmp_path / f"{ids[0]}.jpg"),
                                                  "--column", f"X={tmp_path}", "--out", str(out)])
    assert missing.exit_code != 0 and f"{ids[0]}.png" in missing.output
