"""voc-fcn32s: FCN-32s on PASCAL VOC, trained on SBD train, validated on seg11valid (reference
voc-fcn32s/solver.prototxt and solve.py)."""
from reproduce.experiments.base import Experiment, as_expected, vgg_trunk_note

EXPERIMENT = Experiment(
    name="voc-fcn32s",
    dataset="voc", train_split="train", val_split="seg11valid",  # SBD train (8,498) / VOC2011 seg11valid (736)
    train_reader="sbd", val_reader="voc",  # reproduce.datasets.open_dataset names
    inputs=("data",), labels=("label",), scores=("score",),
    init="vgg16",
    base_lr=1e-10, momentum=0.99, weight_decay=0.0005, lr_policy="fixed",
    iter_size=1, max_iter=100000,
    test_interval=4000, test_iter=736, snapshot=4000,  # solve.py: 25 x step(4000), then seg_tests
    loss_normalize=False, seed=1337,
    paper={
        "README": as_expected("REPO README.md", "seg11valid", [None, None, 63.6, None]),
        "PAMI": as_expected("PAMI seg11valid table (recalled)", "seg11valid", [90.5, 76.5, 63.6, 83.5],
                            unverified=True),  # UNVERIFIED (facts 5g)
        "WK": as_expected("WK README (third party, released fcn32s-heavy-pascal.caffemodel)", "seg11valid",
                          [90.49, 76.48, 63.63, 83.47]),
        "CVPR-T2": as_expected("CVPR Table 2", "seg11valid", [89.1, 73.3, 59.4, 81.4],
                               note="CVPR recipe: minibatch 20, lr 1e-4, momentum 0.9; not this solver"),
        "CVPR-T1": as_expected("CVPR Table 1 (FCN-VGG16)", "seg11valid", [None, None, 56.0, None],
                               note="CVPR Table 1: trained on VOC2011 train only, before the skip nets"),
    },
    notes=(vgg_trunk_note(),),
)
