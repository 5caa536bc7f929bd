"""reproduce.training.checkpoint.load_init: starting a stage from another stage's weights, by Caffe layer name."""
import pytest
import torch

import nets
from reproduce.training import checkpoint
from weight_convert import WeightMismatchError

WIDTH = 1 / 16


def _random_net(name: str, seed: int):
    torch.manual_seed(seed)
    net = nets.build(name, width=WIDTH)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    return net


def test_staged_init_copies_shared_layers_and_keeps_new_ones_at_their_init(tmp_path):
    coarse = _random_net("voc-fcn32s", 0)
    torch.save(coarse.state_dict(), tmp_path / "final.pt")
    fine = nets.build("voc-fcn16s", width=WIDTH)
    fresh = {k: v.clone() for k, v in fine.state_dict().items()}
    report = checkpoint.load_init(fine, [tmp_path / "final.pt"])
    assert {"conv1_1.weight", "fc7.bias", "score_fr.weight"} <= set(report.loaded)
    assert {"score_pool4.weight", "score_pool4.bias", "upscore2.weight", "upscore16.weight"} <= set(report.left_at_init)
    assert "upscore" in " ".join(report.unused)  # FCN-32s' upscore has no place in FCN-16s
    for k in ("conv1_1.weight", "fc6.weight", "score_fr.bias"):
        assert torch.equal(fine.state_dict()[k], coarse.state_dict()[k]), k
    for k in ("score_pool4.weight", "upscore2.weight"):  # zero / bilinear, as Caffe leaves new layers
        assert torch.equal(fine.state_dict()[k], fresh[k]), k
    assert "left at their initialization" in report.summary()


def test_a_training_checkpoint_can_be_the_init(tmp_path):
    coarse = _random_net("voc-fcn32s", 1)
    checkpoint.save_atomic({"format": checkpoint.FORMAT, "version": checkpoint.VERSION, "iteration": 8,
                            "net": checkpoint.cpu_state_dict(coarse)}, tmp_path / "iter_8.pt")
    fine = nets.build("voc-fcn16s", width=WIDTH)
    checkpoint.load_init(fine, [tmp_path / "iter_8.pt"])
    assert torch.equal(fine.conv5_3.weight, coarse.conv5_3.weight)


def test_late_fusion_takes_one_file_per_stream(tmp_path):
    color, hha = _random_net("nyud-fcn32s-color", 2), _random_net("nyud-fcn32s-hha", 3)
    torch.save(color.state_dict(), tmp_path / "color.pt")
    torch.save(hha.state_dict(), tmp_path / "hha.pt")
    fused = nets.build("nyud-fcn32s-color-hha", width=WIDTH)
    report = checkpoint.load_init(fused, [tmp_path / "color.pt", tmp_path / "hha.pt"])
    assert torch.equal(fused.conv1_1color.weight, color.conv1_1.weight)
    assert torch.equal(fused.conv1_1hha.weight, hha.conv1_1.weight)
    assert torch.equal(fused.score_frhha.bias, hha.score_fr.bias)
    assert report.left_at_init == ["upscore.weight"]  # shared and fixed bilinear, as in solve.py


def test_wrong_files_are_refused_with_their_name(tmp_path):
    torch.save({"something.weight": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt"):
        checkpoint.load_init(nets.build("voc-fcn32s", width=WIDTH), [tmp_path / "other.pt"])
    torch.save(nets.build("voc-fcn32s", width=1 / 8).state_dict(), tmp_path / "wide.pt")
    with pytest.raises(WeightMismatchError, match="conv1_1"):
        checkpoint.load_init(nets.build("voc-fcn32s", width=WIDTH), [tmp_path / "wide.pt"])
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        checkpoint.load_init(nets.build("voc-fcn32s", width=WIDTH), [tmp_path / "missing.pt"])
