"""Data-parallel runs under ``torchrun``: which share of the work is this process's, and
how the shares come back together.

Work is split by *batch* (batch ``k`` goes to rank ``k mod world``), so every batch is
formed and computed exactly as in a single process, and the pieces are reassembled in
batch order: a sweep under ``torchrun`` gives the single-process numbers, bit for bit.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """``(rank, world size)``; ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order (just ``[value]`` in a single process)."""
    rank, size = world()
    if size == 1:
        return [value]
    gathered: list[Any] = [None] * size
    dist.all_gather_object(gathered, value)
    return gathered


def mine(count: int) -> list[int]:
    """The batch indices (of ``count``) this rank computes."""
    rank, size = world()
    return list(range(rank, count, size))


def reassemble(soft: np.ndarray, ids: list, count: int, batch_size: int) -> tuple[np.ndarray, list]:
    """Every rank's batches of per-example results (``soft`` ``[…, examples, …]`` with the
    examples on axis 1, and their ``ids``) in batch order; a no-op in a single process."""
    if world()[1] == 1:
        return soft, ids
    pieces = gather(
        {i: (soft[:, i * batch_size : (i + 1) * batch_size], ids[i * batch_size : (i + 1) * batch_size])
         for i in mine(count)}  # fmt: skip
    )
    merged, all_ids = np.empty_like(soft), list(ids)
    for piece in pieces:
        for index, (values, names) in piece.items():
            merged[:, index * batch_size : index * batch_size + values.shape[1]] = values
            all_ids[index * batch_size : index * batch_size + len(names)] = names
    return merged, all_ids


@contextmanager
def process_group_from_env(device: str = "auto") -> Iterator[torch.device | None]:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1), for the block.

    Yields the device this rank should use under ``device="auto"`` (``cuda:LOCAL_RANK``
    with NCCL when CUDA is present, else the CPU with gloo), or None when not under
    torchrun. The group is destroyed on exit.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        yield None
        return
    cuda = torch.cuda.is_available() and device in ("auto", "cuda")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    try:
        yield torch.device("cuda", local) if cuda else torch.device("cpu")
    finally:
        dist.destroy_process_group()
