"""Every collective of a training run, called by the training loop (all no-ops in a single process).

We do not wrap modules in DistributedDataParallel: the loss differentiates through D twice
(R1, path length) and plug-in heads call D with momentum copies, which DDP's hooks handle
poorly. Instead parameters are broadcast once from rank 0 and each phase's gradients are
averaged with one flat all-reduce before the optimiser step, as the reference design allows.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Optional

import torch

from torch_utils import training_stats


def is_distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1


def world_size() -> int:
    """Number of ranks when a process group is initialised, else 1."""
    return torch.distributed.get_world_size() if is_distributed() else 1


def init_process_group(rank: int, world_size: int, init_file: Optional[str], device: torch.device) -> None:
    """Join the process group (NCCL for CUDA devices, gloo otherwise) and wire up training_stats."""
    if device.type == "cuda":  # before any collective: NCCL puts the first one on the current device
        torch.cuda.set_device(device)
    if world_size > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        if init_file is not None:
            init_method = "file://" + os.path.abspath(init_file)
            torch.distributed.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size)
        else:  # torchrun: MASTER_ADDR / MASTER_PORT / RANK / WORLD_SIZE in the environment
            torch.distributed.init_process_group(backend, init_method="env://", rank=rank, world_size=world_size)
    training_stats.init_multiprocessing(rank=rank, sync_device=device if world_size > 1 else None)


@torch.no_grad()
def broadcast_module(module: Optional[torch.nn.Module]) -> None:
    """Make every rank's parameters and buffers equal to rank 0's."""
    if module is None or not is_distributed():
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        torch.distributed.broadcast(tensor.data, src=0)


def average_and_sanitize_gradients(params: Iterable[torch.nn.Parameter], stat_name: Optional[str] = None) -> None:
    """Average gradients over ranks with one flat all-reduce; zero NaN, clamp inf (no host sync).

    The number of non-finite gradient elements is reported to training_stats under `stat_name`
    so the tick summary can warn about it.
    """
    params = [p for p in params if p.grad is not None]
    if not params:
        return
    if not is_distributed() and params[0].grad.device.type == "cpu" and _all_finite([p.grad for p in params]):
        if stat_name is not None:
            training_stats.report(stat_name, torch.zeros([], dtype=torch.int64))
        return  # nothing to average or sanitise: the flat copy and the copy-back would change nothing
    flat = torch.cat([p.grad.flatten() for p in params])
    if is_distributed():
        torch.distributed.all_reduce(flat)
        flat /= torch.distributed.get_world_size()
    if stat_name is not None:
        training_stats.report(stat_name, (~torch.isfinite(flat)).sum())
    torch.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5, out=flat)
    offset = 0
    for p in params:
        n = p.grad.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
        offset += n


def all_gather(x: torch.Tensor, keep_grad: bool = False) -> torch.Tensor:
    """`x` from every rank concatenated along dim 0 in rank order; detached, or with `keep_grad` this
    rank's slice keeps its autograd history (the other slices carry no gradient)."""
    if not is_distributed():
        return x if keep_grad else x.detach()
    parts = [torch.empty_like(x) for _ in range(world_size())]
    torch.distributed.all_gather(parts, x.detach().contiguous())
    if keep_grad:
        parts[torch.distributed.get_rank()] = x
    return torch.cat(parts)


def gather_objects(obj: Any) -> list:
    """`obj` (picklable) from every rank, in rank order."""
    if not is_distributed():
        return [obj]
    gathered: list = [None] * world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


def _all_finite(tensors: list[torch.Tensor]) -> bool:
    """One max-abs per tensor, read on the host: a flag costs no device synchronisation on the CPU (NaN and inf
    make the maximum non-finite)."""
    return bool(torch.isfinite(torch.stack(torch._foreach_norm(tensors, float("inf"))).max()))


def any_rank(flag: bool, device: torch.device) -> bool:
    """True if `flag` is set on any rank (one tiny all-reduce when distributed)."""
    if not is_distributed():
        return flag
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
    return bool(value.item())


def barrier() -> None:
    if is_distributed():
        torch.distributed.barrier()
