"""voc-fcn8s: FCN-8s on PASCAL VOC, fine-tuned from voc-fcn16s (reference voc-fcn8s/)."""
from reproduce.experiments.base import Experiment, as_expected, staged_note

EXPERIMENT = Experiment(
    name="voc-fcn8s",
    dataset="voc", train_split="train", val_split="seg11valid",
    train_reader="sbd", val_reader="voc",  # reproduce.datasets.open_dataset names
    inputs=("data",), labels=("label",), scores=("score",),
    init="voc-fcn16s",
    base_lr=1e-14, momentum=0.99, weight_decay=0.0005, lr_policy="fixed",  # 100x below FCN-16s
    iter_size=1, max_iter=100000,
    test_interval=4000, test_iter=736, snapshot=4000,  # solve.py: 25 x step(4000)
    loss_normalize=False, seed=1337,
    paper={
        "README": as_expected("REPO README.md", "seg11valid", [None, None, 65.5, None]),
        "README-test": as_expected("REPO README.md (seg12test) and PAMI abstract", "seg12test",
                                   [None, None, 67.2, None]),
        "PAMI": as_expected("PAMI seg11valid table (recalled), FCN-8s-staged", "seg11valid",
                            [91.2, 77.6, 65.5, 84.5], unverified=True),  # UNVERIFIED (facts 5g)
        "PAMI-test2011": as_expected("PAMI VOC test table (recalled), FCN-8s-heavy", "seg11test",
                                     [None, None, 67.5, None], unverified=True),  # UNVERIFIED (facts 5g)
        "WK": as_expected("WK README (third party, released fcn8s-heavy-pascal.caffemodel)", "seg11valid",
                          [91.23, 77.61, 65.51, 84.55]),
        "CVPR-T2": as_expected("CVPR Table 2", "seg11valid", [90.3, 75.9, 62.7, 83.2],
                               note="CVPR recipe: minibatch 20, momentum 0.9; not this solver"),
        "CVPR-T3": as_expected("CVPR Table 3", "seg12test", [None, None, 62.2, None],
                               note="CVPR model; the heavy model reaches 67.2"),
        "CVPR-T3-2011": as_expected("CVPR Table 3", "seg11test", [None, None, 62.7, None],
                                    note="CVPR model on VOC2011 test (evaluation server)"),
    },
    notes=(staged_note("voc-fcn16s"),
           "VOC2012 test numbers need the evaluation server: fcn eval --export-voc-test"),
)
