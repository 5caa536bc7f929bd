"""A data root that is almost a dataset: the error names exactly which folders are missing."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from reproduce.datasets import DatasetError, open_dataset
from reproduce.commands.cli import main as fcn  # through fcn: click caches a help option per command, and the
# group invoked alone would cache one without -h (tests/test_cli_basics.py)
from reproduce.datasets.layout_check import check_source
from reproduce.datasets.locate import what_is_missing

SAMPLES = Path(__file__).parent.parent / "reproduce" / "samples"  # the VOC / SBD samples (package data)


@pytest.fixture
def voc_without_imagesets(tmp_path: Path) -> Path:
    """data/voc2011/.../VOC2011 with JPEGImages/ and SegmentationClass/ but no ImageSets/Segmentation/."""
    devkit = tmp_path / "data" / "voc2011" / "TrainVal" / "VOCdevkit" / "VOC2011"
    shutil.copytree(SAMPLES / "voc" / "VOC2012", devkit)
    shutil.rmtree(devkit / "ImageSets")
    return devkit


def test_what_is_missing_names_the_folder_and_the_missing_marker(voc_without_imagesets):
    root = voc_without_imagesets.parents[2]
    assert what_is_missing(root, "voc") == (f"{voc_without_imagesets} has JPEGImages/ and SegmentationClass/ "
                                           f"but no ImageSets/Segmentation/")


def test_fcn_data_check_names_what_is_missing(voc_without_imagesets):
    data = voc_without_imagesets.parents[3]
    result = CliRunner().invoke(fcn, ["data", "check", "voc2011", "--data-root", str(data)])
    assert result.exit_code == 1
    assert (f"PROBLEM  no VOC devkit folder (JPEGImages, SegmentationClass, ImageSets/Segmentation) under "
            f"{data / 'voc2011'}: {voc_without_imagesets} has JPEGImages/ and SegmentationClass/ but no "
            f"ImageSets/Segmentation/") in result.output


def test_the_readers_name_what_is_missing(voc_without_imagesets):
    data = voc_without_imagesets.parents[3]
    with pytest.raises(DatasetError, match=r"no VOC devkit folder .* found here or below \(.*VOC2011 has "
                                           r"JPEGImages/ and SegmentationClass/ but no ImageSets/Segmentation/\); "
                                           r"get it with `fcn data fetch voc2012`"):
        open_dataset("voc", data)


def test_two_missing_markers_and_none_at_all(tmp_path):
    (tmp_path / "nyud" / "x" / "segmentation").mkdir(parents=True)
    assert what_is_missing(tmp_path / "nyud", "nyud") == f"{tmp_path / 'nyud' / 'x'} has segmentation/ but no data/images/"
    (tmp_path / "voc").mkdir()
    (tmp_path / "voc" / "notes").mkdir()
    assert what_is_missing(tmp_path / "voc", "voc") == ("no folder there holds any of JPEGImages/, SegmentationClass/ "
                                                        "or ImageSets/Segmentation/ (searched 4 levels down)")
    assert what_is_missing(tmp_path / "absent", "sbd") == f"{tmp_path / 'absent'} does not exist"
    report = check_source("sbd", tmp_path)
    assert report.problems == [f"no SBD dataset folder (img/, cls/) under {tmp_path / 'sbd'}: "
                               f"{tmp_path / 'sbd'} does not exist"]


def test_the_closest_folder_wins(tmp_path):
    """A stray JPEGImages/ higher up does not hide the devkit that lacks only one folder."""
    (tmp_path / "JPEGImages").mkdir()
    devkit = tmp_path / "VOCdevkit" / "VOC2011"
    for sub in ("JPEGImages", "ImageSets/Segmentation"):
        (devkit / sub).mkdir(parents=True)
    assert what_is_missing(tmp_path, "voc") == f"{devkit} has JPEGImages/ and ImageSets/Segmentation/ but no SegmentationClass/"
