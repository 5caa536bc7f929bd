"""Bad input on disk: one DatasetError (a ValueError) that names the file and what is wrong."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from reproduce.datasets import (DatasetError, NYUDDataset, PASCALContextDataset, SBDDataset, SIFTFlowDataset,
                                VOCSegDataset)
from reproduce.datasets.siftflow import SIFTFLOW_SUBDIR

FIX = Path(__file__).parent / "fixtures" / "datasets"
SAMPLES = Path(__file__).parent.parent / "reproduce" / "samples"  # the VOC / SBD samples (package data)
VOC = SAMPLES / "voc" / "VOC2012"


@pytest.fixture()
def voc(tmp_path: Path) -> Path:
    root = tmp_path / "VOC2012"
    shutil.copytree(VOC, root)
    return root


def raises(path_part: str, problem: str):
    """pytest.raises for a DatasetError whose path contains path_part and message matches problem."""
    class _Check:
        def __enter__(self):
            self.ctx = pytest.raises(DatasetError, match=problem)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            suppressed = self.ctx.__exit__(*exc)
            assert isinstance(self.info.value, ValueError)
            assert path_part in str(self.info.value.path), self.info.value.path
            assert str(self.info.value).startswith(str(self.info.value.path))
            return suppressed
    return _Check()


def test_missing_image(voc: Path) -> None:
    ds = VOCSegDataset(voc)  # seg11valid: 736 ids, the fixture holds two of them
    with raises("JPEGImages/2007_000033.jpg", "file not found"):
        ds[ds.ids.index("2007_000033")]


def test_missing_label(voc: Path) -> None:
    (voc / "SegmentationClass" / "2007_004189.png").unlink()
    ds = VOCSegDataset(voc, "sample")
    with raises("SegmentationClass/2007_004189.png", "file not found"):
        ds[0]


def test_missing_split_list(voc: Path) -> None:
    with raises("ImageSets/Segmentation/nonexistent.txt", "split list not found"):
        VOCSegDataset(voc, "nonexistent")


def test_unreadable_image(voc: Path) -> None:
    (voc / "JPEGImages" / "2007_004189.jpg").write_bytes(b"this is not a JPEG")
    with raises("JPEGImages/2007_004189.jpg", "unreadable image"):
        VOCSegDataset(voc, "sample")[0]


def test_truncated_image(voc: Path) -> None:
    path = voc / "JPEGImages" / "2007_006449.jpg"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with raises("JPEGImages/2007_006449.jpg", "unreadable image"):
        VOCSegDataset(voc, "sample")[1]


def test_greyscale_image_refused(voc: Path) -> None:
    path = voc / "JPEGImages" / "2007_004189.jpg"
    Image.open(path).convert("L").save(path)
    with raises("JPEGImages/2007_004189.jpg", "expected an RGB image, got PIL mode 'L'"):
        VOCSegDataset(voc, "sample")[0]


def test_label_size_differs_from_image(voc: Path) -> None:
    # 2010_005582's label (a different size) in place of 2007_004189's
    shutil.copy(voc / "SegmentationClass" / "2010_005582.png", voc / "SegmentationClass" / "2007_004189.png")
    with raises("SegmentationClass/2007_004189.png", r"label is \d+x\d+ \(HxW\) but its image 2007_004189.jpg is"):
        VOCSegDataset(voc, "sample")[0]


def test_label_value_out_of_range(voc: Path) -> None:
    path = voc / "SegmentationClass" / "2007_004189.png"
    label = Image.open(path)
    values = np.array(label)
    values[0, :5] = 21
    values[1, :5] = 200
    bad = Image.fromarray(values, mode="P")
    bad.putpalette(label.getpalette())
    bad.save(path)
    with raises("SegmentationClass/2007_004189.png", r"values \[21, 200\] outside 0\.\.20 or 255"):
        VOCSegDataset(voc, "sample")[0]


def test_rgb_label_png_refused(voc: Path) -> None:
    path = voc / "SegmentationClass" / "2007_004189.png"
    Image.open(path).convert("RGB").save(path)
    with raises("SegmentationClass/2007_004189.png", "expected a palette or greyscale label PNG"):
        VOCSegDataset(voc, "sample")[0]


def test_sbd_out_of_range_and_bad_struct(tmp_path: Path) -> None:
    root = tmp_path / "dataset"
    shutil.copytree(SAMPLES / "sbd" / "dataset", root)
    mat = root / "cls" / "2008_000051.mat"
    seg = scipy.io.loadmat(mat)["GTcls"][0]["Segmentation"][0].copy()
    seg[0, 0] = 21
    scipy.io.savemat(mat, {"GTcls": {"Segmentation": seg, "CategoriesPresent": np.array([5])}})
    with raises("cls/2008_000051.mat", r"GTcls.Segmentation has values \[21\] outside 0\.\.20"):
        SBDDataset(root)[0]
    scipy.io.savemat(mat, {"GTinst": {"Segmentation": seg}})
    with raises("cls/2008_000051.mat", "no variable 'GTcls'"):
        SBDDataset(root)[0]
    mat.write_bytes(b"MATLAB 5.0 MAT-file, garbage")
    with raises("cls/2008_000051.mat", "unreadable .mat file"):
        SBDDataset(root)[0]


@pytest.fixture()
def nyud(tmp_path: Path) -> Path:
    root = tmp_path / "nyud"
    shutil.copytree(FIX / "nyud", root)
    return root


def test_nyud_zero_depth_refused(nyud: Path) -> None:
    path = nyud / "data" / "depth" / "img_433.png"
    depth = np.array(Image.open(path))
    depth[:3, :4] = 0
    Image.fromarray(depth).save(path)
    with raises("data/depth/img_433.png", "depth has 12 pixels <= 0"):
        NYUDDataset(nyud, "test")[0]


def test_nyud_label_out_of_range(nyud: Path) -> None:
    path = nyud / "segmentation" / "img_433.mat"
    seg = scipy.io.loadmat(path)["segmentation"]
    seg[5, 5] = 41
    scipy.io.savemat(path, {"segmentation": seg})
    with raises("segmentation/img_433.mat", r"segmentation has values \[41\] outside 0\.\.40"):
        NYUDDataset(nyud, "test")[0]


def test_nyud_hha_size_differs(nyud: Path) -> None:
    path = nyud / "data" / "hha" / "img_433.png"
    Image.open(path).crop((0, 0, 320, 240)).save(path)
    with raises("data/hha/img_433.png", r"hha is 240x320 \(HxW\) but its image img_433.png is 480x640"):
        NYUDDataset(nyud, "test")[0]


def test_siftflow_bad_labels(tmp_path: Path) -> None:
    for sub in ("Images", "SemanticLabels", "GeoLabels"):
        (tmp_path / sub / SIFTFLOW_SUBDIR).mkdir(parents=True)
    Image.new("RGB", (256, 256), (10, 20, 30)).save(tmp_path / "Images" / SIFTFLOW_SUBDIR / "a.jpg")
    sem_path = tmp_path / "SemanticLabels" / SIFTFLOW_SUBDIR / "a.mat"
    geo_path = tmp_path / "GeoLabels" / SIFTFLOW_SUBDIR / "a.mat"
    (tmp_path / "test.txt").write_text("a\n")
    ok = np.ones((256, 256))
    scipy.io.savemat(sem_path, {"S": ok * 34})
    scipy.io.savemat(geo_path, {"S": ok})
    with raises("SemanticLabels", r"semantic S has values \[34\] outside 0\.\.33"):
        SIFTFlowDataset(tmp_path, "test")[0]
    scipy.io.savemat(sem_path, {"S": ok * 0.5})
    with raises("SemanticLabels", "non-integer values"):
        SIFTFlowDataset(tmp_path, "test")[0]
    scipy.io.savemat(sem_path, {"S": ok})
    scipy.io.savemat(geo_path, {"S": ok * -2})
    with raises("GeoLabels", r"geometric S has values \[-2\] outside 0\.\.3 or -1"):
        SIFTFlowDataset(tmp_path, "test")[0]
    scipy.io.savemat(geo_path, {"S": np.ones((128, 256))})
    with raises("GeoLabels", r"geometric label is 128x256 \(HxW\) but its image a.jpg is 256x256"):
        SIFTFlowDataset(tmp_path, "test")[0]


def test_pascal_context_bad_label_map(tmp_path: Path) -> None:
    voc = tmp_path / "VOC2010"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    Image.new("RGB", (8, 6)).save(voc / "JPEGImages" / "x.jpg")
    (voc / "ImageSets" / "Main" / "val.txt").write_text("x\n")
    (tmp_path / "ctx" / "trainval").mkdir(parents=True)
    scipy.io.savemat(tmp_path / "ctx" / "trainval" / "x.mat", {"LabelMap": np.full((6, 8), 460)})
    with raises("trainval/x.mat", r"LabelMap has values \[460\] outside 0\.\.459"):
        PASCALContextDataset(voc, tmp_path / "ctx", "val")[0]
    scipy.io.savemat(tmp_path / "ctx" / "trainval" / "x.mat", {"Label": np.ones((6, 8))})
    with raises("trainval/x.mat", r"no variable 'LabelMap' in \.mat file \(found \['Label'\]\)"):
        PASCALContextDataset(voc, tmp_path / "ctx", "val")[0]
    (tmp_path / "ctx" / "trainval" / "x.mat").unlink()
    with raises("trainval/x.mat", "file not found"):
        PASCALContextDataset(voc, tmp_path / "ctx", "val")[0]


def test_blank_line_in_split_list(voc: Path) -> None:
    (voc / "ImageSets" / "Segmentation" / "sample.txt").write_text("2007_004189\n\n2007_006449\n")
    with raises("sample.txt", "line 2 is blank"):
        VOCSegDataset(voc, "sample")
