"""Run the files `fcn export caffe` wrote in real Caffe (inside the oracle chroot; see export_check.py).

For each OUT/<name>/ holding deploy.prototxt, <name>.caffemodel and project.npz: load the net in
Caffe's TEST phase with the exported weights, feed project.npz's inputs, forward, and save every
score blob in OUT/<name>/caffe.npz (and the forward time in caffe.json). Python 3 + Caffe + numpy.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

import caffe  # noqa: E402


def run(d: str, name: str) -> None:
    caffe.set_mode_cpu()
    net = caffe.Net(os.path.join(d, "deploy.prototxt"), caffe.TEST,
                    weights=os.path.join(d, f"{name}.caffemodel"))
    ours = np.load(os.path.join(d, "project.npz"))
    for key in ours.files:
        if key.startswith("input/"):
            blob = net.blobs[key[6:]]
            if blob.data.shape != ours[key].shape:
                raise SystemExit(f"{d}: Caffe input {key[6:]} is {blob.data.shape}, project.npz {ours[key].shape}")
            blob.data[...] = ours[key]
    start = time.time()
    net.forward()
    seconds = time.time() - start
    scores = {key: np.array(net.blobs[key[6:]].data) for key in ours.files if key.startswith("score/")}
    np.savez(os.path.join(d, "caffe.npz"), **scores)
    with open(os.path.join(d, "caffe.json"), "w") as f:
        json.dump({"seconds": seconds, "caffe": getattr(caffe, "__version__", "?")}, f)
    print(f"{name}: Caffe forward {seconds:.1f} s, " + ", ".join(f"{k} {v.shape}" for k, v in scores.items()), flush=True)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: export_forward.py OUT", file=sys.stderr)
        return 2
    out = argv[0]
    names = sorted(n for n in os.listdir(out) if os.path.exists(os.path.join(out, n, "project.npz")))
    if not names:
        print(f"{out}: nothing prepared", file=sys.stderr)
        return 1
    for name in names:
        run(os.path.join(out, name), name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
