"""The region forward (nets/region.py) against the default fast path and the plain build, in one process.

Run: `.venv/bin/python -m bench.case_region --out x.json [--md x.md]` (about 2 minutes on the
idle 2-core development machine); `make bench` runs it as results/bench/region.json and puts its
table in summary.md.

- forward: voc-fcn8s, 1 x 3 x S x S (S = 500), `net.eval()` under `torch.inference_mode()`, the
  three variants interleaved run by run (plain, fast, region, plain, ...) so that a change in the
  machine's load hits all three alike; medians and ratios to the plain build. "plain" is
  `nets.build(name, fast=False)`, "fast" `nets.build(name, region=False)` (the fast kernels of
  nets/fast.py alone, the default before the region forward), "region" `nets.build(name)` (the
  default). Also the forward's FLOPs: nominal (every layer over its whole map, deconvolutions
  dense) and what the region forward computes (its trunk convolutions over their computed
  rectangles, the rest as nominal), and the first region call's extra time (geometry and
  background for a new input size).
- eval: images/s of `reproduce.evaluation.evaluate.evaluate` on the three VOC 2012 sample images
  (bench.case_eval's VOC_FIXTURE, split "sample"), the three variants interleaved pass by pass.
- exactness: max |region - plain| / max |plain| of the scores.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import nets
import nets.region as nr
from bench.case_eval import NET as EVAL_NET, VOC_FIXTURE
from bench.common import (ROOT, inputs_for, machine, peak_rss_mib, random_net, set_threads, write_json,
                          write_text)


def trunk_programs(net: torch.nn.Module) -> list:
    """The net's trunk(s) as nets.region programs (two for the late-fusion nets)."""
    if hasattr(net, "region_program"):
        return [net.region_program()]
    from nets.vgg_fcn import vgg16_region_program
    names = net.trunk_names
    return [vgg16_region_program(net, n) for n in (names.values() if isinstance(names, dict) else [names])]


def nominal_flops(net: torch.nn.Module, xs: list[torch.Tensor]) -> int:
    """2 x multiply-adds of every convolution and deconvolution of one forward, over whole maps
    (deconvolutions as the dense Caffe layer: every input pixel times C_out x k x k)."""
    total = 0

    def hook(module, inp, out):
        nonlocal total
        if isinstance(module, torch.nn.ConvTranspose2d):
            total += 2 * inp[0].numel() * module.weight[0].numel()
        else:
            total += 2 * out.numel() * module.weight[0].numel()

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    try:
        with torch.inference_mode():
            net(*xs)
    finally:
        for h in handles:
            h.remove()
    return total


def _median(values: list[float]) -> float:
    return statistics.median(values)


def forward_block(name: str, size: int, runs: int) -> dict:
    region = random_net(name, fast=True).eval()
    nets.set_region(region, True)
    plain = random_net(name, fast=False).eval()
    xs = inputs_for(region, size)
    sizes = {"data": (size, size)}
    trunk_full = sum(nr.region_flops(p, sizes, region=False) for p in trunk_programs(region))
    trunk_region = sum(nr.region_flops(p, sizes) for p in trunk_programs(region))
    nominal = nominal_flops(plain, xs)
    times: dict[str, list[float]] = {"plain": [], "fast": [], "region": []}
    with torch.inference_mode():
        t0 = time.perf_counter()
        ref_region = region(*xs)
        first_region = time.perf_counter() - t0
        ref_plain = plain(*xs)
        nets.set_region(region, False)
        region(*xs)  # warm-up of the fast path (packing)
        for _ in range(runs):
            for variant in ("plain", "fast", "region"):
                net = plain if variant == "plain" else region
                nets.set_region(region, variant == "region")
                t0 = time.perf_counter()
                net(*xs)
                times[variant].append(time.perf_counter() - t0)
    a = ref_region if isinstance(ref_region, torch.Tensor) else next(iter(ref_region.values()))
    b = ref_plain if isinstance(ref_plain, torch.Tensor) else next(iter(ref_plain.values()))
    med = {k: _median(v) for k, v in times.items()}
    return {"net": name, "input": f"1x?x{size}x{size}", "runs": runs, "times_s": times, "median_s": med,
            "fast_over_plain": med["fast"] / med["plain"], "region_over_plain": med["region"] / med["plain"],
            "region_over_fast": med["region"] / med["fast"],
            "first_region_call_s": first_region,
            "gflop_nominal": nominal / 1e9, "gflop_region": (nominal - trunk_full + trunk_region) / 1e9,
            "gflop_trunk_nominal": trunk_full / 1e9, "gflop_trunk_region": trunk_region / 1e9,
            "max_rel_diff_region_plain": float((a - b).abs().max() / b.abs().max())}


def eval_block(runs: int) -> dict:
    from reproduce import experiments
    from reproduce.datasets import open_dataset
    from reproduce.evaluation.evaluate import evaluate

    exp = experiments.get(EVAL_NET)
    dataset = open_dataset("voc", VOC_FIXTURE, "sample")
    region = random_net(EVAL_NET, fast=True)
    plain = random_net(EVAL_NET, fast=False)
    times: dict[str, list[float]] = {"plain": [], "fast": [], "region": []}
    ious = {}
    for variant in ("fast", "region"):  # warm-up (packing; the region's geometry per image size)
        nets.set_region(region, variant == "region")
        evaluate(region, exp, dataset, progress=False)
    for _ in range(runs):
        for variant in ("plain", "fast", "region"):
            net = plain if variant == "plain" else region
            nets.set_region(region, variant == "region")
            t0 = time.perf_counter()
            rec = evaluate(net, exp, dataset, progress=False)
            times[variant].append(time.perf_counter() - t0)
            ious[variant] = rec["scores"]["mean_iu"]
    n = len(dataset)
    ips = {k: n / _median(v) for k, v in times.items()}
    return {"net": EVAL_NET, "dataset": f"{VOC_FIXTURE.relative_to(ROOT)} split 'sample' (3 VOC 2012 images)",
            "images_per_pass": n, "runs": runs, "pass_times_s": times, "images_per_s": ips,
            "region_over_plain": ips["region"] / ips["plain"], "fast_over_plain": ips["fast"] / ips["plain"],
            "mean_iu_last_pass": ious}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="voc-fcn8s")
    ap.add_argument("--size", type=int, default=500)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--eval-runs", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--md", type=Path, default=None, help="also write the summary's table here (markdown)")
    args = ap.parse_args(argv)
    threads = set_threads()
    before = machine()
    record = {"what": "region", "threads": threads, "machine_before": before,
              "forward": forward_block(args.net, args.size, args.runs)}
    if args.eval_runs > 0:
        record["eval"] = eval_block(args.eval_runs)
    record["machine_after"] = machine()
    record["peak_rss_mib"] = peak_rss_mib()
    write_json(args.out, record)
    if args.md is not None:
        from bench.summary import region_lines
        write_text(args.md, "\n".join(["# Region forward (`python -m bench.case_region`)", "", *region_lines(record), ""]))
    return record


if __name__ == "__main__":
    main()
