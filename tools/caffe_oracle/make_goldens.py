"""Make the Caffe golden fixtures of every FCN experiment (runs inside the Caffe chroot).

Run it through ``tools/caffe_oracle/run.sh tools/caffe_oracle/make_goldens.py`` (or ``make oracle``); it
(re)writes each net's prototxts with prototxts.py first. Python 3 + Caffe (BVLC 1.0.0, Debian bullseye)
+ numpy only. ``--live`` makes a full-width 500 x 500 forward/backward check instead (``make test-oracle``).

For each experiment, in ``tests/fixtures/oracle/<name>/``:
- ``weights.caffemodel.xz``: random weights drawn by Caffe's own fillers (see prototxts.py), with every
  Deconvolution set to the reference's diagonal-only bilinear kernel (surgery.interp, docs/reference.md §4a/§4b)
  and the at-once Scale blobs set to their constant times a per-channel factor in [0.5, 1.5] (so that a
  Scale blob that is not loaded would show), saved with ``net.save`` and xz-compressed (the dense
  C x C x k x k deconvolution blobs are mostly zeros).
- ``golden.npz``:
    ``input/<blob>`` float32 inputs (Caffe-preprocessed scale), ``label/<blob>`` uint8 labels with 255s;
    ``score/<blob>`` the score blob(s); ``blob/<blob>`` intermediate blobs (see Net.probes);
    ``loss/<layer>`` the loss(es);
    ``grad_input/<blob>`` d(sum of losses)/d(input), ``grad/<layer>.weight|bias`` parameter gradients
    (force_backward; learnable blobs only: the lr_mult 0 deconvolution / scale diffs are never applied);
    ``sgd/<param>`` learnable weights after 5 SGDSolver steps, ``sgd_loss/<layer>`` the loss of each step
    (computed before that step's update), and the same under ``sgd_decay/`` and ``sgd_decay_loss/`` for a
    second run whose weight decay is large enough to matter at 1e-5 (see ``solver_settings``; DECAY_RUN nets only).
- ``manifest.json`` (one for all): shapes, probes, crops, multipliers, solver settings, versions.

Forward and backward goldens come from the reference graph (net.prototxt) in Caffe's TEST phase, where
Dropout is the identity; SGD goldens from net_nodropout.prototxt (the solver always runs TRAIN phase).
The script checks that both variants compute bit-identical scores before it steps the solver.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import lzma
import os
import platform
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import prototxts  # noqa: E402

import caffe  # noqa: E402

STEPS = 5
MOMENTUM = 0.99
WEIGHT_DECAY = 5e-4
# Target for the largest relative change max|w5 - w0| / max|w0| over the learnable blobs after 5 steps;
# the learning rate is chosen per experiment from the initial gradients to reach about this.
TARGET_MAX_REL_CHANGE = 0.3
SEED = 1337
# The large-weight-decay SGD run is kept for a few nets only (fixture size); between them they cover
# VGG biases (decay_mult 0), AlexNet biases (decay_mult 1), lr_mult 0 Scale blobs, the 4-channel
# first conv and two loss heads. The multipliers of every net are compared directly in the tests.
DECAY_RUN = ("voc-fcn8s-atonce", "voc-fcn-alexnet", "voc-fcn-googlenet", "nyud-fcn32s-color-d", "siftflow-fcn16s")
# Nets whose solver has momentum 0.9 and gradient accumulation (iter_size 20; here 2, the same shape):
# the reference's FCN-AlexNet and the paper's FCN-GoogLeNet solver.
ACCUMULATING = ("voc-fcn-alexnet", "voc-fcn-googlenet")
# Seeds are numbered in the order the nets were added (not prototxts.EXPERIMENTS order), so that adding
# a net leaves every other net's goldens byte-identical.
SEED_ORDER = (
    "voc-fcn32s", "voc-fcn16s", "voc-fcn8s", "voc-fcn8s-atonce", "voc-fcn-alexnet",
    "nyud-fcn32s-color", "nyud-fcn32s-hha", "nyud-fcn32s-color-d", "nyud-fcn32s-color-hha",
    "nyud-fcn16s-color-hha", "siftflow-fcn32s", "siftflow-fcn16s", "siftflow-fcn8s",
    "pascalcontext-fcn32s", "pascalcontext-fcn16s", "pascalcontext-fcn8s",
    "voc-fcn-googlenet",
)
# Conditioning: the goldens of a seed are kept only if multiplying the initial learnable weights
# elementwise by (1 + PERTURBATION * N(0, 1)) -- about the float32 noise by which our PyTorch run and
# Caffe's differ -- changes every compared quantity by less than the limits below (a fraction of the
# test tolerances). Otherwise some ReLU pre-activation or max-pool pair sits within float noise of a
# flip (seen in development: a conv5_3 pre-activation of 7e-8 after 4 SGD steps), the comparison would
# test luck rather than equivalence, and the next seed is tried.
PERTURBATION = 3e-7
PERTURBATION_TRIALS = 2
COND_FORWARD = 3e-6
COND_GRAD = 3e-5
COND_SGD = 3e-6
MAX_SEED_ATTEMPTS = 10
# Inputs are uniform in +-INPUT_SCALE rather than on the 0..255 pixel scale: with activations of order 1
# the random biases matter and the gradient/weight ratios of all blobs stay within ~2 decades, so one
# learning rate moves every blob visibly in 5 SGD steps (at +-128 the trunk barely moves).
INPUT_SCALE = 4.0


def upsample_filt(size: int) -> np.ndarray:
    """The reference's 2-D bilinear kernel (docs/reference.md §4a), size x size."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    og = np.ogrid[:size, :size]
    return (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)


def fill_bilinear_diagonal(blob: np.ndarray) -> None:
    """surgery.interp: bilinear kernel in the [i, i] slots only, zeros elsewhere (docs/reference.md §4b)."""
    m, k, h, w = blob.shape
    if m != k or h != w:
        raise ValueError(f"deconvolution blob {blob.shape} is not C x C x k x k")
    blob[...] = 0
    filt = upsample_filt(h)
    for i in range(m):
        blob[i, i] = filt


def make_inputs(spec: prototxts.Net, rng: np.random.RandomState) -> Dict[str, np.ndarray]:
    """Random inputs on Caffe's preprocessed scale; labels with valid classes and about 15% 255s."""
    arrays: Dict[str, np.ndarray] = {}
    label_classes = {loss[1]: None for loss in spec.losses.values()}
    for name, shape in spec.inputs.items():
        if name in label_classes:
            ncls = _num_classes(spec, name)
            lab = rng.randint(0, ncls, size=shape)
            lab[rng.uniform(size=shape) < 0.15] = 255
            arrays[name] = lab.astype(np.uint8)
        elif name == "depth":
            arrays[name] = rng.uniform(-1.5, 1.5, size=shape).astype(np.float32)  # log depth minus mean
        else:
            arrays[name] = rng.uniform(-INPUT_SCALE, INPUT_SCALE, size=shape).astype(np.float32)
    return arrays


def _num_classes(spec: prototxts.Net, label: str) -> int:
    for score, lab, _ in spec.losses.values():
        if lab == label:
            layer = next(l for l in spec.layers if l[0] == score)
            deconv = next(l for l in spec.layers if l[0] == layer[2][0])
            return int(deconv[4]["convolution_param"]["num_output"])
    raise KeyError(label)


def set_inputs(net: "caffe.Net", arrays: Dict[str, np.ndarray]) -> None:
    for name, arr in arrays.items():
        net.blobs[name].data[...] = arr


def learnable(spec: prototxts.Net) -> List[str]:
    return [p for p, (lr, _) in spec.params.items() if lr > 0]


def blob_of(net: "caffe.Net", pname: str) -> "caffe.Blob":
    layer, kind = pname.rsplit(".", 1)
    return net.params[layer][0 if kind == "weight" else 1]


def solver_settings(name: str, spec: prototxts.Net, grads: Dict[str, np.ndarray],
                    weights: Dict[str, np.ndarray]) -> Tuple[dict, dict]:
    """Solver settings of the two SGD runs: (reference-like, large weight decay).

    Reference-like: momentum 0.99 and weight decay 5e-4 (AlexNet and GoogLeNet: momentum 0.9 and iter_size
    2, the shape of their solvers, whose iter_size is 20). The loss is unnormalized, so the reference's
    base_lr (1e-10..1e-14 at 500 x 500) would not move weights visibly here; base_lr is chosen from the
    initial gradients so that the fastest-moving blob changes by about TARGET_MAX_REL_CHANGE.
    With that lr, a weight decay of 5e-4 changes weights by ~1e-7 relative: invisible at 1e-5. The
    second run raises the weight decay to the median gradient / weight ratio so that the decay term
    (and decay_mult: 0 on VGG biases, 1 on AlexNet's) weighs as much as the gradient.
    """
    accumulating = name in ACCUMULATING
    momentum = 0.9 if accumulating else MOMENTUM
    iter_size = 2 if accumulating else 1
    # v_t = mu v_{t-1} + lr g: after 5 steps with a constant g the weights moved by lr g sum_t sum_{s<t} mu^s.
    steps_factor = sum(sum(momentum ** s for s in range(t)) for t in range(1, STEPS + 1))
    ratios = {}
    for p in learnable(spec):
        lr_mult = spec.params[p][0]
        ratios[p] = lr_mult * float(np.abs(grads[p]).max()) / max(float(np.abs(weights[p]).max()), 1e-12)
    base_lr = float(f"{TARGET_MAX_REL_CHANGE / (steps_factor * max(ratios.values())):.0e}")
    decay = float(f"{float(np.median([r / spec.params[p][0] for p, r in ratios.items()])):.0e}")
    common = dict(base_lr=base_lr, lr_policy="fixed", momentum=momentum, iter_size=iter_size, steps=STEPS)
    return dict(common, weight_decay=WEIGHT_DECAY), dict(common, weight_decay=decay)


def perturb(net: "caffe.Net", spec: prototxts.Net, seed: int) -> None:
    """Multiply every learnable blob elementwise by (1 + PERTURBATION * N(0, 1))."""
    rng = np.random.RandomState(seed)
    for p in learnable(spec):
        data = blob_of(net, p).data
        data[...] = data * (1 + PERTURBATION * rng.standard_normal(data.shape))


def forward_backward(net: "caffe.Net", spec: prototxts.Net, inputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """One forward and backward pass (fresh net: parameter diffs start at 0) -> the golden arrays."""
    set_inputs(net, inputs)
    net.forward()
    net.backward()
    arrays: Dict[str, np.ndarray] = {}
    for blob in spec.data_inputs:
        arrays[f"input/{blob}"] = net.blobs[blob].data.copy()  # color-d: "data" is the Concat top
        arrays[f"grad_input/{blob}"] = net.blobs[blob].diff.copy()
    for s in spec.scores:
        arrays[f"score/{s}"] = net.blobs[s].data.copy()
    for blob in spec.probes:
        arrays[f"blob/{blob}"] = net.blobs[blob].data.copy()
    for l in spec.losses:
        arrays[f"loss/{l}"] = np.asarray(net.blobs[l].data, np.float32).reshape(())
    for p in learnable(spec):
        arrays[f"grad/{p}"] = blob_of(net, p).diff.copy()
    return arrays


def run_solver(spec: prototxts.Net, nodrop_path: str, caffemodel: str, inputs: Dict[str, np.ndarray],
               settings: dict, workdir: str, perturb_seed: Optional[int] = None
               ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray], "caffe.Net"]:
    """SGDSolver steps from ``caffemodel``, its learnable blobs optionally perturbed (see perturb).

    Returns (learnable weights after the steps, the loss of each step, the solver's net).
    """
    solver_path = os.path.join(workdir, "solver.prototxt")
    with open(solver_path, "w") as f:
        f.write("\n".join([
            f'net: "{os.path.abspath(nodrop_path)}"',
            'type: "SGD"',
            f"base_lr: {settings['base_lr']!r}",
            'lr_policy: "fixed"',
            f"momentum: {settings['momentum']!r}",
            f"weight_decay: {settings['weight_decay']!r}",
            f"iter_size: {settings['iter_size']}",
            "max_iter: 1000",
            "display: 0",
            "snapshot_after_train: false",
            f"random_seed: {SEED}",
            "solver_mode: CPU",
        ]) + "\n")
    solver = caffe.SGDSolver(solver_path)
    solver.net.copy_from(caffemodel)
    if perturb_seed is not None:
        perturb(solver.net, spec, perturb_seed)
    set_inputs(solver.net, inputs)
    losses = {l: [] for l in spec.losses}
    for _ in range(settings["steps"]):
        solver.step(1)
        for l in spec.losses:
            losses[l].append(float(solver.net.blobs[l].data))
    after = {p: blob_of(solver.net, p).data.copy() for p in learnable(spec)}
    return after, {l: np.asarray(v, np.float32) for l, v in losses.items()}, solver.net


def write_npz(path: str, arrays: Dict[str, np.ndarray]) -> None:
    """A compressed .npz with fixed zip timestamps (byte-identical when regenerated), written atomically."""
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(arrays[key], order="C"), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())
    os.replace(tmp, path)


def write_bytes(path: str, data: bytes) -> None:
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max() / max(np.abs(b).max(), 1e-30))


class IllConditioned(Exception):
    """The goldens of a seed sit within float noise of a ReLU / max-pool decision (see check_conditioning)."""


def check_conditioning(what: str, reference: Dict[str, np.ndarray], perturbed: Dict[str, np.ndarray],
                       limit: float) -> float:
    """Worst relative change of ``perturbed`` against ``reference``; IllConditioned above ``limit``."""
    worst, key = 0.0, ""
    for k, ref in reference.items():
        e = rel_err(perturbed[k], ref)
        if e > worst:
            worst, key = e, k
    if worst > limit:
        raise IllConditioned(f"{what}: {key} changes by {worst:.2e} > {limit:.0e} under a {PERTURBATION:.0e} perturbation")
    return worst


@dataclass(frozen=True)
class Config:
    """What to make: the committed goldens (default) or a live full-size check (``live``: forward and
    backward only, no SGD runs, no conditioning check, the .caffemodel left uncompressed)."""

    out_dir: str = "tests/fixtures/oracle"
    width: Optional[float] = None  # None: each net's golden width (prototxts.golden_width)
    hw: Optional[Tuple[int, int]] = None
    batch: int = prototxts.BATCH
    live: bool = False


def make_one(name: str, cfg: Config, seed: int, workdir: str) -> dict:
    """Make the goldens of ``name`` from ``seed``; IllConditioned if they fail the conditioning check."""
    width = cfg.width if cfg.width is not None else prototxts.golden_width(name)
    spec = prototxts.build_net(name, width=width, hw=cfg.hw, batch=cfg.batch)
    folder = os.path.join(cfg.out_dir, name)
    net_path, nodrop_path = prototxts.write_prototxts(cfg.out_dir, [name], width, cfg.hw, cfg.batch)

    caffe.set_random_seed(seed)
    net = caffe.Net(net_path, caffe.TEST)
    rng = np.random.RandomState(seed)
    for layer in spec.deconvs:
        fill_bilinear_diagonal(net.params[layer][0].data)
    scales = {}
    for layer, value in spec.scales.items():
        blob = net.params[layer][0].data
        if not np.all(blob == np.float32(value)):
            raise RuntimeError(f"{name}: Scale {layer} was not filled with the constant {value}")
        blob[...] = value * rng.uniform(0.5, 1.5, size=blob.shape)
        scales[layer] = value
    caffemodel = os.path.join(workdir, f"{name}.caffemodel")
    net.save(caffemodel)
    with open(caffemodel, "rb") as f:
        raw = f.read()

    inputs = make_inputs(spec, rng)
    arrays: Dict[str, np.ndarray] = {}
    for blob, arr in inputs.items():
        arrays[("label/" if arr.dtype == np.uint8 else "input/") + blob] = arr
    golden = forward_backward(net, spec, inputs)
    arrays.update(golden)
    for s in spec.scores:
        if not np.abs(golden[f"score/{s}"]).max() > 0:
            raise RuntimeError(f"{name}: score blob {s} is all zero")
    grads = {p: golden[f"grad/{p}"] for p in learnable(spec)}
    dead = [p for p, g in grads.items() if not np.abs(g).max() > 0]
    if dead and not cfg.live:
        # A dead ReLU branch (all pre-activations <= 0 on these inputs): its blobs get no gradient and
        # the goldens would not test them (seen with GoogLeNet's 2-channel branches).
        raise IllConditioned(f"{name}: all-zero gradient of {', '.join(dead)}")
    weights0 = {p: blob_of(net, p).data.copy() for p in learnable(spec)}

    if not cfg.live:
        # Same function in TRAIN phase without Dropout (the SGD net) as in TEST phase with it.
        nodrop = caffe.Net(nodrop_path, caffe.TRAIN, weights=caffemodel)
        set_inputs(nodrop, inputs)
        nodrop.forward()
        for s in spec.scores:
            if not np.array_equal(nodrop.blobs[s].data, golden[f"score/{s}"]):
                raise RuntimeError(f"{name}: TRAIN-phase net without Dropout differs from the TEST-phase net on {s}")

    conditioning: Dict[str, float] = {}
    for trial in range(0 if cfg.live else PERTURBATION_TRIALS):
        shaken = caffe.Net(net_path, caffe.TEST, weights=caffemodel)
        perturb(shaken, spec, seed + 7919 * (trial + 1))
        other = forward_backward(shaken, spec, inputs)
        fwd = {k: v for k, v in golden.items() if k.startswith(("score/", "blob/", "loss/"))}
        bwd = {k: v for k, v in golden.items() if k.startswith(("grad/", "grad_input/"))}
        conditioning["forward"] = max(conditioning.get("forward", 0.0),
                                      check_conditioning(f"{name} forward", fwd, other, COND_FORWARD))
        conditioning["gradients"] = max(conditioning.get("gradients", 0.0),
                                        check_conditioning(f"{name} gradients", bwd, other, COND_GRAD))

    sgd, sgd_decay = solver_settings(name, spec, grads, weights0)
    runs = [("sgd", sgd)] + ([("sgd_decay", sgd_decay)] if name in DECAY_RUN else [])
    if cfg.live:
        runs, sgd = [], None
    for key, settings in runs:
        after, losses, solver_net = run_solver(spec, nodrop_path, caffemodel, inputs, settings, workdir)
        # lr_mult 0 blobs must not move (checked so that a Caffe surprise would stop the goldens).
        for p, (lr, _) in spec.params.items():
            if lr == 0 and not np.array_equal(blob_of(solver_net, p).data, blob_of(nodrop, p).data):
                raise RuntimeError(f"{name}: lr_mult 0 blob {p} moved")
        reference = {**{f"w/{p}": w for p, w in after.items()}, **{f"loss/{l}": v for l, v in losses.items()}}
        for trial in range(PERTURBATION_TRIALS):
            a2, l2, _ = run_solver(spec, nodrop_path, caffemodel, inputs, settings, workdir,
                                   perturb_seed=seed + 104729 * (trial + 1))
            other = {**{f"w/{p}": w for p, w in a2.items()}, **{f"loss/{l}": v for l, v in l2.items()}}
            conditioning[key] = max(conditioning.get(key, 0.0),
                                    check_conditioning(f"{name} {key}", reference, other, COND_SGD))
        for p, w in after.items():
            arrays[f"{key}/{p}"] = w
        for l, v in losses.items():
            arrays[f"{key}_loss/{l}"] = v
        moved = {p: rel_err(after[p], weights0[p]) for p in after}
        settings["min_rel_change"] = min(moved.values())
        settings["max_rel_change"] = max(moved.values())

    if cfg.live:
        write_bytes(os.path.join(folder, "weights.caffemodel"), raw)
    else:
        write_bytes(os.path.join(folder, "weights.caffemodel.xz"), lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME))
    write_npz(os.path.join(folder, "golden.npz"), arrays)
    return {
        "width": spec.width,
        "seed": seed,
        "inputs": {k: list(v) for k, v in spec.inputs.items()},
        "data_inputs": list(spec.data_inputs),
        "scores": list(spec.scores),
        "losses": {l: {"score": s, "label": lab, "normalize": norm} for l, (s, lab, norm) in spec.losses.items()},
        "crops": spec.crops,
        "params": {p: {"lr_mult": lr, "decay_mult": dm, "shape": list(blob_of(net, p).data.shape)}
                   for p, (lr, dm) in spec.params.items()},
        "deconvs": spec.deconvs,
        "scales": scales,
        "probes": {b: {"how": how, "module": m} for b, (how, m) in spec.probes.items()},
        "sgd": sgd,
        "sgd_decay": sgd_decay if name in DECAY_RUN and not cfg.live else None,
        "conditioning": conditioning,
        "caffemodel_sha256": hashlib.sha256(raw).hexdigest(),
        "caffemodel_bytes": len(raw),
        "loss_values": {l: float(arrays[f"loss/{l}"]) for l in spec.losses},
    }


def make_conditioned(name: str, cfg: Config, workdir: str) -> Tuple[dict, List[str]]:
    """make_one with the experiment's seed, moving on to the next seeds while ill-conditioned."""
    base = SEED + 1000 * SEED_ORDER.index(name)
    rejected = []
    for attempt in range(MAX_SEED_ATTEMPTS):
        try:
            return make_one(name, cfg, base + attempt, workdir), rejected
        except IllConditioned as e:
            rejected.append(f"seed {base + attempt}: {e}")
    raise RuntimeError(f"{name}: no well-conditioned seed in {MAX_SEED_ATTEMPTS} attempts: {rejected}")


def versions() -> dict:
    try:
        pkg = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "python3-caffe"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pkg = "unknown"
    return {"caffe": caffe.__version__, "python3-caffe (Debian bullseye)": pkg, "numpy": np.__version__,
            "python": platform.python_version(), "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS")}


def main() -> int:
    parser = argparse.ArgumentParser(description="Make the Caffe oracle goldens (inside the chroot).")
    parser.add_argument("--out", default="tests/fixtures/oracle", help="output folder")
    parser.add_argument("--live", action="store_true",
                        help="full-size live check: forward/backward only, no SGD, raw .caffemodel")
    parser.add_argument("--width", type=float, default=None, help="trunk width (default 1/64; --live: 1)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                        help="input size (default: prototxts.INPUT_HW; --live: 500 500)")
    parser.add_argument("--batch", type=int, default=None, help="batch (default 2; --live: 1)")
    parser.add_argument("names", nargs="*", help="experiments (default: all)")
    args = parser.parse_args()
    names = args.names or list(prototxts.EXPERIMENTS)
    for n in names:
        if n not in prototxts.EXPERIMENTS:
            parser.error(f"unknown experiment {n!r}; known: {', '.join(prototxts.EXPERIMENTS)}")
    size = tuple(args.size) if args.size else ((500, 500) if args.live else None)
    cfg = Config(out_dir=args.out, live=args.live, hw=size,
                 width=args.width if args.width is not None else (1.0 if args.live else None),
                 batch=args.batch if args.batch is not None else (1 if args.live else prototxts.BATCH))
    caffe.set_mode_cpu()
    os.makedirs(args.out, exist_ok=True)
    manifest_path = os.path.join(args.out, "manifest.json")
    manifest = {"experiments": {}}
    if os.path.exists(manifest_path) and args.names:
        with open(manifest_path) as f:
            manifest = json.load(f)
    with tempfile.TemporaryDirectory() as workdir:
        for i, name in enumerate(names):
            entry, rejected = make_conditioned(name, cfg, workdir)
            for r in rejected:
                print(f"    {name}: rejected {r}", flush=True)
            manifest["experiments"][name] = entry
            sgd = entry["sgd"]
            print(f"[{i + 1}/{len(names)}] {name}: loss {entry['loss_values']}"
                  + (f", sgd lr {sgd['base_lr']:g} moved {sgd['min_rel_change']:.2e}..{sgd['max_rel_change']:.2e}"
                     if sgd else "")
                  + (f", decay run wd {entry['sgd_decay']['weight_decay']:g}" if entry["sgd_decay"] else ""),
                  flush=True)
    manifest["experiments"] = {n: manifest["experiments"][n] for n in prototxts.EXPERIMENTS
                               if n in manifest["experiments"]}
    manifest.update({
        "generator": "tools/caffe_oracle (prototxts.py + make_goldens.py)",
        "versions": versions(),
        "live": cfg.live,
        "golden_width": cfg.width if cfg.width is not None else prototxts.GOLDEN_WIDTH,
        "forward_phase": "TEST (net.prototxt; Dropout is the identity)",
        "sgd_net": "net_nodropout.prototxt (TRAIN phase)",
        "caffe_update": "v = momentum*v + base_lr*lr_mult*(g/iter_size + weight_decay*decay_mult*w); w = w - v",
    })
    tmp = manifest_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, manifest_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
