"""nyud-fcn16s-color-hha: the late-fusion net at stride 16 (CVPR Table 4's "FCN-16s RGB-HHA").
The reference repository has no directory, solver or weights for it: the solver below is OUR CHOICE."""
from reproduce.experiments.base import Experiment, as_expected, staged_note

EXPERIMENT = Experiment(
    name="nyud-fcn16s-color-hha",
    dataset="nyud", train_split="trainval", val_split="test",
    train_reader="nyud", val_reader="nyud",  # reproduce.datasets.open_dataset names
    inputs=("color", "hha"), labels=("label",), scores=("score",),
    init="nyud-fcn32s-color-hha",
    # OUR CHOICE (no reference solver): 1e-12, the VGG FCN-16s rate of the 100x rule (1e-10 -> 1e-12).
    # A strict 100x step from nyud-fcn32s-color-hha's 1e-12 would give 1e-14.
    base_lr=1e-12, momentum=0.99, weight_decay=0.0005, lr_policy="fixed",
    iter_size=1, max_iter=300000,  # OUR CHOICE: as the other NYUD solvers
    test_interval=2000, test_iter=654, snapshot=2000,  # as the other NYUD solve.py loops
    loss_normalize=False, seed=1337,
    paper={
        "CVPR-T4": as_expected("CVPR Table 4 (FCN-16s RGB-HHA)", "test", [65.4, 46.1, 34.0, 49.5],
                               note="CVPR-era model; the PAMI NYUDv2 table could not be read (unknown)"),
    },
    notes=(staged_note("nyud-fcn32s-color-hha"),
           "solver values are our choice: the reference has no nyud-fcn16s-color-hha directory"),
)
