"""Shipped split/class lists and the data-source registry."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from reproduce.datasets.sources import NO_OFFICIAL_CHECKSUM, SOURCES, sources_as_json
from reproduce.datasets.split_lists import LISTS_DIR, read_split

REPO = Path(__file__).resolve().parents[1]


def test_lists_match_recorded_sha256() -> None:
    lines = (LISTS_DIR / "SHA256SUMS").read_text().splitlines()
    assert len(lines) == 11
    for line in lines:
        digest, name = line.split()
        assert hashlib.sha256((LISTS_DIR / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.parametrize("name, count", [("pascal/seg11valid.txt", 736), ("nyud/train.txt", 381),
                                         ("nyud/val.txt", 414), ("nyud/test.txt", 654),
                                         ("sift-flow/trainval.txt", 2486), ("sift-flow/test.txt", 200)])
def test_split_counts(name: str, count: int) -> None:
    ids = read_split(LISTS_DIR / name)
    assert len(ids) == count == len(set(ids))


def test_nyud_ids_are_the_1449_labeled_images() -> None:
    ids = [int(i) for split in ("train", "val", "test") for i in read_split(LISTS_DIR / "nyud" / f"{split}.txt")]
    assert sorted(ids) == list(range(5001, 6450))


def test_class_lists() -> None:
    def names(rel: str) -> list[str]:  # the class names come before a blank line and a note
        return (LISTS_DIR / rel).read_text().split("\n\n")[0].splitlines()
    assert len(names("pascal/classes.txt")) == 21 and names("pascal/classes.txt")[0] == "background"
    assert len(names("nyud/classes.txt")) == 40 and names("nyud/classes.txt")[-1] == "otherprop"
    assert len((LISTS_DIR / "pascal-context" / "classes-400.txt").read_text().splitlines()) == 459
    assert (LISTS_DIR / "pascal-context" / "classes-59.txt").read_text().splitlines()[0] == "0: background"


def test_sources_json_is_the_registry() -> None:
    """data/sources.json must be regenerated (`fcn data list --json > data/sources.json`) on change."""
    assert json.loads((REPO / "data" / "sources.json").read_text()) == json.loads(json.dumps(sources_as_json()))


def test_registry_entries() -> None:
    weights = [s for s in SOURCES.values() if s.kind == "weights"]
    assert len(weights) == 18  # VGG16, CaffeNet, AlexNet, GoogLeNet + the 14 released FCNs
    assert SOURCES["googlenet"].sha1 == "405fc5acd08a3bb12de8ee5e23a96bec22f08204"  # BVLC model zoo readme
    assert SOURCES["googlenet"].filename == "bvlc_googlenet.caffemodel"
    for source in SOURCES.values():
        assert source.url.startswith(("http://", "https://")) and source.url.endswith(source.filename)
        assert (REPO / "data" / source.doc).is_file(), source.doc
        if source.checksums:
            assert source.checksum_origin != NO_OFFICIAL_CHECKSUM
            lengths = {"md5": 32, "sha1": 40, "sha256": 64}
            assert all(len(v) == lengths[k] and int(v, 16) >= 0 for k, v in source.checksums.items())
        else:
            assert source.checksum_origin == NO_OFFICIAL_CHECKSUM
    assert SOURCES["voc2011-lists"].sha256 == hashlib.sha256(
        (LISTS_DIR / "pascal" / "seg11valid.txt").read_bytes()).hexdigest()


def test_fcn_weights_cover_released_nets() -> None:
    import nets
    fcn = {s.name for s in SOURCES.values() if s.kind == "weights"} - {"vgg16", "caffenet", "alexnet", "googlenet"}
    assert fcn <= set(nets.names())
    # the reference released no weights for these two, and has no FCN-GoogLeNet
    assert set(nets.names()) - fcn == {"nyud-fcn32s-color-d", "nyud-fcn16s-color-hha", "voc-fcn-googlenet"}
