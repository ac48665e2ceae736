"""This process's place in a ``torchrun`` job, seeding, and logging from the main process.

Gloo on CPU, NCCL on CUDA; one process per device. Without ``WORLD_SIZE`` (a plain
``python -m trainer``) the job is one process and no process group is created.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class Dist:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        """Whether this is rank 0 (the process that writes and logs)."""
        return self.rank == 0


def init_distributed() -> Dist:
    """Joins the ``torchrun`` process group (when there is more than one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return Dist(rank=rank, world=world, local_rank=local, device=device)


def barrier() -> None:
    """Waits for every process (no-op in a one-process job)."""
    if dist.is_initialized():
        dist.barrier()


def destroy() -> None:
    """Leaves the process group, if one was created."""
    if dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    """Seeds Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def log(d: Dist, msg: str) -> None:
    """Prints ``msg`` to stdout from the main process only."""
    if d.main:
        print(msg, flush=True)
