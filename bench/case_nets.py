"""One net bench case in this process: a forward (inference) or a training step, fast or plain.

Run: `.venv/bin/python -m bench.case_nets --net voc-fcn8s --what forward --variant fast --out x.json`.
bench/run.py starts one such process per case, so that the peak RSS written here (VmHWM, the
whole process: import, build, warm-up and timed runs) is the case's own.

- forward: `net.eval()` under `torch.inference_mode()`, 1 x C x S x S input(s) (S = 500).
- train: one Caffe SGD iteration of one image: `solver.zero_grad()`, forward in TRAIN phase
  (dropout on), SoftmaxWithLoss on random labels (10 % ignore), backward, `CaffeSGD.step()`
  with the experiment's solver settings (reproduce.training.solver, reproduce.training.loss).
- variant "fast" is `nets.build(name)` (the default), "plain" is `nets.build(name, fast=False)`:
  NCHW, every layer its torch.nn module, no prepacking, no fusion.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

import nets
from bench.common import inputs_for, machine, peak_rss_mib, random_net, set_threads, timed, write_json
from reproduce.device import resolve_device


def _sync(device: torch.device):
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def forward_case(name: str, fast: bool, size: int, warmup: int, runs: int, device: torch.device) -> dict:
    net = random_net(name, fast=fast).eval().to(device)
    xs = [x.to(device) for x in inputs_for(net, size)]
    with torch.inference_mode():
        timing = timed(lambda: net(*xs), warmup=warmup, runs=runs, sync=_sync(device))
    return timing


def train_case(name: str, fast: bool, size: int, warmup: int, runs: int, device: torch.device) -> dict:
    from reproduce import experiments
    from reproduce.training.loss import softmax_with_loss
    from reproduce.training.solver import CaffeSGD

    exp = experiments.get(name)
    net = random_net(name, fast=fast).train().to(device)
    xs = [x.to(device) for x in inputs_for(net, size)]
    solver = CaffeSGD(net, base_lr=exp.base_lr, momentum=exp.momentum, weight_decay=exp.weight_decay,
                      iter_size=1, lr_policy=exp.lr_policy)
    gen = torch.Generator().manual_seed(2)
    classes = nets.info(name).num_classes
    classes = tuple(classes) if isinstance(classes, (tuple, list)) else (classes,)
    labels = {}
    for key, n in zip(exp.scores, classes):
        label = torch.randint(0, n, (1, size, size), generator=gen)
        label[torch.rand(label.shape, generator=gen) < 0.1] = 255
        labels[key] = label.to(device)
    losses = []

    def step() -> None:
        solver.zero_grad()
        out = net(*xs)
        outs = out if isinstance(out, dict) else {"score": out}
        loss = sum(softmax_with_loss(outs[k], labels[k], normalize=exp.loss_normalize) for k in labels)
        loss.backward()
        solver.step()
        losses.append(float(loss.detach()))

    timing = timed(step, warmup=warmup, runs=runs, sync=_sync(device))
    timing["loss"] = losses[-1]
    if not all(map(lambda v: v == v and abs(v) != float("inf"), losses)):
        raise RuntimeError(f"{name}: non-finite loss in the training step bench: {losses}")
    return timing


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", required=True)
    ap.add_argument("--what", choices=("forward", "train"), required=True)
    ap.add_argument("--variant", choices=("fast", "plain"), required=True)
    ap.add_argument("--size", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N (reproduce.device; the exact path keeps TF32 off on cuda)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    threads = set_threads()
    device = resolve_device(args.device)
    case = forward_case if args.what == "forward" else train_case
    timing = case(args.net, args.variant == "fast", args.size, args.warmup, args.runs, device)
    record = {"net": args.net, "what": args.what, "variant": args.variant, "input": f"1x?x{args.size}x{args.size}",
              "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "threads": threads, **timing, "peak_rss_mib": peak_rss_mib(),
              "peak_gpu_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
              "machine": machine()}
    write_json(args.out, record)
    return record


if __name__ == "__main__":
    main()
