"""`fcn train` (reproduce.train_cli.train_command) end to end on the real VOC samples."""
import json

import pytest
from click.testing import CliRunner

from reproduce.experiments.base import Experiment
from reproduce.train_cli import train_command
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
