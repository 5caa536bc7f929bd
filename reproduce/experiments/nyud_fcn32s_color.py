"""nyud-fcn32s-color: FCN-32s on NYUDv2 (40 classes) from the BGR image (reference nyud-fcn32s-color/)."""
from reproduce.experiments.base import Experiment, as_expected, vgg_trunk_note

EXPERIMENT = Experiment(
    name="nyud-fcn32s-color",
    dataset="nyud", train_split="trainval", val_split="test",  # 795 train+val / 654 test
    train_reader="nyud", val_reader="nyud",  # reproduce.datasets.open_dataset names
    inputs=("color",), labels=("label",), scores=("score",),
    init="vgg16",
    base_lr=1e-10, momentum=0.99, weight_decay=0.0005, lr_policy="fixed",
    iter_size=1, max_iter=300000,
    test_interval=2000, test_iter=654, snapshot=2000,  # solve.py: 50 x step(2000)
    loss_normalize=False, seed=1337,
    paper={
        "CVPR-T4": as_expected("CVPR Table 4 (FCN-32s RGB)", "test", [60.0, 42.2, 29.2, 43.9],
                               note="CVPR-era model; the PAMI NYUDv2 table could not be read (unknown)"),
    },
    notes=(vgg_trunk_note(),),
)
