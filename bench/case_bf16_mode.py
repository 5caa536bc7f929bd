"""The opt-in bf16 mode (reproduce/evaluation/bf16.py, `fcn eval --bf16`) against the exact path, in this process.

Run: `.venv/bin/python -m bench.case_bf16_mode --out x.json`.

On voc-fcn8s with random-ish weights (bench.common.random_net) and one 1 x 3 x 500 x 500 input:
- exactness of the default path: the fast kernels (nets.build default) against the plain build,
  max |difference| / max |plain score|;
- bf16 mode, two settings: bfloat16 autocast alone (eager), and bfloat16 + torch.compile +
  inductor freezing (inference); for each: first-call time (the compile, with an empty inductor
  cache when bench/run.py sets TORCHINDUCTOR_CACHE_DIR), median forward time, the max logit
  difference to the exact path (absolute and relative to the exact scores' max |value|) and the
  fraction of pixels whose argmax class agrees;
- on the three VOC sample images (reproduce/samples/voc), exact vs bfloat16 eager (the
  compiled runner would recompile for each image size): mean IU against the labels through
  reproduce.evaluation.evaluate (with random weights both are near 0 and mean nothing), and the bf16
  mode's argmax scored against the exact path's (pixel accuracy, mean IU in percent): how far
  bfloat16 moves the decisions.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from bench.common import ROOT, inputs_for, machine, peak_rss_mib, random_net, set_threads, timed, write_json

NET = "voc-fcn8s"
VOC_FIXTURE = ROOT / "reproduce" / "samples" / "voc"


def _deviation(out: torch.Tensor, ref: torch.Tensor) -> dict:
    diff = (out.float() - ref).abs().max().item()
    scale = ref.abs().max().item()
    agree = (out.argmax(1) == ref.argmax(1)).float().mean().item()
    return {"max_abs_diff": diff, "max_abs_exact": scale, "max_rel_diff": diff / scale if scale else None,
            "argmax_agreement": agree}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile setting")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    threads = set_threads()
    from nets.fast import set_fast
    from reproduce.evaluation.bf16 import bf16_mode

    net = random_net(NET, fast=True).eval()
    (x,) = inputs_for(net, args.size)
    with torch.inference_mode():
        exact = net(x).clone()
        set_fast(net, False)
        plain = net(x).clone()
        set_fast(net, True)
    record: dict = {"net": NET, "input": f"1x3x{args.size}x{args.size}", "threads": threads,
                    "default_vs_plain": _deviation(exact, plain)}

    settings = {"bf16_eager": dict(bf16=True, compile=False)}
    if not args.no_compile:
        settings["bf16_compile_freeze"] = dict(bf16=True, compile=True, freeze=True)
    with torch.inference_mode():
        record["exact"] = timed(lambda: net(x), warmup=args.warmup, runs=args.runs)
    for key, kw in settings.items():
        runner = bf16_mode(net, **kw)
        with torch.no_grad():  # inductor freezing applies to no-grad graphs
            t0 = time.perf_counter()
            out = runner(x)
            first = time.perf_counter() - t0
            timing = timed(lambda: runner(x), warmup=max(0, args.warmup - 1), runs=args.runs)
        record[key] = {"settings": kw, "describe": runner.describe(), "first_call_s": first, **timing,
                       **_deviation(out, exact)}

    from reproduce import experiments
    from reproduce.evaluation import metrics
    from reproduce.datasets import open_dataset
    from reproduce.evaluation.evaluate import evaluate
    exp = experiments.get(NET)
    dataset = open_dataset("voc", VOC_FIXTURE, "sample")
    eager = bf16_mode(net, compile=False)
    exact_iu = evaluate(net, exp, dataset, progress=False)["scores"]["mean_iu"]
    bf16_iu = evaluate(eager, exp, dataset, progress=False)["scores"]["mean_iu"]
    # The bf16 mode's predictions scored against the exact path's (as if those were the labels).
    hist = np.zeros((21, 21), dtype=np.int64)
    with torch.inference_mode():
        for i in range(len(dataset)):
            inputs = exp.net_inputs(dataset[i])
            a = net(*inputs).argmax(1)[0].numpy()
            b = eager(*inputs).argmax(1)[0].numpy()
            hist += metrics.fast_hist(a.ravel(), b.ravel(), 21)
    agree = metrics.scores(hist)
    record["voc_samples"] = {
        "images": len(dataset), "weights": "random-ish (bench.common.random_net)",
        "mean_iu_vs_labels": {"exact": exact_iu, "bf16_eager": bf16_iu, "difference": bf16_iu - exact_iu},
        "bf16_eager_vs_exact_predictions": {"pixel_acc": agree["pixel_acc"], "mean_iu": agree["mean_iu"]},
    }
    record["peak_rss_mib"] = peak_rss_mib()
    record["machine"] = machine()
    write_json(args.out, record)
    return record


if __name__ == "__main__":
    main()
