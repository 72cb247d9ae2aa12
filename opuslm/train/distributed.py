"""Process-group setup and model wrapping for `torchrun` (DDP or FSDP2), and the single-process case.

Checkpoints always hold full (unsharded) state dicts, gathered and scattered with
`torch.distributed.checkpoint.state_dict`, so a run can resume on any number of ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class World:
    rank: int = 0
    size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, value: float) -> float:
        if self.size == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor.item())

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


def init_world() -> World:
    """Join the process group torchrun describes (gloo on CPU, nccl on GPU), or run alone."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if size == 1:
        return World(0, 1, torch.device("cuda") if cuda else torch.device("cpu"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    return World(dist.get_rank(), size, device)


def close_world(world: World) -> None:
    # ending with barrier + destroy avoids gloo aborts at exit after collective checkpoint calls
    if world.size > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap(module: torch.nn.Module, layers, world: World, mode: str) -> torch.nn.Module:
    """DDP, or FSDP2 with each decoder layer and then the root sharded; unchanged when alone."""
    if world.size == 1:
        return module
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module, device_ids=[world.device.index] if world.device.type == "cuda" else None)
    if mode == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for layer in layers:
            fully_shard(layer)
        fully_shard(module)
        return module
    raise ValueError(f"unknown parallel mode {mode!r}")
