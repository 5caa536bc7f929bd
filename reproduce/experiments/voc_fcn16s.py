"""voc-fcn16s: FCN-16s on PASCAL VOC, fine-tuned from voc-fcn32s (reference voc-fcn16s/)."""
from reproduce.experiments.base import Experiment, as_expected, staged_note

EXPERIMENT = Experiment(
    name="voc-fcn16s",
    dataset="voc", train_split="train", val_split="seg11valid",
    train_reader="sbd", val_reader="voc",  # reproduce.datasets.open_dataset names
    inputs=("data",), labels=("label",), scores=("score",),
    init="voc-fcn32s",
    base_lr=1e-12, momentum=0.99, weight_decay=0.0005, lr_policy="fixed",  # 100x below FCN-32s
    iter_size=1, max_iter=100000,
    test_interval=4000, test_iter=736, snapshot=4000,  # solve.py: 25 x step(4000)
    loss_normalize=False, seed=1337,
    paper={
        "README": as_expected("REPO README.md", "seg11valid", [None, None, 65.0, None]),
        "PAMI": as_expected("PAMI seg11valid table (recalled)", "seg11valid", [91.0, 78.1, 65.0, 84.3],
                            unverified=True),  # UNVERIFIED (facts 5g)
        "WK": as_expected("WK README (third party, released fcn16s-heavy-pascal.caffemodel)", "seg11valid",
                          [91.00, 78.07, 65.01, 84.27]),
        "CVPR-T2": as_expected("CVPR Table 2", "seg11valid", [90.0, 75.7, 62.4, 83.0],
                               note="CVPR recipe: minibatch 20, lr 1e-4/100, momentum 0.9; not this solver"),
    },
    notes=(staged_note("voc-fcn32s"),),
)
