"""voc-fcn8s-atonce: FCN-8s trained in one stage straight from VGG16, with the pool4/pool3 skips
scaled by fixed 0.01 / 0.0001 (reference voc-fcn8s-atonce/)."""
from reproduce.experiments.base import Experiment, as_expected, vgg_trunk_note

EXPERIMENT = Experiment(
    name="voc-fcn8s-atonce",
    dataset="voc", train_split="train", val_split="seg11valid",
    train_reader="sbd", val_reader="voc",  # reproduce.datasets.open_dataset names
    inputs=("data",), labels=("label",), scores=("score",),
    init="vgg16",
    base_lr=1e-10, momentum=0.99, weight_decay=0.0005, lr_policy="fixed",
    iter_size=1, max_iter=300000,
    test_interval=4000, test_iter=736, snapshot=4000,  # solve.py: 75 x step(4000)
    loss_normalize=False, seed=1337,
    paper={
        "README": as_expected("REPO README.md", "seg11valid", [None, None, 65.4, None]),
        "PAMI": as_expected("PAMI seg11valid table (recalled), FCN-8s-at-once", "seg11valid",
                            [91.1, 78.5, 65.4, 84.4], unverified=True),  # UNVERIFIED (facts 5g)
        "WK": as_expected("WK README (third party, released fcn8s-atonce-pascal.caffemodel)", "seg11valid",
                          [91.13, 78.50, 65.40, 84.44]),
    },
    notes=(vgg_trunk_note(),),
)
