"""Weights on disk: training checkpoints (resume), final weights, and initialization from other weights.

Training checkpoint, `<run>/snapshot/iter_<N>.pt` (a `torch.save` dict, tensors on the CPU):
    format, version     "fcn-repro-checkpoint", 1
    iteration           N: the number of solver updates applied
    run                 what must match to resume (experiment, width, effective iter_size, seed, ...)
    net                 the net's state dict
    solver              `CaffeSGD.state_dict()`: iteration, momentum buffers by parameter name, settings
    order               {"seed", "runtime", "position"}: the training order and how many indices
                        of it were drawn; resuming redraws it from the seed and skips `position`
    rng                 {"torch_cpu": [per rank], "torch_cuda": [per rank, list per device, or None]}
    display_losses      the last <= 20 iteration losses (Caffe's `average_loss: 20` window)
    elapsed_seconds     training wall time up to this checkpoint, summed over sessions
Every file is written to a temporary name in the same folder (`.iter_<N>.pt.<pid>.<random>.tmp`),
flushed to disk and moved into place with os.replace, so a checkpoint is either complete or absent;
the temporaries a killed run left behind are removed when the next run starts
(`remove_stale_temporaries`). Every file carries a sha256 of its contents
(`weight_convert.ptfile`), checked on every load (`load_pt`): a file damaged on disk is refused,
naming it. A snapshot is written only when every parameter and solver buffer is finite
(`nonfinite_entries`), so the newest snapshot is always one to go back to after a divergence.
Resuming takes the newest snapshot that verifies (`newest_valid_snapshot`); damaged ones are moved
aside to `iter_<N>.pt.damaged`, not deleted.

`<run>/final.pt` holds the net's state dict only (loadable with `net.load_state_dict`).
Both record what they are (`training_record`: experiment, width, class counts, run directory and
iteration, fcn-repro version and commit; `weight_convert.record`), so `nets.load(path)` rebuilds
the net without being told its width.

Initialization (`load_init`): a `.caffemodel`, a converted `.pt` or our `final.pt` / checkpoint,
copied by Caffe layer name through `weight_convert` (Caffe's `copy_from`, the reference's
surgery); layers the file lacks keep the net's own initialization (score layers zero,
deconvolutions bilinear) and are reported.
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from reproduce.atomic import atomic_file
from weight_convert.ptfile import add_checksum, load_pt

FORMAT, VERSION = "fcn-repro-checkpoint", 1
_SNAPSHOT_RE = re.compile(r"^iter_(\d+)\.pt$")


# ---------------------------------------------------------------------------------------------
# writing and reading
# ---------------------------------------------------------------------------------------------
def save_atomic(obj: Any, path: str | os.PathLike, record: Mapping[str, Any] | None = None) -> Path:
    """`torch.save(obj)` to `path`, with its content checksum (`weight_convert.ptfile`) and
    `record` (what the weights are, `weight_convert.record`), via a temporary file in the same
    folder, fsync and os.replace."""
    with atomic_file(path, "w+b", fsync=True) as f:
        torch.save(obj, f)
        add_checksum(f, record)
    return Path(path)


def training_record(experiment: str, width: float, run_dir: str | os.PathLike, iteration: int) -> dict[str, Any]:
    """The record of a snapshot or final.pt: experiment `experiment`'s net at `width`, from run
    directory `run_dir` after `iteration` updates (and the fcn-repro version and commit)."""
    from weight_convert import record
    return record.make(experiment, width=width, source=record.training_source(run_dir, iteration))


def nonfinite_entries(tensors: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Names of the floating-point tensors in a (nested) mapping that hold an inf or NaN."""
    bad = []
    for k, v in tensors.items():
        if isinstance(v, Mapping):
            bad += nonfinite_entries(v, f"{prefix}{k}.")
        elif isinstance(v, torch.Tensor) and v.is_floating_point() and not bool(torch.isfinite(v).all()):
            bad.append(f"{prefix}{k}")
    return bad


def cpu_state_dict(net: nn.Module) -> dict[str, torch.Tensor]:
    """The net's state dict as CPU tensors (copies, so later updates do not change them)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in net.state_dict().items()}


def snapshot_path(snapshot_dir: str | os.PathLike, iteration: int) -> Path:
    """`<snapshot_dir>/iter_<iteration>.pt`."""
    return Path(snapshot_dir) / f"iter_{int(iteration)}.pt"


def list_snapshots(snapshot_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(iteration, path) of every `iter_<N>.pt` in `snapshot_dir`, oldest first."""
    d = Path(snapshot_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _SNAPSHOT_RE.match(p.name))]
    return sorted(found)


def latest_snapshot(snapshot_dir: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest iteration, or None."""
    found = list_snapshots(snapshot_dir)
    return found[-1][1] if found else None


def prune_snapshots(snapshot_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete all but the newest `keep` checkpoints (keep <= 0: delete none); returns the deleted."""
    if keep <= 0:
        return []
    old = [p for _, p in list_snapshots(snapshot_dir)[:-keep]]
    for p in old:
        p.unlink(missing_ok=True)
    return old


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training checkpoint (onto the CPU), its checksum checked; ValueError naming the file
    if it is not one (DamagedFileError, a ValueError, if its bytes are damaged)."""
    path = Path(path)
    state = load_pt(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not an fcn-repro training checkpoint (no format {FORMAT!r})")
    if state.get("version") != VERSION:
        raise ValueError(f"{path}: checkpoint version {state.get('version')}, this code reads {VERSION}")
    return state


def newest_valid_snapshot(snapshot_dir: str | os.PathLike) -> tuple[Path, dict[str, Any]] | None:
    """(path, state) of the newest checkpoint in `snapshot_dir` that loads and verifies, or None
    when there is no checkpoint at all. Each newer one that does not (damaged, truncated, empty) is
    moved aside to `<name>.damaged` with a warning naming it. ValueError when checkpoints exist
    but none is valid."""
    found = list_snapshots(snapshot_dir)
    bad = []
    for _, path in reversed(found):
        try:
            return path, load_checkpoint(path)
        except ValueError as e:
            aside = path.with_name(path.name + ".damaged")
            os.replace(path, aside)
            warnings.warn(f"{e}; moved aside to {aside.name}, resuming from an older snapshot", stacklevel=2)
            bad.append(aside.name)
    if bad:
        raise ValueError(f"{snapshot_dir}: no valid checkpoint to resume from (damaged, moved aside: "
                         f"{', '.join(bad)}); start again with another --out")
    return None


def remove_stale_temporaries(snapshot_dir: str | os.PathLike) -> list[Path]:
    """Delete the `.iter_<N>.pt.<pid>.*.tmp` files that killed runs left in `snapshot_dir` (only
    those of processes no longer alive); returns them."""
    from weight_convert.writers import remove_stale_temporaries as remove_for
    return [p for _, path in _temporary_targets(snapshot_dir) for p in remove_for(path)]


def _temporary_targets(snapshot_dir: str | os.PathLike) -> list[tuple[str, Path]]:
    d = Path(snapshot_dir)
    if not d.is_dir():
        return []
    names = {m.group(1) for p in d.iterdir() if (m := re.match(r"^\.(iter_\d+\.pt)\..*\.tmp$", p.name))}
    return [(n, d / n) for n in sorted(names)]


def rng_state() -> dict[str, Any]:
    """This process's torch RNG states (CPU, and every CUDA device when CUDA is in use)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return {"torch_cpu": torch.get_rng_state(), "torch_cuda": cuda}


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore `rng_state()`. The CUDA states are one per device visible when they were saved; a resume
    may see fewer (another CUDA_VISIBLE_DEVICES: a job pinned to one GPU, another node) or more, so
    the first min(saved, visible) are restored. (Dropout is re-seeded per image, so no result depends
    on which devices' states come back.)"""
    torch.set_rng_state(state["torch_cpu"])
    cuda = state.get("torch_cuda")
    if cuda is not None and torch.cuda.is_available():
        for index, device_state in enumerate(cuda[:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(device_state, index)


# ---------------------------------------------------------------------------------------------
# initialization from other weights
# ---------------------------------------------------------------------------------------------
@dataclass
class InitReport:
    """What `load_init` did (from the converter's LoadReport).

    loaded: net parameters that were filled; left_at_init: net parameters nothing was copied into
    (they keep the net's own init: score layers zero, deconvolutions bilinear); unused: source
    layers / blobs the net has no place for; surgery: "parameter: what was done" (fc6/fc7 flat
    copies, color-D conv1_1_bgrd).
    """

    sources: list[str] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)
    left_at_init: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    surgery: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"init from {', '.join(self.sources)}: {len(self.loaded)} parameters loaded"]
        if self.left_at_init:
            lines.append(f"  left at their initialization: {', '.join(self.left_at_init)}")
        if self.unused:
            lines.append(f"  in the file(s) but not in the net: {', '.join(self.unused)}")
        lines.extend(f"  surgery: {s}" for s in self.surgery)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"sources": self.sources, "loaded": self.loaded, "left_at_init": self.left_at_init,
                "unused": self.unused, "surgery": self.surgery}


def width_from_records(paths: Sequence[str | os.PathLike], width: float | None) -> float:
    """The trunk width to build a net at that starts from (or resumes) the weight files `paths`:
    `width` when given, else the width their records say (1.0 when none has a record). A given
    width that contradicts a record, or records that disagree, is a RecordMismatchError (a
    ValueError) naming the file and both values."""
    from weight_convert import record
    for path in paths:
        args = record.resolve(record.read(path), path, width=width, check_net=False)
        if args.record is not None:
            width = args.width
    return 1.0 if width is None else float(width)


def load_init(net: nn.Module, paths: Sequence[str | os.PathLike]) -> InitReport:
    """Initialize `net` from one weight file, or two for late fusion (color, then HHA), by Caffe
    layer name and non-strictly, as the reference's solve.py (`copy_from`, `surgery.transplant`).

    Files: a .caffemodel, a converted .pt state dict (`convert-caffe`, our `final.pt`) or an
    fcn-repro training checkpoint (its weights). The copying is `weight_convert.load_caffemodel`
    (one file) / `weight_convert.load_fusion` (two; suffixes "color" / "hha"), which raises
    `WeightMismatchError` naming the layer when a same-named blob cannot be fitted.
    Raises ValueError naming the file(s) when no parameter at all was filled.
    """
    from weight_convert import load_caffemodel, load_fusion

    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"init weights {p} not found")
    sources = [_weights_source(p) for p in paths]
    if len(paths) == 1:
        result = load_caffemodel(net, sources[0], strict=False)
    elif len(paths) == 2:
        result = load_fusion(net, sources[0], sources[1], strict=False)
    else:
        raise ValueError(f"init takes one weight file, or two for late fusion; got {len(paths)}")
    report = InitReport(sources=[str(p) for p in paths], loaded=list(result.transfers),
                        left_at_init=list(result.missing), unused=list(result.dropped),
                        surgery=[f"{k}: {v}" for k, v in result.surgery.items()])
    if not report.loaded:
        raise ValueError(f"{', '.join(map(str, paths))}: no parameter of {getattr(net, 'caffe_name', 'the net')} "
                         "matches by layer name; is it the right file?")
    return report


def _weights_source(path: Path):
    """A path for the converter (.caffemodel), or the layers of a .pt (a state dict, or the net
    state dict inside an fcn-repro training checkpoint), read once with its checksum checked."""
    from weight_convert.sources import OpenedSource, layers_from_state_dict, load_state_dict
    if path.suffix == ".pt":
        state = load_pt(path, mmap=True)
        if isinstance(state, dict) and state.get("format") == FORMAT:
            state = state["net"]
        else:
            state = load_state_dict(path, state)
        return OpenedSource(layers_from_state_dict(state, str(path)), str(path))
    return path
