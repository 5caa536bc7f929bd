"""reproduce.experiments: every config against the solver table of docs/reference.md, inputs and labels."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import nets
from reproduce import experiments
from reproduce.experiments import Experiment

# docs/reference.md §1c, typed in by hand: base_lr, momentum, iter_size, max_iter,
# solve.py loop step (= our test_interval), snapshot (None: "none set"), test_iter.
# nyud-fcn16s-color-hha has no reference solver: our choice (see its module). Neither has
# voc-fcn-googlenet: the paper's solver (CVPR §4.3), its schedule as voc-fcn-alexnet's.
SOLVER_TABLE = {
    "voc-fcn32s": (1e-10, 0.99, 1, 100000, 4000, 4000, 736),
    "voc-fcn16s": (1e-12, 0.99, 1, 100000, 4000, 4000, 736),
    "voc-fcn8s": (1e-14, 0.99, 1, 100000, 4000, 4000, 736),
    "voc-fcn8s-atonce": (1e-10, 0.99, 1, 300000, 4000, 4000, 736),
    "voc-fcn-alexnet": (1e-4, 0.9, 20, 100000, 4000, 4000, 736),
    "voc-fcn-googlenet": (5e-5, 0.9, 20, 100000, 4000, 4000, 736),
    "nyud-fcn32s-color": (1e-10, 0.99, 1, 300000, 2000, 2000, 654),
    "nyud-fcn32s-hha": (1e-10, 0.99, 1, 300000, 2000, 2000, 654),
    "nyud-fcn32s-color-d": (1e-10, 0.99, 1, 300000, 2000, 2000, 654),
    "nyud-fcn32s-color-hha": (1e-12, 0.99, 1, 300000, 2000, 2000, 654),
    "nyud-fcn16s-color-hha": (1e-12, 0.99, 1, 300000, 2000, 2000, 654),
    "siftflow-fcn32s": (1e-10, 0.99, 1, 300000, 2000, None, 200),
    "siftflow-fcn16s": (1e-12, 0.99, 1, 300000, 2000, None, 200),
    "siftflow-fcn8s": (1e-12, 0.99, 1, 300000, 2000, None, 200),
    "pascalcontext-fcn32s": (1e-10, 0.99, 1, 300000, 8000, 4000, 5105),
    "pascalcontext-fcn16s": (1e-12, 0.99, 1, 300000, 8000, 4000, 5105),
    "pascalcontext-fcn8s": (1e-14, 0.99, 1, 300000, 8000, 4000, 5105),
}

# docs/reference.md §1a "Initialized from"; late fusion from both FCN-32s streams.
INIT = {
    "voc-fcn32s": "vgg16", "voc-fcn16s": "voc-fcn32s", "voc-fcn8s": "voc-fcn16s", "voc-fcn8s-atonce": "vgg16",
    "voc-fcn-alexnet": "alexnet", "voc-fcn-googlenet": "googlenet", "nyud-fcn32s-color": "vgg16", "nyud-fcn32s-hha": "vgg16",
    "nyud-fcn32s-color-d": "vgg16", "nyud-fcn32s-color-hha": ("nyud-fcn32s-color", "nyud-fcn32s-hha"),
    "nyud-fcn16s-color-hha": "nyud-fcn32s-color-hha", "siftflow-fcn32s": "vgg16",
    "siftflow-fcn16s": "siftflow-fcn32s", "siftflow-fcn8s": "siftflow-fcn16s", "pascalcontext-fcn32s": "vgg16",
    "pascalcontext-fcn16s": "pascalcontext-fcn32s", "pascalcontext-fcn8s": "pascalcontext-fcn16s",
}


def test_names_match_nets():
    assert experiments.names() == nets.names()
    assert set(SOLVER_TABLE) == set(nets.names())


@pytest.mark.parametrize("name", sorted(SOLVER_TABLE))
def test_solver_settings_match_facts_sheet(name):
    e = experiments.get(name)
    base_lr, momentum, iter_size, max_iter, test_interval, snapshot, test_iter = SOLVER_TABLE[name]
    assert e.name == name
    assert e.base_lr == base_lr
    assert e.momentum == momentum
    assert e.iter_size == iter_size
    assert e.max_iter == max_iter
    assert e.test_interval == test_interval
    assert e.snapshot == snapshot
    assert e.test_iter == test_iter
    # shared by every reference solver; FCN-GoogLeNet: GoogLeNet's own 2e-4 (the paper: "5e-4 or 2e-4")
    assert e.weight_decay == (0.0002 if name == "voc-fcn-googlenet" else 0.0005)
    assert e.lr_policy == "fixed"
    assert e.seed == 1337
    assert e.loss_normalize is (name in ("voc-fcn-alexnet", "voc-fcn-googlenet"))
    assert e.init == INIT[name]


def test_unknown_experiment_is_a_clear_error():
    with pytest.raises(KeyError, match="voc-fcn32s"):
        experiments.get("voc-fcn4s")


def test_staged_inits_name_a_coarser_experiment_of_the_same_dataset():
    for e in experiments.all_experiments():
        for parent in (e.init,) if isinstance(e.init, str) else e.init:
            if parent in ("vgg16", "alexnet", "googlenet"):
                continue
            p = experiments.get(parent)
            assert p.dataset == e.dataset, e.name
            assert p.val_split == e.val_split, e.name


@pytest.mark.parametrize("name", sorted(SOLVER_TABLE))
def test_net_builds_and_runs_on_net_inputs(name):
    e = experiments.get(name)
    net = e.build_net(width=1 / 32).eval()
    h, w = 20, 28
    sample = {"data": np.zeros((3, h, w), np.float32), "color": np.zeros((3, h, w), np.float32),
              "hha": np.zeros((3, h, w), np.float32), "depth": np.zeros((1, h, w), np.float32),
              "label": np.zeros((h, w), np.uint8), "sem": np.zeros((h, w), np.uint8),
              "geo": np.zeros((h, w), np.uint8)}
    inputs = e.net_inputs(sample)
    assert len(inputs) == len(net.inputs)
    with torch.inference_mode():
        scores = e.net_scores(net(*inputs))
    labels = e.net_labels(sample)
    assert len(scores) == len(labels) == len(e.labels)
    for s, lab in zip(scores, labels):
        assert s.shape[0] == 1 and s.shape[2:] == (h, w)
        assert lab.shape == (1, h, w) and lab.dtype == torch.int64


def test_color_d_concatenates_color_and_depth_into_four_channels():
    e = experiments.get("nyud-fcn32s-color-d")
    color = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    depth = np.full((1, 4, 5), -1.5, np.float32)
    (data,) = e.net_inputs({"color": color, "depth": depth, "hha": color})
    assert data.shape == (1, 4, 4, 5) and data.dtype == torch.float32
    assert torch.equal(data[0, :3], torch.from_numpy(color))  # Concat(color, depth): color first
    assert torch.all(data[0, 3] == -1.5)


def test_late_fusion_feeds_color_then_hha():
    e = experiments.get("nyud-fcn32s-color-hha")
    color, hha = np.zeros((3, 4, 5), np.float32), np.ones((3, 4, 5), np.float32)
    a, b = e.net_inputs({"color": color, "hha": hha, "depth": np.zeros((1, 4, 5), np.float32)})
    assert a.shape == b.shape == (1, 3, 4, 5)
    assert float(a.sum()) == 0 and float(b.sum()) == 60


def test_labels_accept_reference_1xHxW_and_keep_ignore():
    e = experiments.get("voc-fcn8s")
    label = np.array([[[0, 255], [20, 3]]], np.uint8)
    (lab,) = e.net_labels({"label": label})
    assert lab.tolist() == [[[0, 255], [20, 3]]]
    with pytest.raises(ValueError, match="H x W"):
        e.net_labels({"label": np.zeros((2, 2, 2), np.uint8)})
    with pytest.raises(KeyError, match="label"):
        e.net_labels({"sem": label})


def test_siftflow_has_two_heads_aligned_with_its_labels():
    e = experiments.get("siftflow-fcn16s")
    assert e.labels == ("sem", "geo") and e.scores == ("score_sem", "score_geo")
    a, b = torch.zeros(1, 33, 2, 2), torch.ones(1, 3, 2, 2)
    assert e.net_scores({"score_geo": b, "score_sem": a}) == [a, b]
    with pytest.raises(TypeError):
        e.net_scores(a)


def test_paper_numbers_carry_sources_and_unverified_marks():
    voc32 = experiments.get("voc-fcn32s").paper
    assert voc32["README"].scores == {"scores.mean_iu": 63.6}
    assert voc32["PAMI"].unverified and not voc32["README"].unverified
    assert experiments.get("voc-fcn8s").paper["README-test"].scores["scores.mean_iu"] == 67.2
    assert experiments.get("voc-fcn-alexnet").paper["README"].scores["scores.mean_iu"] == 48.0
    t5 = experiments.get("siftflow-fcn16s").paper["CVPR-T5"]
    assert t5.scores["scores_geo.pixel_acc"] == 94.3 and t5.scores["scores.mean_iu"] == 39.5
    assert experiments.get("nyud-fcn32s-color-hha").paper["CVPR-T4"].scores["scores.pixel_acc"] == 64.3
    for e in experiments.all_experiments():
        for exp in e.paper.values():
            assert exp.source and exp.split
            assert all(k.split(".")[0] in ("scores", "scores_geo") for k in exp.scores)
            assert all(0 < v <= 100 for v in exp.scores.values())


def test_to_dict_is_json_ready():
    for e in experiments.all_experiments():
        d = json.loads(json.dumps(e.to_dict()))
        assert d["name"] == e.name and d["base_lr"] == e.base_lr


def test_invalid_config_is_refused():
    kw = dict(name="x", dataset="voc", train_split="train", val_split="seg11valid", train_reader="sbd",
              val_reader="voc", inputs=("data",), labels=("label",), init="vgg16", base_lr=1e-10, momentum=0.99,
              iter_size=1, max_iter=10, test_interval=5, test_iter=3, snapshot=None)
    Experiment(**kw)
    with pytest.raises(ValueError, match="dataset"):
        Experiment(**{**kw, "dataset": "coco"})
    with pytest.raises(ValueError, match="score blob per label"):
        Experiment(**{**kw, "labels": ("sem", "geo")})
    with pytest.raises(ValueError, match="base_lr"):
        Experiment(**{**kw, "base_lr": 0.0})
