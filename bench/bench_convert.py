"""Converter speed and memory on a full-size VGG16-shaped V1 caffemodel (~528 MB).

Run: `.venv/bin/python -m bench.bench_convert [--runs 5] [--cache DIR]`. Writes
results/bench/convert.json and results/bench/convert.md.

- The input is generated once with the project's caffemodel writer (weight_convert.caffe_writer,
  the layers of `fcn smoke vgg16` at full width: reproduce.pipeline.smoke.vgg16_layers; VGG16 layout as in
  VGG_ILSVRC_16_layers: conv1_1..conv5_3, fc6 4096x25088, fc7 4096x4096, fc8 1000x4096, V1
  `layers` with legacy 4-D blob shapes, random weights) into a cache directory outside the
  repository (default ~/.cache/fcn-repro/bench, or $FCN_BENCH_CACHE), and reused afterwards.
- Page cache: caches cannot be dropped here, so the file is read once first and every figure is
  a warm-cache figure (reads come from memory, not disk). Both sides of the ratio are warm.
- Plain read: `open(path, "rb").read()` (the whole file into a new bytes object), median of N.
  For reference also a chunked `readinto` of a reused 16 MiB buffer (page-cache bandwidth only).
- Convert: `weight_convert.convert(src, dst.pt, net_name="voc-fcn32s", from_name="vgg16")` in
  this process (fc6/fc7 surgery, fc8 dropped, score_fr/upscore at init), median of N after one
  warm-up run, output on the same file system as the cache; and the `convert-caffe` command end
  to end (interpreter and torch start-up included).
- For comparison: the same conversion without `os.copy_file_range` (the portable path), and
  `load_caffemodel` into an already built full-size net (the in-memory path training uses).
- Peak RSS: `ru_maxrss` of a child process that does one conversion (RUSAGE_CHILDREN, read in an
  intermediate process so that only that child counts), against the file size; also the floor
  (a child that only imports torch, nets and weight_convert) and, for comparison, the in-memory
  path (build the net, `load_caffemodel`, `torch.save`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "bench"
GOAL_TIME_RATIO = 1.5
GOAL_RSS_RATIO = 1.3
GENERATOR_VERSION = 2  # bump when the generated file's content changes (2: the project's writer)


def cache_dir(arg: str | None) -> Path:
    base = arg or os.environ.get("FCN_BENCH_CACHE") or Path.home() / ".cache" / "fcn-repro" / "bench"
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def vgg16_file(cache: Path) -> Path:
    """The full-size VGG16-shaped V1 caffemodel, generated on first use (takes ~10 s)."""
    path = cache / f"vgg16_v1_full_g{GENERATOR_VERSION}.caffemodel"
    if path.exists():
        return path
    # The project's writer, not tests/caffe_encoder.py: the tests keep that independent encoder
    # to check the reader against; a benchmark only needs a well-formed file.
    from reproduce.pipeline.smoke import vgg16_layers
    from weight_convert.caffe_writer import write_caffemodel

    print(f"generating {path} (once) ...", flush=True)
    return write_caffemodel(path, "VGG_ILSVRC_16_layers", vgg16_layers(1.0, seed=0), version=1)  # atomic


def median_time(fn, runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def plain_read(path: Path) -> None:
    with open(path, "rb") as f:
        data = f.read()
    del data


def chunked_read(path: Path, buf: bytearray) -> None:
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(view):
            pass


CHILD = """
import resource, subprocess, sys
subprocess.run([sys.executable, "-c", sys.argv[1]], check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def child_peak_rss(code: str) -> int:
    """Peak RSS in bytes of a fresh Python process running ``code`` (Linux: ru_maxrss is in KiB)."""
    out = subprocess.run([sys.executable, "-c", CHILD, code], check=True, capture_output=True,
                         text=True, cwd=ROOT)
    return int(out.stdout.split()[-1]) * 1024


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cache", default=None, help="where the generated caffemodel is kept")
    args = parser.parse_args(argv)

    cache = cache_dir(args.cache)
    src = vgg16_file(cache)
    size = src.stat().st_size
    load_before = os.getloadavg()[0]

    from weight_convert import convert, read_net

    plain_read(src)  # warm the page cache: every figure below is a warm-cache figure
    read_s, read_all = median_time(lambda: plain_read(src), args.runs)
    buf = bytearray(1 << 24)
    chunk_s, _ = median_time(lambda: chunked_read(src, buf), args.runs)
    parse_s, _ = median_time(lambda: read_net(src), args.runs)

    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        dst = Path(tmp) / "voc-fcn32s.pt"

        def timed_convert() -> float:
            """One conversion to a new file (as a user's would be), timed; the file is removed
            afterwards, outside the timing (deleting 500 MB is not part of converting)."""
            out = Path(tmp) / "fresh.pt"
            t0 = time.perf_counter()
            convert(src, out, net_name="voc-fcn32s", from_name="vgg16")
            elapsed = time.perf_counter() - t0
            out.unlink()
            return elapsed

        first_s = timed_convert()
        convert_all = [timed_convert() for _ in range(args.runs)]
        convert_s = statistics.median(convert_all)
        kernel_copy = os.__dict__.pop("copy_file_range", None)  # the portable path, for comparison
        try:
            portable_s = statistics.median(timed_convert() for _ in range(args.runs))
        finally:
            if kernel_copy is not None:
                os.copy_file_range = kernel_copy

        import nets
        from weight_convert import load_caffemodel

        net = nets.build("voc-fcn32s")
        load_s, _ = median_time(lambda: load_caffemodel(net, src, strict=False), args.runs)
        del net
        convert(src, dst, net_name="voc-fcn32s", from_name="vgg16")
        out_size = dst.stat().st_size
        verified = verify(src, dst)

        exe = Path(sys.executable).with_name("convert-caffe")
        cli_dst = Path(tmp) / "cli.pt"
        t0 = time.perf_counter()
        subprocess.run([str(exe), str(src), str(cli_dst), "--net", "voc-fcn32s", "--from", "vgg16"],
                       check=True, capture_output=True)
        cli_s = time.perf_counter() - t0
        cli_dst.unlink()

        floor_rss = child_peak_rss("import torch, nets, weight_convert")
        convert_rss = child_peak_rss(
            f"from weight_convert import convert; convert({str(src)!r}, {str(Path(tmp) / 'rss.pt')!r}, "
            "net_name='voc-fcn32s', from_name='vgg16')")
        inmemory_rss = child_peak_rss(
            "import torch, nets; from weight_convert import load_caffemodel; "
            "net = nets.build('voc-fcn32s'); "
            f"load_caffemodel(net, {str(src)!r}, strict=False); "
            f"torch.save(net.state_dict(), {str(Path(tmp) / 'inmemory.pt')!r})")

    result = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version(), "load_avg_1min_before": round(load_before, 2),
                    "load_avg_1min_after": round(os.getloadavg()[0], 2)},
        "input": {"path": str(src), "bytes": size, "layout": "VGG16 V1 (legacy 4-D blobs), random weights",
                  "page_cache": "warm (read once before timing; caches cannot be dropped here)"},
        "runs": args.runs,
        "plain_read_s": round(read_s, 4), "plain_read_all_s": [round(t, 4) for t in read_all],
        "chunked_readinto_s": round(chunk_s, 4),
        "parse_s": round(parse_s, 5),
        "convert_s": round(convert_s, 4), "convert_all_s": [round(t, 4) for t in convert_all],
        "convert_first_run_s": round(first_s, 4),
        "convert_without_copy_file_range_s": round(portable_s, 4),
        "load_caffemodel_into_built_net_s": round(load_s, 4),
        "convert_cli_end_to_end_s": round(cli_s, 3),
        "output_bytes": out_size, "output_verified_equal": verified,
        "time_ratio_vs_plain_read": round(convert_s / read_s, 3),
        "time_ratio_vs_chunked_readinto": round(convert_s / chunk_s, 3),
        "peak_rss_convert_bytes": convert_rss,
        "peak_rss_floor_bytes": floor_rss,
        "peak_rss_inmemory_path_bytes": inmemory_rss,
        "rss_ratio_vs_file": round(convert_rss / size, 3),
        "rss_above_floor_ratio_vs_file": round((convert_rss - floor_rss) / size, 3),
        "goals": {"time_ratio_max": GOAL_TIME_RATIO, "rss_ratio_max": GOAL_RSS_RATIO},
    }
    result["goals"]["time_met"] = result["time_ratio_vs_plain_read"] <= GOAL_TIME_RATIO
    result["goals"]["rss_met"] = result["rss_ratio_vs_file"] <= GOAL_RSS_RATIO
    write_results(result)
    print((OUT / "convert.md").read_text())
    return result


def verify(src: Path, dst: Path) -> bool:
    """DST holds exactly voc-fcn32s's parameters, and each of the 30 that come from the source
    (13 convs + fc6 + fc7, weight and bias) equals its blob in memory order (fc6/fc7 flat-copied)."""
    import numpy as np
    import torch

    from weight_convert import read_caffemodel
    from weight_convert.convert import build_net

    blobs = {layer.name: layer.blobs for layer in read_caffemodel(src)}
    state = torch.load(dst, weights_only=True, mmap=True)
    if set(state) != set(build_net("voc-fcn32s", 1.0, meta=lambda name: True)[0]):
        return False
    checked = 0
    for key, tensor in state.items():
        layer, _, attr = key.rpartition(".")
        if layer in blobs:
            expected = blobs[layer][0 if attr == "weight" else 1]
            if not np.array_equal(tensor.numpy().reshape(-1), expected.reshape(-1)):
                return False
            checked += 1
    return checked == 30


def write_results(result: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    mib = 1 << 20
    r = result
    lines = [
        "# Converter benchmark",
        "",
        f"`.venv/bin/python -m bench.bench_convert` on {r['machine']['cpus']} CPU(s), {r['machine']['platform']}; "
        f"1-minute load average {r['machine']['load_avg_1min_before']} before, {r['machine']['load_avg_1min_after']} after "
        "(other work on the machine inflates wall times).",
        "",
        f"Input: generated full-size VGG16-shaped V1 caffemodel, {r['input']['bytes'] / mib:.1f} MiB "
        f"({r['input']['bytes']} bytes). Page cache **warm** for every figure (the file is read once first; "
        "caches cannot be dropped here). Medians of "
        f"{r['runs']} runs.",
        "",
        "| What | Figure | Goal |",
        "|---|---|---|",
        f"| Plain read, `open(path, 'rb').read()` | {r['plain_read_s']:.3f} s | |",
        f"| Chunked `readinto` of a reused 16 MiB buffer (page-cache bandwidth only) | {r['chunked_readinto_s']:.3f} s | |",
        f"| Parse only (`read_net`: memory-map + decode, no copy) | {r['parse_s'] * 1000:.1f} ms | |",
        f"| Convert to voc-fcn32s .pt (`convert(..., from_name='vgg16')`, in process, after one warm-up) | "
        f"{r['convert_s']:.3f} s (first run {r['convert_first_run_s']:.3f} s) | |",
        f"| **Convert time / plain read** | **{r['time_ratio_vs_plain_read']:.2f}x** "
        f"({r['time_ratio_vs_chunked_readinto']:.1f}x the chunked readinto) | <= {GOAL_TIME_RATIO}x |",
        f"| Same, without `os.copy_file_range` (portable path: chunked `pwrite` from the memory map) | "
        f"{r['convert_without_copy_file_range_s']:.3f} s ({r['convert_without_copy_file_range_s'] / r['plain_read_s']:.2f}x the plain read) | |",
        f"| `load_caffemodel` into an already built full-size voc-fcn32s (in memory, `os.preadv` into the parameters) | "
        f"{r['load_caffemodel_into_built_net_s']:.3f} s | |",
        f"| `convert-caffe SRC DST --net voc-fcn32s --from vgg16`, end to end (Python + torch start-up included) | "
        f"{r['convert_cli_end_to_end_s']:.2f} s | |",
        f"| Peak RSS of a process doing one conversion | {r['peak_rss_convert_bytes'] / mib:.0f} MiB | |",
        f"| **Peak RSS / file size** | **{r['rss_ratio_vs_file']:.2f}x** | <= {GOAL_RSS_RATIO}x |",
        f"| Floor: a process that only imports torch, nets, weight_convert | {r['peak_rss_floor_bytes'] / mib:.0f} MiB "
        f"(conversion adds {r['rss_above_floor_ratio_vs_file']:.2f}x the file size) | |",
        f"| For comparison, in-memory path (build net, `load_caffemodel`, `torch.save`) | "
        f"{r['peak_rss_inmemory_path_bytes'] / mib:.0f} MiB ({r['peak_rss_inmemory_path_bytes'] / r['input']['bytes']:.2f}x) | |",
        f"| Output | {r['output_bytes'] / mib:.1f} MiB, every tensor equal to its source blob: {r['output_verified_equal']} | |",
        "",
    ]
    for name, text in (("convert.json", json.dumps(result, indent=2) + "\n"), ("convert.md", "\n".join(lines))):
        tmp = OUT / f"{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, OUT / name)


if __name__ == "__main__":
    main()
