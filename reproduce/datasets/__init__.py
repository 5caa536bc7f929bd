"""Dataset readers that return Caffe-ready arrays, as the reference's Python data layers do."""
from .base import SegDataset
from .catalog import DATASETS, DEFAULT_SPLITS, open_dataset
from .conventions import (IGNORE_LABEL, NUM_CLASSES, NYUD_MEAN_BGR, NYUD_MEAN_HHA, NYUD_MEAN_LOG_DEPTH,
                          PASCALCONTEXT_MEAN_BGR, REFERENCE_SEED, SIFTFLOW_MEAN_BGR, VOC_MEAN_BGR)
from .errors import DatasetError
from .nyud import NYUDDataset
from .nyud_labeled import NYUDLabeledMat, load_class_mapping_40
from .order import reference_order, train_order, val_order
from .pascal_context import PASCALContextDataset
from .siftflow import SIFTFlowDataset
from .voc import SBDDataset, VOCSegDataset

__all__ = [
    "DATASETS", "DEFAULT_SPLITS", "DatasetError", "IGNORE_LABEL", "NUM_CLASSES", "NYUDDataset",
    "NYUDLabeledMat", "NYUD_MEAN_BGR", "NYUD_MEAN_HHA", "NYUD_MEAN_LOG_DEPTH", "PASCALCONTEXT_MEAN_BGR",
    "PASCALContextDataset", "REFERENCE_SEED", "SBDDataset", "SIFTFLOW_MEAN_BGR", "SIFTFlowDataset",
    "SegDataset", "VOCSegDataset", "VOC_MEAN_BGR", "load_class_mapping_40", "open_dataset",
    "reference_order", "train_order", "val_order",
]
