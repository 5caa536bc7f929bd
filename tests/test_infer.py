"""reproduce.evaluation.infer, reproduce.evaluation.palette and `fcn infer` on generated images and reduced-width nets."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import nets
from reproduce import experiments
from reproduce.datasets import conventions
from reproduce.commands.eval_cli import infer_command
from reproduce.evaluation.infer import WeightsError, load_weights, preprocess
from reproduce.evaluation.palette import colorize, label_image, read_label_png, voc_colormap

WIDTH = 1 / 32
PERSON = 15


def rigged_weights(tmp_path, name, favourite=PERSON, head="score_fr"):
    """A reduced-width net whose score layer's bias makes class `favourite` win everywhere."""
    torch.manual_seed(0)
    net = nets.build(name, width=WIDTH)
    with torch.no_grad():
        getattr(net, head).bias[favourite] = 1.0
    path = tmp_path / f"{name}.pt"
    torch.save(net.state_dict(), path)
    return path


def write_rgb(path, h, w, seed=0):
    rgb = np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)
    return rgb


# ---------------------------------------------------------------------------------------------
# palette


def test_voc_colormap_matches_the_devkit_colours():
    cmap = voc_colormap()
    assert cmap.shape == (256, 3)
    assert cmap[0].tolist() == [0, 0, 0]
    assert cmap[1].tolist() == [128, 0, 0]
    assert cmap[2].tolist() == [0, 128, 0]
    assert cmap[PERSON].tolist() == [192, 128, 128]
    assert cmap[20].tolist() == [0, 64, 128]
    assert cmap[255].tolist() == [224, 224, 192]
    assert len({tuple(c) for c in cmap.tolist()}) == 256


def test_label_image_round_trips_through_png(tmp_path):
    label = np.array([[0, 1, 255], [20, 15, 3]], np.uint8)
    label_image(label).save(tmp_path / "l.png")
    assert np.array_equal(read_label_png(tmp_path / "l.png"), label)
    assert np.array_equal(np.array(colorize(label))[1, 1], [192, 128, 128])
    Image.new("RGB", (2, 2)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="rgb.png"):
        read_label_png(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="0..255"):
        label_image(np.array([[256]]))


# ---------------------------------------------------------------------------------------------
# preprocessing and weights


def test_preprocess_is_bgr_minus_the_dataset_mean(tmp_path):
    Image.fromarray(np.array([[[10, 20, 30]]], np.uint8)).save(tmp_path / "px.png")
    voc = preprocess(experiments.get("voc-fcn8s"), {"data": tmp_path / "px.png"})["data"]
    assert voc.shape == (3, 1, 1) and voc.dtype == np.float32
    np.testing.assert_allclose(voc[:, 0, 0], np.array([30, 20, 10]) - conventions.VOC_MEAN_BGR_INFER, rtol=1e-6)
    sift = preprocess(experiments.get("siftflow-fcn8s"), {"data": tmp_path / "px.png"})["data"]
    np.testing.assert_allclose(sift[:, 0, 0], np.array([30, 20, 10]) - conventions.SIFTFLOW_MEAN_BGR, rtol=1e-6)
    hha = preprocess(experiments.get("nyud-fcn32s-hha"), {"hha": tmp_path / "px.png"})["hha"]
    # HHA keeps its channel order (not reversed)
    np.testing.assert_allclose(hha[:, 0, 0], np.array([10, 20, 30]) - conventions.NYUD_MEAN_HHA, rtol=1e-6)


def test_load_weights_accepts_state_dicts_and_checkpoints(tmp_path):
    net = nets.build("voc-fcn32s", width=WIDTH)
    other = nets.build("voc-fcn32s", width=WIDTH)
    torch.save({"state_dict": net.state_dict(), "iteration": 12}, tmp_path / "ckpt.pt")
    assert load_weights(other, tmp_path / "ckpt.pt") == 12
    assert torch.equal(other.conv1_1.weight, net.conv1_1.weight)
    torch.save(net.state_dict(), tmp_path / "iter_800.pt")
    assert load_weights(other, tmp_path / "iter_800.pt") == 800
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pt"):
        load_weights(other, tmp_path / "junk.pt")
    torch.save({"optimizer": {"lr": 1.0}}, tmp_path / "nostate.pt")
    with pytest.raises(WeightsError, match="no state dict"):
        load_weights(other, tmp_path / "nostate.pt")


# ---------------------------------------------------------------------------------------------
# fcn infer


def test_fcn_infer_writes_palette_prediction_and_side_by_side(tmp_path):
    weights = rigged_weights(tmp_path, "voc-fcn32s")
    rgb = write_rgb(tmp_path / "cat.png", 21, 27)
    out = tmp_path / "out"
    result = CliRunner().invoke(infer_command, ["voc-fcn32s", "--weights", str(weights), str(tmp_path / "cat.png"),
                                                "--out", str(out), "--width", str(WIDTH), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    with Image.open(out / "cat.png") as pred:
        assert pred.mode == "P" and pred.size == (27, 21)
        assert np.all(np.array(pred) == PERSON)
    with Image.open(out / "cat_side.png") as side:
        assert side.mode == "RGB" and side.size == (27 + 4 + 27, 21)
        arr = np.array(side)
    assert np.array_equal(arr[:, :27], rgb)               # input | ...
    assert np.all(arr[:, 31:] == [192, 128, 128])        # ... | prediction in VOC colours


def test_fcn_infer_siftflow_writes_both_heads(tmp_path):
    weights = rigged_weights(tmp_path, "siftflow-fcn16s", favourite=2, head="score_fr_geo")
    write_rgb(tmp_path / "street.jpg", 18, 24)
    out = tmp_path / "out"
    result = CliRunner().invoke(infer_command, ["siftflow-fcn16s", "--weights", str(weights),
                                                str(tmp_path / "street.jpg"), "--out", str(out),
                                                "--width", str(WIDTH), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert np.all(np.array(Image.open(out / "street_geo.png")) == 2)
    assert np.all(np.array(Image.open(out / "street_sem.png")) == 0)  # zero scores: class 0
    assert Image.open(out / "street_side.png").size == (3 * 24 + 2 * 4, 18)


def test_fcn_infer_late_fusion_needs_one_hha_per_image(tmp_path):
    weights = rigged_weights(tmp_path, "nyud-fcn32s-color-hha", favourite=3, head="score_frhha")
    write_rgb(tmp_path / "room.png", 16, 20, seed=1)
    write_rgb(tmp_path / "room_hha.png", 16, 20, seed=2)
    args = ["nyud-fcn32s-color-hha", "--weights", str(weights), str(tmp_path / "room.png"),
            "--out", str(tmp_path / "out"), "--width", str(WIDTH), "--device", "cpu"]
    missing = CliRunner().invoke(infer_command, args)
    assert missing.exit_code != 0 and "hha" in missing.output
    result = CliRunner().invoke(infer_command, args + ["--hha", str(tmp_path / "room_hha.png")])
    assert result.exit_code == 0, result.output
    assert np.all(np.array(Image.open(tmp_path / "out" / "room.png")) == 3)


def test_fcn_infer_color_d_reads_filled_depth_and_refuses_holes(tmp_path):
    weights = rigged_weights(tmp_path, "nyud-fcn32s-color-d", favourite=7)
    write_rgb(tmp_path / "room.png", 16, 20)
    depth = np.full((16, 20), 2500, np.uint16)
    Image.fromarray(depth).save(tmp_path / "depth.png")
    args = ["nyud-fcn32s-color-d", "--weights", str(weights), str(tmp_path / "room.png"),
            "--out", str(tmp_path / "out"), "--width", str(WIDTH), "--device", "cpu"]
    result = CliRunner().invoke(infer_command, args + ["--depth", str(tmp_path / "depth.png")])
    assert result.exit_code == 0, result.output
    assert np.all(np.array(Image.open(tmp_path / "out" / "room.png")) == 7)
    depth[3, 4] = 0
    Image.fromarray(depth).save(tmp_path / "holes.png")
    bad = CliRunner().invoke(infer_command, args + ["--depth", str(tmp_path / "holes.png"), "--force"])
    assert bad.exit_code != 0 and "holes.png" in bad.output


def test_fcn_infer_refuses_inputs_the_experiment_does_not_take(tmp_path):
    weights = rigged_weights(tmp_path, "voc-fcn32s")
    write_rgb(tmp_path / "a.png", 8, 8)
    result = CliRunner().invoke(infer_command, ["voc-fcn32s", "--weights", str(weights), str(tmp_path / "a.png"),
                                                "--hha", str(tmp_path / "a.png"), "--width", str(WIDTH)])
    assert result.exit_code != 0 and "--hha" in result.output


# ---------------------------------------------------------------------------------------------
# never over an input, never over an existing file without --force


def _infer(weights, *args):
    return CliRunner().invoke(infer_command, ["voc-fcn32s", "--weights", str(weights), *map(str, args),
                                              "--width", str(WIDTH), "--device", "cpu"])


@pytest.mark.parametrize("force", [[], ["--force"]], ids=["plain", "force"])
def test_fcn_infer_never_writes_over_its_input(tmp_path, force):
    """Before: `fcn infer ... out/photo.png --out out` replaced the photo by its label map."""
    weights = rigged_weights(tmp_path, "voc-fcn32s")
    out = tmp_path / "out"
    out.mkdir()
    write_rgb(out / "photo.png", 12, 14)
    before = (out / "photo.png").read_bytes()
    result = _infer(weights, out / "photo.png", "--out", out, *force)
    assert result.exit_code != 0
    assert f"{out / 'photo.png'}: writing the prediction there would overwrite the input file" in result.output
    assert (out / "photo.png").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["photo.png"]   # nothing half-done (no photo_side.png)


@pytest.mark.parametrize("link", ["symlink_to", "hardlink_to"])
def test_fcn_infer_sees_through_symlinks_and_hard_links(tmp_path, link):
    """out/photo.png is the input photo under another path: refused, even with --force."""
    weights = rigged_weights(tmp_path, "voc-fcn32s")
    write_rgb(tmp_path / "photo.png", 12, 14)
    before = (tmp_path / "photo.png").read_bytes()
    out = tmp_path / "out"
    out.mkdir()
    getattr(out / "photo.png", link)(tmp_path / "photo.png")
    result = _infer(weights, tmp_path / "photo.png", "--out", out, "--force")
    assert result.exit_code != 0
    assert f"would overwrite the input file {tmp_path / 'photo.png'}" in result.output
    assert (tmp_path / "photo.png").read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["photo.png"]


def test_fcn_infer_keeps_existing_outputs_unless_force(tmp_path):
    weights = rigged_weights(tmp_path, "voc-fcn32s")
    write_rgb(tmp_path / "a.png", 12, 14, seed=1)
    write_rgb(tmp_path / "b.png", 12, 14, seed=2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "b_side.png").write_bytes(b"an earlier result")
    result = _infer(weights, tmp_path / "a.png", tmp_path / "b.png", "--out", out)
    assert result.exit_code != 0
    assert f"{out / 'b_side.png'} already exists" in result.output and "--force" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["b_side.png"]      # a.png's outputs not written either
    assert (out / "b_side.png").read_bytes() == b"an earlier result"
    result = _infer(weights, tmp_path / "a.png", tmp_path / "b.png", "--out", out, "--force")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a_side.png", "b.png", "b_side.png"]
    with Image.open(out / "b_side.png") as side:
        assert side.size == (14 + 4 + 14, 12)


def test_fcn_infer_refuses_images_whose_outputs_clash(tmp_path):
    weights = rigged_weights(tmp_path, "voc-fcn32s")
    write_rgb(tmp_path / "a.png", 8, 8)
    write_rgb(tmp_path / "a_side.jpg", 8, 8)
    result = _infer(weights, tmp_path / "a.png", tmp_path / "a_side.jpg", "--out", tmp_path / "out")
    assert result.exit_code != 0 and "two outputs of this name" in result.output
    assert not (tmp_path / "out").exists()
