"""siftflow-fcn16s: two-headed FCN-16s on SIFT Flow: 33 semantic + 3 geometric classes from one trunk,
the two losses added (reference siftflow-fcn16s/)."""
from reproduce.experiments.base import Experiment, as_expected, staged_note

EXPERIMENT = Experiment(
    name="siftflow-fcn16s",
    dataset="siftflow", train_split="trainval", val_split="test",  # 2,486 / 200 images
    train_reader="siftflow", val_reader="siftflow",  # reproduce.datasets.open_dataset names
    inputs=("data",), labels=("sem", "geo"), scores=("score_sem", "score_geo"),
    init="siftflow-fcn32s",
    base_lr=1e-12, momentum=0.99, weight_decay=0.0005, lr_policy="fixed",  # 100x below FCN-32s
    iter_size=1, max_iter=300000,
    test_interval=2000, test_iter=200, snapshot=None,  # solve.py: 50 x step(2000); solver sets no snapshot
    loss_normalize=False, seed=1337,
    paper={
        "CVPR-T5": as_expected("CVPR Table 5 (FCN-16s)", "test", [85.2, 51.7, 39.5, 76.1, 94.3], keys=(
            "scores.pixel_acc", "scores.mean_acc", "scores.mean_iu", "scores.fw_iu", "scores_geo.pixel_acc"),
            note="semantic class means over the 30 classes present in test; geom. acc. = geometric pixel acc"),
    },
    notes=(staged_note("siftflow-fcn32s"),
           "semantic scores leave out cow, desert and moon (absent from test); the README warns the "
           "reference's semantic scoring 'is not quite right'"),
)
