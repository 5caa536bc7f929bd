"""`fcn export caffe`: an experiment's net and weights back to Caffe.

    fcn export caffe voc-fcn8s --weights runs/voc-fcn8s/final.pt --out export/voc-fcn8s
    # export/voc-fcn8s/deploy.prototxt      the reference's deploy net (Input layer, no loss)
    # export/voc-fcn8s/voc-fcn8s.caffemodel  the weights, V2 format (BlobProto.shape, float32)

The prototxt is `nets.to_prototxt` of the built net (the reference's own layers, names and
parameters: tests/test_caffe_export.py); the weights are its parameters as Caffe blobs
(`nets.caffe_blobs`), bit for bit, written by `weight_convert.caffe_writer`. Both files are
written atomically; existing files are refused unless --force.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import nets
from reproduce import experiments
from reproduce.atomic import atomic_file
from weight_convert.caffe_writer import write_caffemodel

PROTOTXT = "deploy.prototxt"


@dataclass(frozen=True)
class Exported:
    """What `export_caffe` wrote: the two paths and the number of layers / blobs."""

    prototxt: Path
    caffemodel: Path
    layers: int
    blobs: int


def export_paths(name: str, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """(deploy.prototxt, <name>.caffemodel) under `out_dir`."""
    out = Path(out_dir)
    return out / PROTOTXT, out / f"{name}.caffemodel"


def export_caffe(name: str, weights: str | os.PathLike, out_dir: str | os.PathLike, *, width: float | None = None,
                 input_size: tuple[int, int, int] = nets.caffe_graph.DEPLOY_INPUT, force: bool = False) -> Exported:
    """Write experiment `name`'s deploy.prototxt and caffemodel (weights from `weights`: a .pt
    state dict / checkpoint or a .caffemodel) into `out_dir`.

    input_size: (N, H, W) of the Input layer. Raises FileExistsError (naming the file) if an
    output exists and not `force`, and the errors of `reproduce.evaluation.infer.load_net` for bad weights.
    """
    from reproduce.evaluation.infer import load_net

    prototxt, caffemodel = export_paths(name, out_dir)
    for path in (prototxt, caffemodel):
        if (path.exists() or path.is_symlink()) and not force:
            raise FileExistsError(f"{path} already exists: not overwriting it (give --force to replace it)")
        if path.exists() and Path(weights).exists() and path.samefile(weights):
            raise FileExistsError(f"{path} is the --weights file itself; export elsewhere")
    net, _ = load_net(experiments.get(name), weights, width=width)
    layers = nets.caffe_layers(net, input_size=input_size)
    blobs = nets.caffe_blobs(net, layers)
    text = nets.to_prototxt(net, input_size=input_size)
    prototxt.parent.mkdir(parents=True, exist_ok=True)
    write_caffemodel(caffemodel, name, blobs, version=2)
    with atomic_file(prototxt, "w") as f:
        f.write(text)
    return Exported(prototxt, caffemodel, len(layers), sum(len(b) for _, _, b in blobs))
