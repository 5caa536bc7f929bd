"""Optional: the files `fcn export caffe` writes load in OpenCV's dnn module and give the same argmax.

OpenCV is a test-only, optional dependency (`make test-export-opencv` installs it into the venv):
`opencv-python-headless<5`, since OpenCV 5 dropped the Caffe importer. Without it the test is
skipped with that reason.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import nets
from reproduce import experiments
from reproduce.reporting.export import export_caffe

cv2 = pytest.importorskip("cv2", reason="OpenCV not installed: optional test dependency, "
                          "pip install 'opencv-python-headless<5' (or make test-export-opencv)")
if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromCaffe"):
    pytest.skip(f"OpenCV {cv2.__version__} has no Caffe importer (removed in OpenCV 5)", allow_module_level=True)

WIDTH = 1 / 16
H, W = 61, 77


@pytest.mark.parametrize("name", experiments.names())
def test_opencv_dnn_gives_the_same_argmax(name, tmp_path):
    net = nets.build(name, width=WIDTH)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # random, well-scaled weights (score layers too, so that scores differ)
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * (2 / module.weight[0].numel()) ** 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=g))
    torch.save(net.state_dict(), tmp_path / "w.pt")
    done = export_caffe(name, tmp_path / "w.pt", tmp_path / "out", width=WIDTH, input_size=(1, H, W))
    cvnet = cv2.dnn.readNetFromCaffe(str(done.prototxt), str(done.caffemodel))
    exp = experiments.get(name)
    rng = np.random.default_rng(0)
    tops = nets.caffe_layers(net, input_size=(1, H, W))[0]
    shapes = [s["dim"] for s in tops.fields["input_param"]["shape"]]
    blobs = {top: rng.uniform(-100, 100, shape).astype(np.float32) for top, shape in zip(tops.tops, shapes)}
    for top, blob in blobs.items():
        cvnet.setInput(blob, top)
    theirs = cvnet.forward(list(exp.scores))
    xs = [torch.from_numpy(b) for b in blobs.values()]
    if len(xs) != len(net.inputs):
        xs = [torch.cat(xs, dim=1)]
    with torch.no_grad():
        ours = exp.net_scores(net.eval()(*xs))
    for blob, a, b in zip(exp.scores, ours, theirs):
        a = a.numpy()
        assert b.shape == a.shape, blob
        assert np.abs(a - b).max() <= 1e-5 * np.abs(a).max(), blob  # measured: <= 4.4e-6
        assert (a.argmax(1) == b.argmax(1)).all(), blob
