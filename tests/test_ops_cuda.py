"""CUDA plugins vs the reference path: fp32 and fp16, forward, backward and double backward.

Marked `cuda`: skipped on machines without a GPU (tests/conftest.py).
"""

from __future__ import annotations

import pytest
import torch

from torch_utils.ops import bias_act, conv2d_gradfix, grid_sample_gradfix, plugin_dispatch, upfirdn2d
from torch_utils.ops.plugin_selfcheck import TOLERANCE  # the self-check's tolerances: one statement of them

pytestmark = pytest.mark.cuda


@pytest.fixture(autouse=True)
def _plugins_must_load(monkeypatch):
    monkeypatch.setenv(plugin_dispatch.ENV_VAR, "")  # auto; impl decides
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # the reference convolutions in true float32
    plugin_dispatch.forget_plugins()


def _rand(*shape, dtype, seed=0):
    g = torch.Generator(device="cuda").manual_seed(seed)
    return torch.randn(*shape, generator=g, device="cuda", dtype=torch.float32).to(dtype)


def _three_orders(op, x, b=None):
    """y, dx, and the gradient of |dx|^2 w.r.t. x (and b) -- what R1 needs."""
    x = x.detach().requires_grad_(True)
    inputs = [x] if b is None else [x, b.detach().requires_grad_(True)]
    y = op(*inputs)
    dy = torch.ones_like(y) * 0.5 + torch.arange(y.numel(), device=y.device).reshape(y.shape).remainder(7).to(y.dtype) * 0.1
    (dx,) = torch.autograd.grad(y, [inputs[0]], dy, create_graph=True)
    second = torch.autograd.grad(dx.float().square().sum(), inputs, allow_unused=True)
    return [y, dx, *[s if s is not None else torch.zeros_like(i) for s, i in zip(second, inputs)]]


def _assert_close(results_cuda, results_ref, dtype):
    for got, want in zip(results_cuda, results_ref):
        scale = max(want.float().abs().max().item(), 1.0)
        assert (got.float() - want.float()).abs().max().item() <= TOLERANCE[dtype] * scale


def _away_from_clamp(x: torch.Tensor, b: torch.Tensor, act: str, clamp: float) -> torch.Tensor:
    """In float16 the two paths round act(x + b) * gain at different points, so an element within
    rounding of the clamp may be inside for one and outside for the other (its gradient then differs
    by gain * dy: a legitimate disagreement, likely somewhere among these 960 elements).
    Those elements are moved to x + b = -0.5, where every activation is at least 0.1 inside."""
    spec = bias_act.ACTIVATIONS[act]
    z = x.float() + b.float().reshape(1, -1, 1, 1)
    near = ((spec.func(z, spec.def_alpha) * spec.def_gain).abs() - clamp).abs() < 0.05 * clamp
    inside = (-0.5 - b.float()).reshape(1, -1, 1, 1).expand_as(z)
    return torch.where(near, inside, x.float()).to(x.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("act", list(bias_act.ACTIVATIONS))
@pytest.mark.parametrize("clamp", [None, 0.8])
def test_bias_act_cuda_matches_reference(dtype, act, clamp):
    x, b = _rand(4, 8, 5, 6, dtype=dtype), _rand(8, dtype=dtype, seed=1)
    if clamp is not None and dtype == torch.float16:
        x = _away_from_clamp(x, b, act, clamp)
    results = {}
    for impl in ("cuda", "ref"):
        results[impl] = _three_orders(lambda x, b: bias_act.bias_act(x, b, act=act, clamp=clamp, impl=impl), x, b)
    _assert_close(results["cuda"], results["ref"], dtype)


def test_bias_act_cuda_channels_last():
    x = _rand(2, 8, 4, 4, dtype=torch.float32).to(memory_format=torch.channels_last)
    b = _rand(8, dtype=torch.float32, seed=1)
    ours = bias_act.bias_act(x, b, act="lrelu", impl="cuda")
    assert torch.allclose(ours, bias_act.bias_act(x, b, act="lrelu", impl="ref"), atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("up, down, pad", [(1, 1, [1, 2, 0, 1]), (2, 1, [2, 1, 2, 1]), (1, 2, [1, 1, 1, 1]),
                                           (4, 2, [-1, 3, 2, -2]), ([2, 1], [1, 4], [0, 1, 3, 0])])
@pytest.mark.parametrize("separable", [False, True])
def test_upfirdn2d_cuda_matches_reference(dtype, up, down, pad, separable):
    f = upfirdn2d.setup_filter([1, 3, 3, 1], separable=separable, device=torch.device("cuda"))
    x = _rand(2, 3, 9, 10, dtype=dtype)
    results = {impl: _three_orders(lambda x: upfirdn2d.upfirdn2d(x, f, up, down, pad, gain=2.0, impl=impl), x)
               for impl in ("cuda", "ref")}
    _assert_close(results["cuda"], results["ref"], dtype)


def test_conv2d_gradfix_and_grid_sample_on_cuda():
    x = _rand(2, 4, 8, 8, dtype=torch.float32).requires_grad_(True)
    w = _rand(6, 4, 3, 3, dtype=torch.float32, seed=1).requires_grad_(True)
    y = conv2d_gradfix.conv2d(x, w, padding=1)
    (gx,) = torch.autograd.grad(y.square().sum(), [x], create_graph=True)
    (gw,) = torch.autograd.grad(gx.square().sum(), [w])
    y2 = torch.nn.functional.conv2d(x, w, padding=1)
    (gx2,) = torch.autograd.grad(y2.square().sum(), [x], create_graph=True)
    (gw2,) = torch.autograd.grad(gx2.square().sum(), [w])
    assert torch.allclose(gw, gw2, rtol=1e-3, atol=1e-2)
    grid = torch.rand(2, 5, 5, 2, device="cuda") * 2 - 1
    assert torch.allclose(grid_sample_gradfix.grid_sample(x, grid), grid_sample_gradfix.grid_sample_ref(x, grid),
                          atol=1e-5)


def test_plugins_pass_their_self_check_on_this_gpu():
    """What every process does before first use (torch_utils/ops/plugin_selfcheck.py); fails loudly here."""
    x = _rand(2, 8, 4, 4, dtype=torch.float32)
    bias_act.bias_act(x, act="lrelu", impl="cuda")
    upfirdn2d.upsample2d(x, upfirdn2d.setup_filter([1, 3, 3, 1], device=x.device), impl="cuda")
    results = plugin_dispatch.self_check_results()
    assert sorted(results) == ["bias_act", "upfirdn2d"], "a plugin did not load (see the warnings)"
    for result in results.values():
        assert result.passed, result.summary()
        assert result.milliseconds < 2000, result.milliseconds
