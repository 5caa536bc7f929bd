"""results/bench/summary.md: the bench figures as tables, each with its ratio to the baseline."""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

GIB = 1024.0
#: The issue's goals for voc-fcn8s at 1 x 3 x 500 x 500, fp32, on the 2-core development machine.
GOALS = {"forward_s": 1.80, "forward_speedup": 1.3, "train_s": 6.5, "forward_rss_mib": 1.3 * GIB,
         "train_rss_mib": 3.0 * GIB,
         # the region forward's (issue "Faster than the FLOP floor"): ratios within one make bench run
         "region_over_plain": 0.55, "default_over_caffe": 0.5, "train_over_plain": 0.75}


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _mib(rec: dict | None) -> float | None:
    return None if not rec else rec["process"]["process_peak_rss_mib"]


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def _i(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def _stands(row: dict) -> str:
    return ", ".join(f"{n} ({why})" for n, why in row.get("stands_for", [])) or "-"


def contended(rec: dict | None) -> bool:
    """Whether a case shared the cores with other work: its CPU time fell well below threads x wall."""
    if not rec or rec.get("device", "cpu") != "cpu" or rec.get("threads", 1) < 2:
        return False
    return rec["cpu_median_s"] < 0.75 * rec["threads"] * rec["median_s"]


def _t(rec: dict | None) -> str:
    return "-" if not rec else _s(rec["median_s"]) + (" †" if contended(rec) else "")


def _net_table(rows: list[dict]) -> list[str]:
    out = ["| net (measured) | default s | plain s | speed-up | default CPU s | plain CPU s "
           "| default peak RSS MiB | plain peak RSS MiB | RSS ratio | also stands for |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        f, p = r.get("fast"), r.get("plain")
        out.append(f"| {r['net']} | {_t(f)} | {_t(p)} "
                   f"| {_ratio(p and p['median_s'], f and f['median_s'])} "
                   f"| {_s(f and f['cpu_median_s'])} | {_s(p and p['cpu_median_s'])} "
                   f"| {_i(_mib(f))} | {_i(_mib(p))} | {_ratio(_mib(f), _mib(p))} | {_stands(r)} |")
    return out


def _coverage(results: dict) -> list[str]:
    import nets
    lines = []
    for kind, title in (("forward", "Forward"), ("train", "Training step")):
        measured = {r["net"] for r in results.get(kind, [])}
        stood = {n for r in results.get(kind, []) for n, _ in r.get("stands_for", [])}
        missing = [n for n in nets.names() if n not in measured | stood]
        lines.append(f"- {title}: {len(measured)} nets measured, {len(stood)} more stood for by a measured net "
                     "(last column: how they differ)" + (f"; not covered: {', '.join(missing)}" if missing else "")
                     + ".")
    return lines


def _goal_lines(results: dict) -> list[str]:
    fwd = next((r for r in results["forward"] if r["net"] == "voc-fcn8s"), None)
    trn = next((r for r in results["train"] if r["net"] == "voc-fcn8s"), None)
    lines = ["| goal (voc-fcn8s, 1x3x500x500, fp32) | target | measured | met |", "|---|---:|---:|---|"]

    def row(what: str, target: str, value: float | None, ok: bool | None, fmt: str = "{:.2f}") -> None:
        lines.append(f"| {what} | {target} | {'-' if value is None else fmt.format(value)} "
                     f"| {'-' if ok is None else ('yes' if ok else 'NO')} |")

    f = fwd and fwd.get("fast")
    t = trn and trn.get("fast")
    row("forward, median s", f"<= {GOALS['forward_s']}", f and f["median_s"], f and f["median_s"] <= GOALS["forward_s"])
    sp = fwd and fwd.get("speedup")
    row("forward speed-up over the plain build", f">= {GOALS['forward_speedup']}x", sp,
        None if sp is None else sp >= GOALS["forward_speedup"], "{:.2f}x")
    row("training step, median s", f"<= {GOALS['train_s']}", t and t["median_s"], t and t["median_s"] <= GOALS["train_s"])
    row("forward peak RSS, MiB", f"<= {GOALS['forward_rss_mib']:.0f} (1.3 GiB)", _mib(f),
        None if not f else _mib(f) <= GOALS["forward_rss_mib"], "{:.0f}")
    row("training step peak RSS, MiB", f"<= {GOALS['train_rss_mib']:.0f} (3 GiB)", _mib(t),
        None if not t else _mib(t) <= GOALS["train_rss_mib"], "{:.0f}")
    reg = (results.get("region") or {}).get("forward")
    v = reg and reg["region_over_plain"]
    row("forward, default / plain build (region section)", f"<= {GOALS['region_over_plain']}x", v,
        None if v is None else v <= GOALS["region_over_plain"], "{:.2f}x")
    v = (results.get("caffe") or {}).get("default_over_caffe")
    row("forward, default / real Caffe (Caffe section)", f"< {GOALS['default_over_caffe']}x", v,
        None if v is None else v < GOALS["default_over_caffe"], "{:.2f}x")
    p = trn and trn.get("plain")
    v = t and p and t["median_s"] / p["median_s"]
    row("training step, default / plain build", f"<= {GOALS['train_over_plain']}x", v,
        None if v is None else v <= GOALS["train_over_plain"], "{:.2f}x")
    ev = (results.get("region") or {}).get("eval")
    v = ev and ev["region_over_plain"]
    want = 1 / GOALS["region_over_plain"]  # up by the forward goal's factor
    row("evaluation images/s, default / plain build (region section)", f">= {want:.2f}x", v,
        None if v is None else v >= want, "{:.2f}x")
    return lines


def _bf16_mode_lines(fm: dict | None) -> list[str]:
    if not fm:
        return ["Not measured (the case failed or was skipped for time; see run.json)."]
    d = fm["default_vs_plain"]
    lines = [f"voc-fcn8s, {fm['input']}, random-ish weights. Exactness of the default path: max |default - plain| "
             f"/ max |plain| = {d['max_rel_diff']:.1e} (argmax agreement {100 * d['argmax_agreement']:.3f} %).", "",
             "| path | first call s | median s | speed-up vs exact | max abs logit diff | relative to max abs logit "
             "| argmax agreement |", "|---|---:|---:|---:|---:|---:|---:|"]
    exact = fm["exact"]["median_s"]
    lines.append(f"| exact (default fp32 path) | - | {exact:.2f} | 1.00x | 0 | 0 | 100 % |")
    for key, name in (("bf16_eager", "--bf16: bf16 autocast, eager"),
                      ("bf16_compile_freeze", "--bf16: bf16 autocast + torch.compile + freezing")):
        r = fm.get(key)
        if r:
            lines.append(f"| {name} | {r['first_call_s']:.1f} | {r['median_s']:.2f} | {exact / r['median_s']:.2f}x "
                         f"| {r['max_abs_diff']:.3g} | {r['max_rel_diff']:.2%} | {100 * r['argmax_agreement']:.2f} % |")
    v = fm.get("voc_samples")
    if v:
        a = v["bf16_eager_vs_exact_predictions"]
        m = v["mean_iu_vs_labels"]
        lines += ["", f"On the {v['images']} VOC sample images (bf16 eager against exact, {v['weights']} weights): "
                  f"the bf16 mode's argmax scored against the exact path's argmax gives pixel accuracy "
                  f"{a['pixel_acc']:.2f} %, mean IU {a['mean_iu']:.2f} %. Mean IU against the labels: exact "
                  f"{m['exact']:.2f} %, bf16 {m['bf16_eager']:.2f} %, difference {m['difference']:+.2f} points "
                  "(with random weights both are meaningless; real weights are not available in this repository)."]
    if "bf16_compile_freeze" in fm:
        c = fm["bf16_compile_freeze"]
        saved = fm["exact"]["median_s"] - c["median_s"]
        lines += ["", f"torch.compile's first call (cold inductor cache) took {c['first_call_s']:.1f} s, which the "
                  f"{saved:.2f} s it saves per forward repays after {c['first_call_s'] / saved:.0f} forwards at that "
                  "size; each new input shape compiles again, so it pays off for training or evaluation at one "
                  "fixed size, not for a few images of varying size."]
    lines += ["", f"Peak RSS of the bf16-mode case process (exact, plain and both bf16 settings, compile "
              f"included): {fm['peak_rss_mib']:.0f} MiB."]
    return lines


def region_lines(r: dict | None) -> list[str]:
    """The region forward's section: plain / fast kernels / region, one process, interleaved."""
    if not r:
        return ["Not measured (the case failed or was skipped for time; see run.json)."]
    f, m = r["forward"], r["machine_before"]
    med = f["median_s"]
    lines = [f"{f['net']}, {f['input'].replace('?', '3')}, fp32, random-ish weights; the three variants in one "
             f"process, interleaved run by run ({f['runs']} runs each, medians; load average before "
             f"{', '.join(f'{x:.2f}' for x in m['load_average'])}, after "
             f"{', '.join(f'{x:.2f}' for x in r['machine_after']['load_average'])}). **plain** = "
             "`nets.build(name, fast=False)`; **fast** = `nets.build(name, region=False)` (the kernels of "
             "nets/fast.py alone); **region** = `nets.build(name)`, the default: each trunk layer only where "
             "it depends on the image (nets/region.py).", "",
             "| path | median s | vs plain | GFLOP computed |", "|---|---:|---:|---:|",
             f"| plain | {med['plain']:.2f} | 1.00x | {f['gflop_nominal']:.0f} (nominal) |",
             f"| fast | {med['fast']:.2f} | {f['fast_over_plain']:.2f}x | {f['gflop_nominal']:.0f} |",
             f"| region | {med['region']:.2f} | {f['region_over_plain']:.2f}x | {f['gflop_region']:.0f} |", "",
             f"Region against fast: {f['region_over_fast']:.2f}x. First region call at this size (geometry and "
             f"background from the weights, then cached): {f['first_region_call_s']:.2f} s. Exactness: "
             f"max |region - plain| / max |plain| = {f['max_rel_diff_region_plain']:.1e}."]
    ev = r.get("eval")
    if ev:
        ips = ev["images_per_s"]
        lines += ["", f"Evaluation ({ev['dataset']}, `reproduce.evaluation.evaluate`, {ev['runs']} passes each, interleaved): "
                  f"plain {ips['plain']:.2f}, fast {ips['fast']:.2f}, region {ips['region']:.2f} images/s "
                  f"(region {ev['region_over_plain']:.2f}x the plain build's throughput)."]
    return lines


def render(results: dict, run: dict) -> str:
    m = run["machine_before"]
    when = run.get("started") or _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        "# Speed and memory (`make bench`)", "",
        f"Measured {when} on {m['cpu']} ({m['cores']} cores, torch {m['torch']}, {m['torch_threads']} threads, "
        f"oneDNN {'on' if m['mkldnn'] else 'off'}); `make bench` took {run['total_wall_s']:.0f} s. "
        f"Load average (1, 5, 15 min) before: {', '.join(f'{x:.2f}' for x in m['load_average'])}; after: "
        f"{', '.join(f'{x:.2f}' for x in run['machine_after']['load_average'])}. Other work on the machine "
        "slows every figure; the ratios compare cases measured in the same run, one after the other.", "",
        "**default** = `nets.build(name)` (the Caffe-exact fp32 path with the fast kernels of `nets/fast.py`, "
        "and for inference the region forward of `nets/region.py`); "
        "**plain** = `nets.build(name, fast=False)` (NCHW, every layer its torch.nn module, no prepacking, "
        "no fusion), the baseline. Times: median of several runs after one warm-up; CPU s: process CPU time "
        "(about 2x wall on an idle 2-core machine). Peak RSS: the case process's ru_maxrss (import, build, "
        "warm-up and runs). Input 1 x C x 500 x 500 (two inputs for late fusion, 4 channels for color-D).", "",
        "A net whose trunk and layers are those of a measured net, differing only in class counts (which "
        "change the 1x1 score layers and the bilinear deconvolutions) or in the detail named, is not measured "
        "again, to keep `make bench` within 10 minutes; `python -m bench.run --all-nets` measures each one.",
        *_coverage(results), "",
        "## Goals", "", *_goal_lines(results), "",
        "## Forward (inference, `torch.inference_mode()`)", "", *_net_table(results["forward"]), "",
        "## Training step (one image: zero_grad, forward in TRAIN phase, SoftmaxWithLoss, backward, CaffeSGD step)",
        "", *_net_table(results["train"]), "",
    ]
    rows = [r.get(v) for k in ("forward", "train") for r in results.get(k, []) for v in ("fast", "plain")]
    if any(contended(r) for r in rows):
        lines += ["† The case shared the cores with other work (its CPU time is well below 2 x its wall time), "
                  "so its wall time and the speed-up on its row are not a clean measurement; the CPU-time "
                  "columns are less affected. Re-run `python -m bench.run --only <net>` on an idle machine.", ""]
    for key, title in (("gpu_forward", "GPU forward"), ("gpu_train", "GPU training step")):
        if results.get(key):
            dev = (results[key][0].get("fast") or {}).get("device_name")
            lines += [f"## {title} ({dev}, TF32 off)", "", *_net_table(results[key]), ""]
    if not m.get("gpu"):
        lines += ["## GPU", "", "No GPU was available in this session: no GPU figures were measured. On CUDA the "
                  "nets switch TF32 off for convolutions and matmuls (`nets.fast.exact_cuda_math`), and "
                  "`bench.run` adds GPU forward and training-step cases for voc-fcn8s when a GPU is present.", ""]
    lines += ["## Region forward (`nets/region.py`)", "", *region_lines(results.get("region")), ""]
    if "caffe" in results:
        from bench.case_caffe import markdown_lines as caffe_lines
        lines += ["## Against real Caffe (`bench/case_caffe.py`)", "", *caffe_lines(results.get("caffe")), ""]
    if "train_profile" in results:
        from bench.case_train_profile import markdown_lines
        lines += ["## Training step profile (`bench/case_train_profile.py`)", "",
                  *markdown_lines(results.get("train_profile")), ""]
    ev = results.get("eval") or {}
    lines += ["## Evaluation throughput (`reproduce.evaluation.evaluate`, data loading and metrics included)", ""]
    if ev.get("fast") and ev.get("plain"):
        f, p = ev["fast"], ev["plain"]
        lines += ["| net | data | default images/s | plain images/s | speed-up | default peak RSS MiB | plain peak RSS MiB |",
                  "|---|---|---:|---:|---:|---:|---:|",
                  f"| {f['net']} | {f['dataset']} | {f['images_per_s']:.2f} | {p['images_per_s']:.2f} "
                  f"| {f['images_per_s'] / p['images_per_s']:.2f}x | {_mib(f):.0f} | {_mib(p):.0f} |"]
    else:
        lines += ["Not measured (the case failed or was skipped for time; see run.json)."]
    lines += ["", "## Opt-in bf16 mode (`reproduce/evaluation/bf16.py`, `fcn eval --bf16`, not Caffe-exact)", "", *_bf16_mode_lines(results.get("bf16_mode")), ""]
    others = [p for p in run["processes"] if p["label"].startswith("bench.bench_")]
    if others:
        lines += ["## Other benches (their own modules and results files)", "",
                  "| module | exit | wall s | peak RSS MiB | results |", "|---|---:|---:|---:|---|"]
        for p in others:
            name = p["label"].split("_", 1)[1]
            files = sorted(f.name for f in Path(run.get("out_dir", "results/bench")).glob(f"{name}*"))
            lines.append(f"| {p['label']} | {p['returncode']} | {p['process_wall_s']:.1f} "
                         f"| {p['process_peak_rss_mib']:.0f} | {', '.join(files) or '-'} |")
        lines.append("")
    if run.get("skipped_for_time"):
        lines += ["## Skipped for time", "", "Not run because the time budget "
                  f"({run['budget_s']:.0f} s) was used up: " + ", ".join(run["skipped_for_time"]) + ".", ""]
    lines += ["Per-case records, commands and logs: nets.json, eval.json, region.json, caffe.json, train_profile.json, "
              "bf16_mode.json, run.json.", ""]
    return "\n".join(lines)


def write_summary(out_dir: Path, results: dict[str, Any], run: dict) -> str:
    """Render summary.md into out_dir (atomically); return its text."""
    run = {**run, "out_dir": str(out_dir)}
    text = render(results, run)
    tmp = out_dir / f".summary.md.{os.getpid()}.tmp"
    tmp.write_text(text)
    os.replace(tmp, out_dir / "summary.md")
    return text


def load_results(out_dir: Path) -> tuple[dict[str, Any], dict]:
    """The results and run record that `bench.run` wrote into out_dir, read back from its files
    (nets.json, eval.json, region.json, train_profile.json, bf16_mode.json, run.json)."""
    import json

    def read(name: str) -> Any:
        path = out_dir / name
        return json.loads(path.read_text()) if path.is_file() else None

    results: dict[str, Any] = dict(read("nets.json") or {})
    for key, name in (("eval", "eval.json"), ("region", "region.json"), ("caffe", "caffe.json"),
                      ("train_profile", "train_profile.json"),
                      ("bf16_mode", "bf16_mode.json")):
        value = read(name)
        if value is not None:
            results[key] = value
    run = read("run.json")
    if run is None:
        raise FileNotFoundError(f"{out_dir / 'run.json'}: no bench run recorded there (run make bench)")
    return results, run


if __name__ == "__main__":  # python -m bench.summary [DIR]: summary.md again from DIR's files
    import sys
    directory = Path(sys.argv[1] if len(sys.argv) > 1 else "results/bench")
    write_summary(directory, *load_results(directory))
    print(f"wrote {directory / 'summary.md'}")
