"""voc-fcn-alexnet: FCN-AlexNet (CaffeNet trunk, stride 32) on PASCAL VOC: normalized loss,
standard momentum and gradient accumulation over 20 images (reference voc-fcn-alexnet/)."""
from reproduce.experiments.base import Experiment, as_expected

EXPERIMENT = Experiment(
    name="voc-fcn-alexnet",
    dataset="voc", train_split="train", val_split="seg11valid",
    train_reader="sbd", val_reader="voc",  # reproduce.datasets.open_dataset names
    inputs=("data",), labels=("label",), scores=("score",),
    init="alexnet",
    base_lr=1e-4, momentum=0.9, weight_decay=0.0005, lr_policy="fixed",  # lr for a normalized softmax
    iter_size=20, max_iter=100000,
    test_interval=4000, test_iter=736, snapshot=4000,  # solve.py: 25 x step(4000)
    loss_normalize=True, seed=1337,
    paper={
        "README": as_expected("REPO README.md", "seg11valid", [None, None, 48.0, None]),
        "CVPR-T1": as_expected("CVPR Table 1 (FCN-AlexNet)", "seg11valid", [None, None, 39.8, None],
                               note="CVPR recipe: trained on VOC11 train only, minibatch 20, lr 1e-3"),
    },
    notes=("init alexnet: the converted BVLC CaffeNet caffemodel with fc6/fc7 transplanted into "
           "convolutions (the reference's alexnet-fcn.caffemodel); score_fr starts at zero, upscore bilinear",
           "the val net's loss is normalized too, so the reported test loss is a per-pixel mean"),
)
