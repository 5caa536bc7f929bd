"""The one place a device name becomes a torch.device: every command's --device and `fcn check-device`.

Names: "auto" (cuda if this machine has a usable CUDA device, else cpu), "cpu", "cuda", "cuda:N".
An unusable name is a DeviceError saying why, raised before anything is loaded or written.
"""
from __future__ import annotations

import re

import torch

NAMES = ("auto", "cpu", "cuda", "cuda:N")
_CUDA_INDEX = re.compile(r"cuda:(\d+)")


class DeviceError(ValueError):
    """A device name that is not one of NAMES, or names a device this machine does not have."""


def cuda_unavailable_reason() -> str | None:
    """Why CUDA cannot be used here (None when it can): a CPU-only torch build, or no GPU found."""
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is built without CUDA"
    if not torch.cuda.is_available():
        return "no CUDA device is visible (driver, CUDA_VISIBLE_DEVICES?)"
    return None


def resolve_device(name: str) -> torch.device:
    """The torch.device for `name` (see NAMES); raises DeviceError naming the problem.

    "cuda" stays un-indexed so that a torchrun process can still pick cuda:<LOCAL_RANK>
    (reproduce.training.distributed); "cuda:N" must name an existing device (0 <= N < device count).
    """
    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda" if cuda_unavailable_reason() is None else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = _CUDA_INDEX.fullmatch(text)
    if text != "cuda" and match is None:
        raise DeviceError(f"device {name!r}: expected one of {', '.join(NAMES)}")
    reason = cuda_unavailable_reason()
    if reason is not None:
        raise DeviceError(f"device {name!r}: CUDA is not available on this machine ({reason}); "
                          f"--device cpu runs on the CPU")
    if match is None:
        return torch.device("cuda")
    index, count = int(match.group(1)), torch.cuda.device_count()
    if index >= count:
        raise DeviceError(f"device {name!r}: this machine has {count} CUDA device{'s' if count != 1 else ''} "
                          f"(cuda:0..cuda:{count - 1})")
    return torch.device("cuda", index)


def describe(device: torch.device) -> str:
    """A short human description: "cpu" or "cuda:0 (NVIDIA H100 80GB HBM3)"."""
    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
