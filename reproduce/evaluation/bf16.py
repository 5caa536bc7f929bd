"""The opt-in bf16 mode (`fcn eval --bf16`): bfloat16 autocast and torch.compile. NOT Caffe-exact; off by default.

"fast" in this project means `nets.fast` only: the default path's kernels, exact to float32. This
mode is named for what it does instead (it was `--fast`, in a module named fast, before).

Everything else in fcn-repro computes in float32 as Caffe does (the nets' default kernels, see
`nets.fast`, agree with the plain float32 layers to about 1e-6). This mode trades that for speed:

- bfloat16 autocast (`torch.autocast(device_type, dtype=torch.bfloat16)`): convolutions and
  matrix products in bfloat16 (8-bit mantissa) with float32 accumulation where the kernels do;
  scores differ from the exact path by about 1 % of their range (bench: results/bench/summary.md);
- torch.compile (inductor): fused kernels; the first call on each new input shape compiles
  (tens of seconds on a 2-core CPU), later calls reuse it;
- optionally `freeze=True` (inference of fixed weights only): inductor freezing folds the current
  weights into the compiled graph and prepacks them. Weights changed afterwards are NOT seen,
  so never use it while training or before the weights are loaded.

    >>> from reproduce.evaluation.bf16 import bf16_mode
    >>> runner = bf16_mode(net, freeze=True)   # after loading the weights
    >>> scores = runner(data)                  # float32 outputs, computed in bfloat16

Results produced this way are not comparable to Caffe's to float32 precision; record that they
were made with `--bf16` (`Bf16Net.describe()`, `settings_record`).
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["Bf16Settings", "Bf16Net", "bf16_mode", "settings_record"]


@dataclass(frozen=True)
class Bf16Settings:
    """What `--bf16` turns on. bf16: bfloat16 autocast; compile: torch.compile; freeze: inductor
    freezing (inference of fixed weights only)."""

    bf16: bool = True
    compile: bool = True
    freeze: bool = False


class Bf16Net(nn.Module):
    """Runs a nets module in bf16 mode; outputs are cast back to float32.

    Holds the wrapped net as `.net` (save `.net.state_dict()`, not this module's: the wrapper
    adds a "net." prefix). Copies the attributes the rest of the code reads (inputs,
    crop_offsets, caffe_name, heads).
    """

    def __init__(self, net: nn.Module, settings: Bf16Settings) -> None:
        super().__init__()
        self.net = net
        self.settings = settings
        for attr in ("inputs", "crop_offsets", "caffe_name", "heads"):
            if hasattr(net, attr):
                setattr(self, attr, getattr(net, attr))
        compiled = torch.compile(net) if settings.compile else net
        object.__setattr__(self, "_runner", compiled)  # not a registered submodule: no duplicate state

    def describe(self) -> str:
        """One line for run records, e.g. 'bf16 mode: bf16 autocast, torch.compile (not Caffe-exact)'."""
        parts = [name for name, on in (("bf16 autocast", self.settings.bf16), ("torch.compile", self.settings.compile),
                                       ("inductor freezing", self.settings.freeze)) if on]
        return f"bf16 mode: {', '.join(parts) or 'nothing'} (not Caffe-exact)"

    def forward(self, *inputs: torch.Tensor) -> Any:
        device_type = inputs[0].device.type
        freeze = contextlib.nullcontext()
        if self.settings.freeze and self.settings.compile:
            from torch._inductor import config as inductor_config
            freeze = inductor_config.patch(freezing=True)  # applies to the compile this call may trigger
        with freeze, torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.settings.bf16):
            out = self._runner(*inputs)
        if isinstance(out, dict):
            return {k: v.float() for k, v in out.items()}
        return out.float()


def bf16_mode(net: nn.Module, *, bf16: bool = True, compile: bool = True, freeze: bool = False) -> Bf16Net:
    """Wrap `net` (a `nets.build` module) for the opt-in bf16 mode; see the module docstring.

    The wrapped net keeps its parameters (training through the wrapper updates them, unless
    `freeze`). Call after loading weights when `freeze=True`.
    """
    if freeze and net.training:
        raise ValueError("freeze=True bakes the weights into an inference graph: call net.eval() first "
                         "(and never train through a frozen bf16-mode net)")
    return Bf16Net(net, Bf16Settings(bf16=bf16, compile=compile, freeze=freeze))


def settings_record(runner: nn.Module) -> dict:
    """The bf16-mode settings of `runner` for a run record ({"bf16_mode": False} for a plain net)."""
    if isinstance(runner, Bf16Net):
        return {"bf16_mode": True, **asdict(runner.settings)}
    return {"bf16_mode": False}
