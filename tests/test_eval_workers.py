"""`fcn eval` with data-loading workers: a bad file gives the same one line as `--workers 0`, not
the worker's wrapped traceback (reproduce.evaluation.evaluate carries the exception back)."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import nets
from reproduce import experiments
from reproduce.datasets import DatasetError
from reproduce.commands.cli import main as fcn  # through fcn: click caches each command's help option (fcn's has -h)
from reproduce.evaluation.evaluate import _picklable, evaluate
from test_evaluate import WIDTH, make_voc_dir


@pytest.fixture()
def weights(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "fresh.pt"
    torch.save(nets.build("voc-fcn32s", width=WIDTH).state_dict(), path)
    return path


def _eval(tmp_path, weights, workers: int, *extra: str):
    return CliRunner().invoke(fcn, [
        "eval", "voc-fcn32s", "--weights", str(weights), "--data-root", str(tmp_path / "voc"), "--width", str(WIDTH),
        "--device", "cpu", "--workers", str(workers), "--out", str(tmp_path / "m.json"), *extra])


def _corrupt_image(voc):
    path = voc / "JPEGImages" / "b.jpg"
    path.write_bytes(path.read_bytes()[:100])
    return path


def _label_of_another_size(voc):
    path = voc / "SegmentationClass" / "c.png"
    with Image.open(path) as im:
        small, palette = np.array(im)[:-4], im.getpalette()
    out = Image.fromarray(small, mode="P")
    out.putpalette(palette)
    out.save(path)
    return path


@pytest.mark.parametrize("damage, problem", [
    (_corrupt_image, "unreadable image ("),
    (_label_of_another_size, "label is 16x20 (HxW) but its image c.jpg is 20x20"),
])
def test_a_bad_file_is_one_line_whatever_the_workers(tmp_path, weights, damage, problem):
    voc = make_voc_dir(tmp_path / "voc", ["a", "b", "c"], [(20, 20)] * 3)
    path = damage(voc)
    outputs = {}
    for workers in (0, 2):
        result = _eval(tmp_path, weights, workers, "--limit", "3")
        assert result.exit_code == 1, result.output
        # without the progress lines (no terminal: "eval voc-fcn32s: image 0/3 (0%), starting", ... "stopped after")
        outputs[workers] = "".join(line for line in result.output.splitlines(keepends=True)
                                   if not line.startswith("eval voc-fcn32s: image "))
    assert outputs[2] == outputs[0]
    lines = outputs[2].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {path}: {problem}"), outputs[2]
    assert "Traceback" not in outputs[2] and "worker" not in outputs[2]
    assert not (tmp_path / "m.json").exists()


def test_the_worker_exception_reaches_the_caller_with_its_type(tmp_path, weights):
    voc = make_voc_dir(tmp_path / "voc", ["a", "b"], [(20, 20)] * 2)
    path = _corrupt_image(voc)
    exp = experiments.get("voc-fcn32s")
    net = nets.build("voc-fcn32s", width=WIDTH)
    with pytest.raises(DatasetError) as info:
        evaluate(net, exp, exp.open_split(voc, "val"), num_workers=2, progress=False)
    assert info.value.path == path and info.value.problem.startswith("unreadable image")


def test_dataset_errors_pickle_and_other_exceptions_keep_their_builtin_type():
    err = pickle.loads(pickle.dumps(DatasetError("/x/y.png", "label has values [21]")))
    assert isinstance(err, DatasetError) and str(err) == "/x/y.png: label has values [21]" and err.problem

    class Unpicklable(KeyError):
        def __init__(self, a, b):
            super().__init__(f"{a} {b}")
    carried = _picklable(Unpicklable("no", "key"))
    assert type(carried) is KeyError and str(carried) == str(Unpicklable("no", "key"))
