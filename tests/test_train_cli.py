"""`fcn train` (reproduce.commands.train_cli.train_command) end to end on the real VOC samples."""
import json

import pytest
from click.testing import CliRunner

from reproduce.experiments.base import Experiment
from reproduce.commands.train_cli import train_command
from train_support import voc_samples


@pytest.fixture
def tiny_data(monkeypatch):
    """Every experiment's train and val split: the 4 VOC/SBD fixture images at 32 px."""
    monkeypatch.setattr(Experiment, "open_split", lambda self, root, which="val", **kw: voc_samples(32))


def test_train_command_writes_a_run_directory(tmp_path, tiny_data):
    out = tmp_path / "run"
    args = ["voc-fcn16s", "--data-root", str(tmp_path), "--width", "0.0625", "--max-iter", "2",
            "--test-interval", "2", "--out", str(out), "--device", "cpu", "--display", "1", "--no-progress"]
    result = CliRunner().invoke(train_command, args)
    assert result.exit_code == 0, result.output
    for name in ("run.json", "log.csv", "log.jsonl", "test_log.csv", "final.pt", "metrics.json", "snapshot/iter_2.pt"):
        assert (out / name).is_file(), name
    run = json.loads((out / "run.json").read_text())
    assert run["experiment"]["name"] == "voc-fcn16s" and run["overrides"]["max_iter"] == 2
    assert all(isinstance(a, str) for a in run["sessions"][0]["command"])  # sys.argv of the process
    assert run["init"]["files"] == []  # reduced width: no base weights, random trunk
    # running the same command again resumes: nothing left to do, the run is unchanged
    again = CliRunner().invoke(train_command, args)
    assert again.exit_code == 0, again.output
    assert len(json.loads((out / "run.json").read_text())["sessions"]) == 2


def test_missing_base_weights_are_named(tmp_path, tiny_data):
    result = CliRunner().invoke(train_command, ["voc-fcn32s", "--data-root", str(tmp_path), "--out",
                                                str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 2
    assert "vgg16" in result.output and "VGG_ILSVRC_16_layers.caffemodel" in result.output and "--init" in result.output


def test_coarser_stage_weights_are_looked_up_next_to_the_run(tmp_path, tiny_data):
    result = CliRunner().invoke(train_command, ["voc-fcn8s", "--data-root", str(tmp_path), "--out",
                                                str(tmp_path / "runs" / "voc-fcn8s"), "--no-progress"])
    assert result.exit_code == 2 and str(tmp_path / "runs" / "voc-fcn16s" / "final.pt") in result.output


def test_unknown_experiment_is_refused(tmp_path):
    result = CliRunner().invoke(train_command, ["voc-fcn4s", "--data-root", str(tmp_path)])
    assert result.exit_code == 2 and "voc-fcn32s" in result.output


def test_googlenet_pipeline_fills_the_table_1_row(tmp_path, monkeypatch):
    """make reproduce-googlenet's chain in small: BVLC GoogLeNet's layout (a training snapshot, with its
    auxiliary classifiers) found under data/weights, `fcn train voc-fcn-googlenet`, then `fcn tables`,
    whose Table 1 FCN-GoogLeNet row then holds our mean IU."""
    import csv

    from caffe_encoder import googlenet_layers, write_caffemodel
    from reproduce.commands.tables_cli import tables_command
    from weight_convert.cli import main as convert_caffe

    def split(self, root, which="val", **kw):  # the 4 fixture images, named as the experiment's splits
        ds = voc_samples(32)
        ds.split = self.val_split if which == "val" else self.train_split
        return ds

    monkeypatch.setattr(Experiment, "open_split", split)

    (tmp_path / "weights").mkdir()
    src = write_caffemodel(tmp_path / "weights" / "bvlc_googlenet.caffemodel", googlenet_layers(0.0625))
    init = tmp_path / "runs" / "init" / "voc-fcn-googlenet-from-googlenet.pt"
    init.parent.mkdir(parents=True)
    result = CliRunner().invoke(convert_caffe, [str(src), str(init), "--net", "voc-fcn-googlenet", "--from",
                                                "googlenet", "--width", "0.0625"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "runs" / "voc-fcn-googlenet"
    result = CliRunner().invoke(train_command, [
        "voc-fcn-googlenet", "--data-root", str(tmp_path), "--init", str(init), "--width", "0.0625",
        "--max-iter", "1", "--test-interval", "1", "--out", str(out), "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    run = json.loads((out / "run.json").read_text())
    assert run["init"]["files"] == [str(init)]
    assert run["experiment"]["base_lr"] == 5e-5 and run["experiment"]["iter_size"] == 20
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["experiment"] == "voc-fcn-googlenet" and metrics["split"] == "seg11valid"
    result = CliRunner().invoke(tables_command, ["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "tables")])
    assert result.exit_code == 0, result.output
    with (tmp_path / "tables" / "table1_architectures.csv").open(newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["method"] == "FCN-GoogLeNet" and r["column"] == "mean_iu")
    assert row["experiment"] == "voc-fcn-googlenet" and row["paper"] == "42.5"
    assert float(row["ours"]) == pytest.approx(metrics["scores"]["mean_iu"], abs=0.05)
