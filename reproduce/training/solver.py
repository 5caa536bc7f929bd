"""Caffe's SGD solver (`SGDSolver::ApplyUpdate`), step for step, with Caffe's learning-rate policies.

For every parameter blob w with gradient g summed over the `iter_size` forward/backward passes of
one iteration, Caffe does, in float32 and in this order:

    Normalize:           g = g * (1 / iter_size)              (only when iter_size > 1)
    Regularize (L2):     g = g + weight_decay * decay_mult * w  (only when that product is nonzero)
    ComputeUpdateValue:  v = momentum * v + lr * lr_mult * g
    Net::Update:         w = w - v

`lr` is `learning_rate(iteration)` of the iteration being finished (Caffe's `iter_` before it is
incremented). The per-blob (lr_mult, decay_mult) come from `nets.param_multipliers(net)`: weights
1/1 and biases 2/0 in the VGG nets, 1/1 everywhere in AlexNet's trunk. Blobs with lr_mult 0
(bilinear deconvolutions, at-once scales) never change and get no momentum buffer: in Caffe their
update is 0 * g + momentum * 0 = 0 as well.

Float32 details kept from Caffe: the scalars are float32 products (`Dtype local_rate = rate *
lr_mult`), the iter_size normalization multiplies by float32(1 / iter_size) rather than dividing,
and the momentum step is `v = momentum * v` followed by `v += local_rate * g` (caffe_gpu_axpby is
scal then axpy). A parameter without a gradient (`grad is None`) is treated as Caffe treats a
cleared diff: zero, so weight decay still applies to it if its lr_mult is nonzero.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

import nets

LR_POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid")


def caffe_learning_rate(policy: str, iteration: int, *, base_lr: float, gamma: float | None = None,
                        power: float | None = None, stepsize: int | None = None,
                        stepvalues: Sequence[int] = (), max_iter: int | None = None) -> float:
    """Caffe's `SGDSolver::GetLearningRate` at `iteration` (0-based, the iteration being computed).

    fixed: base_lr;  step: base_lr * gamma^floor(iter / stepsize);  exp: base_lr * gamma^iter;
    inv: base_lr * (1 + gamma * iter)^(-power);  multistep: base_lr * gamma^(number of stepvalues
    <= iter);  poly: base_lr * (1 - iter / max_iter)^power;  sigmoid: base_lr / (1 + exp(-gamma *
    (iter - stepsize))). Computed in float64 here; Caffe rounds the result to float32, as
    `CaffeSGD.step` does when it applies it.
    """
    def need(name: str, value: Any) -> Any:
        if value is None:
            raise ValueError(f"lr_policy {policy!r} needs {name}")
        return value

    if policy == "fixed":
        return float(base_lr)
    if policy == "step":
        return base_lr * need("gamma", gamma) ** (iteration // need("stepsize", stepsize))
    if policy == "exp":
        return base_lr * need("gamma", gamma) ** iteration
    if policy == "inv":
        return base_lr * (1.0 + need("gamma", gamma) * iteration) ** (-need("power", power))
    if policy == "multistep":
        # Caffe advances current_step_ once per iteration while iter >= stepvalue[current_step_];
        # for increasing stepvalues, evaluated every iteration, that is the count of stepvalues <= iter.
        steps = 0
        while steps < len(stepvalues) and iteration >= stepvalues[steps]:
            steps += 1
        return base_lr * need("gamma", gamma) ** steps
    if policy == "poly":
        return base_lr * (1.0 - iteration / need("max_iter", max_iter)) ** need("power", power)
    if policy == "sigmoid":
        return base_lr / (1.0 + math.exp(-need("gamma", gamma) * (iteration - need("stepsize", stepsize))))
    raise ValueError(f"unknown lr_policy {policy!r}; Caffe's policies are {', '.join(LR_POLICIES)}")


def _f32(x: float) -> float:
    """x rounded to float32 (Caffe's Dtype), returned as a Python float."""
    return float(np.float32(x))


class CaffeSGD:
    """Caffe's SGD with momentum, L2 weight decay, per-blob multipliers and iter_size accumulation.

    Usage, one Caffe iteration:
        solver.zero_grad()
        for each of iter_size images: loss(net(image)).backward()   # gradients add up in .grad
        solver.step()

    Args:
        net: a `nets` module (its `param_multipliers` give lr_mult / decay_mult per parameter).
        base_lr, momentum, weight_decay: Caffe solver settings.
        iter_size: images whose gradients are summed per iteration; the sum is scaled by 1/iter_size.
        lr_policy, gamma, power, stepsize, stepvalues: Caffe's learning-rate policy and its settings.
        max_iter: the run's last iteration (needed by the "poly" policy; informational otherwise).
    """

    def __init__(self, net: nn.Module, *, base_lr: float, momentum: float, weight_decay: float,
                 iter_size: int = 1, lr_policy: str = "fixed", gamma: float | None = None,
                 power: float | None = None, stepsize: int | None = None,
                 stepvalues: Sequence[int] = (), max_iter: int | None = None) -> None:
        if iter_size < 1:
            raise ValueError(f"iter_size must be >= 1, not {iter_size}")
        if lr_policy not in LR_POLICIES:
            raise ValueError(f"unknown lr_policy {lr_policy!r}; Caffe's policies are {', '.join(LR_POLICIES)}")
        self.base_lr, self.momentum, self.weight_decay = float(base_lr), float(momentum), float(weight_decay)
        self.iter_size, self.lr_policy, self.max_iter = int(iter_size), lr_policy, max_iter
        self.gamma, self.power, self.stepsize, self.stepvalues = gamma, power, stepsize, tuple(stepvalues)
        self.iteration = 0
        mults = nets.param_multipliers(net)
        self.params: list[tuple[str, nn.Parameter, float, float]] = []
        for name, param in net.named_parameters():
            if name not in mults:
                raise KeyError(f"parameter {name} has no Caffe multipliers in nets.param_multipliers")
            lr_mult, decay_mult = mults[name]
            if lr_mult == 0 and param.requires_grad:
                raise ValueError(f"parameter {name} has lr_mult 0 but requires_grad=True")
            self.params.append((name, param, float(lr_mult), float(decay_mult)))
        # Momentum history (Caffe's history_), only for the blobs that can change.
        self.history: dict[str, torch.Tensor] = {
            name: torch.zeros_like(p, memory_format=torch.preserve_format)
            for name, p, lr_mult, _ in self.params if lr_mult != 0}
        # Caffe runs every blob through Normalize/Regularize/ComputeUpdateValue; the update is zero
        # for lr_mult 0 blobs, and the net skips their gradients (requires_grad=False).
        self._updated = [(n, p, lr, dm) for n, p, lr, dm in self.params if lr != 0]

    def learning_rate(self, iteration: int | None = None) -> float:
        """The policy's learning rate at `iteration` (default: the iteration `step()` will finish)."""
        it = self.iteration if iteration is None else int(iteration)
        return caffe_learning_rate(self.lr_policy, it, base_lr=self.base_lr, gamma=self.gamma, power=self.power,
                                   stepsize=self.stepsize, stepvalues=self.stepvalues, max_iter=self.max_iter)

    def zero_grad(self) -> None:
        """Caffe's ClearParamDiffs: drop every gradient (they are summed again from zero)."""
        for _, p, _, _ in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> float:
        """Apply one Caffe update with the accumulated gradients; returns the learning rate used.

        The gradients in `.grad` are modified in place (normalized and regularized), as Caffe's diffs are.
        """
        rate = _f32(self.learning_rate())
        momentum = _f32(self.momentum)
        accum_normalization = float(np.float32(1.0) / np.float32(self.iter_size))
        for name, p, lr_mult, decay_mult in self._updated:
            diff = p.grad
            if diff is None:
                diff = torch.zeros_like(p)
            if self.iter_size != 1:
                diff.mul_(accum_normalization)
            local_decay = float(np.float32(self.weight_decay) * np.float32(decay_mult))
            if local_decay != 0:
                diff.add_(p, alpha=local_decay)
            local_rate = float(np.float32(rate) * np.float32(lr_mult))
            v = self.history[name]
            v.mul_(momentum).add_(diff, alpha=local_rate)
            p.sub_(v)
        self.iteration += 1
        return rate

    def state_dict(self) -> dict[str, Any]:
        """Iteration, momentum buffers (CPU copies, by parameter name) and the settings, for checkpoints."""
        return {
            "iteration": self.iteration,
            "history": {name: v.detach().to("cpu", copy=True) for name, v in self.history.items()},
            "settings": self.settings(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `state_dict()`; raises ValueError when buffers do not match this net's parameters."""
        history = state["history"]
        missing = sorted(set(self.history) - set(history))
        extra = sorted(set(history) - set(self.history))
        if missing or extra:
            raise ValueError(f"solver state does not match the net: missing momentum for {missing[:5]}, "
                             f"unexpected {extra[:5]}")
        for name, v in self.history.items():
            saved = history[name]
            if saved.shape != v.shape:
                raise ValueError(f"solver state: momentum of {name} has shape {tuple(saved.shape)}, "
                                 f"the parameter {tuple(v.shape)}")
            v.copy_(saved)
        self.iteration = int(state["iteration"])

    def settings(self) -> dict[str, Any]:
        """The solver's settings as a JSON-ready dict (what Caffe's solver.prototxt would say)."""
        return {"base_lr": self.base_lr, "momentum": self.momentum, "weight_decay": self.weight_decay,
                "iter_size": self.iter_size, "lr_policy": self.lr_policy, "gamma": self.gamma,
                "power": self.power, "stepsize": self.stepsize, "stepvalues": list(self.stepvalues),
                "max_iter": self.max_iter}
