"""Multi-process training with ``torchrun`` (gloo on CPU, nccl on GPU), without wrapping the model.

adaptsam's training step calls the model's encoder/decoder separately (the embedding cache skips the
encoder), which ``DistributedDataParallel``'s single-forward contract doesn't fit. Instead every rank
draws the same global batch, takes its share (positions ``rank::world_size``), and gradients are averaged
with one flattened all-reduce after backward: the same update a single process computes on the whole batch.
Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"  # this rank's device: cuda:LOCAL_RANK for a CUDA run, cpu otherwise

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, items: list) -> list:
        return items[self.rank::self.world_size]


def init_distributed(device: str | torch.device | None = "auto") -> DistContext:
    """Join the process group ``torchrun`` describes in the environment; a single process otherwise.

    The backend follows where the model will live, not whether CUDA exists: nccl only for a CUDA model (each
    rank on its ``LOCAL_RANK`` GPU, so ``--device cuda`` means one GPU per rank), gloo for a CPU model, which
    nccl cannot all-reduce. ``context.device`` is the device this rank builds its model on.
    """
    from adaptsam.devices import resolve_device

    resolved = resolve_device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(device=str(resolved))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    on_cuda = resolved.type == "cuda"
    if on_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if on_cuda else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank,
                       device=f"cuda:{local_rank}" if on_cuda else "cpu")


def average_gradients(parameters: list[torch.nn.Parameter], context: DistContext) -> None:
    """Mean of every rank's gradients, in one all-reduce (missing gradients count as zeros)."""
    if not context.distributed or not parameters:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= context.world_size
    offset = 0
    for parameter, grad in zip(parameters, grads):
        count = grad.numel()
        parameter.grad = flat[offset:offset + count].view_as(grad).clone()
        offset += count


def barrier(context: DistContext) -> None:
    if context.distributed:
        dist.barrier()


def shutdown(context: DistContext) -> None:
    if context.distributed and dist.is_initialized():
        dist.destroy_process_group()
