"""Fused bias + activation + gain + clamp.

    y = clamp(act(x + b) * gain, -clamp, +clamp)

The reference path is plain PyTorch (any-order gradients). The CUDA path is one elementwise
kernel per pass (forward, gradient, second-order term) and supports first and second-order
gradients, which is what R1 and path-length regularisation need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Callable

import torch
import torch.nn.functional as F

import dnnlib
from torch_utils.ops import plugin_dispatch, plugin_selfcheck


@dataclass(frozen=True)
class ActivationSpec:
    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float
    has_2nd_grad: bool  # False: the second derivative is zero almost everywhere
    cuda_id: int  # activation code understood by bias_act.cu


ACTIVATIONS: dict[str, ActivationSpec] = {
    "linear": ActivationSpec(lambda x, _: x, 0.0, 1.0, False, 0),
    "relu": ActivationSpec(lambda x, _: F.relu(x), 0.0, math.sqrt(2), False, 1),
    "lrelu": ActivationSpec(lambda x, alpha: F.leaky_relu(x, alpha), 0.2, math.sqrt(2), False, 2),
    "tanh": ActivationSpec(lambda x, _: torch.tanh(x), 0.0, 1.0, True, 3),
    "sigmoid": ActivationSpec(lambda x, _: torch.sigmoid(x), 0.0, 1.0, True, 4),
    "elu": ActivationSpec(lambda x, _: F.elu(x), 0.0, 1.0, True, 5),
    "selu": ActivationSpec(lambda x, _: F.selu(x), 0.0, 1.0, True, 6),
    "softplus": ActivationSpec(lambda x, _: F.softplus(x), 0.0, 1.0, True, 7),
    "swish": ActivationSpec(lambda x, _: torch.sigmoid(x) * x, 0.0, math.sqrt(2), True, 8),
}


# The same table under upstream's name and field names (one EasyDict per activation), so that code written against
# upstream's torch_utils API finds it: training/networks.py uses only that API, because export.py --format=upstream
# embeds its source for upstream's loader (training/upstream_export.py). `ref` is not used by this implementation.
activation_funcs: dict[str, dnnlib.EasyDict] = {
    name: dnnlib.EasyDict(func=spec.func, def_alpha=spec.def_alpha, def_gain=spec.def_gain, cuda_idx=spec.cuda_id,
                          ref=None, has_2nd_grad=spec.has_2nd_grad)
    for name, spec in ACTIVATIONS.items()
}


def bias_act(x: torch.Tensor, b: torch.Tensor | None = None, dim: int = 1, act: str = "linear",
             alpha: float | None = None, gain: float | None = None, clamp: float | None = None,
             impl: str = "cuda") -> torch.Tensor:
    """Add bias `b` along `dim`, apply `act`, multiply by `gain`, clamp to [-clamp, clamp].

    alpha/gain None use the activation's defaults; clamp None disables clamping.
    """
    spec, alpha, gain, clamp = _resolve_args(x, b, dim, act, alpha, gain, clamp)
    plugin = plugin_dispatch.select_plugin(x, impl, "bias_act", _load_plugin, self_check)
    if plugin is None:
        return _bias_act_ref(x, b, dim, spec, alpha, gain, clamp)
    return _bias_act_cuda(plugin, x, b, dim, spec, alpha, gain, clamp)


def _resolve_args(x, b, dim, act, alpha, gain, clamp) -> tuple[ActivationSpec, float, float, float]:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"bias_act: x must be a tensor, got {type(x).__name__}")
    if act not in ACTIVATIONS:
        raise ValueError(f"bias_act: unknown act={act!r}; choose one of {', '.join(ACTIVATIONS)}")
    if b is not None:
        if not 0 <= dim < x.ndim:
            raise ValueError(f"bias_act: dim={dim} is out of range for a {x.ndim}-D input")
        if b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(f"bias_act: b must be 1-D with {x.shape[dim]} elements (x.shape[{dim}]), "
                             f"got shape {tuple(b.shape)}")
        if b.dtype != x.dtype or b.device != x.device:
            raise ValueError(f"bias_act: b ({b.dtype}, {b.device}) must match x ({x.dtype}, {x.device})")
    if clamp is not None and not clamp >= 0:
        raise ValueError(f"bias_act: clamp must be None or >= 0, got {clamp}")
    spec = ACTIVATIONS[act]
    alpha = float(spec.def_alpha if alpha is None else alpha)
    gain = float(spec.def_gain if gain is None else gain)
    clamp = float(-1 if clamp is None else clamp)
    return spec, alpha, gain, clamp


def _bias_act_ref(x, b, dim, spec: ActivationSpec, alpha: float, gain: float, clamp: float) -> torch.Tensor:
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


# ----------------------------------------------------------------------------
# CUDA path. The kernel computes, elementwise with z = x + b and in-range mask
# m = |gain * act(z)| <= clamp (always 1 without clamp):
#   order 0: clamp(gain * act(z))      order 1: g * gain * act'(z) * m
#   order 2: g * gain * act''(z) * m

def _load_plugin() -> ModuleType:
    from torch_utils import custom_ops  # local: keeps import cheap where the plugin is never wanted
    return custom_ops.get_plugin_for_op("bias_act")


# (activation, clamp, channels-last, dtypes): what the networks run. A clamp that bites on random inputs
# is checked in float32 only: in float16 an element within rounding of the clamp may fall on either side.
_CHECK_CASES = (("lrelu", 1.0, False, plugin_selfcheck.FP32), ("lrelu", 256.0, False, plugin_selfcheck.BOTH),
                ("lrelu", 256.0, True, plugin_selfcheck.BOTH), ("linear", None, False, plugin_selfcheck.BOTH),
                ("swish", None, False, plugin_selfcheck.BOTH))


def self_check(plugin: ModuleType, device: torch.device) -> plugin_selfcheck.CheckResult:
    """The plugin vs the reference path on the activations the networks use (see plugin_selfcheck)."""
    cases = [_check_case(plugin, *case) for case in _CHECK_CASES]
    return plugin_selfcheck.run_self_check("bias_act", cases, device)


def _check_case(plugin: ModuleType, act: str, clamp: float | None, channels_last: bool,
                dtypes: tuple[torch.dtype, ...]) -> plugin_selfcheck.CheckCase:
    spec = ACTIVATIONS[act]
    args = (1, spec, spec.def_alpha, spec.def_gain, -1.0 if clamp is None else clamp)
    return plugin_selfcheck.CheckCase(
        name=f"{act} clamp={clamp}{' channels-last' if channels_last else ''}", shapes=[[2, 8, 4, 4], [8]],
        fused=lambda x, b: _bias_act_cuda(plugin, x, b, *args), reference=lambda x, b: _bias_act_ref(x, b, *args),
        channels_last=channels_last, dtypes=dtypes)


def _bias_act_cuda(plugin, x, b, dim, spec, alpha, gain, clamp) -> torch.Tensor:
    params = _CudaParams(plugin, dim if b is not None else 0, spec, alpha, gain, clamp)
    empty = x.new_empty([0])
    return _BiasActCuda.apply(_dense(x), empty if b is None else b.contiguous(), params)


@dataclass(frozen=True)
class _CudaParams:
    plugin: ModuleType
    dim: int
    spec: ActivationSpec
    alpha: float
    gain: float
    clamp: float

    def run(self, x: torch.Tensor, b: torch.Tensor, g: torch.Tensor, order: int) -> torch.Tensor:
        return self.plugin.bias_act(x, b, g, self.dim, self.spec.cuda_id, order, self.alpha, self.gain, self.clamp)


def _dense(t: torch.Tensor) -> torch.Tensor:
    """`t` itself when the kernel can walk it in memory order (contiguous or channels-last), else a copy."""
    if t.is_contiguous() or (t.ndim == 4 and t.is_contiguous(memory_format=torch.channels_last)):
        return t
    return t.contiguous()


def _like(t: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """`t` with exactly the strides of `ref` (the kernel walks both in memory order)."""
    if t.stride() == ref.stride():
        return t
    return torch.empty_like(ref).copy_(t)


def _reduce_to_bias(grad: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor | None:
    if b.numel() == 0:
        return None
    return grad.sum([i for i in range(grad.ndim) if i != dim])


class _BiasActCuda(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, b, params):
        ctx.params = params
        ctx.save_for_backward(x, b)
        return params.run(x, b, x.new_empty([0]), 0)

    @staticmethod
    def backward(ctx, dy):
        x, b = ctx.saved_tensors
        params = ctx.params
        dx = _BiasActGradCuda.apply(_like(dy, x), x, b, params)
        db = _reduce_to_bias(dx, b, params.dim) if ctx.needs_input_grad[1] else None
        return dx, db, None


class _BiasActGradCuda(torch.autograd.Function):
    """dx = dy * gain * act'(z) * m, itself differentiable once more (second-order gradients)."""

    @staticmethod
    def forward(ctx, dy, x, b, params):
        ctx.params = params
        ctx.save_for_backward(dy, x, b)
        return params.run(x, b, dy, 1)

    @staticmethod
    def backward(ctx, d_dx):
        dy, x, b = ctx.saved_tensors
        params = ctx.params
        d_dx = _like(d_dx, x)
        d_dy = d_x = d_b = None
        if ctx.needs_input_grad[0]:
            d_dy = _BiasActGradCuda.apply(d_dx, x, b, params)
        if params.spec.has_2nd_grad and (ctx.needs_input_grad[1] or ctx.needs_input_grad[2]):
            d_x = params.run(x, b, d_dx * dy, 2)
            d_b = _reduce_to_bias(d_x, b, params.dim) if ctx.needs_input_grad[2] else None
        return d_dy, d_x, d_b, None
