"""DistributedDataParallel under torchrun: gloo on CPU, NCCL on CUDA; a no-op for one process.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK. Every rank shuffles with the same seed and takes
every world_size-th image, so ranks see disjoint shards of equal length (DDP needs equal step counts).
Only rank 0 evaluates, logs and writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ferstream.model.modelfile import weights_sha256


@dataclass(frozen=True)
class Context:
    """This process's place in a torchrun job: rank (0..world_size-1), world_size, and its device."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on rank 0, the one that evaluates, logs and writes files."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1


def setup(device: torch.device) -> Context:
    """Join the torchrun job (gloo on CPU, NCCL on CUDA, one GPU per local rank); alone: no process group."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Context(rank=0, world_size=1, device=device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return Context(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)


def wrap(model: torch.nn.Module, context: Context) -> torch.nn.Module:
    """The model DDP averages gradients for; the bare model itself when running alone."""
    if not context.enabled:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def shard(order: np.ndarray, context: Context) -> np.ndarray:
    """This rank's share of order: every world_size-th index from its rank on, the remainder dropped so all
    ranks take the same number of steps."""
    usable = len(order) - len(order) % context.world_size
    return order[:usable][context.rank::context.world_size]


def sync_buffers(model: torch.nn.Module, context: Context) -> None:
    """Rank 0's batch-norm statistics on every rank.

    DDP averages gradients, so parameters agree, but each rank updates its running statistics from
    its own last batch; DDP only re-broadcasts them at the start of the next forward pass.
    """
    if context.enabled:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def weights_per_rank(model: torch.nn.Module, context: Context) -> list[str]:
    """The sha256 of every rank's weights (gathered to all); they must be equal after DDP training."""
    mine = weights_sha256(model.state_dict())
    if not context.enabled:
        return [mine]
    gathered: list[str | None] = [None] * context.world_size
    dist.all_gather_object(gathered, mine)
    return [str(g) for g in gathered]


def cleanup(context: Context) -> None:
    """Leave the process group (nothing to do when running alone)."""
    if context.enabled:
        dist.destroy_process_group()
