"""siftflow-fcn32s: two-headed FCN-32s on SIFT Flow: 33 semantic + 3 geometric classes from one trunk,
the two losses added (reference siftflow-fcn32s/)."""
from reproduce.experiments.base import Experiment, vgg_trunk_note

EXPERIMENT = Experiment(
    name="siftflow-fcn32s",
    dataset="siftflow", train_split="trainval", val_split="test",  # 2,486 / 200 images
    train_reader="siftflow", val_reader="siftflow",  # reproduce.datasets.open_dataset names
    inputs=("data",), labels=("sem", "geo"), scores=("score_sem", "score_geo"),
    init="vgg16",
    base_lr=1e-10, momentum=0.99, weight_decay=0.0005, lr_policy="fixed",
    iter_size=1, max_iter=300000,
    test_interval=2000, test_iter=200, snapshot=None,  # solve.py: 50 x step(2000); solver sets no snapshot
    loss_normalize=False, seed=1337,
    paper={},  # the paper reports only the two-headed FCN-16s (Table 5)
    notes=(vgg_trunk_note(),
           "semantic scores leave out cow, desert and moon (absent from test); the README warns the "
           "reference's semantic scoring 'is not quite right'"),
)
