"""nyud-fcn32s-color-d: FCN-32s on NYUDv2, early fusion: data = Concat(color, depth), 4 channels
(BGR minus mean, log depth minus 7.844) (reference nyud-fcn32s-color-d/)."""
from reproduce.experiments.base import Experiment, as_expected

EXPERIMENT = Experiment(
    name="nyud-fcn32s-color-d",
    dataset="nyud", train_split="trainval", val_split="test",
    train_reader="nyud", val_reader="nyud",  # reproduce.datasets.open_dataset names
    inputs=("color", "depth"), concat_inputs=True, labels=("label",), scores=("score",),
    init="vgg16",
    base_lr=1e-10, momentum=0.99, weight_decay=0.0005, lr_policy="fixed",
    iter_size=1, max_iter=300000,
    test_interval=2000, test_iter=654, snapshot=2000,  # solve.py: 50 x step(2000)
    loss_normalize=False, seed=1337,
    paper={
        "CVPR-T4": as_expected("CVPR Table 4 (FCN-32s RGBD, early fusion)", "test", [61.5, 42.4, 30.5, 45.5],
                               note="CVPR-era model; the PAMI NYUDv2 table could not be read (unknown)"),
    },
    notes=("init vgg16 via surgery.transplant; conv1_1_bgrd (64,4,3,3): BGR filter channels copied from "
           "VGG conv1_1, the depth channel set to the mean of those 3 channels, bias copied",
           "no released weights (caffemodel-url is empty); the reference solve.py's init paths are not in its repo"),
)
