"""The smoke run's inputs: a data root laid out like the real one, and VGG16-shaped Caffe weights.

`make reproduce-smoke` runs the same pipeline stages as `make reproduce-voc` (convert -> train
32s -> 16s -> 8s -> evaluate -> tables) on CPU in a few minutes. What it cannot have here it gets
from this module:
- the data: the real VOC and SBD samples shipped in the package (`reproduce/samples`), laid out as the
  SBD `dataset/` folder (train) and a VOC2011 devkit whose `seg11valid.txt` lists the samples (val);
- the ILSVRC classifier: a V1 `.caffemodel` with VGG16's layer names and geometry at reduced
  width, random (He-initialized) weights, written by `weight_convert.caffe_writer`.
Neither is the paper's: the smoke run proves the pipeline runs end to end, not the numbers.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

from nets.vgg_fcn import VGG16_TRUNK, scaled

#: The real samples the smoke run trains and validates on: package data, so an installed wheel has them.
SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def prepare_data(out: Path, fixtures: Path = SAMPLES) -> Path:
    """Lay the shipped samples out as `fcn data fetch` would: `out/sbd/dataset`, `out/voc2011`.

    SBD train = the VOC samples (their palette PNGs saved as SBD `cls/<id>.mat`) plus the real SBD
    sample; seg11valid = the VOC samples. Written to a temporary folder, then renamed.
    FileNotFoundError naming `fixtures` when the samples are not there.
    """
    voc = fixtures / "voc" / "VOC2012"
    ids = sorted(p.stem for p in (voc / "JPEGImages").glob("*.jpg"))
    sbd_src = fixtures / "sbd" / "dataset"
    if not ids or not sbd_src.is_dir():
        raise FileNotFoundError(f"{fixtures}: the VOC / SBD samples are missing")
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    sbd, voc2011 = tmp / "sbd" / "dataset", tmp / "voc2011"
    for d in (sbd / "img", sbd / "cls", voc2011 / "JPEGImages", voc2011 / "SegmentationClass",
              voc2011 / "ImageSets" / "Segmentation"):
        d.mkdir(parents=True)
    for i in ids:
        shutil.copy(voc / "JPEGImages" / f"{i}.jpg", voc2011 / "JPEGImages")
        shutil.copy(voc / "SegmentationClass" / f"{i}.png", voc2011 / "SegmentationClass")
        shutil.copy(voc / "JPEGImages" / f"{i}.jpg", sbd / "img")
        label = np.array(Image.open(voc / "SegmentationClass" / f"{i}.png"), dtype=np.uint8)
        scipy.io.savemat(sbd / "cls" / f"{i}.mat", {"GTcls": {"Segmentation": label}})
    sbd_ids = sorted(p.stem for p in (sbd_src / "img").glob("*.jpg"))
    for i in sbd_ids:
        shutil.copy(sbd_src / "img" / f"{i}.jpg", sbd / "img")
        shutil.copy(sbd_src / "cls" / f"{i}.mat", sbd / "cls")
    (sbd / "train.txt").write_text("".join(f"{i}\n" for i in ids + sbd_ids))
    (voc2011 / "ImageSets" / "Segmentation" / "seg11valid.txt").write_text("".join(f"{i}\n" for i in ids))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def vgg16_layers(width: float, seed: int = 0) -> list[tuple[str, str, list[np.ndarray]]]:
    """VGG16's blobs as the ILSVRC release stores them (fc6-fc8 fully connected), at `width`.

    He-normal weights (std sqrt(2 / fan_in)) so activations neither vanish nor explode; zero biases.
    """
    rng = np.random.default_rng(seed)
    layers, channels = [], 3
    for name, kind, out, kernel, _pad in VGG16_TRUNK:
        if kind != "conv":
            continue
        out = scaled(out, width)
        fan_in = channels * kernel * kernel
        w = rng.normal(0, np.sqrt(2 / fan_in), (out, channels, kernel, kernel)).astype(np.float32)
        if name.startswith("fc"):  # the classifier stores fc6/fc7 as InnerProduct (out, in)
            layers.append((name, "InnerProduct", [w.reshape(out, -1), np.zeros(out, np.float32)]))
        else:
            layers.append((name, "Convolution", [w, np.zeros(out, np.float32)]))
        channels = out
    fc8 = rng.normal(0, np.sqrt(1 / channels), (1000, channels)).astype(np.float32)
    layers.append(("fc8", "InnerProduct", [fc8, np.zeros(1000, np.float32)]))
    return layers
