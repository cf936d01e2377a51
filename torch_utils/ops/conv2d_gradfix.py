"""conv2d / conv_transpose2d with arbitrarily high-order gradients and switchable weight gradients.

Every gradient is expressed again through the same custom autograd Function, so the graph can be
differentiated as often as needed (R1 and path-length regularisation differentiate twice).
Inside `no_weight_gradients()`, backward passes skip the weight gradient: the inner gradient of
R1/PL only needs d(output)/d(input), and skipping the weight term saves a full convolution.

Built only on public operators (torch.ops.aten.convolution and aten.convolution_backward), so it
works unchanged on every torch 2.x without version checks.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

_state = threading.local()  # per-thread so that DDP helper threads cannot leak the flag


@contextlib.contextmanager
def no_weight_gradients(disable: bool = True) -> Iterator[None]:
    """Within this block, backward passes of conv2d/conv_transpose2d compute no weight gradient."""
    previous = weight_gradients_disabled()
    _state.disabled = previous or bool(disable)
    try:
        yield
    finally:
        _state.disabled = previous


def weight_gradients_disabled() -> bool:
    return getattr(_state, "disabled", False)


def conv2d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1, padding=0,
           dilation=1, groups: int = 1) -> torch.Tensor:
    """Drop-in for torch.nn.functional.conv2d (numeric padding only)."""
    spec = _ConvSpec.make(False, weight, stride, padding, 0, dilation, groups)
    return _conv(spec, input, weight, bias)


def conv_transpose2d(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, stride=1,
                     padding=0, output_padding=0, groups: int = 1, dilation=1) -> torch.Tensor:
    """Drop-in for torch.nn.functional.conv_transpose2d."""
    spec = _ConvSpec.make(True, weight, stride, padding, output_padding, dilation, groups)
    return _conv(spec, input, weight, bias)


# ----------------------------------------------------------------------------

def _pair(value, name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, str) or len(value) != 2:
        raise ValueError(f"conv2d_gradfix: {name} must be an int or a pair of ints, got {value!r}")
    return int(value[0]), int(value[1])


@dataclass(frozen=True)
class _ConvSpec:
    transpose: bool
    stride: tuple[int, int]
    padding: tuple[int, int]
    output_padding: tuple[int, int]
    dilation: tuple[int, int]
    groups: int

    @staticmethod
    def make(transpose, weight, stride, padding, output_padding, dilation, groups) -> "_ConvSpec":
        if weight.ndim != 4:
            raise ValueError(f"conv2d_gradfix: weight must be 4-D, got shape {tuple(weight.shape)}")
        return _ConvSpec(transpose, _pair(stride, "stride"), _pair(padding, "padding"),
                         _pair(output_padding, "output_padding"), _pair(dilation, "dilation"), int(groups))

    def run(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        if self._nhwc_pays_off(x):
            # On the CPU, oneDNN's strided transposed convolution (G's 2x up-sampling, the input gradient of D's 2x
            # down-sampling) takes ~2x longer in NCHW than in NHWC from 32 px output up, both layout copies
            # included; the results are identical (docs/performance.md).
            nhwc = torch.channels_last
            out = torch.ops.aten.convolution(x.contiguous(memory_format=nhwc), w.contiguous(memory_format=nhwc), b,
                                             self.stride, self.padding, self.dilation, self.transpose,
                                             self.output_padding, self.groups)
            return out.contiguous()
        return torch.ops.aten.convolution(x, w, b, self.stride, self.padding, self.dilation, self.transpose,
                                          self.output_padding, self.groups)

    def _nhwc_pays_off(self, x: torch.Tensor) -> bool:
        return (self.transpose and max(self.stride) > 1 and self.groups == 1 and x.device.type == "cpu"
                and x.dtype == torch.float32 and x.ndim == 4 and x.shape[2] * self.stride[0] >= 32
                and x.is_contiguous())

    def adjoint(self, w: torch.Tensor, in_shape: Sequence[int], out_shape: Sequence[int]) -> "_ConvSpec":
        """The convolution that maps output gradients to input gradients (same weight tensor)."""
        if self.transpose:  # adjoint of a transposed conv is the plain conv; its size is implied
            return _ConvSpec(False, self.stride, self.padding, (0, 0), self.dilation, self.groups)
        # A transposed conv can produce several sizes; output_padding picks the input's.
        output_padding = tuple(
            in_shape[i + 2] - ((out_shape[i + 2] - 1) * self.stride[i] - 2 * self.padding[i]
                               + self.dilation[i] * (w.shape[i + 2] - 1) + 1)
            for i in range(2))
        return _ConvSpec(True, self.stride, self.padding, output_padding, self.dilation, self.groups)


def _conv(spec: _ConvSpec, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    if torch.is_autocast_enabled(x.device.type):  # aten.convolution has no autocast rule: cast as conv2d would
        dtype = torch.get_autocast_dtype(x.device.type)
        x, w, b = (t.to(dtype) if t is not None else None for t in (x, w, b))
    needs_graph = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, w, b))
    if not needs_graph:  # nothing to differentiate: the stock operator is the fastest
        return spec.run(x, w, b)
    return _Conv.apply(x, w, b, spec)


def _input_grad(spec: _ConvSpec, dy: torch.Tensor, w: torch.Tensor, in_shape) -> torch.Tensor:
    return _conv(spec.adjoint(w, in_shape, dy.shape), dy, w)


class _Conv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, spec):
        ctx.spec = spec
        ctx.save_for_backward(x, w)
        return spec.run(x, w, b)

    @staticmethod
    def backward(ctx, dy):
        x, w = ctx.saved_tensors
        spec = ctx.spec
        dx = dw = db = None
        if ctx.needs_input_grad[0]:
            dx = _input_grad(spec, dy, w, x.shape)
        if ctx.needs_input_grad[1] and not weight_gradients_disabled():
            dw = _ConvWeightGrad.apply(dy, x, w.shape, spec)
        if ctx.needs_input_grad[2]:
            db = dy.sum([0, 2, 3])
        return dx, dw, db, None


class _ConvWeightGrad(torch.autograd.Function):
    """dw = <dy, d conv(x, w) / dw>; differentiable w.r.t. both dy and x."""

    @staticmethod
    def forward(ctx, dy, x, weight_shape, spec):
        ctx.spec = spec
        ctx.save_for_backward(dy, x)
        weight_like = x.new_empty(weight_shape)  # only its shape and dtype are read
        return torch.ops.aten.convolution_backward(
            dy, x, weight_like, None, spec.stride, spec.padding, spec.dilation, spec.transpose,
            spec.output_padding, spec.groups, [False, True, False])[1]

    @staticmethod
    def backward(ctx, d_dw):
        dy, x = ctx.saved_tensors
        spec = ctx.spec
        d_dy = d_x = None
        # <dw, d_dw> = <dy, conv(x, d_dw)>: linear in dy and in x.
        if ctx.needs_input_grad[0]:
            d_dy = _conv(spec, x, d_dw)
        if ctx.needs_input_grad[1]:
            d_x = _input_grad(spec, dy, d_dw, x.shape)
        return d_dy, d_x, None, None
