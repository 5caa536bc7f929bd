"""V1 ``LayerType`` enum values mapped to the V2 type strings Caffe's upgrade gives them.

Source: caffe.proto (V1LayerParameter.LayerType) and Caffe's UpgradeV1LayerType, see
docs/caffe-format.md. V1 has no Crop layer.
"""
from __future__ import annotations

V1_LAYER_TYPES: dict[int, str] = {
    0: "",  # NONE
    1: "Accuracy",
    2: "BNLL",
    3: "Concat",
    4: "Convolution",
    5: "Data",
    6: "Dropout",
    7: "EuclideanLoss",
    8: "Flatten",
    9: "HDF5Data",
    10: "HDF5Output",
    11: "Im2col",
    12: "ImageData",
    13: "InfogainLoss",
    14: "InnerProduct",
    15: "LRN",
    16: "MultinomialLogisticLoss",
    17: "Pooling",
    18: "ReLU",
    19: "Sigmoid",
    20: "Softmax",
    21: "SoftmaxWithLoss",
    22: "Split",
    23: "TanH",
    24: "WindowData",
    25: "Eltwise",
    26: "Power",
    27: "SigmoidCrossEntropyLoss",
    28: "HingeLoss",
    29: "MemoryData",
    30: "ArgMax",
    31: "Threshold",
    32: "DummyData",
    33: "Slice",
    34: "MVN",
    35: "AbsVal",
    36: "Silence",
    37: "ContrastiveLoss",
    38: "Exp",
    39: "Deconvolution",
}

#: Reverse map, V2 type string -> V1 enum value (used by tests' encoder and docs).
V1_TYPE_NUMBERS: dict[str, int] = {v: k for k, v in V1_LAYER_TYPES.items() if v}


def v1_type_name(value: int) -> str:
    """V2 type string for a V1 enum value; unknown values become ``"V1Type<value>"``.

    Unknown enum values are kept (protobuf keeps them as unknown fields) rather than rejected,
    so a file from a Caffe fork with extra layer types still reads.
    """
    return V1_LAYER_TYPES.get(value, f"V1Type{value}")
