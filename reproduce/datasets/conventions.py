"""Per-dataset constants exactly as the reference's data layers and net.py files use them.

Means are (B, G, R) on the 0..255 scale. Their numpy dtype matters for the last bit of the
result: the VOC/SBD layers get the mean as a Python tuple from net.py and build it with
`np.array(params['mean'])`, i.e. float64, so `in_ -= mean` runs in float64 and is rounded to
float32 once; the NYUD, SIFT Flow and PASCAL-Context layers hard-code float32 means, so their
subtraction runs in float32.
"""
from __future__ import annotations

import numpy as np

IGNORE_LABEL = 255

# voc-fcn*/net.py pydata_params (used by SBDDSegDataLayer for train and VOCSegDataLayer for val).
VOC_MEAN_BGR = np.array((104.00699, 116.66877, 122.67892), dtype=np.float64)
# infer.py uses more digits of the same ILSVRC mean; kept for inference scripts only.
VOC_MEAN_BGR_INFER = np.array((104.00698793, 116.66876762, 122.67891434), dtype=np.float64)

# nyud_layers.py
NYUD_MEAN_BGR = np.array((116.190, 97.203, 92.318), dtype=np.float32)
NYUD_MEAN_HHA = np.array((132.431, 94.076, 118.477), dtype=np.float32)  # HHA channel order, not reversed
NYUD_MEAN_LOG_DEPTH = np.array((7.844,), dtype=np.float32)

# siftflow_layers.py
SIFTFLOW_MEAN_BGR = np.array((114.578, 115.294, 108.353), dtype=np.float32)

# pascalcontext_layers.py
PASCALCONTEXT_MEAN_BGR = np.array((104.007, 116.669, 122.679), dtype=np.float32)

for _mean in (VOC_MEAN_BGR, VOC_MEAN_BGR_INFER, NYUD_MEAN_BGR, NYUD_MEAN_HHA, NYUD_MEAN_LOG_DEPTH,
              SIFTFLOW_MEAN_BGR, PASCALCONTEXT_MEAN_BGR):
    _mean.setflags(write=False)

# Number of score channels (classes) per task; labels are 0..n-1 plus IGNORE_LABEL.
NUM_CLASSES = {
    "voc": 21,
    "nyud": 40,
    "siftflow-sem": 33,
    "siftflow-geo": 3,
    "pascal-context": 60,  # 59 classes + background 0, which is trained and scored (never 255)
}

# The default seed every reference net.py passes to its training data layer.
REFERENCE_SEED = 1337
