"""Where the training step's time goes: voc-fcn8s, 1 x 3 x S x S (S = 500), fp32, on the CPU.

Run: `.venv/bin/python -m bench.case_train_profile --out x.json [--md x.md]` (about 2 minutes on
the idle 2-core development machine); `make bench` runs it as results/bench/train_profile.json
and puts its table in summary.md.

- phases: one Caffe SGD iteration as bench.case_nets's train case (zero_grad, forward in TRAIN
  phase, SoftmaxWithLoss on random labels with 10 % ignored, backward, `CaffeSGD.step()`), each
  phase timed on its own (wall seconds, perf_counter), the plain build (`nets.build(name,
  fast=False)`), the default build (whose training forward runs the region forward of
  nets/region.py) and the default build with the region forward off (`set_region(net, False)`:
  its training step before issue 17) interleaved step by step so that a change in the machine's
  load hits all alike; medians over the runs, and the load average (os.getloadavg) before and
  after.
- by layer: one more step of the default build under torch.profiler; the backward's operators
  grouped by the layer they belong to (convolution backward ops are matched to layers by their
  input and weight shapes, so layers alike in both are named together; the other operators listed
  by name), self time in seconds.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch

import nets
from bench.common import inputs_for, machine, peak_rss_mib, random_net, set_threads, write_json, write_text

NET = "voc-fcn8s"
PHASES = ("zero_grad", "forward", "loss", "backward", "solver")


def _setup(fast: bool, size: int, region: bool = True):
    from reproduce import experiments
    from reproduce.training.solver import CaffeSGD

    exp = experiments.get(NET)
    net = nets.set_region(random_net(NET, fast=fast), region).train()
    xs = inputs_for(net, size)
    solver = CaffeSGD(net, base_lr=exp.base_lr, momentum=exp.momentum, weight_decay=exp.weight_decay,
                      iter_size=1, lr_policy=exp.lr_policy)
    gen = torch.Generator().manual_seed(2)
    label = torch.randint(0, nets.info(NET).num_classes, (1, size, size), generator=gen)
    label[torch.rand(label.shape, generator=gen) < 0.1] = 255
    return exp, net, xs, solver, label


def _step(exp, net, xs, solver, label) -> tuple[dict[str, float], float]:
    from reproduce.training.loss import softmax_with_loss

    t = {}
    t0 = time.perf_counter()
    solver.zero_grad()
    t1 = time.perf_counter()
    out = net(*xs)
    t2 = time.perf_counter()
    loss = softmax_with_loss(out, label, normalize=exp.loss_normalize)
    t3 = time.perf_counter()
    loss.backward()
    t4 = time.perf_counter()
    solver.step()
    t5 = time.perf_counter()
    t.update(zero_grad=t1 - t0, forward=t2 - t1, loss=t3 - t2, backward=t4 - t3, solver=t5 - t4, step=t5 - t0)
    return t, float(loss.detach())


def layer_shapes(net: torch.nn.Module, xs: list[torch.Tensor]) -> dict[tuple, str]:
    """(input shape, weight shape) -> layer name for every convolution / deconvolution called as a
    module in a training forward, and weight shape -> name as a fallback (shared shapes joined by +)."""
    out: dict[tuple, list[str]] = defaultdict(list)
    names = {m: n for n, m in net.named_modules()}

    def hook(module, inp, _out):
        out[(tuple(inp[0].shape), tuple(module.weight.shape))].append(names[module])

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    try:
        net(*xs)
    finally:
        for h in handles:
            h.remove()
    for name, m in net.named_modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            out[tuple(m.weight.shape)].append(name)
    return {k: "+".join(dict.fromkeys(v)) for k, v in out.items()}


def _layer_of(shapes: dict[tuple, str], input_shapes: list) -> str | None:
    dims = [tuple(s) for s in input_shapes or [] if isinstance(s, (list, tuple)) and len(s) == 4]
    for a in dims:
        for b in dims:
            if (a, b) in shapes:
                return shapes[(a, b)]
    for a in dims:
        if a in shapes:
            return shapes[a]
    return None


def profile_backward(exp, net, xs, solver, label) -> dict:
    """Self seconds (as the autograd thread ran them) of the backward's operators, by layer where
    the operator has a weight (fc6 / fc7 run their products as oneDNN 1x1 convolutions: `aten::mkldnn_convolution`)."""
    from torch.profiler import ProfilerActivity, profile

    from reproduce.training.loss import softmax_with_loss

    shapes = layer_shapes(net, xs)
    solver.zero_grad()
    out = net(*xs)
    loss = softmax_with_loss(out, label, normalize=exp.loss_normalize)
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        loss.backward()
    wall = time.perf_counter() - t0
    solver.zero_grad()
    by_layer: dict[str, float] = defaultdict(float)
    by_op: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages(group_by_input_shape=True):
        self_s = ev.self_cpu_time_total / 1e6
        if self_s <= 0:
            continue
        by_op[ev.key] += self_s
        layer = _layer_of(shapes, ev.input_shapes) if "convolution" in ev.key else None
        if ev.key == "aten::mkldnn_convolution":
            layer = "fc6+fc7 (matrix products)"
        by_layer[layer if layer is not None else f"(other) {ev.key}"] += self_s
    return {"wall_s": wall, "total_self_s": sum(by_op.values()),
            "by_layer": dict(sorted(by_layer.items(), key=lambda kv: -kv[1])),
            "by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1]))}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=500)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--no-profile", action="store_true", help="skip the torch.profiler step")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--md", type=Path, default=None, help="also write the table as markdown here")
    args = ap.parse_args(argv)
    threads = set_threads()
    load_before = list(os.getloadavg())
    # "noregion": the default build with the region forward off (set_region(net, False)), i.e. its
    # training step before the region forward took autograd (issue 17), measured alongside
    variants = {"plain": _setup(False, args.size), "fast": _setup(True, args.size),
                "noregion": _setup(True, args.size, region=False)}
    times: dict[str, list[dict]] = {v: [] for v in variants}
    losses: dict[str, list[float]] = {v: [] for v in variants}
    for i in range(args.warmup + args.runs):
        for v, st in variants.items():
            t, loss = _step(*st)
            if i >= args.warmup:
                times[v].append(t)
                losses[v].append(loss)
    med = {v: {p: statistics.median(t[p] for t in ts) for p in (*PHASES, "step")} for v, ts in times.items()}
    record = {"net": NET, "input": f"1x3x{args.size}x{args.size}", "dtype": "float32", "threads": threads,
              "runs": args.runs, "warmup": args.warmup, "load_before": load_before,
              "median_s": med, "runs_s": times, "losses": losses,
              "step_fast_over_plain": med["fast"]["step"] / med["plain"]["step"],
              "phase_fast_over_plain": {p: med["fast"][p] / med["plain"][p] for p in PHASES if med["plain"][p] > 0},
              "step_noregion_over_plain": med["noregion"]["step"] / med["plain"]["step"]}
    del variants["plain"], variants["noregion"]
    if not args.no_profile:
        record["backward_profile_fast"] = profile_backward(*variants["fast"])
    record["load_after"] = list(os.getloadavg())
    record["peak_rss_mib"] = peak_rss_mib()
    record["machine"] = machine()
    write_json(args.out, record)
    if args.md:
        write_text(args.md, "\n".join(["# Training step profile", "", *markdown_lines(record), ""]))
    return record


def markdown_lines(r: dict | None) -> list[str]:
    """The profile's tables (bench/summary.py puts them in summary.md)."""
    if not r:
        return ["Not measured."]
    med = r["median_s"]
    lines = [f"{r['net']}, {r['input']} {r['dtype']}, one Caffe SGD iteration, {r['threads']} threads; medians of "
             f"{r['runs']} steps, {'plain, default and no region' if 'noregion' in med else 'plain and default'} "
             "interleaved step by step; load average "
             f"{r['load_before'][0]:.2f} before, {r['load_after'][0]:.2f} after "
             "(`python -m bench.case_train_profile`).", ""]
    nr_ = med.get("noregion")
    if nr_:
        lines += ["The default build runs the region forward (nets/region.py) in training too; *no region* "
                  "is the default build with it off (`set_region(net, False)`), interleaved with the other two.",
                  "", "| phase | plain s | default s | default / plain | no region s | no region / plain |",
                  "|---|---:|---:|---:|---:|---:|"]
    else:
        lines += ["| phase | plain s | default s | default / plain |", "|---|---:|---:|---:|"]
    for p in (*PHASES, "step"):
        ratio = med["fast"][p] / med["plain"][p] if med["plain"][p] > 0 else float("nan")
        row = f"| {p} | {med['plain'][p]:.3f} | {med['fast'][p]:.3f} | {ratio:.2f}x |"
        if nr_:
            r2 = nr_[p] / med["plain"][p] if med["plain"][p] > 0 else float("nan")
            row += f" {nr_[p]:.3f} | {r2:.2f}x |"
        lines.append(row)
    prof = r.get("backward_profile_fast")
    if prof:
        lines += ["", f"Backward of the default build by layer (torch.profiler, self CPU seconds, one step; "
                      f"total {prof['total_self_s']:.2f} s, {prof['wall_s']:.2f} s wall under the profiler; "
                      "each operator's "
                      "time as the autograd thread ran it, its intra-op threads not added):", "",
                  "| layer / operator | self CPU s |", "|---|---:|"]
        for k, v in list(prof["by_layer"].items())[:24]:
            lines.append(f"| {k} | {v:.3f} |")
    return lines


if __name__ == "__main__":
    main()
