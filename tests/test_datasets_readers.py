"""Every dataset reader on real samples (tests/fixtures/datasets) or on files written in the
official layout: shapes, dtypes, the exact mean subtraction, label values."""
from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
from PIL import Image

from reproduce.datasets import (NYUD_MEAN_BGR, NYUD_MEAN_HHA, PASCALCONTEXT_MEAN_BGR, SIFTFLOW_MEAN_BGR,
                                VOC_MEAN_BGR, DatasetError, NYUDDataset, NYUDLabeledMat,
                                PASCALContextDataset, SBDDataset, SIFTFlowDataset, VOCSegDataset,
                                open_dataset)
from reproduce.datasets.siftflow import SIFTFLOW_SUBDIR

FIX = Path(__file__).parent / "fixtures" / "datasets"
SAMPLES = Path(__file__).parent.parent / "reproduce" / "samples"  # the VOC / SBD samples (package data)
VOC = SAMPLES / "voc" / "VOC2012"


def rgb(path: Path) -> np.ndarray:
    return np.array(Image.open(path))


# ---------------------------------------------------------------- VOC / SBD

@pytest.mark.parametrize("ident, labels", [("2007_004189", {0, 12, 255}), ("2007_006449", {0, 2, 255}),
                                           ("2010_005582", {0, 5, 15, 255})])
def test_voc_sample(ident: str, labels: set[int]) -> None:
    ds = VOCSegDataset(VOC, "sample")
    out = ds[ds.ids.index(ident)]
    img = rgb(VOC / "JPEGImages" / f"{ident}.jpg")
    h, w, _ = img.shape
    assert out["data"].shape == (3, h, w) and out["data"].dtype == np.float32
    assert out["label"].shape == (h, w) and out["label"].dtype == np.uint8
    assert set(np.unique(out["label"]).tolist()) == labels
    # one pixel: channel 0 is blue minus the blue mean, channel 2 red minus the red mean
    y, x = h // 2, w // 3
    r, g, b = (float(v) for v in img[y, x])
    assert out["data"][0, y, x] == pytest.approx(b - 104.00699, abs=1e-4)
    assert out["data"][1, y, x] == pytest.approx(g - 116.66877, abs=1e-4)
    assert out["data"][2, y, x] == pytest.approx(r - 122.67892, abs=1e-4)
    # bit-exact: VOC means are float64 (np.array of net.py's tuple), so the subtraction runs in float64
    expected = (img[:, :, ::-1].astype(np.float64) - np.array((104.00699, 116.66877, 122.67892)))
    np.testing.assert_array_equal(out["data"], expected.astype(np.float32).transpose(2, 0, 1))
    np.testing.assert_array_equal(out["label"], np.array(Image.open(VOC / "SegmentationClass" / f"{ident}.png")))


def test_voc_seg11valid_uses_reference_list_when_devkit_lacks_it() -> None:
    ds = VOCSegDataset(VOC)  # default split: seg11valid, not in the fixture's ImageSets
    assert ds.split == "seg11valid" and len(ds) == 736
    assert ds.split_file.name == "seg11valid.txt"
    out = ds[ds.ids.index("2007_006449")]
    assert set(np.unique(out["label"]).tolist()) == {0, 2, 255}
    assert "2010_005582" not in ds.ids


def test_sbd_sample() -> None:
    ds = SBDDataset(SAMPLES / "sbd" / "dataset", "train")
    assert ds.ids == ["2008_000051"]
    out = ds[0]
    img = rgb(SAMPLES / "sbd" / "dataset" / "img" / "2008_000051.jpg")
    assert img.shape[:2] == (371, 500)
    assert out["data"].shape == (3, 371, 500) and out["data"].dtype == np.float32
    assert out["label"].shape == (371, 500) and out["label"].dtype == np.uint8
    assert set(np.unique(out["label"]).tolist()) == {0, 5, 9, 15}
    mat = scipy.io.loadmat(SAMPLES / "sbd" / "dataset" / "cls" / "2008_000051.mat")
    np.testing.assert_array_equal(out["label"], mat["GTcls"][0]["Segmentation"][0])
    y, x = 200, 123
    assert out["data"][0, y, x] == np.float32(np.float64(img[y, x, 2]) - VOC_MEAN_BGR[0])
    assert out["data"][2, y, x] == np.float32(np.float64(img[y, x, 0]) - VOC_MEAN_BGR[2])


# ---------------------------------------------------------------- NYUD (prepared layout)

def test_nyud_prepared_sample() -> None:
    ds = NYUDDataset(FIX / "nyud", "test")
    assert ds.ids == ["433"]
    out = ds[0]
    assert set(out) == {"color", "hha", "depth", "label"}
    color = rgb(FIX / "nyud" / "data" / "images" / "img_433.png")
    depth = np.array(Image.open(FIX / "nyud" / "data" / "depth" / "img_433.png"))
    hha = rgb(FIX / "nyud" / "data" / "hha" / "img_433.png")
    assert out["color"].shape == (3, 480, 640) and out["color"].dtype == np.float32
    assert out["hha"].shape == (3, 480, 640) and out["hha"].dtype == np.float32
    assert out["depth"].shape == (1, 480, 640) and out["depth"].dtype == np.float32
    assert out["label"].shape == (480, 640) and out["label"].dtype == np.uint8
    y, x = 240, 320
    # NYUD means are float32 in the layer: float32 arithmetic
    assert out["color"][0, y, x] == np.float32(color[y, x, 2]) - np.float32(116.190)
    assert out["color"][2, y, x] == np.float32(color[y, x, 0]) - np.float32(92.318)
    assert out["color"][0, y, x] == pytest.approx(float(color[y, x, 2]) - 116.190, abs=1e-4)
    # HHA keeps the file's channel order
    assert out["hha"][0, y, x] == np.float32(hha[y, x, 0]) - np.float32(132.431)
    assert out["hha"][2, y, x] == np.float32(hha[y, x, 2]) - np.float32(118.477)
    np.testing.assert_array_equal(out["hha"], (hha.astype(np.float32) - NYUD_MEAN_HHA).transpose(2, 0, 1))
    # depth: natural log of the stored value minus 7.844
    assert out["depth"][0, y, x] == pytest.approx(np.log(float(depth[y, x])) - 7.844, abs=1e-5)
    np.testing.assert_array_equal(out["depth"][0], np.log(depth.astype(np.float32)) - np.float32(7.844))
    # labels: Gupta's 0 (void) .. 40 shifted on uint8 -> 255, 0..39
    seg = scipy.io.loadmat(FIX / "nyud" / "segmentation" / "img_433.mat")["segmentation"]
    assert seg.min() == 0 and seg.max() == 40
    assert set(np.unique(out["label"]).tolist()) == {0, 1, 8, 10, 21, 37, 38, 39, 255}
    np.testing.assert_array_equal(out["label"] == 255, seg == 0)
    np.testing.assert_array_equal(out["label"][seg > 0], seg[seg > 0] - 1)


def test_nyud_tops_subset_and_reference_lists() -> None:
    ds = NYUDDataset(FIX / "nyud", "test", tops=("color", "label"))
    assert set(ds[0]) == {"color", "label"}
    trainval = NYUDDataset(FIX / "nyud", "trainval")  # no lists in the folder: reference copies
    assert len(trainval) == 795
    assert trainval.ids[0] == "5449" and trainval.ids[381] == "5010"  # train.txt then val.txt
    assert len(NYUDDataset(FIX / "nyud", "val")) == 414


# ---------------------------------------------------------------- NYUD (official labeled .mat)

def write_labeled_mat(folder: Path, n: int = 3, h: int = 5, w: int = 7) -> dict[str, np.ndarray]:
    """A small file with the official v7.3 layout (HDF5, MATLAB axes reversed) and a mapping."""
    gen = np.random.default_rng(0)
    images = gen.integers(0, 256, size=(n, 3, w, h), dtype=np.uint8)
    depths = gen.uniform(0.6, 9.0, size=(n, w, h)).astype(np.float32)
    labels = gen.integers(0, 895, size=(n, w, h)).astype(np.uint16)
    labels[:, 0, 0] = 0
    with h5py.File(folder / "nyu_depth_v2_labeled.mat", "w") as f:
        f["images"], f["depths"], f["labels"] = images, depths, labels
    map_class = (np.arange(894) * 7) % 40 + 1  # a generated 894 -> 1..40 table
    scipy.io.savemat(folder / "classMapping40.mat", {"mapClass": map_class[np.newaxis, :].astype(np.float64)})
    (folder / "test.txt").write_text("5001\n5003\n")
    (folder / "trainval.txt").write_text("5002\n")
    return {"images": images, "depths": depths, "labels": labels, "mapClass": map_class}


def test_nyud_labeled_mat(tmp_path: Path) -> None:
    src = write_labeled_mat(tmp_path)
    ds = NYUDLabeledMat(tmp_path / "nyu_depth_v2_labeled.mat", "test", mapping=tmp_path / "classMapping40.mat")
    assert ds.ids == ["5001", "5003"]
    out = ds[1]  # id 5003 -> image index 2
    assert out["color"].shape == (3, 5, 7) and out["depth"].shape == (1, 5, 7) and out["label"].shape == (5, 7)
    image = src["images"][2].transpose(2, 1, 0)  # H x W x RGB
    y, x = 3, 4
    assert out["color"][0, y, x] == np.float32(image[y, x, 2]) - NYUD_MEAN_BGR[0]
    metres = float(src["depths"][2].T[y, x])
    assert out["depth"][0, y, x] == pytest.approx(np.log(np.floor(metres * 1000 + 0.5)) - 7.844, abs=1e-5)
    raw = src["labels"][2].T
    mapped = np.where(raw == 0, 0, src["mapClass"][np.maximum(raw.astype(int) - 1, 0)])
    np.testing.assert_array_equal(out["label"], ((mapped - 1) % 256).astype(np.uint8))
    assert out["label"][0, 0] == 255


def test_nyud_labeled_mat_agrees_with_prepared_layout(tmp_path: Path) -> None:
    """Writing the official file out in the reference's prepared layout and reading it with
    NYUDDataset gives the same arrays as NYUDLabeledMat."""
    src = write_labeled_mat(tmp_path)
    ds = NYUDLabeledMat(tmp_path / "nyu_depth_v2_labeled.mat", "trainval", mapping=tmp_path / "classMapping40.mat")
    prepared = tmp_path / "prepared"
    for sub in ("data/images", "data/depth", "segmentation"):
        (prepared / sub).mkdir(parents=True)
    i = 1  # id 5002
    Image.fromarray(src["images"][i].transpose(2, 1, 0)).save(prepared / "data/images/img_5002.png")
    mm = np.floor(src["depths"][i].T.astype(np.float64) * 1000 + 0.5).astype(np.uint16)
    Image.fromarray(mm).save(prepared / "data/depth/img_5002.png")
    raw = src["labels"][i].T.astype(int)
    seg = np.where(raw == 0, 0, src["mapClass"][np.maximum(raw - 1, 0)]).astype(np.uint8)
    scipy.io.savemat(prepared / "segmentation/img_5002.mat", {"segmentation": seg})
    (prepared / "trainval.txt").write_text("5002\n")
    a = ds[0]
    b = NYUDDataset(prepared, "trainval", tops=("color", "depth", "label"))[0]
    for key in ("color", "depth", "label"):
        np.testing.assert_array_equal(a[key], b[key])


def test_open_dataset_finds_nyud_labeled_and_mapping(tmp_path: Path) -> None:
    (tmp_path / "nyud-labeled").mkdir()
    (tmp_path / "nyud-mapping40").mkdir()
    write_labeled_mat(tmp_path / "nyud-labeled")
    shutil.move(tmp_path / "nyud-labeled" / "classMapping40.mat", tmp_path / "nyud-mapping40")
    ds = open_dataset("nyud-labeled", tmp_path, "test")
    assert isinstance(ds, NYUDLabeledMat) and len(ds) == 2
    (tmp_path / "nyud-mapping40" / "classMapping40.mat").unlink()
    with pytest.raises(DatasetError, match="classMapping40.mat"):
        open_dataset("nyud-labeled", tmp_path, "test")


def test_nyud_labeled_missing_mapping_says_where_to_get_it(tmp_path: Path) -> None:
    write_labeled_mat(tmp_path)
    with pytest.raises(DatasetError, match=r"mapClass.*sgupta/cvpr13/data\.tgz.*fcn data fetch nyud-mapping40"):
        NYUDLabeledMat(tmp_path / "nyu_depth_v2_labeled.mat", "test", mapping=tmp_path / "absent.mat")


# ---------------------------------------------------------------- SIFT Flow (files written in the official layout)

def write_siftflow(root: Path, ident: str, sem: np.ndarray, geo: np.ndarray) -> np.ndarray:
    for sub in ("Images", "SemanticLabels", "GeoLabels"):
        (root / sub / SIFTFLOW_SUBDIR).mkdir(parents=True, exist_ok=True)
    crop = Image.open(VOC / "JPEGImages" / "2007_004189.jpg").convert("RGB").crop((0, 0, 256, 256))
    path = root / "Images" / SIFTFLOW_SUBDIR / f"{ident}.jpg"
    crop.save(path, quality=95)
    scipy.io.savemat(root / "SemanticLabels" / SIFTFLOW_SUBDIR / f"{ident}.mat", {"S": sem, "names": np.array(["x"])})
    scipy.io.savemat(root / "GeoLabels" / SIFTFLOW_SUBDIR / f"{ident}.mat", {"S": geo})
    return rgb(path)


def test_siftflow_written_sample(tmp_path: Path) -> None:
    sem = (np.arange(256 * 256).reshape(256, 256) % 34).astype(np.float64)  # 0 (void) .. 33
    geo = (np.arange(256 * 256).reshape(256, 256) % 5 - 1).astype(np.int16)  # -1, 0, 1, 2, 3
    img = write_siftflow(tmp_path, "coast_natu975", sem, geo)
    (tmp_path / "test.txt").write_text("coast_natu975\n")
    out = SIFTFlowDataset(tmp_path, "test")[0]
    assert set(out) == {"data", "sem", "geo"}
    assert out["data"].shape == (3, 256, 256) and out["data"].dtype == np.float32
    assert out["sem"].dtype == np.uint8 and out["geo"].dtype == np.uint8
    np.testing.assert_array_equal(out["sem"], np.where(sem == 0, 255, sem - 1))
    np.testing.assert_array_equal(out["geo"], np.where(geo <= 0, 255, geo - 1))
    assert set(np.unique(out["geo"]).tolist()) == {0, 1, 2, 255}
    assert out["sem"].max() == 255 and out["sem"][out["sem"] != 255].max() == 32
    y, x = 100, 50
    assert out["data"][0, y, x] == np.float32(img[y, x, 2]) - SIFTFLOW_MEAN_BGR[0]
    assert out["data"][0, y, x] == pytest.approx(float(img[y, x, 2]) - 114.578, abs=1e-4)


def test_siftflow_reference_lists() -> None:
    # the lists are shipped: a folder without them still has the reference's splits
    trainval = SIFTFlowDataset(FIX, "trainval")
    test = SIFTFlowDataset(FIX, "test")
    assert len(trainval) == 2486 and len(test) == 200
    assert "highway_bost181" not in trainval.ids and "street_urb506" not in trainval.ids


# ---------------------------------------------------------------- PASCAL-Context (written in the official layout)

def write_context(root: Path, ident: str, label_map: np.ndarray) -> tuple[Path, Path]:
    voc = root / "VOCdevkit" / "VOC2010"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    shutil.copy(VOC / "JPEGImages" / "2010_005582.jpg", voc / "JPEGImages" / f"{ident}.jpg")
    (voc / "ImageSets" / "Main" / "val.txt").write_text(f"{ident}\n")
    context = root / "pascal-context"
    (context / "trainval").mkdir(parents=True)
    scipy.io.savemat(context / "trainval" / f"{ident}.mat", {"LabelMap": label_map})
    return voc, context


# full-list id -> expected 59-class label (classes-400.txt / classes-59.txt of the reference)
CONTEXT_CASES = {
    0: 0,        # never a class id
    2: 1,        # aeroplane
    397: 11,     # table (the task list says diningtable)
    19: 52,      # bedclothes (task list: bedcloth)
    80: 28,      # cloth (task list: clothes)
    284: 15,     # person
    308: 16,     # pottedplant
    427: 20,     # tvmonitor
    458: 59,     # wood
    431: 0,      # unknown: not one of the 59 -> background
    459: 0,      # wool
}


def test_pascal_context_written_sample(tmp_path: Path) -> None:
    img = rgb(VOC / "JPEGImages" / "2010_005582.jpg")
    h, w, _ = img.shape
    label_map = np.zeros((h, w), dtype=np.uint16)
    for k, full_id in enumerate(CONTEXT_CASES):
        label_map[k * 10:(k + 1) * 10, :] = full_id
    voc, context = write_context(tmp_path, "2010_005582", label_map)
    ds = PASCALContextDataset(voc, context, "val")
    out = ds[0]
    assert out["data"].shape == (3, h, w) and out["data"].dtype == np.float32
    assert out["label"].shape == (h, w) and out["label"].dtype == np.uint8
    for k, expected in enumerate(CONTEXT_CASES.values()):
        assert np.all(out["label"][k * 10:(k + 1) * 10] == expected)
    assert 255 not in out["label"]
    y, x = 150, 200
    assert out["data"][1, y, x] == np.float32(img[y, x, 1]) - PASCALCONTEXT_MEAN_BGR[1]
    assert out["data"][1, y, x] == pytest.approx(float(img[y, x, 1]) - 116.669, abs=1e-4)
    # the reference's voc_dir is the parent of VOC2010: accepted too
    assert PASCALContextDataset(voc.parent, context, "val").ids == ["2010_005582"]


def test_open_dataset_from_data_root(tmp_path: Path) -> None:
    shutil.copytree(VOC, tmp_path / "voc2012" / "VOCdevkit" / "VOC2012")
    shutil.copytree(SAMPLES / "sbd" / "dataset", tmp_path / "sbd" / "benchmark_RELEASE" / "dataset")
    shutil.copytree(FIX / "nyud", tmp_path / "nyud" / "nyud")
    voc = open_dataset("voc", tmp_path, "sample")
    assert isinstance(voc, VOCSegDataset) and voc.root == tmp_path / "voc2012" / "VOCdevkit" / "VOC2012"
    sbd = open_dataset("sbd", tmp_path)  # default split: train
    assert isinstance(sbd, SBDDataset) and sbd.split == "train" and len(sbd) == 1
    nyud = open_dataset("nyud", tmp_path, "test", tops=("label",))
    assert set(nyud[0]) == {"label"}
    assert open_dataset("voc", VOC, "sample").root == VOC  # the dataset folder itself works too
    with pytest.raises(DatasetError, match="fcn data fetch siftflow"):
        open_dataset("siftflow", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        open_dataset("cityscapes", tmp_path)
