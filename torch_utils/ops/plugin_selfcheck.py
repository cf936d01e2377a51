"""Check a freshly loaded CUDA plugin against the reference path before anything uses it.

Kernels are compiled on the user's machine with the user's nvcc; a miscompile, an unsupported
architecture or a bug in a code path nobody has run shows up here, on a few small random inputs,
instead of as a silently wrong training run. Each op module describes its cases (the argument
combinations its networks use); this module runs them in float32 and float16 and compares the
output and the gradient of every input:

    error = max |fused - reference| / max(max |reference|, 1)   must be <= TOLERANCE[dtype]

The tolerances are those of tests/test_ops_cuda.py (float16 rounds to about 1e-3 relative, and the
fused and reference paths round in different places). plugin_dispatch runs the check once per op
and process and falls back to the reference path (or raises, under FAKECLR_OPS=cuda) on failure.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch

TOLERANCE = {torch.float32: 1e-4, torch.float16: 2e-2}
FP32 = (torch.float32,)
BOTH = (torch.float32, torch.float16)
_SEED = 123  # a private generator: the check must not move the training's random streams


@dataclass(frozen=True)
class CheckCase:
    """One argument combination: input shapes, and the op through the plugin and the reference.

    `fused` and `reference` take the input tensors (all float, of the checked dtype) and return
    one output tensor; the gradient is checked for every input.
    """
    name: str
    shapes: Sequence[Sequence[int]]
    fused: Callable[..., torch.Tensor]
    reference: Callable[..., torch.Tensor]
    channels_last: bool = False  # the first input in NHWC memory order
    dtypes: tuple[torch.dtype, ...] = BOTH


@dataclass
class CheckResult:
    op_name: str
    device: str
    failures: list[str] = field(default_factory=list)
    worst_error_ratio: float = 0.0  # largest error / tolerance over all comparisons (< 1 passes)
    milliseconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        """One line: the first failures (op, case, dtype, which tensor, error vs tolerance)."""
        shown = "; ".join(self.failures[:3])
        more = f"; and {len(self.failures) - 3} more" if len(self.failures) > 3 else ""
        return f"{shown}{more}"


def run_self_check(op_name: str, cases: Sequence[CheckCase], device: torch.device) -> CheckResult:
    """Compare fused and reference on every case and dtype (forward and input gradients)."""
    result = CheckResult(op_name, str(device))
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(_SEED)
    # Eager float autograd whatever the caller runs under (no_grad in generate.py, bf16 autocast, inference mode).
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device.type, enabled=False), _no_tf32():
        for case in cases:
            for dtype in case.dtypes:
                for what, error in _compare(case, device, dtype, generator):
                    ratio = error / TOLERANCE[dtype]
                    result.worst_error_ratio = max(result.worst_error_ratio, ratio)
                    if not ratio <= 1:  # NaN fails too
                        result.failures.append(f"{case.name}, {_dtype_name(dtype)} {what}: error {error:.2e} "
                                               f"> tolerance {TOLERANCE[dtype]:.0e}")
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    result.milliseconds = (time.perf_counter() - start) * 1000
    return result


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    """True float32 in the reference path's convolutions and matmuls (cuDNN allows TF32 by default,
    which alone differs from float32 by about 1e-3, ten times the float32 tolerance)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _compare(case: CheckCase, device: torch.device, dtype: torch.dtype,
             generator: torch.Generator) -> list[tuple[str, float]]:
    inputs = [torch.randn(list(shape), generator=generator) for shape in case.shapes]
    if case.channels_last:
        inputs[0] = inputs[0].to(memory_format=torch.channels_last)
    outputs = {}
    for path, op in (("fused", case.fused), ("reference", case.reference)):
        leaves = [t.to(device=device, dtype=dtype).requires_grad_(True) for t in inputs]
        y = op(*leaves)
        dy = torch.randn(list(y.shape), generator=torch.Generator().manual_seed(_SEED + 1)).to(device, dtype)
        grads = torch.autograd.grad(y, leaves, dy, allow_unused=True)
        outputs[path] = [y, *[torch.zeros_like(t) if g is None else g for g, t in zip(grads, leaves)]]
    names = ["forward", *[f"gradient of input {i}" for i in range(len(inputs))]]
    return [(name, relative_error(got, want)) for name, got, want in zip(names, outputs["fused"], outputs["reference"])]


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max(max |want|, 1); inf when the shapes differ."""
    if got.shape != want.shape:
        return float("inf")
    got, want = got.detach().float(), want.detach().float()
    scale = max(want.abs().max().item(), 1.0)
    return (got - want).abs().max().item() / scale


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")
