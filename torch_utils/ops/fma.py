"""Fused multiply-add a * b + c with broadcasting and correct (summed) gradients."""

from __future__ import annotations

import torch


def fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """a * b + c in one kernel (torch.addcmul); gradients are reduced to each operand's shape."""
    return _FusedMultiplyAdd.apply(a, b, c)


def _sum_to_shape(x: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Undo broadcasting: sum over the leading extra dims and the dims that were 1."""
    extra = x.ndim - len(shape)
    if extra > 0:
        x = x.sum(list(range(extra)))
    dims = [i for i, size in enumerate(shape) if size == 1 and x.shape[i] != 1]
    if dims:
        x = x.sum(dims, keepdim=True)
    return x


class _FusedMultiplyAdd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, c):
        ctx.save_for_backward(a, b)
        ctx.c_shape = c.shape
        return torch.addcmul(c, a, b)

    @staticmethod
    def backward(ctx, dout):
        # Plain differentiable ops, so higher-order gradients come for free.
        a, b = ctx.saved_tensors
        da = _sum_to_shape(dout * b, a.shape) if ctx.needs_input_grad[0] else None
        db = _sum_to_shape(dout * a, b.shape) if ctx.needs_input_grad[1] else None
        dc = _sum_to_shape(dout, ctx.c_shape) if ctx.needs_input_grad[2] else None
        return da, db, dc
