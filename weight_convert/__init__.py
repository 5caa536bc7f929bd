"""Read Caffe .caffemodel files without Caffe and map their blobs onto `nets`.

    >>> from weight_convert import read_caffemodel, load_caffemodel
    >>> layers = read_caffemodel("VGG_ILSVRC_16_layers.caffemodel")     # no Caffe, no protobuf
    >>> report = load_caffemodel(net, "fcn8s-heavy-pascal.caffemodel")  # strict: every parameter

The `convert-caffe` command (weight_convert.cli) writes .pt / .h5 / .npz files.
"""
from .caffemodel import CaffeLayer, CaffeNet, parse_net, read_caffemodel, read_net
from .convert import convert
from .errors import CaffeFormatError, WeightMismatchError
from .load import LoadReport, load_caffemodel, load_fusion

__all__ = ["CaffeFormatError", "CaffeLayer", "CaffeNet", "LoadReport", "WeightMismatchError",
           "convert", "load_caffemodel", "load_fusion", "parse_net", "read_caffemodel", "read_net"]
