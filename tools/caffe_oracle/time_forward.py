"""Time Caffe's forward of an exported net (inside the oracle chroot; see bench/case_caffe.py).

Usage: time_forward.py DIR NAME RUNS WARMUP: loads DIR/deploy.prototxt with DIR/NAME.caffemodel in
the TEST phase, feeds DIR/input.npy to the first Input blob, runs WARMUP untimed forwards, then
RUNS timed ones, and prints one JSON line: {"seconds": [...], "caffe": version, "blas_threads": n}.
Python 3 + Caffe + numpy only.
"""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

import caffe  # noqa: E402


def main(argv: list[str]) -> int:
    d, name, runs, warmup = argv[0], argv[1], int(argv[2]), int(argv[3])
    caffe.set_mode_cpu()
    net = caffe.Net(os.path.join(d, "deploy.prototxt"), caffe.TEST, weights=os.path.join(d, f"{name}.caffemodel"))
    x = np.load(os.path.join(d, "input.npy"))
    blob = net.blobs[net.inputs[0]]
    if blob.data.shape != x.shape:
        raise SystemExit(f"{d}: Caffe input {net.inputs[0]} is {blob.data.shape}, input.npy {x.shape}")
    blob.data[...] = x
    for _ in range(warmup):
        net.forward()
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        net.forward()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"seconds": seconds, "caffe": getattr(caffe, "__version__", "?"),
                      "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
