"""nyud-fcn32s-color-hha: late fusion of two FCN-32s streams on NYUDv2: score_fused = 0.5 * color +
0.5 * HHA score_fr, then one shared upscore (reference nyud-fcn32s-color-hha/)."""
from reproduce.experiments.base import Experiment, as_expected

EXPERIMENT = Experiment(
    name="nyud-fcn32s-color-hha",
    dataset="nyud", train_split="trainval", val_split="test",
    train_reader="nyud", val_reader="nyud",  # reproduce.datasets.open_dataset names
    inputs=("color", "hha"), labels=("label",), scores=("score",),
    init=("nyud-fcn32s-color", "nyud-fcn32s-hha"),  # copied into the `color` / `hha` suffixed streams
    base_lr=1e-12, momentum=0.99, weight_decay=0.0005, lr_policy="fixed",
    iter_size=1, max_iter=300000,
    test_interval=2000, test_iter=654, snapshot=2000,  # solve.py: 50 x step(2000)
    loss_normalize=False, seed=1337,
    paper={
        "CVPR-T4": as_expected("CVPR Table 4 (FCN-32s RGB-HHA, late fusion)", "test", [64.3, 44.9, 32.8, 48.0],
                               note="CVPR-era model; the PAMI NYUDv2 table could not be read (unknown)"),
    },
    notes=("init: the final weights of nyud-fcn32s-color and nyud-fcn32s-hha (the reference solve.py "
           "loads 28k- and 60k-iteration snapshots of those runs from paths not in its repo)",),
)
