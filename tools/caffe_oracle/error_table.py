"""Print the worst relative error against the Caffe goldens, per experiment and per quantity.

Runs on the host with the project's venv (no Caffe): ``.venv/bin/python tools/caffe_oracle/error_table.py``.
It computes exactly what tests/test_oracle_caffe.py asserts (it imports that module's comparison
functions) and prints a Markdown table; relative error = max |ours - Caffe| / max |Caffe| per blob,
the worst blob of each kind shown with its name.
"""
from __future__ import annotations

import lzma
import pathlib
import sys
import tempfile

import torch

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import test_oracle_caffe as oracle  # noqa: E402


def worst(errors: dict[str, float]) -> str:
    key = max(errors, key=errors.get)
    return f"{errors[key]:.1e} ({key})"


def main() -> int:
    torch.set_num_threads(1)
    header = ["experiment", "forward: scores", "forward: intermediate blobs", "loss", "input gradient",
              "parameter gradients", "5 SGD steps: weights", "5 SGD steps: losses", "large-decay run: weights"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for name in oracle.EXPERIMENTS:
            path = pathlib.Path(tmp) / f"{name}.caffemodel"
            path.write_bytes(lzma.decompress((oracle.ORACLE / name / "weights.caffemodel.xz").read_bytes()))
            entry = oracle.MANIFEST["experiments"][name]
            fwd = oracle.forward_errors(name, path)
            scores = {k: v for k, v in fwd.items() if k in entry["scores"]}
            blobs = {k: v for k, v in fwd.items() if k not in entry["scores"]}
            loss, grads = oracle.loss_and_gradient_errors(name, path)
            scores.update({f"{k} (grad mode)": v for k, v in loss.items() if k in entry["scores"]})
            loss = {k: v for k, v in loss.items() if k not in entry["scores"]}
            inputs = {k: v for k, v in grads.items() if k.startswith("d/d ")}
            params = {k: v for k, v in grads.items() if not k.startswith("d/d ")}
            sgd = oracle.sgd_errors(name, "sgd", path)
            row = [name, worst(scores), worst(blobs), worst(loss), worst(inputs), worst(params),
                   worst({k: v for k, v in sgd.items() if not k.startswith("loss ")}),
                   worst({k: v for k, v in sgd.items() if k.startswith("loss ")})]
            if entry["sgd_decay"] is not None:
                decay = oracle.sgd_errors(name, "sgd_decay", path)
                row.append(worst({k: v for k, v in decay.items() if not k.startswith("loss ")}))
            else:
                row.append("-")
            print("| " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
