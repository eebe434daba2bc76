"""Multi-process training on ``torch.distributed`` (launched by ``torchrun``).

``torchrun`` sets ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; ``init_distributed``
joins the process group (gloo on CPU, nccl on CUDA). Every rank trains on its own
shard of each epoch's batches, metrics are summed over all ranks, and only rank 0
writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional

import torch
import torch.distributed as dist


@dataclass
class DistributedContext:
    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def device(self) -> str:
        return f"cuda:{self.local_rank}" if self.backend == "nccl" else "cpu"


def init_distributed() -> Optional[DistributedContext]:
    """Join the process group when launched by torchrun with more than one process, else None."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size < 2:
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, backend)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    return rank() == 0


def sum_over_ranks(values: List[float], device: torch.device) -> List[float]:
    """Element-wise sum of ``values`` over all ranks (the values themselves when not distributed)."""
    if not is_distributed():
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def max_over_ranks(value: int, device: torch.device) -> int:
    """The largest ``value`` of all ranks: one rank's signal becomes every rank's decision."""
    if not is_distributed():
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return int(tensor.item())


def any_rank(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` holds on at least one rank (one rank out of time stops them all)."""
    return max_over_ranks(int(flag), device) != 0


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
