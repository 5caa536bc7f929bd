"""More than one process (`torchrun --nproc_per_node=N fcn train ...`): Caffe's iter_size across devices.

Caffe accumulates the gradients of `iter_size` images (batch 1 each) and scales the sum by
1/iter_size. With N processes each process takes some of those images and the gradients are
*summed* across processes (DistributedDataParallel with a sum all-reduce hook instead of its
default mean), then the solver applies Caffe's 1/iter_size normalization once. So N processes
of batch 1 compute exactly what one process with iter_size N computes.

How images are shared out (`StepPlan`): with experiment iter_size I and N processes,
* I divisible by N: every process takes I / N images per iteration and the effective iter_size
  stays I, so the run is the reference's (e.g. voc-fcn-alexnet, I = 20, on 2, 4 or 5 GPUs);
* otherwise each process takes I images and the effective iter_size is I * N. This is *not* the
  reference's solver (e.g. the VGG nets, I = 1, become iter_size N); run.json records it and the
  trainer warns.
All processes walk the same seeded training order (`reproduce.datasets.order.train_order`). In
iteration t the effective iter_size T images sit at order positions t*T ... t*T + T - 1; process r
takes positions t*T + r, t*T + r + N, ... (the images one process with iter_size T would take at
offsets r, r+N, ... of the iteration). Dropout masks are seeded from the image's order position
(see `reproduce.training.train.dropout_seed`), so they too are those of the single-process run.

Measured on the CPU with gloo (tests/test_ddp.py, one thread per process): 2 processes x 1 image
end bitwise equal to 1 process with iter_size 2; 2 processes x 2 images differ from 1 process with
iter_size 4 by 1.3e-7 relative (the gradient sum is grouped differently), after 4 iterations.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class StepPlan:
    """How one Caffe iteration's images are shared among `world_size` processes.

    experiment_iter_size: the experiment's iter_size; local: images per process per iteration;
    effective: images per iteration in all (the solver's iter_size).
    """

    experiment_iter_size: int
    world_size: int
    rank: int
    local: int
    effective: int

    @classmethod
    def make(cls, iter_size: int, world_size: int = 1, rank: int = 0) -> "StepPlan":
        if iter_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad step plan: iter_size {iter_size}, world size {world_size}, rank {rank}")
        local = iter_size // world_size if iter_size % world_size == 0 else iter_size
        return cls(iter_size, world_size, rank, local, local * world_size)

    @property
    def faithful(self) -> bool:
        """True when the effective iter_size is the experiment's (the reference's solver)."""
        return self.effective == self.experiment_iter_size

    def positions(self, iteration: int) -> list[int]:
        """Order positions of the images this process takes in `iteration` (0-based)."""
        start = iteration * self.effective
        return [start + self.rank + k * self.world_size for k in range(self.local)]


@dataclass(frozen=True)
class DistContext:
    """Where this process runs: world size, rank, local rank and its torch device."""

    world_size: int
    rank: int
    local_rank: int
    device: torch.device
    owns_group: bool = False  # init_from_env created the process group (and shutdown() ends it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device: str | torch.device) -> DistContext:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK), if any.

    `device`: a torch.device or a name for reproduce.device.resolve_device ("auto", "cpu", "cuda",
    "cuda:N"; DeviceError if unusable). "cuda" becomes cuda:<LOCAL_RANK> with the NCCL backend; "cpu" uses gloo. A process group
    initialized already (e.g. by a test) is used as it is. Without torchrun: world size 1.
    """
    from reproduce.device import resolve_device
    device = resolve_device(device) if isinstance(device, str) else torch.device(device)
    owns = False
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
        local = int(os.environ.get("LOCAL_RANK", rank))
    else:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        if world > 1:
            backend = "nccl" if device.type == "cuda" else "gloo"
            if device.type == "cuda":
                torch.cuda.set_device(local)
            dist.init_process_group(backend=backend)
            owns = True
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    return DistContext(world, rank, local, device, owns)


def shutdown(ctx: DistContext) -> None:
    """End the process group if `init_from_env` started it (a caller's own group is left alone)."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def _sum_allreduce_hook(process_group, bucket):  # no annotations: DDP checks them and these would be strings
    """DDP communication hook: all-reduce SUM of the gradient bucket (a dist.GradBucket; DDP's
    default divides by N). Returns a future of the summed bucket tensor."""
    work = dist.all_reduce(bucket.buffer(), group=process_group, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def wrap(net: nn.Module, ctx: DistContext) -> nn.Module:
    """`net` inside DistributedDataParallel with summed gradients (or `net` itself for one process)."""
    if not ctx.enabled:
        return net
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel(net, device_ids=device_ids)
    ddp.register_comm_hook(None, _sum_allreduce_hook)
    return ddp


def all_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Element-wise sum of `values` over all processes (float64; identity for one process)."""
    if not ctx.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64,
                     device=ctx.device if ctx.device.type == "cuda" else torch.device("cpu"))
    dist.all_reduce(t)
    return t.tolist()


def gather_objects(obj, ctx: DistContext) -> list:
    """Every process's `obj`, in rank order (a one-element list for one process)."""
    if not ctx.enabled:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistContext) -> None:
    """Wait for every process (no-op for one process)."""
    if ctx.enabled:
        dist.barrier()
