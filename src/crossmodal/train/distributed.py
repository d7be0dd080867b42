"""Multi-process training under `torchrun`: gloo on CPU, nccl on GPU.

Every process draws the same global batch (same seeds), embeds its own contiguous slice, and
gathers the slices with gradient, so the contrastive and soft-label losses see the whole
global batch as in one process. Each process then holds the same loss; the gathered
backward sums the slots, and averaging gradients over processes gives exactly the
single-process gradient of the global batch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator

import numpy as np
import torch
import torch.distributed as dist


def init_from_env() -> bool:
    """Join the process group that torchrun describes in the environment (once)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def rank_and_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def local_slice(rows: np.ndarray) -> slice:
    rank, size = rank_and_size()
    share = len(rows) // size
    return slice(rank * share, (rank + 1) * share)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    if rank_and_size()[1] == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x))


def average_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    size = rank_and_size()[1]
    if size == 1:
        return
    for parameter in parameters:
        if parameter.grad is not None:
            dist.all_reduce(parameter.grad)
            parameter.grad /= size


def any_rank(flag: bool) -> bool:
    """True on every process when any process's flag is true (one process alone).
    Rank 0 alone validates: without this, the others would wait for it forever in the next
    gradient all-reduce after it stopped."""
    if rank_and_size()[1] == 1:
        return flag
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"  # nccl reduces GPU tensors only
    value = torch.tensor([1 if flag else 0], dtype=torch.int64, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def barrier() -> None:
    if rank_and_size()[1] > 1:
        dist.barrier()


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Rank 0 fills the caches; the others then read them instead of recomputing."""
    rank = rank_and_size()[0]
    if rank != 0:
        barrier()
    yield
    if rank == 0:
        barrier()
