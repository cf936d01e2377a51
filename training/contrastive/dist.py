"""The few torch.distributed collectives the contrastive methods need, no-ops on one process."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.distributed as dist


def world_size() -> int:
    """Number of ranks when a process group is initialised, else 1 (single GPU / CPU)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@torch.no_grad()
def all_gather_cat(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from every rank along dim 0, in rank order (no gradient)."""
    if world_size() == 1:
        return x.detach()
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    return torch.cat(parts)


def all_gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Like `all_gather_cat`, but this rank's slice keeps its autograd history."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts)


def all_reduce_mean_grads(params: Sequence[torch.Tensor]) -> None:
    """Average the gradients of `params` over ranks with one flat all-reduce."""
    if world_size() == 1:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.flatten() for p in params])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset:offset + p.numel()].view_as(p))
        offset += p.numel()
