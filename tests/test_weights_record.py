"""Weight files that say what they are (weight_convert.record): every .pt / .h5 / .npz the project
writes records its net, width, class counts, where it came from and the fcn-repro that wrote it;
`nets.load` and the commands use the record, so a reduced-width net needs no --width."""
from __future__ import annotations

import hashlib
import subprocess
import warnings
from importlib import metadata
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import nets
from reproduce.training import checkpoint
from reproduce.commands.cli import main as fcn
from reproduce.pipeline.smoke import vgg16_layers
from reproduce.training.train import train
from train_support import tiny_experiment, voc_samples
from weight_convert import record
from weight_convert.caffe_writer import write_caffemodel
from weight_convert.cli import main as convert_caffe
from weight_convert.ptfile import DamagedFileError, load_pt

ROOT = Path(__file__).resolve().parent.parent
W = 1 / 16
IMAGE = sorted((ROOT / "reproduce" / "samples" / "voc" / "VOC2012" / "JPEGImages").glob("*.jpg"))[0]


@pytest.fixture(scope="module")
def vgg16(tmp_path_factory) -> Path:
    """A VGG16-shaped caffemodel at width 1/16 (random weights), as `fcn smoke vgg16` writes it."""
    path = tmp_path_factory.mktemp("vgg16") / "VGG_ILSVRC_16_layers.caffemodel"
    write_caffemodel(path, "VGG_ILSVRC_16_layers", vgg16_layers(W), version=1)
    return path


def convert(src: Path, dst: Path, *args: str) -> Path:
    result = CliRunner().invoke(convert_caffe, [str(src), str(dst), *args])
    assert result.exit_code == 0, result.output
    return dst


@pytest.fixture(scope="module")
def fcn32s(vgg16, tmp_path_factory) -> Path:
    return convert(vgg16, tmp_path_factory.mktemp("converted") / "voc-fcn32s.pt",
                   "--net", "voc-fcn32s", "--from", "vgg16", "--width", str(W))


def git_head() -> str | None:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def check_writer(rec: dict) -> None:
    assert rec["writer"]["name"] == "fcn-repro"
    assert rec["writer"]["version"] == metadata.version("fcn-repro")
    assert rec["writer"]["commit"] == git_head()


# ---------------------------------------------------------------------------------------------
# what the converter records


@pytest.mark.parametrize("suffix", [".pt", ".h5", ".npz"])
def test_converted_files_record_net_width_classes_and_source(vgg16, tmp_path, suffix):
    dst = convert(vgg16, tmp_path / f"fcn32s{suffix}", "--net", "voc-fcn32s", "--from", "vgg16", "--width", str(W))
    rec = record.read(dst)
    assert rec["net"] == "voc-fcn32s" and rec["width"] == W and rec["num_classes"] == 21
    assert rec["build"] == {"num_classes": 21, "width": W} and rec["inputs"] == ["data"]
    assert rec["source"] == {"kind": "caffemodel", "name": vgg16.name, "from": "vgg16",
                             "sha256": hashlib.sha256(vgg16.read_bytes()).hexdigest()}
    check_writer(rec)
    # stored where the format keeps such things: an .h5 root attribute, an .npz entry
    if suffix == ".h5":
        with h5py.File(dst) as f:
            assert record.H5_ATTRIBUTE in f.attrs and "conv1_1.weight" in f
    elif suffix == ".npz":
        with np.load(dst) as f:
            assert record.NPZ_KEY in f.files and "conv1_1.weight" in f.files
    # and every format loads as the net it says it is
    net = nets.load(dst)
    assert net.caffe_name == "voc-fcn32s" and net.conv1_1.weight.shape == (4, 3, 3, 3) and not net.training


def test_a_blob_dump_records_its_source_but_no_net(vgg16, tmp_path):
    dst = convert(vgg16, tmp_path / "dump.h5")
    rec = record.read(dst)
    assert rec["net"] is None and rec["width"] is None and rec["source"]["name"] == vgg16.name
    with pytest.raises(ValueError, match="blob dump"):
        nets.load(dst)


def test_a_staged_conversion_records_its_source_files_record(fcn32s, tmp_path):
    dst = convert(fcn32s, tmp_path / "fcn16s.pt", "--net", "voc-fcn16s", "--from", "voc-fcn32s", "--width", str(W))
    rec = record.read(dst)
    assert rec["net"] == "voc-fcn16s" and rec["source"]["kind"] == "file"
    assert rec["source"]["record"] == record.read(fcn32s)


def test_the_checksum_covers_the_record(fcn32s, tmp_path):
    damaged = tmp_path / "damaged.pt"
    data = bytearray(fcn32s.read_bytes())
    at = data.index(b'"voc-fcn32s"') + 5
    data[at] ^= 0x01
    damaged.write_bytes(bytes(data))
    with pytest.raises(DamagedFileError, match="damaged.pt"):
        load_pt(damaged)


# ---------------------------------------------------------------------------------------------
# loading by the record


def test_nets_load_gives_the_net_with_the_files_weights(fcn32s):
    net = nets.load(fcn32s)
    state = load_pt(fcn32s)
    assert net.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


def test_fcn_infer_needs_no_width_for_a_recorded_reduced_width_net(fcn32s, tmp_path):
    result = CliRunner().invoke(fcn, ["infer", "voc-fcn32s", "--weights", str(fcn32s), str(IMAGE),
                                      "--out", str(tmp_path / "pred"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "pred" / f"{IMAGE.stem}.png").is_file()


def test_fcn_eval_and_figure_need_no_width_either(fcn32s, tmp_path):
    from reproduce.pipeline.smoke import prepare_data
    data = prepare_data(tmp_path / "data")
    result = CliRunner().invoke(fcn, ["eval", "voc-fcn32s", "--weights", str(fcn32s), "--data-root", str(data),
                                      "--device", "cpu", "--limit", "1", "--workers", "0",
                                      "--out", str(tmp_path / "metrics.json")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "metrics.json").is_file()
    result = CliRunner().invoke(fcn, ["figure", "grid", str(IMAGE), "--column", f"FCN-32s=voc-fcn32s:{fcn32s}",
                                      "--device", "cpu", "--out", str(tmp_path / "grid.png")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "grid.png").is_file()


@pytest.mark.parametrize("args, named", [
    (["voc-fcn32s", "--width", "0.125"], ["0.0625", "0.125"]),
    (["voc-fcn8s"], ["voc-fcn32s", "voc-fcn8s"]),
])
def test_a_flag_that_contradicts_the_record_is_an_error_naming_both(fcn32s, tmp_path, args, named):
    result = CliRunner().invoke(fcn, ["infer", args[0], "--weights", str(fcn32s), str(IMAGE),
                                      "--out", str(tmp_path / "pred"), "--device", "cpu", *args[1:]])
    assert result.exit_code != 0
    assert "Traceback" not in result.output and str(fcn32s) in result.output
    assert all(n in result.output for n in named), result.output
    with pytest.raises(record.RecordMismatchError, match="0.0625.*0.125"):
        nets.load(fcn32s, width=0.125)
    with pytest.raises(record.RecordMismatchError, match="21.*\\(59, 3\\)"):
        nets.load(fcn32s, num_classes=(59, 3))


def test_a_plain_state_dict_from_elsewhere_loads_with_explicit_flags(tmp_path):
    net = nets.build("voc-fcn32s", width=W)
    plain = tmp_path / "plain.pt"
    torch.save(net.state_dict(), plain)  # no checksum, no record: another program's file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no content checksum"
        with pytest.raises(ValueError, match="plain.pt.*no fcn-repro record"):
            nets.load(plain)
        # without the width: a short account, not one line per parameter
        result = CliRunner().invoke(fcn, ["infer", "voc-fcn32s", "--weights", str(plain), str(IMAGE),
                                          "--out", str(tmp_path / "pred"), "--device", "cpu"])
        assert result.exit_code != 0 and "Traceback" not in result.output
        assert "31 entries differ in shape (conv1_1.weight (4, 3, 3, 3) in the file, (64, 3, 3, 3) in the net" \
            in result.output and "--width" in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
        loaded = nets.load(plain, net="voc-fcn32s", width=W)
        assert torch.equal(loaded.fc6.weight, net.fc6.weight)
        result = CliRunner().invoke(fcn, ["infer", "voc-fcn32s", "--weights", str(plain), str(IMAGE), "--width",
                                          str(W), "--out", str(tmp_path / "pred"), "--device", "cpu"])
    assert result.exit_code == 0, result.output


def test_init_width_comes_from_the_record(fcn32s, tmp_path):
    assert checkpoint.width_from_records([fcn32s], None) == W
    assert checkpoint.width_from_records([fcn32s], W) == W
    with pytest.raises(ValueError, match="0.0625.*0.5"):
        checkpoint.width_from_records([fcn32s], 0.5)
    plain = tmp_path / "plain.pt"
    torch.save({"x": torch.zeros(1)}, plain)
    assert checkpoint.width_from_records([plain], None) == 1.0
    assert checkpoint.width_from_records([plain], 0.25) == 0.25


# ---------------------------------------------------------------------------------------------
# what training records


def test_snapshots_and_final_weights_record_the_run_and_iteration(tmp_path):
    exp = tiny_experiment(base_lr=1e-7, momentum=0.99, max_iter=2, test_interval=2, snapshot=1)
    out = train(exp, data_root=None, init=None, out_dir=tmp_path / "run", width=W, train_dataset=voc_samples(32),
                val_dataset=voc_samples(32), progress=False, display=1, keep_snapshots=0)
    for path, iteration in [(out / "snapshot" / "iter_1.pt", 1), (out / "snapshot" / "iter_2.pt", 2),
                            (out / "final.pt", 2)]:
        rec = record.read(path)
        assert rec["net"] == "voc-fcn32s" and rec["width"] == W and rec["num_classes"] == 21
        assert rec["source"] == {"kind": "training", "run_dir": str(out.resolve()), "iteration": iteration}
        check_writer(rec)
    net, loaded = nets.open_weights(out / "snapshot" / "iter_1.pt")
    assert loaded.iteration == 1 and net.conv1_1.weight.shape[0] == 4
    assert nets.open_weights(out / "final.pt")[1].iteration == 2
    # the next stage's --init takes the width from it
    assert checkpoint.width_from_records([out / "final.pt"], None) == W


def test_old_files_without_a_record_keep_loading(tmp_path):
    net = nets.build("voc-fcn32s", width=W)
    old = checkpoint.save_atomic(checkpoint.cpu_state_dict(net), tmp_path / "final.pt")  # no record
    assert record.read(old) is None
    loaded = nets.load(old, net="voc-fcn32s", width=W)
    assert torch.equal(loaded.score_fr.weight, net.score_fr.weight)
    assert checkpoint.load_init(nets.build("voc-fcn16s", width=W), [old]).loaded
