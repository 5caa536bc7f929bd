"""Evaluation throughput in this process: images/s of `reproduce.evaluation.evaluate.evaluate`, end to end.

Run: `.venv/bin/python -m bench.case_eval --variant fast --out x.json`.

What is timed is what `fcn eval` does per image: read the JPEG and PNG label and preprocess
(reproduce.datasets, the VOC reader), the forward under inference mode at the image's own size
(batch 1), argmax, the confusion histogram and the per-image loss (reproduce.evaluation.metrics,
reproduce.training.loss). Data: the three real VOC 2012 images in reproduce/samples/voc (500 x 375
to 500 x 333), split "sample"; net: voc-fcn8s with random-ish weights (the speed does not depend
on the values). Each timed run is one pass over the three images; DataLoader with 0 workers.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import ROOT, machine, peak_rss_mib, random_net, set_threads, timed, write_json

VOC_FIXTURE = ROOT / "reproduce" / "samples" / "voc"
NET = "voc-fcn8s"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=("fast", "plain"), required=True)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    threads = set_threads()

    from reproduce import experiments
    from reproduce.datasets import open_dataset
    from reproduce.evaluation.evaluate import evaluate

    exp = experiments.get(NET)
    dataset = open_dataset("voc", VOC_FIXTURE, "sample")
    net = random_net(NET, fast=args.variant == "fast")
    records = []
    timing = timed(lambda: records.append(evaluate(net, exp, dataset, progress=False)),
                   warmup=args.warmup, runs=args.runs)
    n = len(dataset)
    record = {"net": NET, "what": "eval", "variant": args.variant, "images_per_pass": n,
              "dataset": "reproduce/samples/voc split 'sample' (3 VOC 2012 images)",
              "threads": threads, **timing, "images_per_s": n / timing["median_s"],
              "mean_iu_last_pass": records[-1]["scores"]["mean_iu"],
              "peak_rss_mib": peak_rss_mib(), "machine": machine()}
    write_json(args.out, record)
    return record


if __name__ == "__main__":
    main()
