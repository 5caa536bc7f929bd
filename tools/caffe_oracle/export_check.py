"""Check `fcn export caffe` with real Caffe: the exported files must give the project's scores.

Host side (this file, needs the project's venv); the Caffe side is ``export_forward.py`` in the
oracle chroot. ``make test-export-oracle`` runs the three steps:

1. ``prepare OUT NAMES``: per experiment, the net at ``--width`` with seeded random weights (He
   trunk, Xavier score layers, random biases, the bilinear deconvolutions as built, the at-once
   Scale constants times a per-channel factor in [0.5, 1.5]) saved as a .pt, exported with
   ``reproduce.reporting.export.export_caffe`` (Input shape 1 x C x H x W), random inputs (uniform in
   +-INPUT_SCALE, Caffe-preprocessed scale) and the project's scores (``nets.build``'s default
   path, ``net.eval()``) saved in ``OUT/<name>/project.npz``.
2. ``export_forward.py OUT`` (in the chroot): Caffe loads deploy.prototxt + the caffemodel, runs
   the same inputs, saves ``OUT/<name>/caffe.npz``.
3. ``compare OUT``: per score blob, max |Caffe - ours| / max |ours| (must be <= TOL) and the
   fraction of pixels whose argmax agrees; a Markdown table to stdout and ``OUT/report.md``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

import nets
from nets.caffe import Scale
from nets.prototxt import layers_of, parse_net
from reproduce import experiments
from reproduce.reporting.export import export_caffe

NETS = ("voc-fcn8s", "voc-fcn8s-atonce", "voc-fcn-alexnet", "siftflow-fcn16s", "nyud-fcn32s-color-hha",
        "nyud-fcn32s-color-d", "voc-fcn-googlenet")
TOL = 1e-5
SEED = 1337
INPUT_SCALE = 100.0
SIZE = (288, 352)


def randomize_(net: torch.nn.Module, seed: int) -> None:
    """Seeded random weights that keep activations at the input's scale through the ReLU trunk."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, module in net.named_modules():
            if isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                gain = 1.0 if name.split("/")[-1].startswith("score") else 2.0
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * math.sqrt(gain / fan_in))
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=g))
            elif isinstance(module, Scale):
                module.weight.copy_(module.value * (0.5 + torch.rand(module.weight.shape, generator=g)))


def input_blobs(prototxt: Path) -> dict[str, tuple[int, ...]]:
    """The deploy net's Input tops and their shapes."""
    layer = layers_of(parse_net(prototxt.read_text(), str(prototxt)))[0]
    shapes = [tuple(s["dim"]) for s in layer.fields["input_param"][0]["shape"]]
    return dict(zip(layer.tops, shapes))


def prepare(out: Path, names: list[str], width: float, size: tuple[int, int], seed: int) -> None:
    for i, name in enumerate(names):
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        net = nets.build(name, width=width)
        randomize_(net, seed + i)
        torch.save(net.state_dict(), d / "weights.pt")
        export_caffe(name, d / "weights.pt", d, width=width, input_size=(1, *size), force=True)
        (d / "weights.pt").unlink()  # the caffemodel holds the same values (a full-width net is ~0.5 GB)
        rng = np.random.default_rng(seed + i)
        blobs = {top: rng.uniform(-INPUT_SCALE, INPUT_SCALE, shape).astype(np.float32)
                 for top, shape in input_blobs(d / "deploy.prototxt").items()}
        xs = [torch.from_numpy(b) for b in blobs.values()]
        if len(xs) != len(net.inputs):  # color-D: the net's one input is the Concat of the Input tops
            xs = [torch.cat(xs, dim=1)]
        with torch.no_grad():
            output = net.eval()(*xs)
        scores = experiments.get(name).net_scores(output)
        np.savez(d / "project.npz", **{f"input/{k}": v for k, v in blobs.items()},
                 **{f"score/{s}": t.numpy() for s, t in zip(experiments.get(name).scores, scores)})
        print(f"prepared {d}: inputs {', '.join(f'{k} {v.shape}' for k, v in blobs.items())}", flush=True)


def compare(out: Path) -> int:
    rows, bad = [], []
    for d in sorted(p for p in out.iterdir() if (p / "project.npz").exists()):
        ours, theirs = np.load(d / "project.npz"), np.load(d / "caffe.npz")
        meta = json.loads((d / "caffe.json").read_text())
        for key in (k for k in ours.files if k.startswith("score/")):
            a, b = ours[key], theirs[key]
            rel = float(np.abs(a - b).max() / np.abs(a).max()) if a.shape == b.shape else float("inf")
            agree = float((a.argmax(1) == b.argmax(1)).mean()) if a.shape == b.shape else 0.0
            rows.append((d.name, key[6:], "x".join(map(str, a.shape)), rel, agree, meta["seconds"]))
            if not rel <= TOL:
                bad.append(f"{d.name} {key}: {rel:.3g}")
    lines = ["| experiment | score blob | shape | max abs diff / max abs score | argmax agreement | Caffe forward (s) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {n} | {s} | {shape} | {rel:.2e} | {agree:.6f} | {sec:.1f} |" for n, s, shape, rel, agree, sec in rows]
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    print(text)
    if not rows:
        print("no results found", file=sys.stderr)
        return 1
    if bad:
        print(f"FAILED (tolerance {TOL:g}): " + "; ".join(bad), file=sys.stderr)
        return 1
    print(f"all {len(rows)} score blobs within {TOL:g} of the project's")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("out", type=Path)
    p.add_argument("names", nargs="*", default=list(NETS))
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--size", type=int, nargs=2, default=SIZE, metavar=("H", "W"))
    p.add_argument("--seed", type=int, default=SEED)
    c = sub.add_parser("compare")
    c.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.step == "prepare":
        prepare(args.out, args.names or list(NETS), args.width, tuple(args.size), args.seed)
        return 0
    return compare(args.out)


if __name__ == "__main__":
    sys.exit(main())
