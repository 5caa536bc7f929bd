"""`make bench-gpu`: voc-fcn8s on one CUDA GPU -> results/bench/gpu.json and gpu.md.

Run: `.venv/bin/python -m bench.case_gpu` (about 3 minutes on one H100). Without CUDA it exits 2
saying so. Measured, at 500 x 500 and at the typical VOC size 500 x 375 (W x H), 1 image (batch 1):

- exact fp32 (TF32 off, as every fcn command runs on CUDA): forward (inference) and one Caffe SGD
  training step (zero_grad, forward in TRAIN phase, SoftmaxWithLoss, backward, CaffeSGD.step),
  timed with CUDA events after warm-up (cudnn autotuning off, PyTorch's default), each run
  synchronized; peak GPU memory (torch.cuda.max_memory_allocated) per case;
- the opt-in bf16 mode (reproduce/evaluation/bf16.py: bfloat16 autocast, eager) forward and training step,
  and its forward with torch.compile (first call = compile time reported apart);
- what `torch.use_deterministic_algorithms(True)` costs: the exact training step at 500 x 375
  with it on against off;
- projected hours per 100,000 iterations (batch 1, iter_size 1) from each training step;
- the real training loop (reproduce.training.train.train on voc-fcn8s at full width, the VOC sample JPEGs of
  reproduce/samples/voc decoded by its worker processes, logging every 20 iterations): seconds per
  iteration in steady state from its log.csv, against the pure compute time of the same steps on
  the same images already on the GPU; their ratio is the fraction of wall time the GPU is busy.

The phases run in that order (kernels, the loop, then torch.compile, which takes the longest and
matters least), and gpu.json and gpu.md are rewritten after each: a run stopped at a time limit keeps
what it had measured (`phases_done` against `phases_planned`; gpu.md says INCOMPLETE).

Weights are random-ish (bench.common.random_net; the loop: the net's own init); speed does not
depend on their values.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from bench.common import RESULTS, ROOT, inputs_for, machine, random_net, write_json, write_text

NET = "voc-fcn8s"
SIZES = {"500x500": (500, 500), "500x375": (375, 500)}  # W x H label -> (H, W)
ITERATIONS = 100_000
DEVICE = "cuda"  # the device measured (tests/test_cuda_rehearsal.py runs this module on the CPU)
EXIT_NO_CUDA = 2


def projected_hours(step_s: float, iterations: int = ITERATIONS) -> float:
    """Hours for `iterations` training steps of `step_s` seconds each."""
    return step_s * iterations / 3600.0


def busy_fraction(loop_s_per_iteration: float, compute_s_per_iteration: float) -> float:
    """Fraction of the training loop's wall time the GPU spends computing (capped at 1)."""
    return min(1.0, compute_s_per_iteration / loop_s_per_iteration)


def cuda_timed(fn: Callable[[], Any], *, warmup: int, runs: int) -> dict:
    """CUDA-event seconds of `runs` calls of fn after `warmup` (each call synchronized), and wall seconds."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    event_s, wall_s = [], []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0 = time.perf_counter()
        start.record()
        fn()
        end.record()
        end.synchronize()
        wall_s.append(time.perf_counter() - t0)
        event_s.append(start.elapsed_time(end) / 1000.0)
    return {"event_s": event_s, "wall_s": wall_s, "median_s": statistics.median(event_s), "min_s": min(event_s),
            "wall_median_s": statistics.median(wall_s)}


def _peak(fn: Callable[[], dict]) -> dict:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    out = fn()
    torch.cuda.synchronize()
    out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _net_and_inputs(h: int, w: int, width: float) -> tuple[torch.nn.Module, list[torch.Tensor]]:
    """voc-fcn8s (random-ish weights, `width` its channel multiplier) and one H x W input, on DEVICE."""
    dev = torch.device(DEVICE)
    net = random_net(NET, fast=True, width=width).to(dev)
    return net, [x[..., :h, :w].contiguous().to(dev) for x in inputs_for(net, max(h, w))]


def _labels(size: tuple[int, int], device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(2)
    label = torch.randint(0, 21, (1, *size), generator=gen)
    label[torch.rand(label.shape, generator=gen) < 0.1] = 255
    return label.to(device)


def _step_fn(net, runner, exp, xs, label) -> Callable[[], None]:
    """One Caffe SGD iteration of one image; the loss is never read (no host synchronisation)."""
    from reproduce.training.loss import softmax_with_loss
    from reproduce.training.solver import CaffeSGD
    solver = CaffeSGD(net, base_lr=exp.base_lr, momentum=exp.momentum, weight_decay=exp.weight_decay,
                      iter_size=1, lr_policy=exp.lr_policy)

    def step() -> None:
        solver.zero_grad()
        loss = softmax_with_loss(runner(*xs), label, normalize=exp.loss_normalize)
        loss.backward()
        solver.step()
    return step


def measure_kernels(warmup: int, runs: int, *, width: float = 1.0) -> dict:
    """Forward and training step, exact and bf16 (eager), at each size; the deterministic cost
    (`width`: the nets' channel multiplier, 1 for the real figures)."""
    from reproduce import experiments
    from reproduce.evaluation.bf16 import bf16_mode
    from reproduce.training.train import use_exact_cuda_math
    use_exact_cuda_math()
    exp = experiments.get(NET)
    dev = torch.device(DEVICE)
    out: dict = {}
    for label, (h, w) in SIZES.items():
        net, xs = _net_and_inputs(h, w, width)
        y = _labels((h, w), dev)
        bf16 = bf16_mode(net, compile=False)
        rec: dict = {}
        net.eval()
        with torch.inference_mode():
            rec["forward_exact"] = _peak(lambda: cuda_timed(lambda: net(*xs), warmup=warmup, runs=runs))
            rec["forward_bf16"] = _peak(lambda: cuda_timed(lambda: bf16(*xs), warmup=warmup, runs=runs))
        net.train()
        rec["train_exact"] = _peak(lambda: cuda_timed(_step_fn(net, net, exp, xs, y), warmup=warmup, runs=runs))
        rec["train_bf16"] = _peak(lambda: cuda_timed(_step_fn(net, bf16, exp, xs, y), warmup=warmup, runs=runs))
        with torch.no_grad():
            net.eval()
            exact = net(*xs).float()
            approx = bf16(*xs).float()
            net.train()
        rec["bf16_vs_exact"] = {
            "max_rel_logit_diff": ((approx - exact).abs().max() / exact.abs().max()).item(),
            "argmax_agreement": (approx.argmax(1) == exact.argmax(1)).float().mean().item()}
        for key in ("train_exact", "train_bf16"):
            rec[key]["hours_per_100k"] = projected_hours(rec[key]["median_s"])
        out[label] = rec
        del net, bf16
        torch.cuda.empty_cache()
    # what deterministic algorithms cost (500 x 375, exact)
    h, w = SIZES["500x375"]
    net, xs = _net_and_inputs(h, w, width)
    net.train()
    y = _labels((h, w), dev)
    off = cuda_timed(_step_fn(net, net, exp, xs, y), warmup=warmup, runs=runs)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        on = cuda_timed(_step_fn(net, net, exp, xs, y), warmup=warmup, runs=runs)
    finally:
        torch.use_deterministic_algorithms(False)
    return {"sizes": out, "deterministic": {"size": "500x375", "off": off, "on": on,
                                           "slowdown": on["median_s"] / off["median_s"]}}


def measure_compile(runs: int, *, width: float = 1.0) -> dict:
    """size -> {"forward_bf16_compile": ...}: the bf16 mode's forward with torch.compile, its first
    call (the compilation) timed apart. Measured last: compiling takes the longest and matters least."""
    from reproduce.evaluation.bf16 import bf16_mode
    out: dict = {}
    for label, (h, w) in SIZES.items():
        net, xs = _net_and_inputs(h, w, width)
        net.eval()
        compiled = bf16_mode(net, compile=True)
        with torch.no_grad():
            t0 = time.perf_counter()
            compiled(*xs)
            torch.cuda.synchronize()
            first = time.perf_counter() - t0
            rec = _peak(lambda: cuda_timed(lambda: compiled(*xs), warmup=1, runs=runs))
        out[label] = {"forward_bf16_compile": {**rec, "first_call_s": first}}
        del net, compiled
        torch.cuda.empty_cache()
    return out


def measure_loop(iterations: int, display: int = 20, *, width: float = 1.0) -> dict:
    """The real training loop's s/iteration in steady state vs the pure compute of the same steps
    (`width`: the net's channel multiplier, 1 for the real figures)."""
    import dataclasses
    from reproduce import experiments
    from reproduce.datasets import open_dataset
    from reproduce.training.loss import softmax_with_loss
    from reproduce.training.solver import CaffeSGD
    from reproduce.training.train import train, use_exact_cuda_math

    exp = dataclasses.replace(experiments.get(NET), max_iter=iterations, test_interval=iterations, snapshot=iterations)
    ds = open_dataset("voc", ROOT / "reproduce" / "samples" / "voc", "sample")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        train(exp, data_root=None, init=None, out_dir=out, device=DEVICE, train_dataset=ds, val_dataset=ds,
              progress=False, display=display, keep_snapshots=1, width=width)
        with open(out / "log.csv", newline="") as f:
            rows = [(int(r["iteration"]), float(r["seconds"])) for r in csv.DictReader(f)]
    (i0, s0), (i1, s1) = rows[1], rows[-1]  # from the second row: past start-up and the first loads
    loop_s = (s1 - s0) / (i1 - i0)
    # the same steps' pure compute: the loop's images already on the GPU, no loading, no logging
    use_exact_cuda_math()
    dev = torch.device(DEVICE)
    torch.manual_seed(exp.seed)
    net = exp.build_net(width=width).to(dev).train()
    solver = CaffeSGD(net, base_lr=exp.base_lr, momentum=exp.momentum, weight_decay=exp.weight_decay,
                      iter_size=1, lr_policy=exp.lr_policy)
    samples = [ds[i] for i in range(len(ds))]
    data = [([t.to(dev) for t in exp.net_inputs(s)], [t.to(dev) for t in exp.net_labels(s)]) for s in samples]
    k = [0]

    def step() -> None:
        xs, ys = data[k[0] % len(data)]
        k[0] += 1
        solver.zero_grad()
        loss = sum(softmax_with_loss(s, y, normalize=exp.loss_normalize) for s, y in zip(exp.net_scores(net(*xs)), ys))
        loss.backward()
        solver.step()

    compute = cuda_timed(step, warmup=2 * len(data), runs=max(3 * len(data), 30))
    pixels = statistics.mean(s["data"].shape[1] * s["data"].shape[2] for s in samples)
    return {"images": [f"{s['data'].shape[2]}x{s['data'].shape[1]}" for s in samples], "mean_pixels": pixels,
            "iterations": iterations, "window": [i0, i1], "s_per_iteration": loop_s,
            "compute_s": statistics.mean(compute["event_s"]),
            "busy_fraction": busy_fraction(loop_s, statistics.mean(compute["event_s"])),
            "hours_per_100k": projected_hours(loop_s)}


def render_md(record: dict) -> str:
    """results/bench/gpu.md: the figures of `record` (what main() writes to gpu.json) as tables."""
    ms = lambda t: f"{t['median_s'] * 1000:.1f}"  # noqa: E731
    lines = [f"# voc-fcn8s on {record['gpu']} (make bench-gpu)", "",
             f"torch {record['torch']}, CUDA {record['cuda']}, cuDNN {record['cudnn']}; batch 1; CUDA-event medians "
             f"of {record['runs']} runs after {record['warmup']} warm-up; exact = fp32, TF32 off.", "",
             "| size (WxH) | case | ms | peak GPU MiB | h / 100k iterations |", "|---|---|---|---|---|"]
    for size, rec in record["sizes"].items():
        for key in ("forward_exact", "train_exact", "forward_bf16", "train_bf16", "forward_bf16_compile"):
            if key in rec:
                hours = f"{rec[key]['hours_per_100k']:.2f}" if "hours_per_100k" in rec[key] else ""
                lines.append(f"| {size} | {key.replace('_', ' ')} | {ms(rec[key])} | {rec[key]['peak_gpu_mib']:.0f} | {hours} |")
    lines += ["", "bf16 mode against the exact path (forward): "
              + "; ".join(f"{s}: max relative logit difference {r['bf16_vs_exact']['max_rel_logit_diff']:.3g}, "
                          f"argmax agreement {100 * r['bf16_vs_exact']['argmax_agreement']:.2f} %"
                          for s, r in record["sizes"].items())]
    for size, rec in record["sizes"].items():
        if "forward_bf16_compile" in rec:
            lines.append(f"torch.compile first call at {size}: {rec['forward_bf16_compile']['first_call_s']:.1f} s")
    missing = [p for p in record.get("phases_planned", []) if p not in record.get("phases_done", [])]
    if missing:
        lines += ["", f"INCOMPLETE: the run stopped before measuring {', '.join(missing)} "
                      f"(measured: {', '.join(record['phases_done']) or 'nothing'})"]
    d = record.get("deterministic")
    if d:
        lines += ["", f"torch.use_deterministic_algorithms(True), exact training step at {d['size']}: "
                      f"{ms(d['on'])} ms against {ms(d['off'])} ms ({d['slowdown']:.2f}x)"]
    loop = record.get("loop")
    if loop:
        lines += ["", f"Real training loop (reproduce.training.train, the VOC sample JPEGs {', '.join(loop['images'])}, "
                      f"iterations {loop['window'][0]}-{loop['window'][1]} of {loop['iterations']}): "
                      f"{loop['s_per_iteration'] * 1000:.1f} ms per iteration against {loop['compute_s'] * 1000:.1f} ms "
                      f"of pure compute of the same steps: the GPU is busy {100 * loop['busy_fraction']:.1f} % of the "
                      f"wall time; {loop['hours_per_100k']:.2f} h per 100k iterations."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--loop-iterations", type=int, default=100)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile forward")
    ap.add_argument("--out", type=Path, default=RESULTS / "gpu.json")
    args = ap.parse_args(argv)
    from reproduce.device import cuda_unavailable_reason
    reason = cuda_unavailable_reason()
    if reason is not None:
        print(f"bench-gpu: no CUDA device here ({reason}); this benchmark measures the GPU path and needs one "
              f"(make bench measures the CPU)", file=sys.stderr)
        return EXIT_NO_CUDA
    record: dict = {"net": NET, "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                    "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                    "warmup": args.warmup, "runs": args.runs, "tf32": False}
    record["machine"] = machine()

    def kernels() -> None:
        record.update(measure_kernels(args.warmup, args.runs))

    def loop() -> None:
        record["loop"] = measure_loop(args.loop_iterations)

    def compiled() -> None:
        for size, rec in measure_compile(args.runs).items():
            record["sizes"][size].update(rec)

    phases = [("kernels", kernels), ("loop", loop)] + ([] if args.no_compile else [("compile", compiled)])
    record["phases_planned"], record["phases_done"] = [name for name, _ in phases], []
    for name, run_phase in phases:
        started = time.perf_counter()
        run_phase()
        record["phases_done"].append(name)
        # written after every phase: a run stopped at its time limit keeps what it measured
        write_json(args.out, record)
        write_text(args.out.with_suffix(".md"), render_md(record))
        print(f"bench-gpu: {name} measured in {time.perf_counter() - started:.0f} s -> {args.out}", file=sys.stderr)
    print(render_md(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
