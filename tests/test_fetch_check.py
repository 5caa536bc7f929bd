"""`fcn data check`: layout, counts, every listed file; says what is missing and which command fetches it."""
from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from dataclasses import replace

from click.testing import CliRunner

from reproduce.datasets.cli import data_group
from reproduce.datasets.layout_check import EXPECTED_COUNTS, check_source
from reproduce.datasets.siftflow import SIFTFLOW_SUBDIR
from reproduce.datasets.sources import get_source

FIX = Path(__file__).parent / "fixtures" / "datasets"
SAMPLES = Path(__file__).parent.parent / "reproduce" / "samples"  # the VOC / SBD samples (package data)
WIDTH = 1 / 16  # the nets' width for the weights' content checks (the real files are full width)


def write_fcn_caffemodel(path: Path, net_name: str, width: float = WIDTH) -> None:
    """A caffemodel holding every parameter of `net_name` at `width` (what a released FCN model holds)."""
    import nets
    from weight_convert.caffe_writer import write_caffemodel
    net = nets.build(net_name, width=width)
    blobs: dict[str, list] = {}
    for key, p in net.named_parameters():
        blobs.setdefault(key.rsplit(".", 1)[0], []).append(p.detach().numpy())
    path.parent.mkdir(parents=True, exist_ok=True)
    write_caffemodel(path, net_name, [(n, "Deconvolution" if n.startswith("upscore") else "Convolution", b)
                                      for n, b in blobs.items()])


def touch(root: Path, *relative: str) -> None:
    for rel in relative:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")


def test_reference_counts() -> None:
    assert EXPECTED_COUNTS == {"seg11valid": 736, "sbd/train": 8498, "nyud/train": 381, "nyud/val": 414,
                               "nyud/test": 654, "siftflow/trainval": 2486, "siftflow/test": 200,
                               "voc2010/train": 4998, "voc2010/val": 5105}


def test_empty_data_root_names_every_fetch_command(tmp_path: Path) -> None:
    result = CliRunner().invoke(data_group, ["check", "all", "--data-root", str(tmp_path)])
    assert result.exit_code == 1
    for name in ("voc2012", "voc2011", "voc2011-lists", "sbd", "nyud", "nyud-labeled", "siftflow", "voc2010",
                 "pascal-context", "vgg16", "caffenet", "voc-fcn8s", "pascalcontext-fcn32s"):
        assert f"fcn data fetch {name} --data-root {tmp_path}" in result.output, name


def test_sbd_counts_and_missing_files(tmp_path: Path) -> None:
    folder = tmp_path / "sbd" / "benchmark_RELEASE" / "dataset"
    (folder).mkdir(parents=True)
    (folder / "train.txt").write_text("a\nb\nc\n")
    touch(folder, "img/a.jpg", "cls/a.mat", "img/b.jpg", "cls/b.mat", "img/c.jpg")
    report = check_source("sbd", tmp_path, expected={"sbd/train": 3})
    assert not report.ok and report.location == folder
    assert report.problems == ["1 of 6 train images and labels missing: cls/c.mat"]
    assert report.fixes == ["fcn data fetch sbd"]
    touch(folder, "cls/c.mat")
    assert check_source("sbd", tmp_path, expected={"sbd/train": 3}).ok
    # against the real count, three ids are far too few
    real = check_source("sbd", tmp_path)
    assert real.problems == ["train.txt: 3 ids, expected 8498 (SBD)"]
    assert "fcn data fetch sbd --force" in real.fixes


def test_voc_fixture_against_seg11valid(tmp_path: Path) -> None:
    shutil.copytree(SAMPLES / "voc" / "VOC2012", tmp_path / "voc2012" / "VOCdevkit" / "VOC2012")
    report = check_source("voc2012", tmp_path, data_root_arg=" --data-root X")
    assert "seg11valid: 736 ids (fcn-repro's copy of the reference list)" in report.good
    # the fixture holds 2 of the 736 seg11valid images (and their labels)
    assert report.problems[0].startswith("1468 of 1472 seg11valid images and labels missing: "
                                         "JPEGImages/2007_000033.jpg, SegmentationClass/2007_000033.png")
    assert report.fixes == ["fcn data fetch voc2012 --data-root X"]


def test_nyud_missing_hha_points_at_the_hha_command(tmp_path: Path) -> None:
    folder = tmp_path / "nyud" / "nyud"
    for split, ids in (("train", ["1"]), ("val", ["2"]), ("test", ["3"])):
        (folder).mkdir(parents=True, exist_ok=True)
        (folder / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for i in ids:
            touch(folder, f"data/images/img_{i}.png", f"data/depth/img_{i}.png", f"segmentation/img_{i}.mat")
    touch(folder, "data/hha/img_1.png", "data/hha/img_2.png")
    expected = {"nyud/train": 1, "nyud/val": 1, "nyud/test": 1}
    report = check_source("nyud", tmp_path, expected=expected)
    assert report.problems == ["1 of 3 HHA images missing: data/hha/img_3.png"]
    assert report.fixes[0] == "fcn data fetch nyud"
    assert report.fixes[1].startswith("or compute HHA from the depth: fcn data hha --depth-dir ")
    touch(folder, "data/hha/img_3.png")
    assert check_source("nyud", tmp_path, expected=expected).ok


def test_nyud_without_lists_uses_reference_counts(tmp_path: Path) -> None:
    shutil.copytree(FIX / "nyud", tmp_path / "nyud")
    (tmp_path / "nyud" / "test.txt").unlink()
    report = check_source("nyud", tmp_path)
    assert "train.txt: 381 ids (fcn-repro's copy of the reference list)" in report.good
    assert "test.txt: 654 ids (fcn-repro's copy of the reference list)" in report.good
    assert report.problems[0].startswith("4347 of 4347 colour, depth and label files missing")


def test_siftflow_complete_with_small_lists(tmp_path: Path) -> None:
    folder = tmp_path / "siftflow" / "SiftFlowDataset"
    folder.mkdir(parents=True)
    (folder / "trainval.txt").write_text("a\nb\n")
    (folder / "test.txt").write_text("c\n")
    for i in "abc":
        touch(folder, f"Images/{SIFTFLOW_SUBDIR}/{i}.jpg", f"SemanticLabels/{SIFTFLOW_SUBDIR}/{i}.mat",
              f"GeoLabels/{SIFTFLOW_SUBDIR}/{i}.mat")
    report = check_source("siftflow", tmp_path, expected={"siftflow/trainval": 2, "siftflow/test": 1})
    assert report.ok, report.render()
    assert "all 9 images and label files present" in report.good
    assert check_source("siftflow", tmp_path).problems == [
        "trainval.txt: 2 ids, expected 2486 (archive list)", "test.txt: 1 ids, expected 200 (archive list)"]


def test_pascal_context_needs_voc2010(tmp_path: Path) -> None:
    touch(tmp_path / "pascal-context", "trainval/a.mat")
    report = check_source("pascal-context", tmp_path)
    assert not report.ok and report.fixes == ["fcn data fetch voc2010"]
    voc = tmp_path / "voc2010" / "VOCdevkit" / "VOC2010"
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (voc / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    (voc / "ImageSets" / "Main" / "val.txt").write_text("b\n")
    touch(voc, "JPEGImages/a.jpg", "JPEGImages/b.jpg")
    small = {"voc2010/train": 1, "voc2010/val": 1}
    report = check_source("pascal-context", tmp_path, expected=small)
    assert report.problems == ["1 of 2 train+val LabelMap files missing: trainval/b.mat"]
    assert report.fixes == ["fcn data fetch pascal-context"]
    assert check_source("voc2010", tmp_path, expected=small).ok


def test_weights_checksum(tmp_path: Path) -> None:
    path = tmp_path / "weights" / "bvlc_reference_caffenet.caffemodel"
    path.parent.mkdir()
    path.write_bytes(b"not the real caffenet")
    report = check_source("caffenet", tmp_path)
    assert report.problems == ["bvlc_reference_caffenet.caffemodel: sha1 does not match the expected checksum"]
    assert report.fixes == ["fcn data fetch caffenet --force"]
    # an unpinned file is checked against the sha256 a fetch recorded, when there is one
    fcn = tmp_path / "weights" / "fcn8s-heavy-pascal.caffemodel"
    write_fcn_caffemodel(fcn, "voc-fcn8s")
    assert check_source("voc-fcn8s", tmp_path, width=WIDTH).ok
    (tmp_path / "checksums").mkdir()
    (tmp_path / "checksums" / "fcn8s-heavy-pascal.caffemodel.sha256").write_text(
        f"{hashlib.sha256(b'other').hexdigest()}  fcn8s-heavy-pascal.caffemodel\n")
    report = check_source("voc-fcn8s", tmp_path, width=WIDTH)
    assert not report.ok and "fcn data forget voc-fcn8s" in report.problems[0]


def test_weights_content_is_checked(tmp_path: Path) -> None:
    """`fcn data check` no longer calls a file complete because it exists: a caffemodel of another
    net, a truncated one and a non-caffemodel are each refused, naming what is wrong."""
    fcn = tmp_path / "weights" / "fcn8s-heavy-pascal.caffemodel"
    fcn.parent.mkdir()
    fcn.write_bytes(b"weights")
    assert "not the expected weights" in check_source("voc-fcn8s", tmp_path, width=WIDTH).problems[0]
    write_fcn_caffemodel(fcn, "voc-fcn32s")  # lacks score_pool4, score_pool3, upscore2, ...
    problem = check_source("voc-fcn8s", tmp_path, width=WIDTH).problems[0]
    assert "unfilled" in problem and "score_pool" in problem
    write_fcn_caffemodel(fcn, "voc-fcn8s")
    fcn.write_bytes(fcn.read_bytes()[: fcn.stat().st_size // 2])
    assert not check_source("voc-fcn8s", tmp_path, width=WIDTH).ok
    vgg = tmp_path / "weights" / "VGG_ILSVRC_16_layers.caffemodel"
    write_fcn_caffemodel(vgg, "voc-fcn32s")  # an FCN is not the VGG16 classifier
    report = check_source("vgg16", tmp_path, width=WIDTH)
    assert report.problems[0].startswith(f"VGG_ILSVRC_16_layers.caffemodel: {vgg.stat().st_size} bytes, "
                                         "expected 553432081")
    unsized = replace(get_source("vgg16"), size=None)  # the content check at the tests' width
    report = check_source("vgg16", tmp_path, width=WIDTH, source=unsized)
    assert "does not hold vgg16" in report.problems[0] and report.fixes == ["fcn data fetch vgg16 --force"]


def test_nyud_mapping_file(tmp_path: Path) -> None:
    import numpy as np
    import scipy.io
    path = tmp_path / "nyud-mapping40" / "classMapping40.mat"
    path.parent.mkdir()
    scipy.io.savemat(path, {"mapClass": np.ones((1, 893))})
    report = check_source("nyud-mapping40", tmp_path)
    assert report.problems and "mapClass has 893 entries, expected 894" in report.problems[0]
    scipy.io.savemat(path, {"mapClass": np.ones((1, 894))})
    assert check_source("nyud-mapping40", tmp_path).ok
