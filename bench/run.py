"""`make bench`: every speed and memory case, each in its own process, side by side with its baseline.

Run: `.venv/bin/python -m bench.run` (8 minutes on the 2-core development machine when it is
otherwise idle; cases still waiting after 540 s are skipped and listed, so that it ends in 10). Writes, under results/bench/:

- nets.json: forward (inference) and training step of the experiment nets at 500 x 500, the
  default build ("fast") and the plain build (NCHW, no prepacking, no fusion) measured in the
  same run, with ratios (bench/case_nets.py, bench/plan.py for which net stands for which);
- eval.json: evaluation throughput, images/s through reproduce.evaluation.evaluate (bench/case_eval.py);
- region.json: the region forward (nets/region.py) against the fast kernels alone and the plain
  build, interleaved in one process: forward medians and ratios, FLOPs computed against nominal,
  evaluation images/s (bench/case_region.py);
- caffe.json: real Caffe's voc-fcn8s forward against ours, alternating, when the oracle chroot is
  built (bench/case_caffe.py; else the reason it did not run);
- train_profile.json / .md: where voc-fcn8s's training step goes (zero_grad, forward, loss,
  backward by layer, the solver update), plain, default and default without the region forward interleaved
  (bench/case_train_profile.py);
- bf16_mode.json: the opt-in bf16 / torch.compile mode against the exact path (bench/case_bf16_mode.py);
- run.json: the machine, the load average, each case's command, wall time and peak RSS,
  including bench.bench_hha and bench.bench_convert (written by their own modules, run here
  when they exist);
- summary.md: all of it as tables.

Peak RSS of a case is its process's ru_maxrss (os.wait4), the whole process: interpreter,
import, build, warm-up and timed runs. Times are medians of several runs after warm-up.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click

from bench import plan
from bench.common import RESULTS, ROOT, machine, write_json, write_text
from bench.summary import write_summary

DEFAULT_BUDGET_S = 540.0  # start no case after this: make bench must end within 10 minutes (longest case ~50 s)


def run_process(module: str, args: list[str], *, timeout_s: float, env: dict | None = None) -> dict:
    """Run `python -m module args` from the repository root; its exit code, wall time, peak RSS, log tail."""
    cmd = [sys.executable, "-m", module, *args]
    with tempfile.TemporaryFile(mode="w+") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - t0
        log.seek(0)
        tail = log.read()[-3000:]
    return {"command": " ".join(["python", "-m", module, *args]), "returncode": proc.returncode,
            "timed_out": wall >= timeout_s, "process_wall_s": wall,
            "process_peak_rss_mib": usage.ru_maxrss / 1024, "log_tail": tail if proc.returncode else ""}


class Bench:
    """Runs the cases in priority order until the time budget is used up."""

    def __init__(self, budget_s: float, tmp: Path) -> None:
        self.t0 = time.perf_counter()
        self.budget_s = budget_s
        self.tmp = tmp
        self.processes: list[dict] = []
        self.skipped: list[str] = []

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def case(self, label: str, module: str, args: list[str], *, timeout_s: float = 420,
             env: dict | None = None, reads_json: bool = True) -> dict | None:
        """Run one case process; its JSON record (with the process facts added), or None."""
        if self.elapsed() > self.budget_s:
            self.skipped.append(label)
            return None
        out = self.tmp / f"{len(self.processes):03d}.json"
        proc = run_process(module, args + (["--out", str(out)] if reads_json else []), timeout_s=timeout_s, env=env)
        proc["label"] = label
        self.processes.append(proc)
        if proc["returncode"] != 0 or not reads_json:
            if proc["returncode"] != 0:
                click.echo(f"\n{label}: exit {proc['returncode']}\n{proc['log_tail']}", err=True)
            return None
        record = json.loads(out.read_text())
        record["process"] = {k: proc[k] for k in ("command", "process_wall_s", "process_peak_rss_mib")}
        return record


def _pair(bench: Bench, what: str, group: plan.Group, runs: int, warmup: int, size: int,
          device: str = "cpu") -> dict:
    out: dict[str, Any] = {"net": group.net, "stands_for": [list(s) for s in group.stands_for], "device": device}
    for variant in ("plain", "fast"):
        out[variant] = bench.case(f"{what} {group.net} {variant} {device}", "bench.case_nets",
                                  ["--net", group.net, "--what", what, "--variant", variant, "--device", device,
                                   "--runs", str(runs), "--warmup", str(warmup), "--size", str(size)])
    if out["plain"] and out["fast"]:
        out["speedup"] = out["plain"]["median_s"] / out["fast"]["median_s"]
        out["cpu_speedup"] = out["plain"]["cpu_median_s"] / out["fast"]["cpu_median_s"]
        out["rss_ratio"] = out["fast"]["process"]["process_peak_rss_mib"] / out["plain"]["process"]["process_peak_rss_mib"]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all-nets", action="store_true", help="measure every experiment net on its own (slow)")
    ap.add_argument("--forward-runs", type=int, default=3)
    ap.add_argument("--train-runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                    help="start no new case after this many seconds")
    ap.add_argument("--skip-others", action="store_true", help="skip bench.bench_hha and bench.bench_convert")
    ap.add_argument("--only", default="", help="comma-separated nets: measure only these (and skip eval / bf16 mode)")
    ap.add_argument("--size", type=int, default=500, help="input height and width of the net cases")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    forward = plan.every_net() if args.all_nets else plan.FORWARD
    train = plan.every_net() if args.all_nets else plan.TRAIN
    only = [n for n in args.only.split(",") if n]
    if only:
        forward = tuple(g for g in forward if g.net in only)
        train = tuple(g for g in train if g.net in only)
    headline = "voc-fcn8s"
    others = [] if args.skip_others else [m for m in ("bench.bench_hha", "bench.bench_convert")
                                          if importlib.util.find_spec(m) is not None]
    results: dict[str, Any] = {"forward": [], "train": []}
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    before = machine()
    with tempfile.TemporaryDirectory(prefix="fcn_bench_") as tmpdir:
        bench = Bench(args.budget_s, Path(tmpdir))
        # Priority order: the headline net, evaluation and bf16 mode, the other benches, the rest.
        steps: list[tuple[str, Any]] = []
        steps += [("forward", g) for g in forward if g.net == headline]
        steps += [("train", g) for g in train if g.net == headline]
        if not only:
            steps += [("region", None), ("eval", None), ("caffe", None), ("train_profile", None), ("bf16_mode", None)]
        steps += [("other", m) for m in others]
        if before["gpu"]:  # the exact path and its plain baseline on the GPU too (TF32 off)
            steps += [("gpu_forward", g) for g in forward if g.net == headline]
            steps += [("gpu_train", g) for g in train if g.net == headline]
        steps += [("forward", g) for g in forward if g.net != headline]
        steps += [("train", g) for g in train if g.net != headline]
        inductor_cache = Path(tmpdir) / "inductor"  # empty: the compile time is a cold one

        def label(step: tuple[str, Any]) -> str:
            kind, item = step
            return f"{kind} {item.net if isinstance(item, plan.Group) else item or ''}".strip()

        with click.progressbar(steps, label="bench", item_show_func=lambda s: label(s) if s else "",
                               file=sys.stderr) as bar:
            for kind, item in bar:
                if kind in ("forward", "train"):
                    runs = args.forward_runs if kind == "forward" else args.train_runs
                    results[kind].append(_pair(bench, kind, item, runs, args.warmup, args.size))
                elif kind in ("gpu_forward", "gpu_train"):
                    what = kind[4:]
                    results.setdefault(kind, []).append(_pair(bench, what, item, 10, 3, args.size, device="cuda"))
                elif kind == "eval":
                    results["eval"] = {v: bench.case(f"eval {v}", "bench.case_eval", ["--variant", v])
                                       for v in ("plain", "fast")}
                elif kind == "region":
                    results["region"] = bench.case("region forward", "bench.case_region", [], timeout_s=420)
                elif kind == "caffe":
                    from bench.case_caffe import caffe_available
                    why = caffe_available()
                    results["caffe"] = {"skipped": why} if why else bench.case(
                        "caffe forward", "bench.case_caffe", [], timeout_s=540)
                elif kind == "train_profile":
                    results["train_profile"] = bench.case("train profile", "bench.case_train_profile",
                                                          ["--runs", "3"], timeout_s=420)
                elif kind == "bf16_mode":
                    results["bf16_mode"] = bench.case("bf16 mode", "bench.case_bf16_mode", [], timeout_s=540,
                                                      env={"TORCHINDUCTOR_CACHE_DIR": str(inductor_cache)})
                else:
                    bench.case(item, item, [], reads_json=False, timeout_s=420)
        total = bench.elapsed()
        processes, skipped = bench.processes, bench.skipped

    ev = results.get("eval") or {}
    if ev.get("plain") and ev.get("fast"):
        ev["speedup"] = ev["fast"]["images_per_s"] / ev["plain"]["images_per_s"]
    run = {"started": started, "machine_before": before, "machine_after": machine(), "total_wall_s": total,
           "budget_s": args.budget_s, "skipped_for_time": skipped,
           "gpu_measured": bool(results.get("gpu_forward") or results.get("gpu_train")),
           "processes": processes}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "nets.json", {k: results[k] for k in ("forward", "train", "gpu_forward", "gpu_train")
                                        if k in results})
    write_json(args.out / "forward.json", forward_times(results))
    write_json(args.out / "eval.json", ev)
    write_json(args.out / "bf16_mode.json", results.get("bf16_mode"))
    if "region" in results:
        write_json(args.out / "region.json", results["region"])
    if results.get("caffe"):
        write_json(args.out / "caffe.json", results["caffe"])
    if "train_profile" in results:
        from bench.case_train_profile import markdown_lines
        write_json(args.out / "train_profile.json", results["train_profile"])
        write_text(args.out / "train_profile.md",
                   "\n".join(["# Training step profile", "", *markdown_lines(results["train_profile"]), ""]))
    write_json(args.out / "run.json", run)
    summary = write_summary(args.out, results, run)
    click.echo(summary)
    click.echo(f"bench: {total:.0f} s; results in {args.out}", err=True)


def forward_times(results: dict) -> dict:
    """Table 1's timing column for `fcn tables`: the default (Caffe-exact) path's median forward
    at 500 x 500 in ms per measured net, on the GPU when one was measured, else the CPU."""
    rows = results.get("gpu_forward") or results.get("forward") or []
    times, device = {}, None
    for row in rows:
        fast = row.get("fast") or {}
        if fast.get("median_s") is None:
            continue
        times[row["net"]] = round(1000 * fast["median_s"], 1)
        machine = fast.get("machine") or {}
        device = fast.get("device_name") or device or f"{machine.get('cpu', 'CPU')} ({machine.get('cores', '?')} cores)"
    return {"device": device, "input": "1x3x500x500, fp32", "forward_ms": times,
            "source": "bench.run (results/bench/nets.json)"}


if __name__ == "__main__":
    main()
