"""reproduce.training.init_files: the --init files a stage starts from, from its config's `init` chain."""
from __future__ import annotations

from pathlib import Path

import pytest

from reproduce import experiments
from reproduce.pipeline import plan
from reproduce.training.init_files import BASE_WEIGHTS, CLASSIFIERS, MissingInitError, default_init, init_chain


def test_every_init_name_is_a_classifier_or_an_experiment_and_each_classifier_has_files():
    assert set(BASE_WEIGHTS) == set(CLASSIFIERS)
    for name in experiments.names():
        for init in init_chain(experiments.get(name)):
            assert init in CLASSIFIERS or init in experiments.names(), (name, init)


def test_a_classifier_is_the_first_file_found_under_the_data_root(tmp_path):
    exp = experiments.get("voc-fcn32s")
    with pytest.raises(MissingInitError, match=r"voc-fcn32s starts from 'vgg16'.*VGG_ILSVRC_16_layers.caffemodel.*--init"):
        default_init(exp, tmp_path / "runs" / "voc-fcn32s", tmp_path / "data")
    later = tmp_path / "data" / BASE_WEIGHTS["vgg16"][-1]
    later.parent.mkdir(parents=True)
    later.write_bytes(b"x")
    assert default_init(exp, tmp_path / "runs" / "voc-fcn32s", tmp_path / "data") == [later]
    first = tmp_path / "data" / BASE_WEIGHTS["vgg16"][0]
    first.write_bytes(b"x")
    assert default_init(exp, tmp_path / "runs" / "voc-fcn32s", tmp_path / "data") == [first]


def test_stages_are_the_sibling_runs_final_pt_and_the_same_files_the_makefile_chain_names(tmp_path):
    exp = experiments.get("nyud-fcn32s-color-hha")  # late fusion: one file per stream, in order
    runs = tmp_path / "runs"
    for stage in init_chain(exp):
        (runs / stage).mkdir(parents=True)
        (runs / stage / "final.pt").write_bytes(b"x")
    found = default_init(exp, runs / exp.name, tmp_path / "data")
    assert found == [runs / "nyud-fcn32s-color" / "final.pt", runs / "nyud-fcn32s-hha" / "final.pt"]
    assert [str(p) for p in found] == plan.init_files(exp.name, runs)
