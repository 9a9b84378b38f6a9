"""The trainer under ``torchrun --nproc_per_node=N``: one process per GPU (or per CPU worker), DDP.

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; without them everything here
is a no-op for a single process. NCCL on GPUs, gloo on CPU (which is how the tests run two
processes on a laptop).
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that logs to MLflow, writes checkpoints and publishes."""
        return self.rank == 0


def init() -> World:
    """Join the process group when launched by torchrun; pins this process to its GPU."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    import torch
    import torch.distributed as dist

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return World(rank=dist.get_rank(), size=dist.get_world_size())


def barrier(world: World) -> None:
    if world.size > 1:
        import torch.distributed as dist

        dist.barrier()


def mean(world: World, value: float) -> float:
    """The mean of ``value`` over all processes (every process gets it)."""
    return _all_reduce(world, value) / world.size


def total(world: World, value: float) -> float:
    return _all_reduce(world, value)


def _all_reduce(world: World, value: float) -> float:
    if world.size == 1:
        return value
    import torch
    import torch.distributed as dist

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.item()


def finish(world: World) -> None:
    if world.size > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
