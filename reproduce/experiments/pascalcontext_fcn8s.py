"""pascalcontext-fcn8s: FCN-8s on PASCAL-Context, 59 classes + background (60 outputs), trained on
VOC2010 train, validated on val (reference pascalcontext-fcn8s/)."""
from reproduce.experiments.base import Experiment, as_expected, staged_note

EXPERIMENT = Experiment(
    name="pascalcontext-fcn8s",
    dataset="pascalcontext", train_split="train", val_split="val",  # VOC2010 Main train / val (5,105)
    train_reader="pascal-context", val_reader="pascal-context",  # reproduce.datasets.open_dataset names
    inputs=("data",), labels=("label",), scores=("score",),
    init="pascalcontext-fcn16s",
    base_lr=1e-14, momentum=0.99, weight_decay=0.0005, lr_policy="fixed",  # 100x below FCN-16s
    iter_size=1, max_iter=300000,
    test_interval=8000, test_iter=5105, snapshot=4000,  # solve.py: 50 x step(8000)
    loss_normalize=False, seed=1337,
    paper={
        "CVPR-T6": as_expected("CVPR v2 Appendix B Table 6 (59 class)", "val", [65.9, 46.5, 35.1, 51.0],
                               note="whether these 59-class means include background is UNVERIFIED; "
                                    "metrics.json has both readings"),
    },
    notes=(staged_note("pascalcontext-fcn16s"),
           "the reference solve.py loops 50 x 8000 = 400k iterations, past max_iter 300000; whether "
           "Caffe's step() stops at max_iter is UNVERIFIED, we stop at max_iter",
           "labels never use 255: background (class 0) is trained and scored"),
)
