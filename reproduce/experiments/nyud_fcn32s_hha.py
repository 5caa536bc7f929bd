"""nyud-fcn32s-hha: FCN-32s on NYUDv2 (40 classes) from the HHA depth encoding (reference nyud-fcn32s-hha/)."""
from reproduce.experiments.base import Experiment, as_expected, vgg_trunk_note

EXPERIMENT = Experiment(
    name="nyud-fcn32s-hha",
    dataset="nyud", train_split="trainval", val_split="test",
    train_reader="nyud", val_reader="nyud",  # reproduce.datasets.open_dataset names
    inputs=("hha",), labels=("label",), scores=("score",),
    init="vgg16",
    base_lr=1e-10, momentum=0.99, weight_decay=0.0005, lr_policy="fixed",
    iter_size=1, max_iter=300000,
    test_interval=2000, test_iter=654, snapshot=2000,  # solve.py: 50 x step(2000)
    loss_normalize=False, seed=1337,
    paper={
        "CVPR-T4": as_expected("CVPR Table 4 (FCN-32s HHA)", "test", [57.1, 35.2, 24.2, 40.4],
                               note="CVPR-era model; the PAMI NYUDv2 table could not be read (unknown)"),
    },
    notes=(vgg_trunk_note(),),
)
