"""Shared pieces of the bench cases: threads, timing, peak memory, random-ish nets, machine facts.

Each case runs in its own process (see bench/run.py), so that its peak RSS is its own.
"""
from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "bench"


def set_threads() -> int:
    """Use every core (2 on the development machine), as a training or evaluation run would."""
    n = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))
    torch.set_num_threads(n)
    return n


def peak_rss_mib() -> float:
    """This process's peak resident set size so far (VmHWM), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmHWM line (not Linux?)")


def timed(fn: Callable[[], Any], *, warmup: int, runs: int, sync: Callable[[], None] = lambda: None) -> dict:
    """Wall and CPU seconds of `runs` calls of fn after `warmup` untimed calls.

    Returns {"wall_s": [...], "cpu_s": [...], "median_s", "min_s", "warmup_s": [...]}. CPU seconds
    are this process's (all its threads); on an idle 2-core machine they are about twice the wall.
    """
    warm = []
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        sync()
        warm.append(time.perf_counter() - t0)
    wall, cpu = [], []
    for _ in range(runs):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        sync()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return {"wall_s": wall, "cpu_s": cpu, "median_s": statistics.median(wall), "min_s": min(wall),
            "cpu_median_s": statistics.median(cpu), "warmup_s": warm}


def machine() -> dict:
    """What the figures were measured on."""
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "mkldnn": torch.backends.mkldnn.is_available(),
            "platform": platform.platform(), "python": platform.python_version(), "gpu": gpu,
            "load_average": list(os.getloadavg())}


def write_json(path: Path, obj: Any) -> None:
    """Write `obj` as JSON atomically (temp file + os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    """Write `text` atomically (temp file + os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# random-ish nets, built quickly
# --------------------------------------------------------------------------------------------
def _fill_periodic_(t: torch.Tensor, block: torch.Tensor, scale: float) -> None:
    """Fill t with a random block repeated (no temporary as large as t), times `scale`."""
    flat = t.view(-1)
    for start in range(0, flat.numel(), block.numel()):
        part = flat[start:start + block.numel()]
        part.copy_(block[:part.numel()]).mul_(scale)


def random_net(name: str, *, fast: bool, seed: int = 0, width: float = 1.0) -> torch.nn.Module:
    """`nets.build(name, fast=fast)` with random-ish weights, in well under a second.

    The weights are He-uniform-scaled (so activations neither vanish nor explode through the
    trunk), the score layers random too (so outputs are not all zero); the bilinear
    deconvolutions and the at-once scales keep their Caffe fills. `nets.build`'s own init
    (PyTorch's kaiming_uniform_ over 134 M weights) takes a few seconds per process, which is
    what this avoids; the speed of the kernels does not depend on the values.
    """
    import nets
    from nets.caffe import Deconvolution, Scale, fill_bilinear_

    with torch.device("meta"):
        net = nets.build(name, fast=fast, width=width)
    net.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(seed)
    block = torch.rand(1 << 20, generator=gen) * 2 - 1
    scales = {"scale_pool4": 0.01, "scale_pool3": 1e-4}  # the reference's at-once fills
    with torch.no_grad():
        for mname, module in net.named_modules():
            if isinstance(module, Deconvolution):
                fill_bilinear_(module.weight)
            elif isinstance(module, Scale):
                module.weight.fill_(scales.get(mname, 1.0))
            elif isinstance(module, torch.nn.Conv2d):
                fan_in = module.weight[0].numel()
                _fill_periodic_(module.weight, block, math.sqrt(6.0 / fan_in))
                if module.bias is not None:
                    _fill_periodic_(module.bias, block, 0.01)
    return net


def inputs_for(net: torch.nn.Module, size: int, *, seed: int = 1) -> list[torch.Tensor]:
    """One Caffe-preprocessed-looking input per net input (1 x C x size x size, BGR minus mean)."""
    gen = torch.Generator().manual_seed(seed)
    channels = 4 if getattr(net, "caffe_name", "") == "nyud-fcn32s-color-d" else 3
    return [(torch.rand(1, channels, size, size, generator=gen) * 255 - 120) for _ in net.inputs]
