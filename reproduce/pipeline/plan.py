"""`fcn plan`: the training stages of a table (or of all), what they cost and how N GPUs would run them.

A stage is one `fcn train EXPERIMENT` (a Makefile file target `$(RUNS)/<experiment>/final.pt`).
Its dependencies come from the experiment config's `init` (reproduce/experiments/): an experiment
name is a stage that must finish first (voc-fcn32s -> voc-fcn16s -> voc-fcn8s; the NYUDv2 late
fusion needs both single-stream nets), "vgg16" / "alexnet" / "googlenet" a converted ILSVRC
classifier (no training). tests/test_plan.py checks these against the Makefile's own chains.

Costs, per stage:
- iterations: the solver's max_iter, and images = max_iter x iter_size (batch 1 per image);
- GPU-hours: images x the seconds of one training step of one image, plus the test passes
  (max_iter / test_interval, each test_iter forwards), from the measured step time (`StepTimes`,
  which names its measurement: results/bench/gpu.json when `make bench-gpu` has run, else a stated
  assumption);
- disk: the stage's snapshots (net state + momentum, float32, `keep_snapshots` kept) and final.pt,
  computed from the net's parameter count; the data sets' download sizes where the registry knows
  them (reproduce/datasets/sources.py), and what is on disk under --data-root when it is there.

The order N GPUs run the stages in: list scheduling (whenever a GPU is free it takes the ready
stage, dependencies finished, with the longest chain of work behind it). `make -j N reproduce-all
GPUS=...` lets make pick the order from the same dependency graph (reproduce/pipeline/gpu_slot.py pins each
job to a free GPU); the plan shows what that costs in wall time.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from reproduce.training.init_files import CLASSIFIERS, init_chain, stage_weights

GROUPS: dict[str, tuple[str, ...]] = {
    "voc": ("voc-fcn32s", "voc-fcn16s", "voc-fcn8s", "voc-fcn8s-atonce"),
    "nyud": ("nyud-fcn32s-color", "nyud-fcn32s-hha", "nyud-fcn32s-color-d", "nyud-fcn32s-color-hha",
             "nyud-fcn16s-color-hha"),
    "siftflow": ("siftflow-fcn32s", "siftflow-fcn16s", "siftflow-fcn8s"),
    "context": ("pascalcontext-fcn32s", "pascalcontext-fcn16s", "pascalcontext-fcn8s"),
    "alexnet": ("voc-fcn-alexnet",),
    "googlenet": ("voc-fcn-googlenet",),
}
GROUP_NAMES = (*GROUPS, "all")

#: `fcn data fetch` names each dataset's stages read (the Makefile's *_DATA markers)
DATA_SOURCES: dict[str, tuple[str, ...]] = {
    "voc": ("sbd", "voc2011"), "nyud": ("nyud",), "siftflow": ("siftflow",),
    "pascalcontext": ("voc2010", "pascal-context"),
}
#: ILSVRC classifier an `init` names -> its `fcn data fetch` name (the Makefile's WEIGHT_NAME_*);
#: the one table is reproduce.training.init_files.CLASSIFIERS
INIT_WEIGHTS: dict[str, str] = CLASSIFIERS

#: Typical input size (H, W) of each dataset's training images: the step time is scaled to it by
#: pixel count. VOC and PASCAL-Context: 500 x 375 (landscape, the common VOC size); NYUDv2: the
#: reference's 425 x 560 crops; SIFT Flow: 256 x 256.
TYPICAL_SIZE: dict[str, tuple[int, int]] = {"voc": (375, 500), "pascalcontext": (375, 500), "nyud": (425, 560),
                                            "siftflow": (256, 256)}

#: docs/reference.md: forward time at 500 x 500 on a Tesla K40c (the paper's Table 1), seconds
PAPER_K40_FORWARD_S: dict[str, float] = {"vgg": 0.210, "alexnet": 0.050, "googlenet": 0.059}
DEFAULT_TRAIN_OVER_FORWARD = 3.0  # backward about twice the forward, when no measurement gives the ratio


@dataclass(frozen=True)
class StepTimes:
    """Seconds of one voc-fcn8s training step (batch 1) and one forward at `size` (H, W), where the
    figures come from (`source`), and the assumption they rest on, if any (None: measured on a GPU)."""

    train_s: float
    forward_s: float
    size: tuple[int, int]
    source: str
    assumption: str | None
    #: net -> its step time relative to voc-fcn8s' (from the CPU bench, else the paper's forward times)
    relative: Mapping[str, float] = field(default_factory=dict)
    relative_source: str = ""

    def factor(self, name: str, family: str, streams: int) -> float:
        """The cost of net `name` relative to voc-fcn8s (measured where the bench has it)."""
        if name in self.relative:
            return self.relative[name]
        return PAPER_K40_FORWARD_S[family] / PAPER_K40_FORWARD_S["vgg"] * streams


@dataclass(frozen=True)
class Stage:
    """One training stage and what it costs. Hours are GPU-hours on the StepTimes' device."""

    name: str
    dataset: str
    depends: tuple[str, ...]
    init_weights: tuple[str, ...]  # ILSVRC classifiers converted for it (fcn data fetch names)
    max_iter: int
    iter_size: int
    test_interval: int
    test_iter: int
    train_hours: float
    test_hours: float
    state_bytes: int  # final.pt (float32 state dict)
    snapshot_bytes: int  # one checkpoint: state + momentum of the learnable parameters

    @property
    def images(self) -> int:
        return self.max_iter * self.iter_size

    @property
    def hours(self) -> float:
        return self.train_hours + self.test_hours

    def disk_bytes(self, keep_snapshots: int) -> int:
        return self.state_bytes + self.snapshot_bytes * max(1, keep_snapshots)


@dataclass(frozen=True)
class Slot:
    """Stage `stage` on GPU `gpu` from `start` to `end` hours after the run begins."""

    gpu: int
    stage: str
    start: float
    end: float


@dataclass
class Plan:
    group: str
    stages: list[Stage]
    times: StepTimes
    gpus: int
    schedule: list[Slot]
    data: list[dict]
    keep_snapshots: int

    @property
    def makespan(self) -> float:
        return max((s.end for s in self.schedule), default=0.0)

    def to_dict(self) -> dict:
        return {"group": self.group, "gpus": self.gpus, "keep_snapshots": self.keep_snapshots,
                "step_times": {"train_s": self.times.train_s, "forward_s": self.times.forward_s,
                               "size": list(self.times.size), "source": self.times.source,
                               "assumption": self.times.assumption, "relative_source": self.times.relative_source},
                "stages": [{"name": s.name, "dataset": s.dataset, "depends": list(s.depends),
                            "init_weights": list(s.init_weights), "max_iter": s.max_iter, "iter_size": s.iter_size,
                            "images": s.images, "gpu_hours": s.hours, "train_hours": s.train_hours,
                            "test_hours": s.test_hours, "disk_bytes": s.disk_bytes(self.keep_snapshots)}
                           for s in self.stages],
                "schedule": [vars(s) for s in self.schedule], "makespan_hours": self.makespan,
                "gpu_hours": sum(s.hours for s in self.stages), "data": self.data}


# ---------------------------------------------------------------------------------------------
# stages and dependencies
# ---------------------------------------------------------------------------------------------
def stage_names(group: str) -> list[str]:
    """The experiments of `group` (one of GROUP_NAMES) and every stage they depend on, in an order
    where each stage comes after its dependencies."""
    if group not in GROUP_NAMES:
        raise ValueError(f"unknown group {group!r}: expected one of {', '.join(GROUP_NAMES)}")
    wanted = [n for g in (GROUPS if group == "all" else [group]) for n in GROUPS[g]]
    deps = dependencies()
    out: list[str] = []

    def visit(name: str) -> None:
        for d in deps[name]:
            visit(d)
        if name not in out:
            out.append(name)

    for name in wanted:
        visit(name)
    return out


def dependencies() -> dict[str, tuple[str, ...]]:
    """Every experiment -> the experiments whose final weights it starts from (its config's `init`)."""
    from reproduce import experiments
    out = {}
    for name in experiments.names():
        out[name] = tuple(i for i in init_chain(experiments.get(name)) if i not in INIT_WEIGHTS)
    return out


# ---------------------------------------------------------------------------------------------
# step times
# ---------------------------------------------------------------------------------------------
def _median(record: Mapping | None) -> float | None:
    if isinstance(record, Mapping) and isinstance(record.get("median_s"), (int, float)):
        return float(record["median_s"])
    return None


def _cpu_relative(nets_json: Mapping) -> dict[str, float]:
    """net -> CPU training step time relative to voc-fcn8s' (default build), for every net a measured
    group stands for (bench/plan.py's groups, recorded in nets.json)."""
    train = {}
    for group in nets_json.get("train", []):
        t = _median(group.get("fast")) or _median(group.get("plain"))
        if t:
            for n in [group["net"], *[s[0] for s in group.get("stands_for", [])]]:
                train.setdefault(n, t)
    base = train.get("voc-fcn8s")
    return {n: t / base for n, t in train.items()} if base else {}


def step_times(bench_dir: str | os.PathLike = "results/bench") -> StepTimes:
    """The step times the plan uses, from the bench results under `bench_dir`.

    results/bench/gpu.json (make bench-gpu): voc-fcn8s' exact float32 training step at 500 x 375 on
    that GPU (the real training loop's seconds per iteration when measured, which include any idle
    time), its forward likewise. Without it, an assumption, named in `assumption`: the paper's K40c
    forward time of FCN-VGG16 at 500 x 500 (210 ms), times the training-step / forward ratio measured
    on the CPU (results/bench/nets.json; 3 if absent). Relative costs of the other nets: the CPU
    bench's training steps where measured, else the paper's forward times (AlexNet 50, GoogLeNet
    59 ms, VGG16 210 ms; two-stream nets twice theirs).
    """
    bench = Path(bench_dir)
    nets_json = _read_json(bench / "nets.json") or {}
    relative = _cpu_relative(nets_json)
    relative_source = (f"{bench / 'nets.json'} (CPU training steps at 500x500, relative to voc-fcn8s)"
                       if relative else "the paper's K40c forward times (docs/reference.md), relative to FCN-VGG16")
    gpu = _read_json(bench / "gpu.json")
    if gpu:
        size = gpu.get("sizes", {}).get("500x375", {})
        train = _median(size.get("train_exact"))
        forward = _median(size.get("forward_exact"))
        loop = gpu.get("loop") or {}
        in_loop = isinstance(loop.get("s_per_iteration"), (int, float)) and loop.get("mean_pixels")
        if in_loop:  # the real loop (idle time included), scaled by pixels from its images to 500 x 375
            train = float(loop["s_per_iteration"]) * (375 * 500) / float(loop["mean_pixels"])
        if train and forward:
            what = ("the real training loop's s/iteration, scaled by pixels" if in_loop
                    else "exact fp32 training step")
            return StepTimes(train, forward, (375, 500),
                             f"{bench / 'gpu.json'}: voc-fcn8s at 500x375 on {gpu.get('gpu') or 'the GPU'} ({what})",
                             None, relative, relative_source)
    forward_cpu = train_cpu = None
    for group in nets_json.get("forward", []):
        if group.get("net") == "voc-fcn8s":
            forward_cpu = _median(group.get("fast"))
    for group in nets_json.get("train", []):
        if group.get("net") == "voc-fcn8s":
            train_cpu = _median(group.get("fast"))
    ratio = train_cpu / forward_cpu if train_cpu and forward_cpu else DEFAULT_TRAIN_OVER_FORWARD
    forward = PAPER_K40_FORWARD_S["vgg"]
    where = (f"the training-step / forward ratio {ratio:.2f} measured on the CPU ({bench / 'nets.json'})"
             if train_cpu and forward_cpu else f"an assumed training-step / forward ratio of {ratio:g}")
    assumption = (f"no GPU measurement ({bench / 'gpu.json'} absent: run make bench-gpu on the GPU); ASSUMED: "
                  f"a Tesla K40c, FCN-VGG16's forward at 500x500 taking the paper's 210 ms, a training step "
                  f"{where}")
    return StepTimes(forward * ratio, forward, (500, 500), "assumption (see below)", assumption,
                     relative, relative_source)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


# ---------------------------------------------------------------------------------------------
# the plan
# ---------------------------------------------------------------------------------------------
def _family(name: str) -> str:
    return "alexnet" if "alexnet" in name else "googlenet" if "googlenet" in name else "vgg"


def _net_bytes(name: str) -> tuple[int, int]:
    """(bytes of the float32 state dict, bytes of the learnable parameters) of net `name` at full width."""
    import torch
    import nets
    with torch.device("meta"):
        net = nets.build(name)
    state = sum(t.numel() for t in net.state_dict().values()) * 4
    learnable = sum(p.numel() for p in net.parameters() if p.requires_grad) * 4
    return state, learnable


def init_files(name: str, runs: str | os.PathLike = "runs") -> list[str]:
    """The `--init` files of stage `name` under the runs folder `runs`, as the Makefile names them:
    `<runs>/<stage>/final.pt` for a stage it starts from, `<runs>/init/<name>-from-<classifier>.pt`
    for a converted ILSVRC classifier (tools/slurm/train_stage.sbatch passes these to fcn train)."""
    from reproduce import experiments
    return [str(Path(runs) / "init" / f"{name}-from-{i}.pt") if i in INIT_WEIGHTS else str(stage_weights(Path(runs), i))
            for i in init_chain(experiments.get(name))]


def make_stage(name: str, times: StepTimes) -> Stage:
    """The stage of experiment `name` with its costs under `times`."""
    from reproduce import experiments
    exp = experiments.get(name)
    inits = init_chain(exp)
    deps = tuple(i for i in inits if i not in INIT_WEIGHTS)
    weights = tuple(INIT_WEIGHTS[i] for i in inits if i in INIT_WEIGHTS)
    h, w = TYPICAL_SIZE[exp.dataset]
    pixels = (h * w) / (times.size[0] * times.size[1])
    streams = 2 if len(inits) == 2 or "color-hha" in name else 1
    factor = times.factor(name, _family(name), streams) * pixels
    train_h = exp.max_iter * exp.iter_size * times.train_s * factor / 3600
    passes = -(-exp.max_iter // exp.test_interval)
    forward_factor = PAPER_K40_FORWARD_S[_family(name)] / PAPER_K40_FORWARD_S["vgg"] * streams * pixels
    test_h = passes * exp.test_iter * times.forward_s * forward_factor / 3600
    state, learnable = _net_bytes(name)
    return Stage(name, exp.dataset, deps, weights, exp.max_iter, exp.iter_size, exp.test_interval, exp.test_iter,
                 train_h, test_h, state, state + learnable)


def schedule(stages: Sequence[Stage], gpus: int) -> list[Slot]:
    """List scheduling on `gpus` identical GPUs: a free GPU takes the ready stage (its dependencies
    finished) with the longest chain of work behind it (ties: the plan's order)."""
    if gpus < 1:
        raise ValueError(f"--gpus {gpus}: at least 1")
    by_name = {s.name: s for s in stages}
    children: dict[str, list[str]] = {s.name: [] for s in stages}
    for s in stages:
        for d in s.depends:
            if d in children:
                children[d].append(s.name)
    tail: dict[str, float] = {}

    def chain(n: str) -> float:
        if n not in tail:
            tail[n] = by_name[n].hours + max((chain(c) for c in children[n]), default=0.0)
        return tail[n]

    order = {s.name: i for i, s in enumerate(stages)}
    free = [0.0] * gpus
    done: dict[str, float] = {}
    slots: list[Slot] = []
    pending = [s.name for s in stages]
    while pending:
        g = min(range(gpus), key=lambda i: (free[i], i))
        now = free[g]
        ready = [n for n in pending if all(d in done and done[d] <= now for d in by_name[n].depends if d in by_name)]
        if not ready:  # wait for the earliest-finishing running dependency
            waits = [done[d] for n in pending for d in by_name[n].depends if d in done and done[d] > now]
            free[g] = min(waits)
            continue
        n = max(ready, key=lambda n: (chain(n), -order[n]))
        end = now + by_name[n].hours
        slots.append(Slot(g, n, now, end))
        done[n] = end
        free[g] = end
        pending.remove(n)
    return slots


def data_needs(stages: Iterable[Stage], data_root: str | os.PathLike | None) -> list[dict]:
    """The `fcn data fetch` names the stages need, each with its download size where the registry
    knows it and the size on disk under `data_root` when it is there."""
    from reproduce.datasets.sources import registry
    sources = registry()
    names: list[str] = []
    for s in stages:
        for n in (*DATA_SOURCES[s.dataset], *s.init_weights):
            if n not in names:
                names.append(n)
    out = []
    for n in names:
        src = sources.get(n)
        row = {"name": n, "download_bytes": src.size if src else None,
               "download_approx": src.approx_size if src else None, "on_disk_bytes": None}
        if data_root is not None and src is not None:
            where = Path(data_root) / src.dest
            if where.exists():
                row["on_disk_bytes"] = _du(where)
        out.append(row)
    return out


def _du(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def make_plan(group: str = "all", *, gpus: int = 1, bench_dir: str | os.PathLike = "results/bench",
              data_root: str | os.PathLike | None = None, keep_snapshots: int = 2) -> Plan:
    """The plan of `group` on `gpus` GPUs (see the module docstring)."""
    times = step_times(bench_dir)
    stages = [make_stage(n, times) for n in stage_names(group)]
    return Plan(group, stages, times, gpus, schedule(stages, gpus), data_needs(stages, data_root), keep_snapshots)


# ---------------------------------------------------------------------------------------------
# text
# ---------------------------------------------------------------------------------------------
def _gb(n: int | None) -> str:
    return "?" if n is None else f"{n / 1e9:.1f} GB"


def render(plan: Plan) -> str:
    """The plan as text: stages, data, schedule, and where the step time comes from."""
    t = plan.times
    lines = [f"fcn plan {plan.group} --gpus {plan.gpus}: {len(plan.stages)} training stages",
             "", f"{'stage':24} {'after':44} {'iterations':>14} {'images':>9} {'GPU-h':>8} {'disk':>8}"]
    for s in plan.stages:
        iters = f"{s.max_iter}" + (f" x{s.iter_size}" if s.iter_size > 1 else "")
        after = ", ".join(s.depends) or ("converted " + ", ".join(s.init_weights))
        lines.append(f"{s.name:24} {after:44} {iters:>14} {s.images:>9} {s.hours:8.1f} "
                     f"{_gb(s.disk_bytes(plan.keep_snapshots)):>8}")
    total_disk = sum(s.disk_bytes(plan.keep_snapshots) for s in plan.stages)
    lines.append(f"{'total':24} {'':44} {'':>14} {sum(s.images for s in plan.stages):>9} "
                 f"{sum(s.hours for s in plan.stages):8.1f} {_gb(total_disk):>8}")
    lines += ["", f"disk per stage: final.pt + {plan.keep_snapshots} snapshots (weights and momentum, float32; "
                  f"fcn train --keep-snapshots)", "", "data and weights (fcn data fetch):"]
    for d in plan.data:
        size = _gb(d["download_bytes"]) if d["download_bytes"] else (d["download_approx"] or "size not in the registry")
        disk = f", {_gb(d['on_disk_bytes'])} on disk now" if d["on_disk_bytes"] is not None else ""
        lines.append(f"  {d['name']:16} download {size}{disk}")
    lines += ["", f"order on {plan.gpus} GPU{'s' if plan.gpus != 1 else ''} (list scheduling, dependencies first; "
                  f"hours from the start):"]
    for g in range(plan.gpus):
        mine = [s for s in plan.schedule if s.gpu == g]
        row = "  ".join(f"{s.stage} [{s.start:.0f}-{s.end:.0f} h]" for s in mine) or "(idle)"
        lines.append(f"  GPU {g}: {row}")
    lines.append(f"  wall time {plan.makespan:.1f} h ({plan.makespan / 24:.1f} days)")
    lines += ["", f"step time: {t.train_s * 1000:.0f} ms per training image, {t.forward_s * 1000:.0f} ms per forward "
                  f"(voc-fcn8s, {t.size[1]}x{t.size[0]}), from {t.source}"]
    if t.assumption:
        lines.append(f"  {t.assumption}")
    lines.append(f"  scaled by pixels to each dataset's typical size ({', '.join(f'{k} {w}x{h}' for k, (h, w) in TYPICAL_SIZE.items())}); "
                 f"other nets relative to voc-fcn8s from {t.relative_source}")
    return "\n".join(lines) + "\n"
