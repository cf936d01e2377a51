"""Small tensor and module helpers shared by networks, loss and the training loop."""

from __future__ import annotations

import re
from typing import Any, Iterator, Sequence

import numpy as np
import torch

# ----------------------------------------------------------------------------
# Cached constant tensors (filters, gains): built once per (value, dtype, device).

_constant_cache: dict[tuple, torch.Tensor] = {}


def constant(value: Any, shape: Sequence[int] | None = None, dtype: torch.dtype | None = None,
             device: torch.device | str | None = None, memory_format: torch.memory_format | None = None) -> torch.Tensor:
    value = np.asarray(value)
    if shape is not None:
        shape = tuple(shape)
    if dtype is None:
        dtype = torch.get_default_dtype()
    if device is None:
        device = torch.device("cpu")
    device = torch.device(device)
    if memory_format is None:
        memory_format = torch.contiguous_format
    key = (value.shape, value.dtype, value.tobytes(), shape, dtype, device, memory_format)
    tensor = _constant_cache.get(key)
    if tensor is None:
        tensor = torch.as_tensor(value.copy(), dtype=dtype, device=device)
        if shape is not None:
            tensor, _ = torch.broadcast_tensors(tensor, torch.empty(shape))
        tensor = tensor.contiguous(memory_format=memory_format)
        _constant_cache[key] = tensor
    return tensor


# ----------------------------------------------------------------------------
# Shape checks.

def assert_shape(tensor: torch.Tensor, ref_shape: Sequence[int | None]) -> None:
    """Raise AssertionError unless `tensor` has `ref_shape` (None entries match anything)."""
    if tensor.ndim != len(ref_shape):
        raise AssertionError(f"Wrong number of dimensions: got {tensor.ndim}, expected {len(ref_shape)}")
    for idx, (size, ref_size) in enumerate(zip(tensor.shape, ref_shape)):
        if ref_size is None:
            continue
        if isinstance(ref_size, torch.Tensor):
            ref_size = int(ref_size)
        if isinstance(size, torch.SymInt) or isinstance(ref_size, torch.SymInt):
            # Symbolic shapes (torch.export, ONNX export): int() would freeze the batch size into the graph.
            torch._check(size == ref_size, lambda: f"Wrong size for dimension {idx}: expected {ref_size}")
            continue
        if int(size) != int(ref_size):
            raise AssertionError(f"Wrong size for dimension {idx}: got {int(size)}, expected {int(ref_size)}")


# ----------------------------------------------------------------------------
# Parameters and buffers.

def named_params_and_buffers(module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    return list(module.named_parameters()) + list(module.named_buffers())


@torch.no_grad()
def copy_params_and_buffers(src_module: torch.nn.Module, dst_module: torch.nn.Module, require_all: bool = False) -> list[str]:
    """Copy tensors by name from src to dst; returns the destination names that had no source."""
    src_tensors = dict(named_params_and_buffers(src_module))
    missing = []
    for name, tensor in named_params_and_buffers(dst_module):
        if name in src_tensors and src_tensors[name].shape == tensor.shape:
            tensor.copy_(src_tensors[name].detach())
        else:
            if require_all:
                raise KeyError(f"copy_params_and_buffers: source has no tensor {name!r} of shape {tuple(tensor.shape)}")
            missing.append(name)
    return missing


@torch.no_grad()
def ema_update_(target: torch.nn.Module, source: torch.nn.Module, keep: float) -> None:
    """Exponential moving average in place: target <- keep * target + (1 - keep) * source for parameters,
    computed as source.lerp(target, keep) (upstream's G_ema order, so G_ema rounds as upstream's does);
    buffers are copied. One multi-tensor call per list instead of two ops per parameter."""
    targets = list(target.parameters())
    if targets:
        sources = [p.detach() for p in source.parameters()]
        torch._foreach_copy_(targets, torch._foreach_lerp(sources, targets, keep))
    buffers = list(target.buffers())
    if buffers:
        torch._foreach_copy_(buffers, list(source.buffers()))


def check_ddp_consistency(module: torch.nn.Module, ignore_regex: str | None = None) -> None:
    """Assert every parameter/buffer equals rank 0's copy (NaNs compare equal)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    for name, tensor in named_params_and_buffers(module):
        full_name = type(module).__name__ + "." + name
        if ignore_regex is not None and re.fullmatch(ignore_regex, full_name):
            continue
        tensor = tensor.detach()
        if tensor.is_floating_point():
            tensor = torch.nan_to_num(tensor)
        other = tensor.clone()
        torch.distributed.broadcast(tensor=other, src=0)
        if not (tensor == other).all():
            raise RuntimeError(f"DDP consistency check failed: {full_name} differs from rank 0")


# ----------------------------------------------------------------------------
# Infinite, reshuffling sampler (same semantics as the upstream training data order).

class InfiniteSampler(torch.utils.data.Sampler):
    """Yield dataset indices forever; rank r takes items r, r+N, ... of a seeded, slowly reshuffled order."""

    def __init__(self, dataset: Any, rank: int = 0, num_replicas: int = 1, shuffle: bool = True,
                 seed: int = 0, window_size: float = 0.5, start: int = 0):
        if len(dataset) <= 0:
            raise ValueError("InfiniteSampler: the dataset is empty")
        if not (num_replicas > 0 and 0 <= rank < num_replicas and 0 <= window_size <= 1):
            raise ValueError("InfiniteSampler: bad rank/num_replicas/window_size")
        self.dataset_size = len(dataset)
        self.rank = rank
        self.num_replicas = num_replicas
        self.shuffle = shuffle
        self.seed = seed
        self.window_size = window_size
        self.start = start  # indices this rank already consumed (exact resume): replayed, not yielded

    def __iter__(self) -> Iterator[int]:
        order = np.arange(self.dataset_size)
        rnd = None
        window = 0
        if self.shuffle:
            rnd = np.random.RandomState(self.seed)
            rnd.shuffle(order)
            window = int(np.rint(order.size * self.window_size))
        idx = 0
        skipped = 0
        while True:
            i = idx % order.size
            if idx % self.num_replicas == self.rank:
                if skipped >= self.start:
                    yield int(order[i])
                else:
                    skipped += 1
            if window >= 2:
                j = (i - rnd.randint(window)) % order.size
                order[i], order[j] = order[j], order[i]
            idx += 1


# ----------------------------------------------------------------------------
# Module summary table.

def print_module_summary(module: torch.nn.Module, inputs: Sequence[Any], max_nesting: int = 3, skip_redundant: bool = True) -> Any:
    """Run `module(*inputs)` once and print a table of submodules with parameter counts and output shapes."""
    if not isinstance(module, torch.nn.Module) or isinstance(module, torch.jit.ScriptModule):
        raise TypeError("print_module_summary expects a regular torch.nn.Module")
    entries: list[dict] = []
    nesting = [0]

    def pre_hook(_mod, _inputs):
        nesting[0] += 1

    def post_hook(mod, _inputs, outputs):
        nesting[0] -= 1
        if nesting[0] <= max_nesting:
            outs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
            outs = [t for t in outs if isinstance(t, torch.Tensor)]
            entries.append(dict(mod=mod, outputs=outs))

    hooks = [mod.register_forward_pre_hook(pre_hook) for mod in module.modules()]
    hooks += [mod.register_forward_hook(post_hook) for mod in module.modules()]
    outputs = module(*inputs)
    for hook in hooks:
        hook.remove()

    tensors_seen: set[int] = set()
    names = {mod: name for name, mod in module.named_modules()}
    rows = [[type(module).__name__, "Parameters", "Buffers", "Output shape", "Datatype"], ["---"] * 5]
    total_params = total_buffers = 0
    for entry in entries:
        params = [t for t in entry["mod"].parameters(recurse=False) if id(t) not in tensors_seen]
        buffers = [t for t in entry["mod"].buffers(recurse=False) if id(t) not in tensors_seen]
        tensors_seen.update(id(t) for t in params + buffers)
        if skip_redundant and not params and not buffers and entry["mod"] is not module:
            if len(list(entry["mod"].children())) > 0:
                continue
        n_params = sum(t.numel() for t in params)
        n_buffers = sum(t.numel() for t in buffers)
        total_params += n_params
        total_buffers += n_buffers
        name = "<top-level>" if entry["mod"] is module else names.get(entry["mod"], "?")
        shapes = [str(list(t.shape)) for t in entry["outputs"]] or ["-"]
        dtypes = [str(t.dtype).split(".")[-1] for t in entry["outputs"]] or ["-"]
        rows.append([name, str(n_params) if n_params else "-", str(n_buffers) if n_buffers else "-", shapes[0], dtypes[0]])
        for shape, dtype in zip(shapes[1:], dtypes[1:]):
            rows.append([name + ":1", "-", "-", shape, dtype])
    rows += [["---"] * 5, ["Total", str(total_params), str(total_buffers), "-", "-"]]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    print()
    for row in rows:
        print("  ".join(cell + " " * (width - len(cell)) for cell, width in zip(row, widths)))
    print()
    return outputs
