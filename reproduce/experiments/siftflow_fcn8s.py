"""siftflow-fcn8s: two-headed FCN-8s on SIFT Flow: 33 semantic + 3 geometric classes from one trunk,
the two losses added (reference siftflow-fcn8s/)."""
from reproduce.experiments.base import Experiment, staged_note

EXPERIMENT = Experiment(
    name="siftflow-fcn8s",
    dataset="siftflow", train_split="trainval", val_split="test",  # 2,486 / 200 images
    train_reader="siftflow", val_reader="siftflow",  # reproduce.datasets.open_dataset names
    inputs=("data",), labels=("sem", "geo"), scores=("score_sem", "score_geo"),
    init="siftflow-fcn16s",
    base_lr=1e-12, momentum=0.99, weight_decay=0.0005, lr_policy="fixed",  # 1e-12, not 1e-14 (reference)
    iter_size=1, max_iter=300000,
    test_interval=2000, test_iter=200, snapshot=None,  # solve.py: 50 x step(2000); solver sets no snapshot
    loss_normalize=False, seed=1337,
    paper={},  # the paper reports only the two-headed FCN-16s (Table 5)
    notes=(staged_note("siftflow-fcn16s"),
           "semantic scores leave out cow, desert and moon (absent from test); the README warns the "
           "reference's semantic scoring 'is not quite right'"),
)
