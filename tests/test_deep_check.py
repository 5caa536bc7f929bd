"""`fcn data check NAME --deep`: the shipped samples in a data root, corrupted in the ways a download
or a disk does; every bad file is listed with what is wrong, and the shallow check says it is one."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from reproduce.commands.cli import main as fcn  # through fcn: click caches a help option per command, and the
# group invoked alone would cache one without -h (tests/test_cli_basics.py)
from reproduce.datasets.deep_check import reader_splits
from reproduce.datasets.layout_check import check_source

FIX = Path(__file__).parent / "fixtures" / "datasets"  # the NYUD sample
SAMPLES = Path(__file__).parent.parent / "reproduce" / "samples"  # the VOC / SBD samples (package data)
VOC_IDS = ("2007_004189", "2007_006449", "2010_005582")


@pytest.fixture
def voc_root(tmp_path: Path, monkeypatch) -> Path:
    """A data root holding voc2011 as `fcn data fetch` lays it out, the 3 fixture samples as seg11valid."""
    devkit = tmp_path / "data" / "voc2011" / "TrainVal" / "VOCdevkit" / "VOC2011"
    shutil.copytree(SAMPLES / "voc" / "VOC2012", devkit)
    (devkit / "ImageSets" / "Segmentation" / "seg11valid.txt").write_text("\n".join(VOC_IDS) + "\n")
    override = tmp_path / "sources.json"
    override.write_text(json.dumps({"sources": [], "expected_counts": {"seg11valid": len(VOC_IDS)}}))
    monkeypatch.setenv("FCN_SOURCES", str(override))
    return tmp_path / "data"


def _devkit(root: Path) -> Path:
    return root / "voc2011" / "TrainVal" / "VOCdevkit" / "VOC2011"


def _edit_label(path: Path, edit) -> None:
    with Image.open(path) as image:
        palette, values = image.getpalette(), np.array(image)
    out = Image.fromarray(np.ascontiguousarray(edit(values)))
    out.putpalette(palette)
    out.save(path)


def _check(root: Path, *extra: str):
    return CliRunner().invoke(fcn, ["data", "check", "voc2011", "--data-root", str(root), *extra])


def test_the_shallow_check_says_so_and_names_deep(voc_root):
    result = _check(voc_root)
    assert result.exit_code == 0, result.output
    assert "voc2011: complete" in result.output
    assert f"voc2011: shallow check (layout, counts, files present, checksums; nothing decoded): " \
           f"`fcn data check voc2011 --data-root {voc_root} --deep` decodes every image and label" in result.output


def test_deep_check_of_good_samples_passes(voc_root):
    result = _check(voc_root, "--deep")
    assert result.exit_code == 0, result.output
    assert "deep: seg11valid: 3 samples, 6 files decoded: sizes agree, labels in range" in result.output
    assert "shallow check" not in result.output


def test_deep_check_lists_every_bad_file(voc_root):
    devkit = _devkit(voc_root)
    jpeg = devkit / "JPEGImages" / "2007_004189.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])              # truncated JPEG
    _edit_label(devkit / "SegmentationClass" / "2007_004189.png",                 # and its label: value 200
                lambda a: np.where(np.arange(a.size).reshape(a.shape) == 7, 200, a).astype(np.uint8))
    _edit_label(devkit / "SegmentationClass" / "2007_006449.png", lambda a: a[:-10])  # another size
    _edit_label(devkit / "SegmentationClass" / "2010_005582.png",                 # 21: one past VOC's 0..20
                lambda a: np.where(np.arange(a.size).reshape(a.shape) == 3, 21, a).astype(np.uint8))
    shallow = _check(voc_root)
    assert shallow.exit_code == 0  # nothing is missing: only decoding finds these

    result = _check(voc_root, "--deep")
    assert result.exit_code == 1
    problems = [line.split("PROBLEM  ", 1)[1] for line in result.output.splitlines() if "PROBLEM" in line]
    assert problems[0] == "deep: seg11valid: 4 problems in 6 files of 3 samples:"
    assert problems[1].startswith(f"deep: {jpeg}: unreadable image (image file is truncated")
    assert problems[2:] == [
        f"deep: {devkit / 'SegmentationClass' / '2007_004189.png'}: label has values [200] outside 0..20 or 255",
        f"deep: {devkit / 'SegmentationClass' / '2007_006449.png'}: label is 365x500 (HxW) but its image "
        f"2007_006449.jpg is 375x500",
        f"deep: {devkit / 'SegmentationClass' / '2010_005582.png'}: label has values [21] outside 0..20 or 255",
    ]
    assert "voc2011: INCOMPLETE; to fix run: fcn data fetch voc2011" in result.output


def test_deep_check_reports_a_non_jpeg_and_a_missing_label(voc_root):
    devkit = _devkit(voc_root)
    (devkit / "JPEGImages" / "2007_006449.jpg").write_bytes(b"<html>503 Service Unavailable</html>")
    (devkit / "SegmentationClass" / "2010_005582.png").write_bytes(b"")
    result = _check(voc_root, "--deep")
    assert result.exit_code == 1
    assert f"{devkit / 'JPEGImages' / '2007_006449.jpg'}: unreadable image (cannot identify image file" in result.output
    assert f"{devkit / 'SegmentationClass' / '2010_005582.png'}: unreadable image" in result.output
    assert "2 problems in 6 files" in result.output


def test_deep_check_shows_progress_on_stderr(voc_root):
    result = CliRunner().invoke(
        fcn, ["data", "check", "voc2011", "--data-root", str(voc_root), "--deep", "--progress-every", "2"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0].startswith("voc2011 seg11valid: 2/3 samples checked, 0 bad so far (")
    assert result.stderr.splitlines()[1].startswith("voc2011 seg11valid: 3/3 samples checked, 0 bad so far (")
    assert "samples checked" not in result.stdout


def test_deep_sbd_names_a_damaged_mat(tmp_path):
    shutil.copytree(SAMPLES / "sbd", tmp_path / "sbd")
    mat = tmp_path / "sbd" / "dataset" / "cls" / "2008_000051.mat"
    mat.write_bytes(mat.read_bytes()[:200])
    report = check_source("sbd", tmp_path, expected={"sbd/train": 1}, deep=True)
    assert not report.ok
    assert report.problems[0] == "deep: train: 1 problems in 2 files of 1 samples:"
    assert report.problems[1].startswith(f"deep: {mat}: unreadable .mat file (")


def _nyud_root(tmp_path: Path) -> Path:
    """The fixture's NYUD sample as ids 1 (train), 2 (val), 3 (test)."""
    folder = tmp_path / "nyud" / "nyud"
    src = FIX / "nyud"
    for split, ident in (("train", "1"), ("val", "2"), ("test", "3")):
        (folder / f"{split}.txt").parent.mkdir(parents=True, exist_ok=True)
        (folder / f"{split}.txt").write_text(ident + "\n")
        for rel in ("data/images/img_{}.png", "data/depth/img_{}.png", "data/hha/img_{}.png", "segmentation/img_{}.mat"):
            (folder / rel.format(ident)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / rel.format("433"), folder / rel.format(ident))
    return folder


NYUD_COUNTS = {"nyud/train": 1, "nyud/val": 1, "nyud/test": 1}


def test_deep_nyud_checks_depth_and_hha_naming_the_experiments_that_need_them(tmp_path):
    folder = _nyud_root(tmp_path)
    assert check_source("nyud", tmp_path, expected=NYUD_COUNTS, deep=True).ok
    (folder / "data" / "hha" / "img_3.png").unlink()
    with Image.open(folder / "data" / "depth" / "img_1.png") as depth:
        mode, size = depth.mode, depth.size
    Image.new(mode, size, 0).save(folder / "data" / "depth" / "img_1.png")  # raw depth with holes
    with Image.open(folder / "data" / "hha" / "img_2.png") as hha:
        hha.resize((hha.width // 2, hha.height // 2)).save(folder / "data" / "hha" / "img_2.png")
    report = check_source("nyud", tmp_path, expected=NYUD_COUNTS, deep=True)
    deep = [p for p in report.problems if p.startswith("deep: ")]
    hha_users = ", ".join(reader_splits("nyud")["trainval"]["hha"])
    assert "nyud-fcn32s-hha" in hha_users and "nyud-fcn32s-color" not in hha_users.split(", ")
    assert deep == [
        "deep: trainval: 2 problems in 8 files of 2 samples:",
        f"deep: {folder / 'data/depth/img_1.png'}: depth has {size[0] * size[1]} pixels <= 0 (or NaN); log(depth) "
        "needs filled-in depth, not raw depth with holes (needed by nyud-fcn32s-color-d)",
        f"deep: {folder / 'data/hha/img_2.png'}: hha is {size[1] // 2}x{size[0] // 2} (HxW) but its image "
        f"img_2.png is {size[1]}x{size[0]}",
        "deep: test: 1 problems in 4 files of 1 samples:",
        f"deep: {folder / 'data/hha/img_3.png'}: file not found (needed by {hha_users})",
    ]


def test_the_deep_check_reads_the_experiments_splits():
    assert set(reader_splits("voc")) == {"seg11valid"}
    assert set(reader_splits("sbd")) == {"train"}
    assert set(reader_splits("nyud")) == {"trainval", "test"}
    assert set(reader_splits("nyud")["test"]) == {"color", "hha", "depth", "label"}
    assert set(reader_splits("siftflow")) == {"trainval", "test"}
    assert set(reader_splits("siftflow")["test"]) == {"data", "sem", "geo"}
    assert set(reader_splits("pascal-context")) == {"train", "val"}


def test_deep_siftflow_checks_both_label_maps(tmp_path):
    from test_datasets_readers import write_siftflow
    folder = tmp_path / "siftflow" / "SiftFlowDataset"
    sem = np.ones((256, 256))
    geo = np.ones((256, 256), dtype=np.int16)
    write_siftflow(folder, "a", sem, geo)
    write_siftflow(folder, "b", sem, np.full((256, 256), 7, dtype=np.int16))  # geometric classes are 1..3
    write_siftflow(folder, "c", np.ones((128, 256)), geo)                      # a semantic map of another size
    (folder / "trainval.txt").write_text("a\nb\n")
    (folder / "test.txt").write_text("c\n")
    report = check_source("siftflow", tmp_path, expected={"siftflow/trainval": 2, "siftflow/test": 1}, deep=True)
    geo_b = folder / "GeoLabels" / "spatial_envelope_256x256_static_8outdoorcategories" / "b.mat"
    sem_c = folder / "SemanticLabels" / "spatial_envelope_256x256_static_8outdoorcategories" / "c.mat"
    assert report.problems == [
        "deep: trainval: 1 problems in 6 files of 2 samples:",
        f"deep: {geo_b}: geometric S has values [7] outside 0..3 or -1",
        "deep: test: 1 problems in 3 files of 1 samples:",
        f"deep: {sem_c}: semantic label is 128x256 (HxW) but its image c.jpg is 256x256",
    ]


def test_deep_pascal_context_reads_the_voc2010_images(tmp_path):
    from test_datasets_readers import write_context
    voc, context = write_context(tmp_path / "x", "2010_005582", np.zeros((1, 1), dtype=np.uint16))
    (tmp_path / "voc2010").mkdir()
    shutil.move(str(voc.parent), str(tmp_path / "voc2010" / "VOCdevkit"))
    shutil.move(str(context), str(tmp_path / "pascal-context"))
    voc = tmp_path / "voc2010" / "VOCdevkit" / "VOC2010"
    (voc / "ImageSets" / "Main" / "train.txt").write_text("2010_005582\n")
    counts = {"voc2010/train": 1, "voc2010/val": 1}
    report = check_source("pascal-context", tmp_path, expected=counts, deep=True)
    label = tmp_path / "pascal-context" / "trainval" / "2010_005582.mat"
    assert report.problems == [
        "deep: train: 1 problems in 2 files of 1 samples:",
        f"deep: {label}: LabelMap is 1x1 (HxW) but its image 2010_005582.jpg is 500x333",
    ]
    assert "deep: val: 1 samples, 0 files decoded (2 read for another split): sizes agree, labels in range" in report.good
    assert "deep: its files are decoded by `fcn data check pascal-context --deep`" in \
        check_source("voc2010", tmp_path, expected=counts, deep=True).good
